//! Stable addresses: what an actor holds instead of another actor's reference, so that a message
//! sent while that actor restarts waits for its next incarnation instead of being lost.
//!
//! A [`Slot`] outlives the incarnations of one actor. Its supervisor marks it [`Slot::restarting`]
//! as soon as the actor fails and [`Slot::attach`]es the new incarnation, which first receives
//! what waited, in order. A slot whose actor is not running at all ([`Slot::stop`]) drops what is
//! sent: nothing in this process reads it, and the actor rebuilds from storage when it starts.

use std::collections::VecDeque;
use std::sync::Mutex;

use ractor::Message;

use crate::mailbox::Addr;

/// Most messages a slot keeps for an actor that is restarting; more are dropped and logged. A
/// restart takes milliseconds, so this is only reached when a restart hangs.
pub const MAX_WAITING: usize = 10_000;

enum State<M: Message> {
    /// Sends go straight to this incarnation.
    Running(Addr<M>),
    /// The incarnation failed and its supervisor is starting the next one: sends wait here.
    /// `found_dead` names the incarnation a send found dead before its supervisor said anything:
    /// if that one turns out to have stopped normally, no next incarnation is coming.
    Restarting {
        waiting: VecDeque<M>,
        found_dead: Option<ractor::ActorId>,
    },
    /// No incarnation runs and none is coming: sends are dropped.
    Stopped,
}

/// The stable address of one actor across its restarts.
pub struct Slot<M: Message> {
    kind: &'static str,
    state: Mutex<State<M>>,
}

impl<M: Message> std::fmt::Debug for Slot<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.lock() {
            State::Running(addr) => format!("running {addr:?}"),
            State::Restarting { waiting, .. } => format!("restarting, {} waiting", waiting.len()),
            State::Stopped => "stopped".to_owned(),
        };
        write!(f, "Slot({}, {state})", self.kind)
    }
}

impl<M: Message> Slot<M> {
    /// A slot for an actor of `kind` that is not running yet.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            state: Mutex::new(State::Stopped),
        }
    }

    /// Sends without waiting: to the running incarnation, or to the next one when it is
    /// restarting. A send that finds the incarnation dead (its supervisor has not noticed yet)
    /// waits for the next one too.
    pub fn cast(&self, message: M) {
        let mut state = self.lock();
        let message = match &*state {
            State::Running(addr) => match addr.try_cast(message) {
                Ok(()) => return,
                Err(message) => message,
            },
            State::Restarting { .. } => message,
            State::Stopped => return,
        };
        if let State::Running(addr) = &*state {
            addr.discard();
            *state = State::Restarting {
                waiting: VecDeque::new(),
                found_dead: Some(addr.actor().get_id()),
            };
        }
        if let State::Restarting { waiting, .. } = &mut *state {
            if waiting.len() < MAX_WAITING {
                waiting.push_back(message);
            } else {
                tracing::warn!(
                    kind = self.kind,
                    "a restarting actor has too many messages waiting; one is dropped"
                );
            }
        }
    }

    /// The running incarnation, if any (for calls that need an answer now). One that is
    /// stopping (a settled drop stops on its own) no longer counts, so a caller starts the next.
    pub fn running(&self) -> Option<Addr<M>> {
        match &*self.lock() {
            State::Running(addr) if addr.is_alive() => Some(addr.clone()),
            _ => None,
        }
    }

    /// The incarnation `failed` failed: messages sent from now on wait for the next one.
    /// Returns false when another incarnation already runs (it was started on demand before the
    /// supervisor heard of the failure): then no restart is needed.
    pub fn restarting(&self, failed: ractor::ActorId) -> bool {
        let mut state = self.lock();
        match &mut *state {
            State::Running(addr) if addr.actor().get_id() != failed => false,
            State::Running(addr) => {
                addr.discard();
                *state = State::Restarting {
                    waiting: VecDeque::new(),
                    found_dead: None,
                };
                true
            }
            State::Stopped => {
                *state = State::Restarting {
                    waiting: VecDeque::new(),
                    found_dead: None,
                };
                true
            }
            State::Restarting { found_dead, .. } => {
                *found_dead = None;
                true
            }
        }
    }

    /// A new incarnation runs: it first gets what waited, in the order it was sent.
    pub fn attach(&self, addr: Addr<M>) {
        let mut state = self.lock();
        if let State::Restarting { waiting, .. } = &mut *state {
            for message in waiting.drain(..) {
                addr.cast(message);
            }
        }
        *state = State::Running(addr);
    }

    /// No incarnation runs any more (it stopped, or gave up restarting): later sends are
    /// dropped, and what waited is dropped too.
    pub fn stop(&self) {
        let mut state = self.lock();
        if let State::Running(addr) = &*state {
            addr.discard();
        }
        *state = State::Stopped;
    }

    /// Like [`Slot::stop`], but only if `actor` is still the current incarnation (running, or
    /// found dead by a send): a late notice about an earlier incarnation must not stop its
    /// successor.
    pub fn stop_if_running(&self, actor: ractor::ActorId) {
        let mut state = self.lock();
        let current = match &*state {
            State::Running(addr) => addr.actor().get_id() == actor,
            State::Restarting { found_dead, .. } => *found_dead == Some(actor),
            State::Stopped => false,
        };
        if current {
            *state = State::Stopped;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Depth;
    use ractor::{Actor, ActorProcessingErr, ActorRef};
    use std::sync::Arc;

    /// An actor that records what it receives and panics on 0.
    struct Recorder;

    impl Actor for Recorder {
        type Msg = u32;
        type State = ();
        type Arguments = Arc<Mutex<Vec<u32>>>;

        async fn pre_start(
            &self,
            _myself: ActorRef<u32>,
            _seen: Self::Arguments,
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _myself: ActorRef<u32>,
            message: u32,
            _state: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            assert_ne!(message, 0, "asked to fail");
            Ok(())
        }
    }

    struct Seen;

    impl Actor for Seen {
        type Msg = u32;
        type State = Arc<Mutex<Vec<u32>>>;
        type Arguments = Arc<Mutex<Vec<u32>>>;

        async fn pre_start(
            &self,
            _myself: ActorRef<u32>,
            seen: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(seen)
        }

        async fn handle(
            &self,
            _myself: ActorRef<u32>,
            message: u32,
            seen: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            seen.lock().unwrap().push(message);
            Ok(())
        }
    }

    async fn spawn_seen(seen: &Arc<Mutex<Vec<u32>>>) -> Addr<u32> {
        let (actor, _) = Actor::spawn(None, Seen, seen.clone()).await.unwrap();
        Addr::new(actor, Depth::new(crate::metrics::kind::STREAM))
    }

    async fn settle() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn messages_sent_while_restarting_reach_the_next_incarnation_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let slot = Slot::new(crate::metrics::kind::STREAM);
        let first = spawn_seen(&seen).await;
        slot.attach(first.clone());
        slot.cast(1);
        settle().await;
        assert!(slot.restarting(first.actor().get_id()));
        first.actor().stop(None);
        slot.cast(2);
        slot.cast(3);
        slot.attach(spawn_seen(&seen).await);
        slot.cast(4);
        settle().await;
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_send_that_finds_the_actor_dead_waits_for_the_next_incarnation() {
        let (dead, _) = Actor::spawn(None, Recorder, Arc::default()).await.unwrap();
        let slot = Slot::new(crate::metrics::kind::STREAM);
        slot.attach(Addr::new(
            dead.clone(),
            Depth::new(crate::metrics::kind::STREAM),
        ));
        dead.cast(0).unwrap();
        settle().await;
        slot.cast(7);
        let seen = Arc::new(Mutex::new(Vec::new()));
        slot.attach(spawn_seen(&seen).await);
        settle().await;
        assert_eq!(*seen.lock().unwrap(), [7]);
    }

    #[tokio::test]
    async fn a_stopped_slot_drops_what_is_sent() {
        let (first, second) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let slot = Slot::new(crate::metrics::kind::STREAM);
        let old = spawn_seen(&first).await;
        slot.attach(old.clone());
        assert!(slot.restarting(old.actor().get_id()));
        slot.cast(1);
        slot.stop();
        slot.cast(2);
        slot.attach(spawn_seen(&second).await);
        slot.cast(3);
        settle().await;
        assert_eq!(*second.lock().unwrap(), [3]);
        assert!(first.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn what_a_send_holds_for_an_actor_that_stopped_normally_is_dropped_with_it() {
        let (first, second) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let slot = Slot::new(crate::metrics::kind::STREAM);
        let old = spawn_seen(&first).await;
        slot.attach(old.clone());
        old.actor().stop(None);
        settle().await;
        // The send finds it gone before its supervisor's notice arrives, and holds the message.
        slot.cast(5);
        slot.stop_if_running(old.actor().get_id());
        slot.attach(spawn_seen(&second).await);
        slot.cast(6);
        settle().await;
        assert_eq!(
            *second.lock().unwrap(),
            [6],
            "no stale message for a later start"
        );
    }

    #[tokio::test]
    async fn a_late_failure_notice_does_not_restart_an_incarnation_started_since() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let slot = Slot::new(crate::metrics::kind::STREAM);
        let old = spawn_seen(&seen).await;
        slot.attach(old.clone());
        let new = spawn_seen(&seen).await;
        slot.attach(new.clone());
        assert!(!slot.restarting(old.actor().get_id()));
        assert_eq!(
            slot.running().map(|a| a.actor().get_id()),
            Some(new.actor().get_id())
        );
    }
}
