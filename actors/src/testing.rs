//! In-memory capabilities for tests of the actors, with switches a test can flip (feature
//! `test-util`).
//!
//! - [`MemoryStore`]: every storage trait, in memory, moving a drop's counts the way the SQL
//!   store does, plus [`MemoryStore::fail_next_writes`], [`MemoryStore::hold_writes`] and
//!   [`MemoryStore::calls`].
//! - [`RecordingConnection`] and [`RecordingNotifier`]: record what reaches a viewer or a buyer,
//!   decoded as JSON.
//! - [`StreamProbe`]: a stand-in for a stream actor that records what drops send it.
//! - [`settle`]: lets spawned tasks run without moving tokio's clock, so tests on paused time
//!   advance time only where they say so.
//!
//! Nothing here reads the wall clock or sleeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use liveshop_engine::ids::{ChatId, ClaimId, DropId, ProductId, StreamId, TenantId, UserId};
use liveshop_engine::moderation::{Ban, ChatSettings, ModerationEntry, Mute};
use liveshop_engine::records::{
    ChatMessage, Claim, ClaimStatus, Drop, DropStatus, Product, Stream, StreamStatus, Tenant,
    UserSeen,
};
use liveshop_engine::storage::{
    CatalogStore, ChatStore, DropStore, Fence, Health, ModerationStore, NewClaim, StorageError,
    StorageResult, StreamModeration, StreamStore, TenantStore,
};
use liveshop_engine::timestamp::Timestamp;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tokio::sync::watch;

use crate::connection::{Connection, Subscriber};
use crate::fanout::notifier::Notifier;
use crate::mailbox::{Addr, Depth};
use crate::metrics::kind;
use crate::slot::Slot;
use crate::stream::StreamMsg;

/// Lets every spawned task run until it waits, without moving tokio's clock: many yields, no
/// sleep, so under `tokio::time::pause` no timer fires that the test did not advance to.
pub async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// Moves tokio's paused clock by `ms` milliseconds, then lets what that woke run.
pub async fn advance_ms(ms: u64) {
    tokio::time::advance(std::time::Duration::from_millis(ms)).await;
    settle().await;
}

/// The rows of every table.
#[derive(Default)]
struct Tables {
    tenants: Vec<Tenant>,
    users: HashMap<(TenantId, UserId), UserSeen>,
    products: Vec<Product>,
    /// Streams in creation order, with their epoch.
    streams: Vec<(Stream, u64)>,
    chat: Vec<ChatMessage>,
    /// Drops in creation order (what `seq` orders in SQL).
    drops: Vec<Drop>,
    /// Claims in creation order.
    claims: Vec<Claim>,
    /// Units each user holds or bought, per drop (expired units are given back).
    holdings: HashMap<(DropId, UserId), i64>,
    /// The highest fencing token that has written, per scope.
    fences: HashMap<String, u64>,
    /// Deleted chat messages, per stream.
    deleted_chat: std::collections::HashSet<(StreamId, ChatId)>,
    mutes: HashMap<(StreamId, UserId), Mute>,
    chat_settings: HashMap<StreamId, ChatSettings>,
    bans: HashMap<(TenantId, UserId), Ban>,
    /// The moderation log in the order written.
    moderation_log: Vec<ModerationEntry>,
}

impl Tables {
    fn drop_mut(&mut self, id: &DropId) -> Option<&mut Drop> {
        self.drops.iter_mut().find(|d| &d.id == id)
    }

    /// The fence check storage makes in the write's transaction.
    fn check_fence(&mut self, fence: &Fence) -> StorageResult<()> {
        if let Fence::Owner { scope, token } = fence {
            let highest = self.fences.entry(scope.clone()).or_insert(*token);
            if *token < *highest {
                return Err(StorageError::Fenced {
                    scope: scope.clone(),
                    token: *token,
                });
            }
            *highest = *token;
        }
        Ok(())
    }
}

/// A drop as stored: `remaining` follows the counts, like the SQL rows' reader computes it.
fn with_remaining(mut drop: Drop) -> Drop {
    drop.remaining = drop.quantity - drop.reserved - drop.sold;
    drop
}

/// Every storage trait in memory, for tests of the actors.
///
/// Claims move a drop's `reserved` and `sold` like `liveshop-storage` does: a batch that would
/// oversell or put a user over the per-user limit is refused whole (`Constraint`); expiry gives
/// units back to the drop and to the user's holdings; payment moves units from reserved to sold;
/// a closed drop's status never changes again. Text with a NUL byte is refused (`Invalid`), as
/// Postgres refuses it, so tests can make one bad chat row.
///
/// Switches: [`fail_next_writes`](Self::fail_next_writes) makes writes fail with
/// `Unavailable`; [`lose_next_answers`](Self::lose_next_answers) stores claim batches and answers
/// them `Unavailable`; [`hold_writes`](Self::hold_writes) makes writes wait until
/// [`release_writes`](Self::release_writes), to keep a commit in flight;
/// [`calls`](Self::calls) counts the calls of each method.
pub struct MemoryStore {
    tables: Mutex<Tables>,
    fail_writes: AtomicUsize,
    lose_answers: AtomicUsize,
    held: watch::Sender<bool>,
    waiting: AtomicUsize,
    calls: Mutex<HashMap<&'static str, usize>>,
    down: AtomicBool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            tables: Mutex::default(),
            fail_writes: AtomicUsize::new(0),
            lose_answers: AtomicUsize::new(0),
            held: watch::Sender::new(false),
            waiting: AtomicUsize::new(0),
            calls: Mutex::default(),
            down: AtomicBool::new(false),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(what: &str) -> StorageError {
    StorageError::Unavailable(format!("memory store: {what}").into())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A store holding tenant `ten_1` with its live stream `str_1`: what most actor tests need.
    pub async fn with_live_stream() -> Arc<Self> {
        let store = Self::new();
        store
            .create_tenant(&records::tenant("ten_1"))
            .await
            .expect("the tenant is stored");
        store
            .create_stream(&records::stream("ten_1", "str_1", StreamStatus::Live))
            .await
            .expect("the stream is stored");
        store
    }

    /// The next `n` writes fail with `Unavailable` (and write nothing).
    pub fn fail_next_writes(&self, n: usize) {
        self.fail_writes.store(n, Ordering::SeqCst);
    }

    /// The next `n` claim batches are stored but answered with `Unavailable`, as when the
    /// database commits and its answer is lost on the way back.
    pub fn lose_next_answers(&self, n: usize) {
        self.lose_answers.store(n, Ordering::SeqCst);
    }

    /// Takes one from a counter of things still due; false when none is.
    fn take_one(&self, due: &AtomicUsize) -> bool {
        due.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Every call, read or write, fails with `Unavailable` until called again with `false`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// From now on writes wait (before writing anything) until [`Self::release_writes`].
    pub fn hold_writes(&self) {
        self.held.send_replace(true);
    }

    /// Lets held writes go on, and later ones through at once.
    pub fn release_writes(&self) {
        self.held.send_replace(false);
    }

    /// Writes waiting for [`Self::release_writes`] now.
    pub fn writes_waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// How many times `method` (a trait method's name, e.g. `"commit_claims"`) was called.
    pub fn calls(&self, method: &str) -> usize {
        lock(&self.calls).get(method).copied().unwrap_or(0)
    }

    /// Every stored chat message of `stream`, oldest first.
    pub fn chat_of(&self, stream: &StreamId) -> Vec<ChatMessage> {
        lock(&self.tables)
            .chat
            .iter()
            .filter(|m| &m.stream == stream)
            .cloned()
            .collect()
    }

    /// Every users-seen row.
    pub fn users_seen(&self) -> Vec<UserSeen> {
        lock(&self.tables).users.values().cloned().collect()
    }

    fn count(&self, method: &'static str) -> StorageResult<()> {
        *lock(&self.calls).entry(method).or_default() += 1;
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable("down"));
        }
        Ok(())
    }

    /// What every write goes through: counted, held while writes are held, failed while failures
    /// are due.
    async fn write(&self, method: &'static str) -> StorageResult<()> {
        self.count(method)?;
        let mut held = self.held.subscribe();
        if *held.borrow_and_update() {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = held.wait_for(|held| !held).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        if self.take_one(&self.fail_writes) {
            return Err(unavailable("write failed on purpose"));
        }
        Ok(())
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        lock(&self.tables)
    }
}

fn refuse_nul(text: &str) -> StorageResult<()> {
    if text.contains('\0') {
        return Err(StorageError::Invalid("text holds a NUL byte".to_owned()));
    }
    Ok(())
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> StorageResult<()> {
        self.count("ping")
    }
}

#[async_trait]
impl TenantStore for MemoryStore {
    async fn create_tenant(&self, tenant: &Tenant) -> StorageResult<()> {
        self.write("create_tenant").await?;
        let mut t = self.tables();
        if t.tenants.iter().any(|x| x.slug == tenant.slug) {
            return Err(StorageError::Conflict("slug"));
        }
        t.tenants.push(tenant.clone());
        Ok(())
    }

    async fn tenant(&self, id: &TenantId) -> StorageResult<Option<Tenant>> {
        self.count("tenant")?;
        Ok(self.tables().tenants.iter().find(|t| &t.id == id).cloned())
    }

    async fn record_user_seen(&self, user: &UserSeen) -> StorageResult<()> {
        self.record_users_seen(std::slice::from_ref(user)).await
    }

    async fn record_users_seen(&self, users: &[UserSeen]) -> StorageResult<()> {
        self.write("record_users_seen").await?;
        for user in users {
            refuse_nul(&user.name)?;
        }
        let mut t = self.tables();
        for user in users {
            t.users
                .insert((user.tenant.clone(), user.id.clone()), user.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl CatalogStore for MemoryStore {
    async fn create_product(&self, product: &Product) -> StorageResult<()> {
        self.write("create_product").await?;
        let mut t = self.tables();
        if t.products
            .iter()
            .any(|p| p.tenant == product.tenant && p.sku == product.sku)
        {
            return Err(StorageError::Conflict("sku"));
        }
        t.products.push(product.clone());
        Ok(())
    }

    async fn products(&self, tenant: &TenantId) -> StorageResult<Vec<Product>> {
        self.count("products")?;
        let t = self.tables();
        Ok(t.products
            .iter()
            .filter(|p| &p.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn product(&self, tenant: &TenantId, id: &ProductId) -> StorageResult<Option<Product>> {
        self.count("product")?;
        let t = self.tables();
        Ok(t.products
            .iter()
            .find(|p| &p.tenant == tenant && &p.id == id)
            .cloned())
    }
}

#[async_trait]
impl StreamStore for MemoryStore {
    async fn create_stream(&self, stream: &Stream) -> StorageResult<()> {
        self.write("create_stream").await?;
        let mut t = self.tables();
        if t.streams.iter().any(|(s, _)| s.id == stream.id) {
            return Err(StorageError::Conflict("id"));
        }
        let mut stored = stream.clone();
        stored.viewers = 0;
        t.streams.push((stored, 0));
        Ok(())
    }

    async fn stream(&self, id: &StreamId) -> StorageResult<Option<Stream>> {
        self.count("stream")?;
        let t = self.tables();
        Ok(t.streams
            .iter()
            .find(|(s, _)| &s.id == id)
            .map(|(s, _)| s.clone()))
    }

    async fn streams(
        &self,
        tenant: &TenantId,
        status: Option<StreamStatus>,
    ) -> StorageResult<Vec<Stream>> {
        self.count("streams")?;
        let t = self.tables();
        Ok(t.streams
            .iter()
            .rev()
            .map(|(s, _)| s)
            .filter(|s| &s.tenant == tenant && status.is_none_or(|st| s.status == st))
            .cloned()
            .collect())
    }

    async fn live_streams(&self) -> StorageResult<Vec<Stream>> {
        self.count("live_streams")?;
        let t = self.tables();
        Ok(t.streams
            .iter()
            .map(|(s, _)| s)
            .filter(|s| s.status == StreamStatus::Live)
            .cloned()
            .collect())
    }

    async fn update_stream_status(
        &self,
        id: &StreamId,
        status: StreamStatus,
        started_at: Option<Timestamp>,
        ended_at: Option<Timestamp>,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.write("update_stream_status").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        if let Some((s, _)) = t.streams.iter_mut().find(|(s, _)| &s.id == id) {
            s.status = status;
            s.started_at = started_at;
            s.ended_at = ended_at;
        }
        Ok(())
    }

    async fn set_pinned(
        &self,
        id: &StreamId,
        product: Option<&ProductId>,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.write("set_pinned").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        if let Some((s, _)) = t.streams.iter_mut().find(|(s, _)| &s.id == id) {
            s.pinned = product.cloned();
        }
        Ok(())
    }

    async fn next_epoch(&self, id: &StreamId) -> StorageResult<u64> {
        self.write("next_epoch").await?;
        let mut t = self.tables();
        match t.streams.iter_mut().find(|(s, _)| &s.id == id) {
            Some((_, epoch)) => {
                *epoch += 1;
                Ok(*epoch)
            }
            None => Err(StorageError::Constraint(format!("no stream {id}"))),
        }
    }

    async fn fence_of(&self, scope: &str) -> StorageResult<Option<u64>> {
        self.count("fence_of")?;
        Ok(self.tables().fences.get(scope).copied())
    }

    async fn take_fence(&self, scope: &str) -> StorageResult<u64> {
        self.write("take_fence").await?;
        let mut t = self.tables();
        let token = t.fences.entry(scope.to_owned()).or_insert(0);
        *token += 1;
        Ok(*token)
    }
}

#[async_trait]
impl ChatStore for MemoryStore {
    async fn insert_chat(&self, messages: &[ChatMessage], fence: &Fence) -> StorageResult<()> {
        self.write("insert_chat").await?;
        for m in messages {
            refuse_nul(&m.text)?;
        }
        let mut t = self.tables();
        t.check_fence(fence)?;
        t.chat.extend_from_slice(messages);
        Ok(())
    }

    async fn recent_chat(&self, stream: &StreamId, limit: u32) -> StorageResult<Vec<ChatMessage>> {
        self.count("recent_chat")?;
        let t = self.tables();
        let of_stream: Vec<_> = t
            .chat
            .iter()
            .filter(|m| &m.stream == stream)
            .filter(|m| !t.deleted_chat.contains(&(stream.clone(), m.id.clone())))
            .collect();
        let skip = of_stream.len().saturating_sub(limit as usize);
        Ok(of_stream.into_iter().skip(skip).cloned().collect())
    }
}

#[async_trait]
impl ModerationStore for MemoryStore {
    async fn delete_chat(
        &self,
        stream: &StreamId,
        message: &ChatId,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.write("delete_chat").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        if t.deleted_chat.insert((stream.clone(), message.clone())) {
            t.moderation_log.push(entry.clone());
        }
        Ok(())
    }

    async fn chat_message(
        &self,
        stream: &StreamId,
        message: &ChatId,
    ) -> StorageResult<Option<(ChatMessage, bool)>> {
        self.count("chat_message")?;
        let t = self.tables();
        let deleted = t.deleted_chat.contains(&(stream.clone(), message.clone()));
        Ok(t.chat
            .iter()
            .find(|m| &m.stream == stream && &m.id == message)
            .map(|m| (m.clone(), deleted)))
    }

    async fn mute(&self, mute: &Mute, entry: &ModerationEntry, fence: &Fence) -> StorageResult<()> {
        self.write("mute").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        t.mutes
            .insert((mute.stream.clone(), mute.user.clone()), mute.clone());
        t.moderation_log.push(entry.clone());
        Ok(())
    }

    async fn set_chat_settings(
        &self,
        stream: &StreamId,
        settings: &ChatSettings,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.write("set_chat_settings").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        t.chat_settings.insert(stream.clone(), settings.clone());
        t.moderation_log.push(entry.clone());
        Ok(())
    }

    async fn stream_moderation(
        &self,
        stream: &StreamId,
        now: Timestamp,
    ) -> StorageResult<StreamModeration> {
        self.count("stream_moderation")?;
        let t = self.tables();
        Ok(StreamModeration {
            settings: t.chat_settings.get(stream).cloned().unwrap_or_default(),
            mutes: t
                .mutes
                .values()
                .filter(|m| &m.stream == stream && now < m.until)
                .cloned()
                .collect(),
        })
    }

    async fn ban(&self, ban: &Ban, entries: &[ModerationEntry]) -> StorageResult<()> {
        self.write("ban").await?;
        let mut t = self.tables();
        t.bans
            .insert((ban.tenant.clone(), ban.user.clone()), ban.clone());
        t.moderation_log.extend(entries.iter().cloned());
        Ok(())
    }

    async fn unban(
        &self,
        tenant: &TenantId,
        user: &UserId,
        entries: &[ModerationEntry],
    ) -> StorageResult<bool> {
        self.write("unban").await?;
        let mut t = self.tables();
        let lifted = t.bans.remove(&(tenant.clone(), user.clone())).is_some();
        if lifted {
            t.moderation_log.extend(entries.iter().cloned());
        }
        Ok(lifted)
    }

    async fn active_bans(&self, now: Timestamp) -> StorageResult<Vec<Ban>> {
        self.count("active_bans")?;
        let t = self.tables();
        Ok(t.bans
            .values()
            .filter(|b| b.holds_at(now))
            .cloned()
            .collect())
    }

    async fn bans_of_tenant(&self, tenant: &TenantId, now: Timestamp) -> StorageResult<Vec<Ban>> {
        self.count("bans_of_tenant")?;
        let t = self.tables();
        let mut bans: Vec<Ban> = t
            .bans
            .values()
            .filter(|b| &b.tenant == tenant && b.holds_at(now))
            .cloned()
            .collect();
        bans.sort_by_key(|b| std::cmp::Reverse(b.at));
        Ok(bans)
    }

    async fn moderation_log(
        &self,
        stream: &StreamId,
        limit: u32,
    ) -> StorageResult<Vec<ModerationEntry>> {
        self.count("moderation_log")?;
        let t = self.tables();
        Ok(t.moderation_log
            .iter()
            .rev()
            .filter(|e| &e.stream == stream)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn chatted_with_seller(
        &self,
        tenant: &TenantId,
        seller: &UserId,
        user: &UserId,
    ) -> StorageResult<bool> {
        self.count("chatted_with_seller")?;
        let t = self.tables();
        Ok(t.chat.iter().any(|m| {
            &m.tenant == tenant
                && &m.user.id == user
                && t.streams
                    .iter()
                    .any(|(s, _)| s.id == m.stream && &s.seller == seller)
        }))
    }
}

#[async_trait]
impl DropStore for MemoryStore {
    async fn create_drop(&self, drop: &Drop, fence: &Fence) -> StorageResult<()> {
        self.write("create_drop").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        if t.drops.iter().any(|d| d.id == drop.id) {
            return Err(StorageError::Conflict("id"));
        }
        let mut stored = drop.clone();
        stored.reserved = 0;
        stored.sold = 0;
        t.drops.push(with_remaining(stored));
        Ok(())
    }

    async fn drop_by_id(&self, id: &DropId) -> StorageResult<Option<Drop>> {
        self.count("drop_by_id")?;
        let t = self.tables();
        Ok(t.drops.iter().find(|d| &d.id == id).cloned())
    }

    async fn drops_of_stream(&self, stream: &StreamId) -> StorageResult<Vec<Drop>> {
        self.count("drops_of_stream")?;
        let t = self.tables();
        Ok(t.drops
            .iter()
            .filter(|d| &d.stream == stream)
            .cloned()
            .collect())
    }

    async fn set_drop_status(
        &self,
        id: &DropId,
        status: DropStatus,
        closed_reason: Option<&str>,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.write("set_drop_status").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        // Closed is final: a late open ⇄ sold-out write never reopens a closed drop.
        if let Some(d) = t.drop_mut(id).filter(|d| d.status != DropStatus::Closed) {
            d.status = status;
            d.closed_reason = closed_reason.map(str::to_owned);
        }
        Ok(())
    }

    async fn commit_claims(
        &self,
        drop: &DropId,
        claims: &[NewClaim],
        fence: &Fence,
    ) -> StorageResult<()> {
        self.write("commit_claims").await?;
        if claims.is_empty() {
            return Ok(());
        }
        let mut t = self.tables();
        t.check_fence(fence)?;
        let mut per_user: HashMap<&UserId, i64> = HashMap::new();
        for NewClaim { claim } in claims {
            if &claim.drop != drop || claim.status != ClaimStatus::Reserved {
                return Err(StorageError::Constraint(format!(
                    "claim {} is not a reservation of drop {drop}",
                    claim.id
                )));
            }
            let duplicate = t.claims.iter().any(|c| {
                c.id == claim.id
                    || (c.drop == claim.drop
                        && c.user == claim.user
                        && c.idempotency_key == claim.idempotency_key)
            });
            if duplicate {
                return Err(StorageError::Conflict("claim"));
            }
            *per_user.entry(&claim.user).or_default() += claim.quantity;
        }
        let total: i64 = per_user.values().sum();
        let Some(d) = t.drops.iter().find(|d| &d.id == drop) else {
            return Err(StorageError::Constraint(format!("no drop {drop}")));
        };
        if d.reserved + d.sold + total > d.quantity {
            return Err(StorageError::Constraint("oversold".to_owned()));
        }
        let limit = d.per_user_limit;
        for (user, units) in &per_user {
            let held = t
                .holdings
                .get(&(drop.clone(), (*user).clone()))
                .copied()
                .unwrap_or(0);
            if held + units > limit {
                return Err(StorageError::Constraint("per-user limit".to_owned()));
            }
        }
        for (user, units) in per_user {
            *t.holdings.entry((drop.clone(), user.clone())).or_default() += units;
        }
        let d = t.drop_mut(drop).expect("found above");
        d.reserved += total;
        *d = with_remaining(d.clone());
        t.claims.extend(claims.iter().map(|c| c.claim.clone()));
        std::mem::drop(t);
        if self.take_one(&self.lose_answers) {
            return Err(unavailable("batch stored, answer lost on purpose"));
        }
        Ok(())
    }

    async fn claim_by_key(
        &self,
        drop: &DropId,
        user: &UserId,
        key: &str,
    ) -> StorageResult<Option<Claim>> {
        self.count("claim_by_key")?;
        let t = self.tables();
        Ok(t.claims
            .iter()
            .find(|c| &c.drop == drop && &c.user == user && c.idempotency_key == key)
            .cloned())
    }

    async fn claim_by_id(&self, id: &ClaimId) -> StorageResult<Option<Claim>> {
        self.count("claim_by_id")?;
        Ok(self.tables().claims.iter().find(|c| &c.id == id).cloned())
    }

    async fn claims_of_drop(&self, drop: &DropId) -> StorageResult<Vec<Claim>> {
        self.count("claims_of_drop")?;
        let t = self.tables();
        Ok(t.claims
            .iter()
            .filter(|c| &c.drop == drop)
            .cloned()
            .collect())
    }

    async fn claims_of_user(&self, tenant: &TenantId, user: &UserId) -> StorageResult<Vec<Claim>> {
        self.count("claims_of_user")?;
        let t = self.tables();
        Ok(t.claims
            .iter()
            .rev()
            .filter(|c| &c.tenant == tenant && &c.user == user)
            .cloned()
            .collect())
    }

    async fn expire_claims(
        &self,
        drop: &DropId,
        now: Timestamp,
        fence: &Fence,
    ) -> StorageResult<Vec<Claim>> {
        self.write("expire_claims").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        let mut expired = Vec::new();
        for c in t
            .claims
            .iter_mut()
            .filter(|c| &c.drop == drop && c.status == ClaimStatus::Reserved && c.expires_at <= now)
        {
            c.status = ClaimStatus::Expired;
            expired.push(c.clone());
        }
        expired.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        for c in &expired {
            if let Some(units) = t.holdings.get_mut(&(drop.clone(), c.user.clone())) {
                *units -= c.quantity;
            }
        }
        let total: i64 = expired.iter().map(|c| c.quantity).sum();
        if let Some(d) = t.drop_mut(drop) {
            d.reserved -= total;
            *d = with_remaining(d.clone());
        }
        Ok(expired)
    }

    async fn mark_claim_paid(&self, id: &ClaimId, fence: &Fence) -> StorageResult<Option<Claim>> {
        self.write("mark_claim_paid").await?;
        let mut t = self.tables();
        t.check_fence(fence)?;
        let Some(claim) = t
            .claims
            .iter_mut()
            .find(|c| &c.id == id && c.status == ClaimStatus::Reserved)
        else {
            return Ok(None);
        };
        claim.status = ClaimStatus::Paid;
        let paid = claim.clone();
        // Holdings keep counting paid units: only the drop's split between reserved and sold moves.
        if let Some(d) = t.drop_mut(&paid.drop) {
            d.reserved -= paid.quantity;
            d.sold += paid.quantity;
            *d = with_remaining(d.clone());
        }
        Ok(Some(paid))
    }

    async fn drops_to_recover(&self) -> StorageResult<Vec<Drop>> {
        self.count("drops_to_recover")?;
        let t = self.tables();
        Ok(t.drops
            .iter()
            .filter(|d| d.status != DropStatus::Closed)
            .filter(|d| d.reserved > 0 || d.ends_at.is_some())
            .cloned()
            .collect())
    }
}

/// Records for tests: a tenant, a stream and a drop with readable defaults.
pub mod records {
    use super::*;

    /// A tenant `id` (its slug is its id).
    pub fn tenant(id: &str) -> Tenant {
        Tenant {
            id: TenantId::from_trusted(id),
            slug: liveshop_engine::ids::Slug::from_trusted(id.to_owned()),
            name: id.to_owned(),
            created_at: Timestamp::from_millis(0),
        }
    }

    /// A stream `id` of `tenant` in `status`, its seller `seller`.
    pub fn stream(tenant: &str, id: &str, status: StreamStatus) -> Stream {
        Stream {
            id: StreamId::from_trusted(id),
            tenant: TenantId::from_trusted(tenant),
            seller: UserId::from_trusted("seller"),
            title: id.to_owned(),
            status,
            scheduled_at: None,
            started_at: None,
            ended_at: None,
            pinned: None,
            viewers: 0,
        }
    }

    /// An open drop `id` of `quantity` units in `stream`, up to `per_user_limit` each, holds
    /// of `hold_seconds`, opened at `opened_at`, without end time.
    pub fn drop(
        tenant: &str,
        stream: &str,
        id: &str,
        quantity: i64,
        per_user_limit: i64,
        hold_seconds: i64,
        opened_at: Timestamp,
    ) -> Drop {
        Drop {
            id: DropId::from_trusted(id),
            tenant: TenantId::from_trusted(tenant),
            stream: StreamId::from_trusted(stream),
            product: ProductId::from_trusted("prd_1"),
            quantity,
            remaining: quantity,
            reserved: 0,
            sold: 0,
            per_user_limit,
            hold_seconds,
            status: DropStatus::Open,
            opened_at,
            ends_at: None,
            closed_reason: None,
        }
    }

    /// A reservation of `quantity` units by `user` on `drop`, made at `at`, held until
    /// `expires_at`, with key `key`.
    pub fn claim(
        drop: &Drop,
        id: &str,
        user: &str,
        quantity: i64,
        key: &str,
        at: Timestamp,
        expires_at: Timestamp,
    ) -> Claim {
        Claim {
            id: ClaimId::from_trusted(id),
            tenant: drop.tenant.clone(),
            drop: drop.id.clone(),
            user: UserId::from_trusted(user),
            quantity,
            status: ClaimStatus::Reserved,
            idempotency_key: key.to_owned(),
            created_at: at,
            expires_at,
        }
    }
}

/// Decodes the server's (unmasked) WebSocket frames in `bytes` as JSON text messages; other
/// frames (ping, close) and undecodable payloads come back as `{"opcode": n}`.
pub fn decode_ws_frames(bytes: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, header) = match bytes[at + 1] & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                4,
            ),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&bytes[at + 2..at + 10]);
                (
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                    10,
                )
            }
            n => (usize::from(n), 2),
        };
        let payload = &bytes[at + header..(at + header + len).min(bytes.len())];
        let value = match opcode {
            0x1 => serde_json::from_slice(payload)
                .unwrap_or_else(|_| serde_json::json!({ "opcode": opcode })),
            _ => serde_json::json!({ "opcode": opcode }),
        };
        out.push(value);
        at += header + len;
    }
    out
}

/// A connection that records the messages written to it, decoded as JSON.
#[derive(Debug, Default)]
pub struct RecordingConnection {
    id: u64,
    frames: Mutex<Vec<Value>>,
    rejoins: Mutex<Vec<StreamId>>,
    closed: AtomicBool,
    banned: AtomicBool,
}

impl RecordingConnection {
    /// A connection with id `id`.
    pub fn new(id: u64) -> Arc<Self> {
        Arc::new(Self {
            id,
            ..Self::default()
        })
    }

    /// Every message written to it, in order.
    pub fn frames(&self) -> Vec<Value> {
        lock(&self.frames).clone()
    }

    /// The `data` of every stream event of `kind` (e.g. `"reactions"`) written to it.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.frames()
            .into_iter()
            .filter(|f| f["type"] == "event" && f["kind"] == kind)
            .map(|f| f["data"].clone())
            .collect()
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        lock(&self.frames).clear();
    }

    /// The streams it was asked to re-join.
    pub fn rejoins(&self) -> Vec<StreamId> {
        lock(&self.rejoins).clone()
    }

    /// From now on it takes nothing, like a socket that went away.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether it was closed for a ban.
    pub fn was_banned(&self) -> bool {
        self.banned.load(Ordering::SeqCst)
    }
}

impl Connection for RecordingConnection {
    fn id(&self) -> u64 {
        self.id
    }

    fn deliver(&self, frame: &Bytes) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        lock(&self.frames).extend(decode_ws_frames(frame));
        true
    }

    fn rejoin(&self, stream: &StreamId) {
        lock(&self.rejoins).push(stream.clone());
    }

    fn close_banned(&self) {
        self.banned.store(true, Ordering::SeqCst);
        self.close();
    }
}

/// A notifier that records every private frame, decoded as JSON, with whom it was for.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    sent: Mutex<Vec<(TenantId, UserId, Value)>>,
    disconnected: Mutex<Vec<(TenantId, UserId)>>,
}

impl RecordingNotifier {
    /// An empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Every frame sent to `user`, in order.
    pub fn frames_for(&self, user: &str) -> Vec<Value> {
        lock(&self.sent)
            .iter()
            .filter(|(_, u, _)| u.as_str() == user)
            .map(|(_, _, f)| f.clone())
            .collect()
    }

    /// Every user whose connections it was asked to close for a ban, in order.
    pub fn disconnected(&self) -> Vec<(TenantId, UserId)> {
        lock(&self.disconnected).clone()
    }
}

impl Notifier for RecordingNotifier {
    fn register(&self, _tenant: &TenantId, _user: &UserId, _conn: Subscriber) {}

    fn unregister(&self, _tenant: &TenantId, _user: &UserId, _conn: u64) {}

    fn notify(&self, tenant: &TenantId, user: &UserId, frame: Bytes) {
        let value = serde_json::from_slice(&frame).unwrap_or(Value::Null);
        lock(&self.sent).push((tenant.clone(), user.clone(), value));
    }

    fn disconnect(&self, tenant: &TenantId, user: &UserId) {
        lock(&self.disconnected).push((tenant.clone(), user.clone()));
    }
}

/// What a [`StreamProbe`] received.
#[derive(Debug, Clone, PartialEq)]
pub enum Probed {
    /// An ordered event to publish (`{"kind", "data"}`).
    Ordered(Value),
    /// An ephemeral event to publish (`{"kind", "data"}`).
    Ephemeral(Value),
    /// A drop's new state for the snapshot.
    DropChanged(Value),
}

/// A stand-in for a stream actor: attached to a stream's [`Slot`], it records what drops send
/// the stream, so a drop actor can be tested alone.
#[derive(Clone, Debug, Default)]
pub struct StreamProbe {
    got: Arc<Mutex<Vec<Probed>>>,
}

struct ProbeActor;

impl Actor for ProbeActor {
    type Msg = StreamMsg;
    type State = Arc<Mutex<Vec<Probed>>>;
    type Arguments = Arc<Mutex<Vec<Probed>>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<StreamMsg>,
        got: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(got)
    }

    async fn handle(
        &self,
        _myself: ActorRef<StreamMsg>,
        message: StreamMsg,
        got: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let to_value = |body: &liveshop_engine::frames::EventBody| {
            serde_json::to_value(body).unwrap_or(Value::Null)
        };
        let probed = match &message {
            StreamMsg::Publish(body) => Probed::Ordered(to_value(body)),
            StreamMsg::PublishEphemeral(body) => Probed::Ephemeral(to_value(body)),
            StreamMsg::DropChanged(drop) => {
                Probed::DropChanged(serde_json::to_value(drop.as_ref()).expect("a drop is JSON"))
            }
            _ => return Ok(()),
        };
        lock(got).push(probed);
        Ok(())
    }
}

impl StreamProbe {
    /// Starts a probe and attaches it to `slot` as the stream's running incarnation (it first
    /// gets what waited in the slot).
    pub async fn attach(slot: &Slot<StreamMsg>) -> Self {
        let probe = Self::default();
        let (actor, _) = Actor::spawn(None, ProbeActor, probe.got.clone())
            .await
            .expect("a probe starts");
        slot.attach(Addr::new(actor, Depth::new(kind::STREAM)));
        probe
    }

    /// Everything received, in order.
    pub fn received(&self) -> Vec<Probed> {
        lock(&self.got).clone()
    }

    /// The `data` of every ordered event of `kind` received (e.g. `"sold_out"`).
    pub fn ordered(&self, kind: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter_map(|p| match p {
                Probed::Ordered(v) if v["kind"] == kind => Some(v["data"].clone()),
                _ => None,
            })
            .collect()
    }

    /// The `data` of every ephemeral event of `kind` received (e.g. `"inventory"`).
    pub fn ephemeral(&self, kind: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter_map(|p| match p {
                Probed::Ephemeral(v) if v["kind"] == kind => Some(v["data"].clone()),
                _ => None,
            })
            .collect()
    }
}
