//! A session's mailbox for messages from outside its connection (re-joins, fault injection).
//!
//! Kept apart from the session itself so that the engine facade can reach a session (operators'
//! fault injection) without depending on the session, which depends on the facade.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use liveshop_engine::StreamId;
use liveshop_engine::frames::ClientFrame;

use crate::mailbox::Depth;
use crate::metrics::kind;

/// Messages of a session.
pub enum SessionMsg {
    /// A decoded client frame.
    Frame(ClientFrame),
    /// A joined stream restarted: join it again for a fresh snapshot.
    Rejoin(StreamId),
    /// Fault injection: panic, so the connection closes with 1011.
    Crash,
}

/// A session's mailbox for messages from outside its connection. Unbounded but small in practice:
/// it receives at most one re-join per joined stream restart and operators' requests.
#[derive(Debug)]
pub struct SessionInbox {
    queue: Mutex<VecDeque<SessionMsg>>,
    ready: AtomicWaker,
    pub(crate) depth: Depth,
}

impl std::fmt::Debug for SessionMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame(_) => f.write_str("Frame"),
            Self::Rejoin(stream) => write!(f, "Rejoin({stream})"),
            Self::Crash => f.write_str("Crash"),
        }
    }
}

impl SessionInbox {
    /// An empty inbox; allocates nothing until a message arrives.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(VecDeque::new()),
            ready: AtomicWaker::new(),
            depth: Depth::new(kind::SESSION),
        })
    }

    /// Queues a message for the session; it is handled after the frame in progress.
    pub fn cast(&self, message: SessionMsg) {
        self.depth.queued();
        self.lock().push_back(message);
        self.ready.wake();
    }

    /// The next message, or `Pending` (the polling task is woken when one arrives). Only the
    /// session's own task receives.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<SessionMsg> {
        if let Some(message) = self.pop() {
            return Poll::Ready(message);
        }
        self.ready.register(cx.waker());
        match self.pop() {
            Some(message) => Poll::Ready(message),
            None => Poll::Pending,
        }
    }

    /// Waits for the next message.
    pub async fn recv(&self) -> SessionMsg {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn pop(&self) -> Option<SessionMsg> {
        let message = self.lock().pop_front()?;
        self.depth.taken();
        Some(message)
    }

    /// Messages waiting now.
    pub fn depth(&self) -> i64 {
        self.depth.current()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SessionMsg>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SessionInbox {
    fn drop(&mut self) {
        self.depth.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_inbox_hands_messages_over_in_order_and_counts_them() {
        let inbox = SessionInbox::new();
        let a = StreamId::from_trusted("str_a");
        let b = StreamId::from_trusted("str_b");
        inbox.cast(SessionMsg::Rejoin(a.clone()));
        inbox.cast(SessionMsg::Rejoin(b.clone()));
        assert_eq!(inbox.depth(), 2);
        assert!(matches!(inbox.recv().await, SessionMsg::Rejoin(s) if s == a));
        assert!(matches!(inbox.recv().await, SessionMsg::Rejoin(s) if s == b));
        assert_eq!(inbox.depth(), 0);
    }

    #[tokio::test]
    async fn a_waiting_session_is_woken_by_a_cast() {
        let inbox = SessionInbox::new();
        let waiting = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.recv().await }
        });
        tokio::task::yield_now().await;
        inbox.cast(SessionMsg::Crash);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert!(matches!(got, SessionMsg::Crash));
    }
}
