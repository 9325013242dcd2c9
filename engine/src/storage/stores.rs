//! The storage boundary cut by aggregate: one narrow trait per kind of record, so a part of the
//! engine can be handed only the storage it uses (a drop actor gets an `Arc<dyn DropStore>`).
//! Implementations must be cheap to clone behind an `Arc` and safe to call from many tasks at once.

use async_trait::async_trait;

use super::error::StorageResult;
use super::fence::Fence;
use crate::ids::{ChatId, ClaimId, DropId, ProductId, StreamId, TenantId, UserId};
use crate::moderation::{Ban, ChatSettings, ModerationEntry, Mute};
use crate::records::{
    ChatMessage, Claim, Drop, DropStatus, Product, Stream, StreamStatus, Tenant, UserSeen,
};
use crate::timestamp::Timestamp;

/// A new reservation to write as part of a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    /// The claim as it will be stored (status `reserved`).
    pub claim: Claim,
}

/// Whether the database answers, for readiness probes.
#[async_trait]
pub trait Health: Send + Sync + 'static {
    /// Answers when the database answers (readiness).
    async fn ping(&self) -> StorageResult<()>;
}

/// Tenants and the users seen in their accepted tokens.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Creates a tenant; `Conflict("slug")` when the slug is taken.
    async fn create_tenant(&self, tenant: &Tenant) -> StorageResult<()>;
    /// Loads a tenant by id.
    async fn tenant(&self, id: &TenantId) -> StorageResult<Option<Tenant>>;

    /// Records (upserts) a user seen in an accepted token.
    async fn record_user_seen(&self, user: &UserSeen) -> StorageResult<()>;
    /// Records many users seen, batched off the request path; implementations should use one
    /// transaction.
    async fn record_users_seen(&self, users: &[UserSeen]) -> StorageResult<()> {
        for user in users {
            self.record_user_seen(user).await?;
        }
        Ok(())
    }
}

/// A tenant's product catalogue.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Creates a product; `Conflict("sku")` when the tenant already has that sku.
    async fn create_product(&self, product: &Product) -> StorageResult<()>;
    /// Lists a tenant's products, oldest first.
    async fn products(&self, tenant: &TenantId) -> StorageResult<Vec<Product>>;
    /// Loads one product of a tenant.
    async fn product(&self, tenant: &TenantId, id: &ProductId) -> StorageResult<Option<Product>>;
}

/// Streams: their lifecycle, pinned product and epochs.
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    /// Creates a stream.
    async fn create_stream(&self, stream: &Stream) -> StorageResult<()>;
    /// Loads a stream by id, whatever its tenant (callers check the tenant).
    async fn stream(&self, id: &StreamId) -> StorageResult<Option<Stream>>;
    /// Lists a tenant's streams, newest first, optionally only those with `status`.
    async fn streams(
        &self,
        tenant: &TenantId,
        status: Option<StreamStatus>,
    ) -> StorageResult<Vec<Stream>>;
    /// Every live stream of every tenant, oldest first: what a booting node may start again (or,
    /// in cluster mode, offer to own) before any viewer asks. A stream stays live until it is
    /// ended, so after a crash this also lists the streams that were live when it happened.
    async fn live_streams(&self) -> StorageResult<Vec<Stream>>;
    /// Writes a stream's status and its start/end times.
    async fn update_stream_status(
        &self,
        id: &StreamId,
        status: StreamStatus,
        started_at: Option<Timestamp>,
        ended_at: Option<Timestamp>,
        fence: &Fence,
    ) -> StorageResult<()>;
    /// Writes the pinned product of a stream.
    async fn set_pinned(
        &self,
        id: &StreamId,
        product: Option<&ProductId>,
        fence: &Fence,
    ) -> StorageResult<()>;
    /// Increments and returns the stream's epoch: each stream actor start gets a new one.
    async fn next_epoch(&self, id: &StreamId) -> StorageResult<u64>;
    /// Raises the fencing token of `scope` by one and returns it (1 for a scope never fenced).
    /// A node that becomes the owner of a stream takes the next token before it writes anything
    /// for it: from then on every write of the previous owner, which carries a lower token, is
    /// refused with [`StorageError::Fenced`](super::StorageError::Fenced).
    async fn take_fence(&self, scope: &str) -> StorageResult<u64>;
    /// The highest fencing token of `scope` taken or written so far (`None`: never fenced). An
    /// owner whose lease vanished (Redis restarted empty) keeps its stream only while this is
    /// still its own token: nobody took the stream meanwhile.
    async fn fence_of(&self, scope: &str) -> StorageResult<Option<u64>>;
}

/// Chat history of streams.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Appends chat messages in one transaction (batched off the hot path).
    async fn insert_chat(&self, messages: &[ChatMessage], fence: &Fence) -> StorageResult<()>;
    /// The `limit` most recent chat messages of a stream that were not deleted, oldest first.
    async fn recent_chat(&self, stream: &StreamId, limit: u32) -> StorageResult<Vec<ChatMessage>>;
}

/// A stream's moderation as stored: its chat settings and the mutes that hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamModeration {
    /// Slow mode and blocked words (the defaults when never set).
    pub settings: ChatSettings,
    /// Mutes of the stream that hold at the time asked about.
    pub mutes: Vec<Mute>,
}

/// Moderation: deleted messages, mutes, chat settings, tenant bans and the audit log. Every action
/// is written together with its log entry, in one transaction.
#[async_trait]
pub trait ModerationStore: Send + Sync + 'static {
    /// Marks a chat message of `stream` deleted and logs `entry`. The message need not be stored
    /// yet (chat is written behind): [`ChatStore::recent_chat`] leaves it out whenever it lands.
    /// Deleting a message twice is no error and changes nothing.
    async fn delete_chat(
        &self,
        stream: &StreamId,
        message: &ChatId,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()>;
    /// A stored chat message of `stream`, and whether it was deleted.
    async fn chat_message(
        &self,
        stream: &StreamId,
        message: &ChatId,
    ) -> StorageResult<Option<(ChatMessage, bool)>>;
    /// Mutes a user in a stream until `mute.until` (replacing an earlier mute of theirs there)
    /// and logs `entry`.
    async fn mute(&self, mute: &Mute, entry: &ModerationEntry, fence: &Fence) -> StorageResult<()>;
    /// Writes a stream's chat settings and logs `entry`.
    async fn set_chat_settings(
        &self,
        stream: &StreamId,
        settings: &ChatSettings,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()>;
    /// A stream's settings (the defaults when never set) and the mutes that hold at `now`.
    async fn stream_moderation(
        &self,
        stream: &StreamId,
        now: Timestamp,
    ) -> StorageResult<StreamModeration>;
    /// Bans a user from a tenant (replacing an earlier ban of theirs there) and writes `entries`
    /// (one per stream of the tenant live at the time). Not fenced: bans belong to the tenant,
    /// not to a stream's owner.
    async fn ban(&self, ban: &Ban, entries: &[ModerationEntry]) -> StorageResult<()>;
    /// Lifts a user's ban from a tenant and writes `entries`; false when no ban was stored.
    async fn unban(
        &self,
        tenant: &TenantId,
        user: &UserId,
        entries: &[ModerationEntry],
    ) -> StorageResult<bool>;
    /// Every ban of every tenant that holds at `now`: what a node loads at start and refreshes.
    async fn active_bans(&self, now: Timestamp) -> StorageResult<Vec<Ban>>;
    /// The bans of one tenant that hold at `now`, newest first.
    async fn bans_of_tenant(&self, tenant: &TenantId, now: Timestamp) -> StorageResult<Vec<Ban>>;
    /// A stream's moderation log, newest first, at most `limit` entries.
    async fn moderation_log(
        &self,
        stream: &StreamId,
        limit: u32,
    ) -> StorageResult<Vec<ModerationEntry>>;
    /// Whether `user` wrote chat in a stream of `seller` in `tenant`: a seller may ban only the
    /// viewers of its own streams.
    async fn chatted_with_seller(
        &self,
        tenant: &TenantId,
        seller: &UserId,
        user: &UserId,
    ) -> StorageResult<bool>;
}

/// Drops and their claims: the aggregate whose counts guard the no-oversell and per-user limits.
#[async_trait]
pub trait DropStore: Send + Sync + 'static {
    /// Creates a drop (status open, nothing reserved or sold).
    async fn create_drop(&self, drop: &Drop, fence: &Fence) -> StorageResult<()>;
    /// Loads a drop with its current counts.
    async fn drop_by_id(&self, id: &DropId) -> StorageResult<Option<Drop>>;
    /// The stream's drops, oldest first.
    async fn drops_of_stream(&self, stream: &StreamId) -> StorageResult<Vec<Drop>>;
    /// Writes a drop's status and closing reason. Closed is final: writing any status to a
    /// closed drop changes nothing, so a late open ⇄ sold-out write cannot reopen it.
    async fn set_drop_status(
        &self,
        id: &DropId,
        status: DropStatus,
        closed_reason: Option<&str>,
        fence: &Fence,
    ) -> StorageResult<()>;
    /// Group commit: inserts all reservations and raises the drop's `reserved` count in ONE
    /// transaction. The database refuses (`Constraint`) any batch that would make
    /// `reserved + sold > quantity` or put a user over the per-user limit; then nothing is written.
    async fn commit_claims(
        &self,
        drop: &DropId,
        claims: &[NewClaim],
        fence: &Fence,
    ) -> StorageResult<()>;
    /// Finds a claim by its idempotency scope (drop, user, key).
    async fn claim_by_key(
        &self,
        drop: &DropId,
        user: &UserId,
        key: &str,
    ) -> StorageResult<Option<Claim>>;
    /// Loads one claim by id.
    async fn claim_by_id(&self, id: &ClaimId) -> StorageResult<Option<Claim>>;
    /// All claims of a drop (for rebuilding a drop actor's state).
    async fn claims_of_drop(&self, drop: &DropId) -> StorageResult<Vec<Claim>>;
    /// A user's claims within a tenant, newest first.
    async fn claims_of_user(&self, tenant: &TenantId, user: &UserId) -> StorageResult<Vec<Claim>>;
    /// Expires every `reserved` claim of the drop whose `expires_at <= now`, returning units to the
    /// drop, in one transaction; returns the claims it expired (status now `expired`).
    async fn expire_claims(
        &self,
        drop: &DropId,
        now: Timestamp,
        fence: &Fence,
    ) -> StorageResult<Vec<Claim>>;
    /// Marks a reserved claim paid (reserved → sold); returns the updated claim, or `None` when it
    /// does not exist or is not reserved.
    async fn mark_claim_paid(&self, id: &ClaimId, fence: &Fence) -> StorageResult<Option<Claim>>;
    /// The drops that must be started again after a restart, oldest first: every drop that is
    /// open or sold out and holds at least one `reserved` claim (so its holds expire, also those
    /// whose `expires_at` passed while nothing ran) or has an `ends_at` (so it closes on time, at
    /// once if that time has passed). An open drop without holds or end time is left out: nothing
    /// happens to it until a request starts it; closed drops never change again.
    async fn drops_to_recover(&self) -> StorageResult<Vec<Drop>>;
}

/// Everything the engine persists: all the aggregates' stores at once, for the composition root.
/// Any type implementing every narrow store is a `Storage`, and an `Arc<dyn Storage>` converts
/// to any one of them (`let drops: Arc<dyn DropStore> = storage.clone();`).
pub trait Storage:
    Health + TenantStore + CatalogStore + StreamStore + ChatStore + DropStore + ModerationStore
{
}

impl<T> Storage for T where
    T: Health + TenantStore + CatalogStore + StreamStore + ChatStore + DropStore + ModerationStore
{
}
