-- Claims are keyed by their id (Postgres): the `seq` column keeps the insertion order for listings,
-- but no longer needs an index of its own. One index fewer to maintain on every reservation (the
-- unique constraint on `id` is replaced by the primary key on `id`).
ALTER TABLE claims DROP CONSTRAINT claims_pkey;
ALTER TABLE claims DROP CONSTRAINT claims_id_key;
ALTER TABLE claims ADD CONSTRAINT claims_pkey PRIMARY KEY (id);
