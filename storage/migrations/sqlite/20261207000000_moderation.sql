-- Chat moderation (contract section 8): deleted messages, mutes, chat settings, tenant bans and
-- the moderation log. Additive only (new tables), so a node of the previous release keeps working
-- beside one that migrated; it just does not moderate. Kept column for column identical to the
-- Postgres dialect.

-- Deleted chat messages, keyed by stream and message. A deletion is recorded whether or not the
-- message's row is written yet (chat is written behind, in batches): `recent_chat` leaves out the
-- ids listed here whenever their rows land. No foreign key to `chat_messages` for that reason.
CREATE TABLE chat_deletions (
    stream_id   TEXT    NOT NULL REFERENCES streams (id),
    message_id  TEXT    NOT NULL,
    deleted_at  BIGINT  NOT NULL,
    PRIMARY KEY (stream_id, message_id)
);

-- One mute per user and stream; a new mute replaces the earlier one. It holds while now < until.
CREATE TABLE stream_mutes (
    stream_id  TEXT    NOT NULL REFERENCES streams (id),
    user_id    TEXT    NOT NULL,
    until      BIGINT  NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);

-- A stream's chat settings; no row means the defaults (no slow mode, no blocked words).
-- `blocked_words` is a JSON array of strings, in the moderator's order: the list is always read
-- and replaced whole (the stream compiles it once per change) and never searched by the database,
-- so one row is one read, where a child table would be up to 2,000 rows and a delete-and-insert
-- per change.
CREATE TABLE stream_chat_settings (
    stream_id          TEXT    NOT NULL PRIMARY KEY REFERENCES streams (id),
    slow_mode_seconds  BIGINT  NOT NULL,
    blocked_words      TEXT    NOT NULL,
    CONSTRAINT stream_chat_settings_slow_mode_valid CHECK (slow_mode_seconds >= 0)
);

-- One ban per user and tenant; a new ban replaces the earlier one, an unban deletes it (the log
-- keeps the history). It holds while `until` is NULL (for good) or now < until. No foreign key to
-- tenants, like `users_seen`: the tenant is the one of an accepted token.
CREATE TABLE tenant_bans (
    tenant_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    until      BIGINT,
    reason     TEXT,
    banned_by  TEXT    NOT NULL,
    banned_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- The moderation log, one row per action and stream. `action` has no CHECK on purpose: a later
-- action is then a new spelling, not a table rebuild on SQLite.
CREATE TABLE moderation_log (
    seq        INTEGER PRIMARY KEY,
    stream_id  TEXT    NOT NULL REFERENCES streams (id),
    at         BIGINT  NOT NULL,
    actor_id   TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    reason     TEXT
);
-- A stream's log newest first, read backwards.
CREATE INDEX moderation_log_stream_at ON moderation_log (stream_id, at, seq);
