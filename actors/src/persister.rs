//! Batched chat writes (and users-seen upserts), off the hot path.
//!
//! Stream actors hand each accepted message to the [`PersisterPort`] and move on: it joins a
//! bounded queue that the persister writes every [`FLUSH_EVERY`] (or at once when a batch is
//! full). Messages that arrive while a write is in flight go into the next single transaction, so
//! the number of transactions per second stays flat however busy chat gets. The queue belongs to
//! the port, not to the actor, so a persister that fails and is restarted loses none of it. A row
//! that storage refuses is set aside (`write_isolating`), so no message can poison the batches
//! behind it.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liveshop_engine::records::{ChatMessage, UserSeen};
use liveshop_engine::storage::{Fence, RowOutcome, StorageError, StorageResult, write_isolating};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use liveshop_engine::storage::{ChatStore, Storage, TenantStore};

use crate::mailbox::{CALL_TIMEOUT, Depth};
use crate::metrics::{self, AliveGuard, kind};
use crate::slot::Slot;

/// Largest batch written in one transaction.
pub const MAX_BATCH: usize = 500;
/// Most messages held while storage is down; older ones are dropped (and counted) past this.
pub const MAX_BACKLOG: usize = 50_000;
/// How often a partial batch is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Further attempts, [`FLUSH_EVERY`] apart, to write the backlog at shutdown when the database
/// fails.
pub const SHUTDOWN_RETRIES: usize = 10;

/// Messages of the persister.
pub enum PersisterMsg {
    /// A full batch is waiting: write now rather than on the next tick.
    Write,
    /// Write everything queued, then answer.
    Flush(RpcReplyPort<()>),
    /// Timer: write a partial batch.
    Tick,
    /// Fault injection: panic, so the supervisor's restart path can be exercised.
    Crash,
}

/// The chat persister actor.
pub struct Persister;

/// What waits to be written. It belongs to the [`PersisterPort`], not to an incarnation of the
/// persister, so a persister that fails loses none of it: the next one writes it.
#[derive(Default)]
struct Backlog {
    /// Each message with the fence of the stream owner that accepted it.
    chat: VecDeque<(ChatMessage, Fence)>,
    users: VecDeque<UserSeen>,
    /// A `Write` is on its way to the persister.
    nudged: bool,
}

/// Where chat and users seen are handed to the persister. The queue is shared with the
/// persister's incarnations and its address is stable, so chat handed in while the persister
/// restarts is written by the next incarnation.
#[derive(Clone)]
pub struct PersisterPort {
    slot: Arc<Slot<PersisterMsg>>,
    backlog: Arc<Mutex<Backlog>>,
}

impl std::fmt::Debug for PersisterPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PersisterPort({:?})", self.slot)
    }
}

impl PersisterPort {
    /// A port whose persister is not running yet.
    pub fn new() -> Self {
        Self {
            slot: Arc::new(Slot::new(kind::PERSISTER)),
            backlog: Arc::default(),
        }
    }

    /// The stable address, for the persister's supervisor.
    pub fn slot(&self) -> &Arc<Slot<PersisterMsg>> {
        &self.slot
    }

    /// What an incarnation of the persister is started with.
    pub fn queue(&self) -> PersisterQueue {
        PersisterQueue(self.backlog.clone())
    }

    /// Queues a chat message for the next batched write, unfenced (single-node, tools).
    pub fn chat(&self, message: ChatMessage) {
        self.chat_behind(message, Fence::Unfenced);
    }

    /// Queues a chat message for the next batched write, written behind `fence` (the stream
    /// owner's, in cluster mode: a stale owner's chat is refused by storage and dropped). Past
    /// [`MAX_BACKLOG`] (storage down for long) the oldest messages are dropped and counted.
    pub fn chat_behind(&self, message: ChatMessage, fence: Fence) {
        let nudge = {
            let mut backlog = lock(&self.backlog);
            backlog.chat.push_back((message, fence));
            bound_chat(&mut backlog.chat);
            let full = backlog.chat.len() >= MAX_BATCH && !backlog.nudged;
            backlog.nudged |= full;
            full
        };
        if nudge {
            self.slot.cast(PersisterMsg::Write);
        }
    }

    /// Queues a users-seen upsert for the next batched write (dropped past [`MAX_BACKLOG`]).
    pub fn user_seen(&self, user: UserSeen) {
        let mut backlog = lock(&self.backlog);
        if backlog.users.len() < MAX_BACKLOG {
            backlog.users.push_back(user);
        }
    }

    /// Waits until every queued chat message is written (graceful drain, tests).
    pub async fn flush(&self) {
        if let Some(p) = self.slot.running() {
            let _ = p
                .actor()
                .call(PersisterMsg::Flush, Some(CALL_TIMEOUT))
                .await;
        }
    }
}

impl Default for PersisterPort {
    fn default() -> Self {
        Self::new()
    }
}

/// The queue an incarnation of the persister writes from (see [`PersisterPort::queue`]).
pub struct PersisterQueue(Arc<Mutex<Backlog>>);

fn lock(backlog: &Mutex<Backlog>) -> std::sync::MutexGuard<'_, Backlog> {
    backlog.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drops the oldest chat past [`MAX_BACKLOG`], counting it.
fn bound_chat(chat: &mut VecDeque<(ChatMessage, Fence)>) {
    if chat.len() > MAX_BACKLOG {
        let excess = chat.len() - MAX_BACKLOG;
        chat.drain(..excess);
        ::metrics::counter!("liveshop_chat_dropped_total").increment(excess as u64);
    }
}

/// Where the persister writes: chat, and the users seen in tokens.
#[derive(Clone)]
pub struct PersisterStores {
    /// Chat messages.
    pub chat: Arc<dyn ChatStore>,
    /// Users seen.
    pub users: Arc<dyn TenantStore>,
}

impl PersisterStores {
    /// Both parts of one database.
    pub fn of(store: &Arc<dyn Storage>) -> Self {
        Self {
            chat: store.clone(),
            users: store.clone(),
        }
    }
}

/// Its state: where to write, and the shared queue.
pub struct PersisterState {
    store: PersisterStores,
    depth: Depth,
    queue: PersisterQueue,
    /// Since when chat writes fail (storage away), so an outage is logged once, not every tick.
    failing_since: Option<Instant>,
    _alive: AliveGuard,
}

/// Chat messages waiting to be written: grows while storage is away.
pub const CHAT_BACKLOG: &str = "liveshop_chat_backlog";

impl PersisterState {
    async fn write(&mut self) {
        self.write_chat().await;
        self.write_users().await;
        ::metrics::gauge!(CHAT_BACKLOG).set(self.chat_left() as f64);
    }

    /// A chat write failed for the database's sake: logged when the failures begin.
    fn chat_failed(&mut self, err: &StorageError, held: usize) {
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::error!(error = %err, source = ?std::error::Error::source(err), held,
                "chat batch write failed; chat is held and retried until storage answers");
        } else {
            tracing::debug!(error = %err, held, "chat batch write failed again");
        }
    }

    /// A chat write succeeded: says so if it ends a run of failures.
    fn chat_written(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::warn!(failing_for = ?since.elapsed(), left = self.chat_left(),
                "chat writes succeed again; the held chat is being written");
        }
    }

    /// Takes up to [`MAX_BATCH`] queued items from the front.
    fn take<T>(&self, pick: impl FnOnce(&mut Backlog) -> &mut VecDeque<T>) -> Vec<T> {
        let mut backlog = lock(&self.queue.0);
        backlog.nudged = false;
        let queue = pick(&mut backlog);
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    }

    /// Users seen are bookkeeping: a batch the database fails is logged and dropped, never
    /// retried forever; a user storage refuses is set aside without costing the others.
    async fn write_users(&mut self) {
        loop {
            let batch = self.take(|b| &mut b.users);
            if batch.is_empty() {
                return;
            }
            let store = self.store.users.clone();
            let written = write_setting_aside("users_seen", batch, move |rows, range| {
                let store = store.clone();
                async move { store.record_users_seen(&rows[range]).await }
            })
            .await;
            if let Err((lost, err)) = written {
                tracing::warn!(error = %err, users = lost.len(), "users-seen batch not written");
                return;
            }
        }
    }

    /// Chat that the database fails goes back to the front of the queue and is retried on the
    /// next tick (the queue is bounded); a message storage refuses for itself is set aside, so
    /// it can never hold up the chat of every tenant behind it.
    ///
    /// A batch holds one write per run of messages behind the same fence. Messages storage
    /// fences off (their stream has a newer owner, which stores its own chat) are dropped and
    /// counted in `liveshop_chat_fenced_total`, never retried.
    async fn write_chat(&mut self) {
        loop {
            let batch = self.take(|b| &mut b.chat);
            if batch.is_empty() {
                return;
            }
            let mut runs = runs_by_fence(batch).into_iter();
            while let Some((fence, rows)) = runs.next() {
                let store = self.store.chat.clone();
                let behind = fence.clone();
                let written = write_setting_aside("chat", rows, move |rows, range| {
                    let (store, fence) = (store.clone(), behind.clone());
                    async move { store.insert_chat(&rows[range], &fence).await }
                })
                .await;
                match written {
                    Ok(()) => self.chat_written(),
                    Err((lost, StorageError::Fenced { scope, token })) => {
                        tracing::warn!(
                            scope,
                            token,
                            messages = lost.len(),
                            "chat of a stream now owned by another node was not stored"
                        );
                        ::metrics::counter!("liveshop_chat_fenced_total")
                            .increment(lost.len() as u64);
                    }
                    Err((failed, err)) => {
                        let held = self.chat_left() + failed.len();
                        self.chat_failed(&err, held);
                        let mut backlog = lock(&self.queue.0);
                        let unwritten = std::iter::once((fence, failed)).chain(runs);
                        let unwritten: Vec<_> = unwritten
                            .flat_map(|(fence, rows)| {
                                rows.into_iter().map(move |m| (m, fence.clone()))
                            })
                            .collect();
                        for message in unwritten.into_iter().rev() {
                            backlog.chat.push_front(message);
                        }
                        bound_chat(&mut backlog.chat);
                        return;
                    }
                }
            }
        }
    }

    fn chat_left(&self) -> usize {
        lock(&self.queue.0).chat.len()
    }
}

/// Splits a batch into runs of consecutive messages behind the same fence, in order.
fn runs_by_fence(batch: Vec<(ChatMessage, Fence)>) -> Vec<(Fence, Vec<ChatMessage>)> {
    let mut runs: Vec<(Fence, Vec<ChatMessage>)> = Vec::new();
    for (message, fence) in batch {
        match runs.last_mut() {
            Some((last, rows)) if *last == fence => rows.push(message),
            _ => runs.push((fence, vec![message])),
        }
    }
    runs
}

/// Writes `rows` with [`write_isolating`]: rows storage refuses are logged, counted
/// (`liveshop_storage_rows_refused_total{kind}`) and dropped; when the database fails, the rows
/// not stored come back with the error.
async fn write_setting_aside<T, F, Fut>(
    kind: &'static str,
    rows: Vec<T>,
    write: F,
) -> Result<(), (Vec<T>, StorageError)>
where
    T: Clone + Send + Sync + 'static,
    F: Fn(Arc<Vec<T>>, Range<usize>) -> Fut,
    Fut: Future<Output = StorageResult<()>>,
{
    let rows = Arc::new(rows);
    let outcome = write_isolating(rows.len(), |range| write(rows.clone(), range)).await;
    for (_, why) in outcome.refused() {
        tracing::warn!(kind, reason = why, "storage refused a row; it is set aside");
        ::metrics::counter!(metrics::ROWS_REFUSED, "kind" => kind).increment(1);
    }
    match outcome.failure {
        None => Ok(()),
        Some(err) => {
            let failed = rows
                .iter()
                .zip(&outcome.rows)
                .filter(|(_, o)| **o == RowOutcome::Failed)
                .map(|(row, _)| row.clone())
                .collect();
            Err((failed, err))
        }
    }
}

impl Actor for Persister {
    type Msg = PersisterMsg;
    type State = PersisterState;
    type Arguments = (PersisterStores, PersisterQueue, Depth);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (store, queue, depth): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(FLUSH_EVERY, || PersisterMsg::Tick);
        Ok(PersisterState {
            store,
            depth,
            queue,
            failing_since: None,
            _alive: AliveGuard::new(kind::PERSISTER),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        if !matches!(message, PersisterMsg::Tick | PersisterMsg::Flush(_)) {
            state.depth.taken();
        }
        match message {
            PersisterMsg::Write | PersisterMsg::Tick => state.write().await,
            PersisterMsg::Crash => panic!("fault injection: persister crash requested"),
            PersisterMsg::Flush(reply) => {
                state.write().await;
                let _ = reply.send(());
            }
        }
        metrics::record_handling(kind::PERSISTER, started);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Refused rows no longer block a batch, so only a failing database can hold chat back
        // now: give it a few short chances before the process ends, then say what is lost.
        state.write().await;
        for _ in 0..SHUTDOWN_RETRIES {
            if state.chat_left() == 0 {
                break;
            }
            tokio::time::sleep(FLUSH_EVERY).await;
            state.write_chat().await;
        }
        let left = state.chat_left();
        if left > 0 {
            tracing::error!(
                messages = left,
                "chat not written at shutdown: storage kept failing"
            );
            ::metrics::counter!("liveshop_chat_dropped_total").increment(left as u64);
        }
        Ok(())
    }
}
