-- A user's chat messages by stream, for `chatted_with_seller` (a seller may ban only the viewers
-- of its own streams): the user's few rows, each joined to its stream by id, instead of every
-- message of every stream of the seller.
CREATE INDEX IF NOT EXISTS chat_messages_user ON chat_messages (user_id, stream_id);
