//! One session actor per WebSocket connection: identity, joined streams, and the protocol's
//! operations.
//!
//! A session is a small actor without a task of its own: the connection's task runs it. Frames read
//! from the socket are its main mailbox (handled one at a time, in order, so the socket applies
//! back-pressure); messages from elsewhere (re-joins after a stream restart, fault injection) arrive
//! in its [`SessionInbox`]. An idle session therefore costs a few hundred bytes instead of a task
//! and four channels, which is what lets one node hold tens of thousands of viewers. A panic while
//! handling a message is caught ([`Session::dispatch`]); the connection then closes with 1011 and
//! the session's clean-up still runs, so nothing it registered outlives it.
//!
//! Replies are written straight to the connection; stream events reach it from the streams'
//! fan-out tasks, never through the session.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use liveshop_engine::auth::{Identity, Role};
use liveshop_engine::chat::validate_emoji;
use liveshop_engine::frames::{ClientFrame, ClientOp, ServerFrame};
use liveshop_engine::records::ChatAuthor;
use liveshop_engine::{ErrorCode, Rejection, SessionId, StreamId};

use crate::connection::Subscriber;
use crate::engine::Engine;
use crate::mailbox::Depth;
use crate::metrics::{self, AliveGuard, kind};
use crate::stream::{JoinReply, StreamMsg};

/// Start-up arguments of a session.
pub struct SessionArgs {
    /// Shared context.
    pub engine: Engine,
    /// The authenticated caller.
    pub identity: Identity,
    /// This connection's id.
    pub session: SessionId,
    /// The connection replies and events are written to.
    pub conn: Subscriber,
    /// Where others send this session messages.
    pub inbox: Arc<SessionInbox>,
}

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
    depth: Depth,
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

/// A message handler panicked; the session must not be used again.
#[derive(Debug, thiserror::Error)]
#[error("session handler panicked")]
pub struct SessionCrashed;

/// A running session: its state and the registrations it undoes when dropped.
pub struct Session {
    engine: Engine,
    identity: Identity,
    session: SessionId,
    conn: Subscriber,
    joined: HashSet<StreamId>,
    _alive: AliveGuard,
}

impl Session {
    /// Starts a session: registers it with the engine (private frames for its user, the operator's
    /// actor tree). Dropping it undoes both and leaves every joined stream.
    pub fn start(args: SessionArgs) -> Self {
        if let Some(tenant) = &args.identity.tenant {
            args.engine
                .register_user(tenant, &args.identity.user, args.conn.clone());
        }
        let parent = args.identity.tenant.as_ref().map(|t| format!("tenant:{t}"));
        args.engine.tree().register(
            kind::SESSION,
            args.session.as_str(),
            parent,
            args.inbox.depth.clone(),
        );
        Self {
            engine: args.engine,
            identity: args.identity,
            session: args.session,
            conn: args.conn,
            joined: HashSet::new(),
            _alive: AliveGuard::new(kind::SESSION),
        }
    }

    /// Handles one message, catching a panic so that only this connection is affected. The
    /// session moves into the returned future (its connection's task keeps that boxed while it
    /// runs, so an idle connection reserves no room for it) and comes back with the outcome.
    pub async fn dispatch(mut self, message: SessionMsg) -> (Self, Result<(), SessionCrashed>) {
        let outcome = AssertUnwindSafe(self.handle(message))
            .catch_unwind()
            .await
            .map_err(|_| {
                tracing::error!(session_id = %self.session, "session handler panicked; closing its connection");
                SessionCrashed
            });
        (self, outcome)
    }

    async fn handle(&mut self, message: SessionMsg) {
        let started = Instant::now();
        match message {
            SessionMsg::Frame(frame) => {
                let r#ref = frame.r#ref.clone();
                if let Err(rejection) = self.handle_frame(frame).await {
                    self.refuse(r#ref, &rejection).await;
                }
            }
            SessionMsg::Rejoin(stream) => {
                if self.joined.contains(&stream)
                    && let Err(rejection) = self.join(None, stream.clone(), None).await
                {
                    tracing::warn!(session_id = %self.session, stream_id = %stream, error = %rejection, "re-join after stream restart failed");
                    self.joined.remove(&stream);
                    self.refuse(None, &rejection).await;
                }
            }
            SessionMsg::Crash => panic!("fault injection: session crash requested"),
        }
        metrics::record_handling(kind::SESSION, started);
    }

    /// Writes a reply; the connection buffers (boundedly) if its socket is busy.
    async fn reply(&self, frame: ServerFrame) {
        self.conn.send_json(&frame.encode());
    }

    async fn refuse(&self, r#ref: Option<String>, rejection: &Rejection) {
        self.reply(ServerFrame::error(r#ref, rejection)).await;
    }

    fn require_joined(&self, stream: &StreamId) -> Result<(), Rejection> {
        if self.joined.contains(stream) {
            Ok(())
        } else {
            Err(not_joined())
        }
    }

    async fn join(
        &mut self,
        r#ref: Option<String>,
        stream: StreamId,
        resume: Option<(u64, u64)>,
    ) -> Result<(), Rejection> {
        let limit = self.engine.config().limits.max_joins_per_connection;
        if !self.joined.contains(&stream) && self.joined.len() >= limit {
            return Err(Rejection::new(
                ErrorCode::LimitExceeded,
                format!("at most {limit} streams may be joined per connection"),
            ));
        }
        let tenant = self.identity.member_tenant()?.clone();
        let handle = self.engine.stream(&tenant, &stream).await?;
        let conn = self.conn.clone();
        let _joined: JoinReply = handle
            .actor
            .ask(|reply| StreamMsg::Join {
                resume,
                r#ref,
                conn,
                reply,
            })
            .await??;
        self.joined.insert(stream);
        Ok(())
    }

    async fn handle_frame(&mut self, frame: ClientFrame) -> Result<(), Rejection> {
        let r#ref = frame.r#ref;
        match frame.op {
            ClientOp::Join { stream, resume } => self.join(r#ref, stream, resume).await,
            ClientOp::Leave { stream } => {
                self.require_joined(&stream)?;
                self.joined.remove(&stream);
                let reply = ServerFrame::Ok {
                    r#ref,
                    seq: None,
                    claim: None,
                }
                .encode();
                self.engine
                    .fanout()
                    .hub()
                    .leave(&stream, self.conn.clone(), Some(reply));
                Ok(())
            }
            ClientOp::Chat { stream, text } => {
                // Viewers must have joined; a broadcaster (the stream's seller, or an admin) may
                // publish without subscribing to its own feed: the stream actor checks which.
                let publisher = if self.joined.contains(&stream) {
                    None
                } else if matches!(self.identity.role, Role::Seller | Role::Admin) {
                    Some(self.identity.role)
                } else {
                    return Err(not_joined());
                };
                let tenant = self.identity.member_tenant()?.clone();
                let handle = self.engine.stream(&tenant, &stream).await?;
                let author = ChatAuthor {
                    id: self.identity.user.clone(),
                    name: self.identity.name.clone(),
                };
                let seq = handle
                    .actor
                    .ask(|reply| StreamMsg::Chat {
                        author,
                        text,
                        publisher,
                        reply,
                    })
                    .await??;
                self.reply(ServerFrame::Ok {
                    r#ref,
                    seq: Some(seq),
                    claim: None,
                })
                .await;
                Ok(())
            }
            ClientOp::React { stream, emoji } => {
                self.require_joined(&stream)?;
                let emoji = validate_emoji(&emoji)?;
                let tenant = self.identity.member_tenant()?.clone();
                let handle = self.engine.stream(&tenant, &stream).await?;
                handle.actor.cast(StreamMsg::React(emoji));
                Ok(())
            }
            ClientOp::Claim {
                drop,
                quantity,
                key,
            } => {
                let tenant = self.identity.member_tenant()?.clone();
                let outcome = self
                    .engine
                    .claim(&tenant, &drop, &self.identity.user, quantity, key)
                    .await?;
                let claim = serde_json::to_value(&outcome.claim).unwrap_or_default();
                self.reply(ServerFrame::Ok {
                    r#ref,
                    seq: None,
                    claim: Some(claim),
                })
                .await;
                Ok(())
            }
            ClientOp::Ping => {
                self.reply(ServerFrame::Pong { r#ref }).await;
                Ok(())
            }
        }
    }
}

/// The refusal for stream operations before `join`.
pub fn not_joined() -> Rejection {
    Rejection::new(ErrorCode::NotJoined, "join the stream first")
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(tenant) = &self.identity.tenant {
            self.engine
                .unregister_user(tenant, &self.identity.user, self.conn.id());
        }
        self.engine
            .tree()
            .remove(kind::SESSION, self.session.as_str());
        // Leave every joined stream now, so viewer counts drop and the socket is released without
        // waiting for the streams' next event.
        for stream in self.joined.drain() {
            self.engine
                .fanout()
                .hub()
                .leave(&stream, self.conn.clone(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveshop_engine::StreamId;

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
