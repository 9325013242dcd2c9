-- Liveshop schema, SQLite dialect. Kept column-for-column identical to the Postgres dialect so that
-- one set of queries runs on both. Ids are TEXT, instants are BIGINT unix milliseconds, money and
-- counts are BIGINT. `seq` columns give a stable insertion order (rows are never deleted).

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    slug        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    CONSTRAINT tenants_slug_unique UNIQUE (slug)
);

-- No foreign key to tenants: this is a log of accepted token contents.
CREATE TABLE users_seen (
    tenant_id     TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE products (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    sku          TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    price_cents  BIGINT  NOT NULL,
    currency     TEXT    NOT NULL,
    image_url    TEXT,
    CONSTRAINT products_sku_unique UNIQUE (tenant_id, sku)
);

CREATE TABLE streams (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    tenant_id          TEXT    NOT NULL REFERENCES tenants (id),
    seller_id          TEXT    NOT NULL,
    title              TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    scheduled_at       BIGINT,
    started_at         BIGINT,
    ended_at           BIGINT,
    pinned_product_id  TEXT    REFERENCES products (id),
    epoch              BIGINT  NOT NULL DEFAULT 0,
    created_at         BIGINT  NOT NULL,
    CONSTRAINT streams_status_known CHECK (status IN ('scheduled', 'live', 'ended'))
);
CREATE INDEX streams_tenant_status ON streams (tenant_id, status);

CREATE TABLE chat_messages (
    seq        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    stream_id  TEXT    NOT NULL REFERENCES streams (id),
    tenant_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    user_name  TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    at         BIGINT  NOT NULL
);
CREATE INDEX chat_messages_stream_at ON chat_messages (stream_id, at, seq);

CREATE TABLE drops (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    stream_id       TEXT    NOT NULL REFERENCES streams (id),
    product_id      TEXT    NOT NULL REFERENCES products (id),
    quantity        BIGINT  NOT NULL,
    reserved        BIGINT  NOT NULL DEFAULT 0,
    sold            BIGINT  NOT NULL DEFAULT 0,
    per_user_limit  BIGINT  NOT NULL,
    hold_seconds    BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    opened_at       BIGINT  NOT NULL,
    ends_at         BIGINT,
    closed_reason   TEXT,
    CONSTRAINT drops_quantity_valid CHECK (quantity >= 0 AND per_user_limit >= 0 AND hold_seconds >= 0),
    CONSTRAINT drops_no_oversell CHECK (reserved >= 0 AND sold >= 0 AND reserved + sold <= quantity),
    CONSTRAINT drops_status_known CHECK (status IN ('open', 'sold_out', 'closed'))
);
CREATE INDEX drops_stream ON drops (stream_id, seq);
CREATE INDEX drops_status ON drops (status);

CREATE TABLE claims (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    tenant_id        TEXT    NOT NULL,
    drop_id          TEXT    NOT NULL REFERENCES drops (id),
    user_id          TEXT    NOT NULL,
    quantity         BIGINT  NOT NULL,
    status           TEXT    NOT NULL,
    idempotency_key  TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    CONSTRAINT claims_quantity_positive CHECK (quantity > 0),
    CONSTRAINT claims_status_known CHECK (status IN ('reserved', 'paid', 'expired')),
    CONSTRAINT claims_idempotency_unique UNIQUE (drop_id, user_id, idempotency_key)
);
CREATE INDEX claims_drop_status_expiry ON claims (drop_id, status, expires_at);
CREATE INDEX claims_tenant_user ON claims (tenant_id, user_id, seq);

-- Units each user holds (reserved + paid) per drop, kept in step with claims inside the same
-- transactions, so the per-user limit holds at the database level too.
CREATE TABLE holdings (
    drop_id         TEXT    NOT NULL REFERENCES drops (id),
    user_id         TEXT    NOT NULL,
    units           BIGINT  NOT NULL,
    per_user_limit  BIGINT  NOT NULL,
    PRIMARY KEY (drop_id, user_id),
    CONSTRAINT holdings_within_limit CHECK (units >= 0 AND units <= per_user_limit)
);
