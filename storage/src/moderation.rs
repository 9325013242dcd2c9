//! Moderation: deleted chat, mutes, chat settings, tenant bans and the moderation log. Every action
//! is written with its log entries in one transaction; the stream's own actions (delete, mute,
//! settings) behind the owner's fence in that same transaction, bans unfenced (they belong to the
//! tenant).

use liveshop_engine::ids::{ChatId, StreamId, TenantId, UserId};
use liveshop_engine::moderation::{Ban, ChatSettings, ModerationEntry, Mute};
use liveshop_engine::records::ChatMessage;
use liveshop_engine::storage::{Fence, StorageError, StorageResult, StreamModeration};
use liveshop_engine::timestamp::Timestamp;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::error::{classify, unavailable};
use crate::rows::{
    self, ban_columns, chat_columns, chat_settings_columns, moderation_entry_columns, mute_columns,
};
use crate::sql::values_placeholders;
use crate::{SqlStore, fence};

/// Bound values per moderation log row.
const LOG_BINDS: usize = 6;
/// Log rows per INSERT statement: well under both databases' bind limits.
const LOG_ROWS_PER_STATEMENT: usize = 500;

impl SqlStore {
    /// Opens the transaction of a moderation action and checks `fence` in it first.
    async fn begin_action(&self, fence: &Fence) -> StorageResult<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        fence::check(&mut tx, fence).await?;
        Ok(tx)
    }

    /// Appends `entries` to the moderation log inside the action's transaction.
    async fn insert_log(
        &self,
        tx: &mut Transaction<'static, Any>,
        entries: &[ModerationEntry],
    ) -> StorageResult<()> {
        for chunk in entries.chunks(LOG_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO moderation_log (stream_id, at, actor_id, action, target, reason) \
                 VALUES {}",
                values_placeholders(self.backend, chunk.len(), LOG_BINDS)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for entry in chunk {
                query = query
                    .bind(entry.stream.as_str())
                    .bind(entry.at.millis())
                    .bind(entry.actor.as_str())
                    .bind(entry.action.as_str())
                    .bind(entry.target.as_str())
                    .bind(entry.reason.as_deref());
            }
            query.execute(&mut **tx).await.map_err(classify)?;
        }
        Ok(())
    }

    /// Records the deletion (whether or not the message's row exists yet) and logs it; a message
    /// already deleted is left as it is and logged no second time.
    pub(crate) async fn write_chat_deletion(
        &self,
        stream: &StreamId,
        message: &ChatId,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()> {
        let mut tx = self.begin_action(fence).await?;
        let inserted = sqlx::query(
            "INSERT INTO chat_deletions (stream_id, message_id, deleted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (stream_id, message_id) DO NOTHING",
        )
        .bind(stream.as_str())
        .bind(message.as_str())
        .bind(entry.at.millis())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if inserted.rows_affected() > 0 {
            self.insert_log(&mut tx, std::slice::from_ref(entry))
                .await?;
        }
        tx.commit().await.map_err(unavailable)
    }

    pub(crate) async fn select_chat_message(
        &self,
        stream: &StreamId,
        message: &ChatId,
    ) -> StorageResult<Option<(ChatMessage, bool)>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            chat_columns!(),
            ", (SELECT COUNT(*) FROM chat_deletions d WHERE d.stream_id = chat_messages.stream_id \
             AND d.message_id = chat_messages.id) AS deleted \
             FROM chat_messages WHERE id = $2 AND stream_id = $1"
        ))
        .bind(stream.as_str())
        .bind(message.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|row| {
            let deleted: i64 = row.try_get("deleted")?;
            Ok((rows::chat(&row)?, deleted > 0))
        })
        .transpose()
        .map_err(unavailable)
    }

    /// Upserts the user's mute in the stream and logs it.
    pub(crate) async fn write_mute(
        &self,
        mute: &Mute,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()> {
        let mut tx = self.begin_action(fence).await?;
        sqlx::query(
            "INSERT INTO stream_mutes (stream_id, user_id, until) VALUES ($1, $2, $3) \
             ON CONFLICT (stream_id, user_id) DO UPDATE SET until = excluded.until",
        )
        .bind(mute.stream.as_str())
        .bind(mute.user.as_str())
        .bind(mute.until.millis())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        self.insert_log(&mut tx, std::slice::from_ref(entry))
            .await?;
        tx.commit().await.map_err(unavailable)
    }

    /// Upserts the stream's settings row (blocked words as a JSON array) and logs the change.
    pub(crate) async fn write_chat_settings(
        &self,
        stream: &StreamId,
        settings: &ChatSettings,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()> {
        let words = serde_json::to_string(&settings.blocked_words)
            .map_err(|err| StorageError::Invalid(format!("blocked words: {err}")))?;
        let mut tx = self.begin_action(fence).await?;
        sqlx::query(
            "INSERT INTO stream_chat_settings (stream_id, slow_mode_seconds, blocked_words) \
             VALUES ($1, $2, $3) ON CONFLICT (stream_id) DO UPDATE SET \
             slow_mode_seconds = excluded.slow_mode_seconds, \
             blocked_words = excluded.blocked_words",
        )
        .bind(stream.as_str())
        .bind(i64::from(settings.slow_mode_seconds))
        .bind(words)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        self.insert_log(&mut tx, std::slice::from_ref(entry))
            .await?;
        tx.commit().await.map_err(unavailable)
    }

    /// The settings row (defaults when there is none) and the mutes with `until > now`.
    pub(crate) async fn select_stream_moderation(
        &self,
        stream: &StreamId,
        now: Timestamp,
    ) -> StorageResult<StreamModeration> {
        let settings = sqlx::query(concat!(
            "SELECT ",
            chat_settings_columns!(),
            " FROM stream_chat_settings WHERE stream_id = $1"
        ))
        .bind(stream.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let settings = settings
            .as_ref()
            .map(rows::chat_settings)
            .transpose()
            .map_err(unavailable)?
            .unwrap_or_default();
        let mutes = sqlx::query(concat!(
            "SELECT ",
            mute_columns!(),
            " FROM stream_mutes WHERE stream_id = $1 AND until > $2 ORDER BY user_id"
        ))
        .bind(stream.as_str())
        .bind(now.millis())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mutes = mutes
            .iter()
            .map(rows::mute)
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        Ok(StreamModeration { settings, mutes })
    }

    /// Upserts the user's ban from the tenant and writes `entries`, unfenced.
    pub(crate) async fn write_ban(
        &self,
        ban: &Ban,
        entries: &[ModerationEntry],
    ) -> StorageResult<()> {
        let mut tx = self.begin_action(&Fence::Unfenced).await?;
        sqlx::query(
            "INSERT INTO tenant_bans (tenant_id, user_id, until, reason, banned_by, banned_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
             until = excluded.until, reason = excluded.reason, \
             banned_by = excluded.banned_by, banned_at = excluded.banned_at",
        )
        .bind(ban.tenant.as_str())
        .bind(ban.user.as_str())
        .bind(ban.until.map(Timestamp::millis))
        .bind(ban.reason.as_deref())
        .bind(ban.by.as_str())
        .bind(ban.at.millis())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        self.insert_log(&mut tx, entries).await?;
        tx.commit().await.map_err(unavailable)
    }

    /// Deletes the user's ban from the tenant and writes `entries`; when there was no ban, writes
    /// nothing and answers false.
    pub(crate) async fn delete_ban(
        &self,
        tenant: &TenantId,
        user: &UserId,
        entries: &[ModerationEntry],
    ) -> StorageResult<bool> {
        let mut tx = self.begin_action(&Fence::Unfenced).await?;
        let deleted = sqlx::query("DELETE FROM tenant_bans WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        self.insert_log(&mut tx, entries).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    /// Bans of every tenant with no end or `until > now`, by tenant and user.
    pub(crate) async fn select_active_bans(&self, now: Timestamp) -> StorageResult<Vec<Ban>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ban_columns!(),
            " FROM tenant_bans WHERE until IS NULL OR until > $1 ORDER BY tenant_id, user_id"
        ))
        .bind(now.millis())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::ban)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    /// One tenant's bans that hold at `now`, newest first.
    pub(crate) async fn select_bans_of_tenant(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> StorageResult<Vec<Ban>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ban_columns!(),
            " FROM tenant_bans WHERE tenant_id = $1 AND (until IS NULL OR until > $2) \
             ORDER BY banned_at DESC, user_id"
        ))
        .bind(tenant.as_str())
        .bind(now.millis())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::ban)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    /// A stream's log newest first (ties in insertion order, latest first), through
    /// `moderation_log_stream_at` read backwards.
    pub(crate) async fn select_moderation_log(
        &self,
        stream: &StreamId,
        limit: u32,
    ) -> StorageResult<Vec<ModerationEntry>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            moderation_entry_columns!(),
            " FROM moderation_log WHERE stream_id = $1 ORDER BY at DESC, seq DESC LIMIT $2"
        ))
        .bind(stream.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::moderation_entry)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    /// Whether `user` has a chat row (deleted or not) in a stream of `seller` in `tenant`: the
    /// user's rows through `chat_messages_user`, each joined to its stream by id.
    pub(crate) async fn select_chatted_with_seller(
        &self,
        tenant: &TenantId,
        seller: &UserId,
        user: &UserId,
    ) -> StorageResult<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM chat_messages c JOIN streams s ON s.id = c.stream_id \
             WHERE c.user_id = $3 AND s.tenant_id = $1 AND s.seller_id = $2 LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(seller.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(row.is_some())
    }
}
