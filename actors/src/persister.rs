//! Batched chat writes (and users-seen upserts), off the hot path.
//!
//! Stream actors hand each accepted message here and move on. Messages that arrive while a write is
//! in flight wait in the mailbox and go into the next single transaction, so the number of
//! transactions per second stays flat however busy chat gets. The mailbox is unbounded on purpose:
//! its inflow is bounded by the per-user chat rate limits.

use std::time::{Duration, Instant};

use liveshop_engine::records::{ChatMessage, UserSeen};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::engine::Engine;
use crate::metrics::{self, AliveGuard, kind};

/// Largest batch written in one transaction.
pub const MAX_BATCH: usize = 500;
/// Most messages held while storage is down; older ones are dropped (and counted) past this.
pub const MAX_BACKLOG: usize = 50_000;
/// How often a partial batch is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

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

    /// Users seen are bookkeeping: a failed batch is logged and dropped, never retried forever.
    async fn write_users(&mut self) {
        while !self.users.is_empty() {
            let n = self.users.len().min(MAX_BATCH);
            let batch: Vec<UserSeen> = self.users.drain(..n).collect();
            if let Err(err) = self.engine.store().record_users_seen(&batch).await {
                tracing::warn!(error = %err, users = batch.len(), "users-seen batch not written");
                return;
            }
        }
    }

    async fn write_chat(&mut self) {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(MAX_BATCH);
            match self.engine.store().insert_chat(&self.pending[..n]).await {
                Ok(()) => {
                    self.pending.drain(..n);
                }
                Err(err) => {
                    tracing::error!(error = %err, source = ?std::error::Error::source(&err), "chat batch write failed; will retry");
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
        state.write().await;
        Ok(())
    }
}
