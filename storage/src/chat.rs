//! Chat history: batched appends and the recent tail replayed to joining viewers, without the
//! messages deleted by moderators (`moderation.rs` records those).

use liveshop_engine::ids::StreamId;
use liveshop_engine::records::ChatMessage;
use liveshop_engine::storage::{Fence, StorageResult};
use sqlx::AssertSqlSafe;

use crate::error::{classify, unavailable};
use crate::measure::{BatchKind, BatchTimer};
use crate::rows::{self, chat_columns};
use crate::sql::values_placeholders;
use crate::{SqlStore, fence};

/// Bound values per chat row.
const CHAT_BINDS: usize = 7;
/// Rows per INSERT statement: well under SQLite's 32766 and Postgres' 65535 bind limits.
const CHAT_ROWS_PER_STATEMENT: usize = 500;

impl SqlStore {
    pub(crate) async fn append_chat(
        &self,
        messages: &[ChatMessage],
        fence: &Fence,
    ) -> StorageResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let timer = BatchTimer::start(BatchKind::Chat, messages.len());
        let result = self.append_chat_tx(messages, fence).await;
        timer.finish();
        result
    }

    async fn append_chat_tx(&self, messages: &[ChatMessage], fence: &Fence) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        fence::check(&mut tx, fence).await?;
        for chunk in messages.chunks(CHAT_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO chat_messages (id, stream_id, tenant_id, user_id, user_name, text, at) \
                 VALUES {}",
                values_placeholders(self.backend, chunk.len(), CHAT_BINDS)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for message in chunk {
                query = query
                    .bind(message.id.as_str())
                    .bind(message.stream.as_str())
                    .bind(message.tenant.as_str())
                    .bind(message.user.id.as_str())
                    .bind(message.user.name.as_str())
                    .bind(message.text.as_str())
                    .bind(message.at.millis());
            }
            query.execute(&mut *tx).await.map_err(classify)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    /// The stream's newest messages read backwards through `chat_messages_stream_at`, each one
    /// looked up in `chat_deletions` by its primary key (stream, message) and left out when
    /// deleted, until `limit` remain.
    pub(crate) async fn select_recent_chat(
        &self,
        stream: &StreamId,
        limit: u32,
    ) -> StorageResult<Vec<ChatMessage>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            chat_columns!(),
            " FROM chat_messages WHERE stream_id = $1 AND NOT EXISTS (SELECT 1 FROM chat_deletions d \
             WHERE d.stream_id = chat_messages.stream_id AND d.message_id = chat_messages.id) \
             ORDER BY at DESC, seq DESC LIMIT $2"
        ))
        .bind(stream.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut messages = rows
            .iter()
            .map(rows::chat)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        messages.reverse();
        Ok(messages)
    }
}
