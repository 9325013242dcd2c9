-- no-transaction
-- A user's chat messages by stream, for `chatted_with_seller` (a seller may ban only the viewers
-- of its own streams): the user's few rows, each joined to its stream by id, instead of every
-- message of every stream of the seller. Built CONCURRENTLY, outside a transaction (hence the
-- first line, and one statement in this file), so a node still writing chat during a rolling
-- deploy is not blocked while the index of a large table is built. Should the build fail, Postgres
-- leaves an INVALID index behind: drop it (`DROP INDEX CONCURRENTLY chat_messages_user`) and
-- start again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_messages_user ON chat_messages (user_id, stream_id);
