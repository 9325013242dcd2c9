-- Claims and holdings no longer carry foreign keys to drops (Postgres only).
--
-- Every reservation is written by one statement that updates the drop row and inserts the batch's
-- claims and holdings joined to that very row (`FROM d` in the group commit), so a claim or holding
-- of a drop that does not exist cannot be written, and drops are never deleted. The foreign-key
-- checks added nothing to that, but cost more than half of a reservation's write: each inserted row
-- ran its own lookup and row lock of the drop that the same statement had just updated. The
-- invariants that matter (no oversell, per-user limit, one claim per idempotency key) stay CHECK and
-- UNIQUE constraints. SQLite keeps its foreign keys: there they cost little.
ALTER TABLE claims DROP CONSTRAINT claims_drop_id_fkey;
ALTER TABLE holdings DROP CONSTRAINT holdings_drop_id_fkey;
