-- One unit per buyer, enforced on the claims themselves (Postgres).
--
-- Most drops allow one unit per buyer. For them the per-user limit is a partial UNIQUE index on
-- the buyer's live claims plus a CHECK that such a claim is of one unit, instead of a `holdings`
-- row per reservation (a second row, its key and an upsert: about a third of a reservation's
-- write). The group commit sets `one_per_buyer` from the drop row it updates, not from what the
-- engine says, and writes `holdings` only for drops allowing more than one unit. Existing claims
-- of such drops are marked first, so the index covers them too.
ALTER TABLE claims ADD COLUMN one_per_buyer BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE claims SET one_per_buyer = TRUE
    FROM drops
    WHERE claims.drop_id = drops.id AND drops.per_user_limit = 1 AND claims.quantity = 1;
ALTER TABLE claims ADD CONSTRAINT claims_one_per_buyer_single
    CHECK (NOT one_per_buyer OR quantity = 1);
CREATE UNIQUE INDEX claims_one_per_buyer ON claims (drop_id, user_id)
    WHERE one_per_buyer AND status <> 'expired';
