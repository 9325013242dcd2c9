//! Batched chat writes (and users-seen upserts), off the hot path.
//!
//! Stream actors hand each accepted message here and move on. Messages that arrive while a write is
//! in flight wait in the mailbox and go into the next single transaction, so the number of
//! transactions per second stays flat however busy chat gets. The mailbox is unbounded on purpose:
//! its inflow is bounded by the per-user chat rate limits. A row that storage refuses is set aside
//! (`write_isolating`), so no message can poison the batches behind it.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use liveshop_engine::records::{ChatMessage, UserSeen};
use liveshop_engine::storage::{Fence, RowOutcome, StorageError, StorageResult, write_isolating};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::engine::Engine;
use crate::metrics::{self, AliveGuard, kind};

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
    /// A chat message to write.
    Chat(ChatMessage),
    /// A user seen in an accepted token, to upsert.
    UserSeen(UserSeen),
    /// Write everything queued, then answer.
    Flush(RpcReplyPort<()>),
    /// Timer: write a partial batch.
    Tick,
}

/// The chat persister actor.
pub struct Persister;

/// Its state: the messages not yet written.
pub struct PersisterState {
    engine: Engine,
    pending: Vec<ChatMessage>,
    users: Vec<UserSeen>,
    _alive: AliveGuard,
}

impl PersisterState {
    async fn write(&mut self) {
        self.write_chat().await;
        self.write_users().await;
    }

    /// Users seen are bookkeeping: a batch the database fails is logged and dropped, never
    /// retried forever; a user storage refuses is set aside without costing the others.
    async fn write_users(&mut self) {
        while !self.users.is_empty() {
            let n = self.users.len().min(MAX_BATCH);
            let batch: Vec<UserSeen> = self.users.drain(..n).collect();
            let store = self.engine.store().clone();
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

    /// Chat that the database fails goes back to the front of the backlog and is retried on the
    /// next tick (the backlog is bounded); a message storage refuses for itself is set aside, so
    /// it can never hold up the chat of every tenant behind it.
    async fn write_chat(&mut self) {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(MAX_BATCH);
            let batch: Vec<ChatMessage> = self.pending.drain(..n).collect();
            let store = self.engine.store().clone();
            let written = write_setting_aside("chat", batch, move |rows, range| {
                let store = store.clone();
                async move { store.insert_chat(&rows[range], &Fence::Unfenced).await }
            })
            .await;
            if let Err((failed, err)) = written {
                tracing::error!(error = %err, source = ?std::error::Error::source(&err), "chat batch write failed; will retry");
                self.pending.splice(0..0, failed);
                if self.pending.len() > MAX_BACKLOG {
                    let excess = self.pending.len() - MAX_BACKLOG;
                    self.pending.drain(..excess);
                    ::metrics::counter!("liveshop_chat_dropped_total").increment(excess as u64);
                }
                return;
            }
        }
    }
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
    type Arguments = Engine;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        engine: Engine,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(FLUSH_EVERY, || PersisterMsg::Tick);
        Ok(PersisterState {
            engine,
            pending: Vec::new(),
            users: Vec::new(),
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
        match message {
            PersisterMsg::Chat(m) => {
                state.pending.push(m);
                if state.pending.len() >= MAX_BATCH {
                    state.write().await;
                }
            }
            PersisterMsg::UserSeen(user) => {
                if state.users.len() < MAX_BACKLOG {
                    state.users.push(user);
                }
            }
            PersisterMsg::Tick => state.write().await,
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
            if state.pending.is_empty() {
                break;
            }
            tokio::time::sleep(FLUSH_EVERY).await;
            state.write_chat().await;
        }
        if !state.pending.is_empty() {
            tracing::error!(
                messages = state.pending.len(),
                "chat not written at shutdown: storage kept failing"
            );
            ::metrics::counter!("liveshop_chat_dropped_total")
                .increment(state.pending.len() as u64);
        }
        Ok(())
    }
}
