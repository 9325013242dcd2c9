//! Addresses that count what is queued: ractor mailboxes do not expose their length, so every send
//! through an [`Addr`] raises the target's depth and the actor lowers it when it takes the message.
//! Depths feed `liveshop_actor_mailbox_depth{kind}` and the operator's actor tree.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use liveshop_engine::{ErrorCode, Rejection};
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::metrics::{ACTOR_MAILBOX_DEPTH, kind};

/// How long a caller waits for an actor's answer before reporting `unavailable`.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Kinds whose mailboxes are published, in the order of [`TOTALS`].
const KINDS: [&str; 4] = [kind::TENANT, kind::STREAM, kind::DROP, kind::SESSION];

/// Messages queued per kind, summed over every actor of that kind; the last slot counts the
/// kinds that are not published (the root supervisor, the persister).
static TOTALS: [AtomicI64; 5] = [
    AtomicI64::new(0),
    AtomicI64::new(0),
    AtomicI64::new(0),
    AtomicI64::new(0),
    AtomicI64::new(0),
];

fn slot(kind: &str) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len())
}

/// Messages waiting in one actor's mailbox.
#[derive(Clone, Debug)]
pub struct Depth {
    queued: Arc<AtomicI64>,
    slot: usize,
}

impl Depth {
    /// A counter for a new actor of `kind`.
    pub fn new(kind: &'static str) -> Self {
        Self {
            queued: Arc::new(AtomicI64::new(0)),
            slot: slot(kind),
        }
    }

    /// One more message is waiting.
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        TOTALS[self.slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The actor took one message.
    pub fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        TOTALS[self.slot].fetch_sub(1, Ordering::Relaxed);
    }

    /// Messages waiting now.
    pub fn current(&self) -> i64 {
        self.queued.load(Ordering::Relaxed).max(0)
    }

    /// Forgets what an actor that died left queued, so totals stay true.
    pub fn discard(&self) {
        let left = self.queued.swap(0, Ordering::Relaxed);
        TOTALS[self.slot].fetch_sub(left, Ordering::Relaxed);
    }
}

/// Copies the per-kind totals into the `liveshop_actor_mailbox_depth` gauges.
pub fn publish_gauges() {
    for (i, k) in KINDS.iter().enumerate() {
        let depth = TOTALS[i].load(Ordering::Relaxed).max(0);
        metrics::gauge!(ACTOR_MAILBOX_DEPTH, "kind" => *k).set(depth as f64);
    }
}

/// An actor reference that counts its sends into the actor's [`Depth`].
pub struct Addr<M: Message> {
    actor: ActorRef<M>,
    depth: Depth,
}

impl<M: Message> std::fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Addr({}, depth {})",
            self.actor.get_id(),
            self.depth.current()
        )
    }
}

impl<M: Message> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            depth: self.depth.clone(),
        }
    }
}

impl<M: Message> Addr<M> {
    /// Wraps a spawned actor and the depth it decrements.
    pub fn new(actor: ActorRef<M>, depth: Depth) -> Self {
        Self { actor, depth }
    }

    /// The underlying reference (for supervision and identity).
    pub fn actor(&self) -> &ActorRef<M> {
        &self.actor
    }

    /// Messages waiting now.
    pub fn depth(&self) -> i64 {
        self.depth.current()
    }

    /// Forgets what a dead actor left queued (its supervisor calls this before replacing it).
    pub fn discard(&self) {
        self.depth.discard();
    }

    /// Sends without waiting; a dead actor drops the message.
    pub fn cast(&self, message: M) {
        self.depth.queued();
        if self.actor.cast(message).is_err() {
            self.depth.taken();
        }
    }

    /// Whether the actor still takes messages (not draining, stopping or stopped).
    pub fn is_alive(&self) -> bool {
        matches!(
            self.actor.get_status(),
            ractor::ActorStatus::Starting
                | ractor::ActorStatus::Running
                | ractor::ActorStatus::Upgrading
        )
    }

    /// Sends without waiting; a dead actor hands the message back.
    pub fn try_cast(&self, message: M) -> Result<(), M> {
        self.depth.queued();
        match self.actor.cast(message) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.depth.taken();
                match err {
                    ractor::MessagingErr::SendErr(message) => Err(message),
                    // Neither happens for a typed reference; the message is gone with it.
                    ractor::MessagingErr::ChannelClosed
                    | ractor::MessagingErr::InvalidActorType => Ok(()),
                }
            }
        }
    }

    /// Sends and waits for the answer; a dead or stuck actor is `unavailable`.
    pub async fn ask<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> M,
    ) -> Result<T, Rejection> {
        self.try_ask(build).await.map_err(|_| unavailable())
    }

    /// Like [`Addr::ask`], saying whether the message reached the actor: one that was never
    /// delivered may be sent to a successor without any risk of being handled twice.
    pub async fn try_ask<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> M,
    ) -> Result<T, AskError> {
        self.depth.queued();
        match self.actor.call(build, Some(CALL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            Err(_) => {
                self.depth.taken();
                Err(AskError::NotDelivered)
            }
            Ok(_) => Err(AskError::NoAnswer),
        }
    }
}

/// Why an actor did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskError {
    /// The message never reached it: it had stopped, or stopped taking messages.
    NotDelivered,
    /// It took the message but gave no answer in time (it failed, or is stuck).
    NoAnswer,
}

/// The refusal for an actor that did not answer.
pub(crate) fn unavailable() -> Rejection {
    Rejection::new(
        ErrorCode::Unavailable,
        "the actor in charge did not answer; retry",
    )
}

/// The refusal for a storage read that failed on the way to an actor (logged with its cause).
pub(crate) fn storage_unavailable(err: &liveshop_engine::storage::StorageError) -> Rejection {
    tracing::error!(error = %err, source = ?std::error::Error::source(err), "storage read failed while locating an actor");
    Rejection::new(ErrorCode::Unavailable, "storage unavailable; retry")
}

/// Sends an RPC to an actor without a counted mailbox and maps a dead or stuck actor to
/// `unavailable`.
pub async fn ask<M, T>(
    actor: &ractor::ActorRef<M>,
    build: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, Rejection>
where
    M: Message,
    T: Send + 'static,
{
    match actor.call(build, Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        Ok(_) | Err(_) => Err(unavailable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_queued_minus_taken_and_discard_clears_it() {
        let d = Depth::new(kind::DROP);
        d.queued();
        d.queued();
        d.taken();
        assert_eq!(d.current(), 1);
        d.discard();
        assert_eq!(d.current(), 0);
    }
}
