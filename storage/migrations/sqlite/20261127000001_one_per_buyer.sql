-- Column parity with the Postgres dialect, where `one_per_buyer` marks the claims of drops that
-- allow one unit per buyer (their limit is enforced there by a partial unique index instead of a
-- `holdings` row). SQLite keeps writing `holdings` for every drop, so the column stays FALSE here.
ALTER TABLE claims ADD COLUMN one_per_buyer BOOLEAN NOT NULL DEFAULT FALSE;
