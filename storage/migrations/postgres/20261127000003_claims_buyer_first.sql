-- One index fewer on every reservation (Postgres): the idempotency key's uniqueness now leads
-- with the buyer, `(user_id, drop_id, idempotency_key)` instead of `(drop_id, user_id, ...)`, so
-- the same index also finds a buyer's claims for `GET /v1/claims` (a buyer holds few claims; the
-- tenant is checked on those rows), and `claims_tenant_user` is no longer needed. The set of
-- columns that must be unique is unchanged. Claims of one drop are still found through
-- `claims_drop_status_expiry`, which leads with `drop_id`.
ALTER TABLE claims DROP CONSTRAINT claims_idempotency_unique;
ALTER TABLE claims ADD CONSTRAINT claims_idempotency_unique
    UNIQUE (user_id, drop_id, idempotency_key);
DROP INDEX claims_tenant_user;
