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

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use liveshop_engine::auth::{Action, Identity, permit};
use liveshop_engine::chat::validate_emoji;
use liveshop_engine::frames::{ClientFrame, ClientOp, ServerFrame};
use liveshop_engine::records::ChatAuthor;
use liveshop_engine::stream_book::ChatAccess;
use liveshop_engine::{ErrorCode, Rejection, SessionId, StreamId, TenantId};

use crate::connection::Subscriber;
use crate::engine::Engine;
pub use crate::inbox::{SessionInbox, SessionMsg};
use crate::metrics::{self, AliveGuard, kind};

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
    /// Re-joins that failed with `unavailable` and are retried, by stream: how many so far.
    rejoining: std::collections::HashMap<StreamId, u32>,
    _alive: AliveGuard,
}

/// Retries of a re-join that fails with `unavailable` (the stream's owner is changing, in cluster
/// mode), [`REJOIN_RETRY`] apart: about 20 s in all, well past a failover's `2 × lease`.
const REJOIN_RETRIES: u32 = 40;
/// Pause between two tries of a re-join.
const REJOIN_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

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
            rejoining: std::collections::HashMap::new(),
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
                if !self.joined.contains(&stream) {
                    return;
                }
                tracing::debug!(session_id = %self.session, stream_id = %stream, "re-joining");
                match self.join(None, stream.clone(), None).await {
                    Ok(()) => {
                        self.rejoining.remove(&stream);
                    }
                    Err(rejection)
                        if rejection.code == ErrorCode::Unavailable
                            && self.rejoining.get(&stream).copied().unwrap_or(0)
                                < REJOIN_RETRIES =>
                    {
                        // The stream's owner is changing: stay joined and try again shortly.
                        *self.rejoining.entry(stream.clone()).or_default() += 1;
                        let conn = self.conn.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(REJOIN_RETRY).await;
                            conn.rejoin(&stream);
                        });
                    }
                    Err(rejection) => {
                        tracing::warn!(session_id = %self.session, stream_id = %stream, error = %rejection, "re-join after stream restart failed");
                        self.rejoining.remove(&stream);
                        self.joined.remove(&stream);
                        self.refuse(None, &rejection).await;
                    }
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

    /// Checks that the caller may do `action` and answers the tenant it acts in.
    fn permitted(&self, action: Action<'_>) -> Result<TenantId, Rejection> {
        permit(&self.identity, action)?;
        self.identity.member_tenant().cloned()
    }

    async fn join(
        &mut self,
        r#ref: Option<String>,
        stream: StreamId,
        resume: Option<(u64, u64)>,
    ) -> Result<(), Rejection> {
        let limit = self.engine.limits().max_joins_per_connection;
        if !self.joined.contains(&stream) && self.joined.len() >= limit {
            return Err(Rejection::new(
                ErrorCode::LimitExceeded,
                format!("at most {limit} streams may be joined per connection"),
            ));
        }
        let tenant = self.permitted(Action::JoinStream)?;
        self.engine
            .join(&tenant, &stream, resume, r#ref, self.conn.clone())
            .await?;
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
                self.engine.leave(&stream, self.conn.clone(), Some(reply));
                Ok(())
            }
            ClientOp::Chat { stream, text } => {
                // Viewers must have joined; a broadcaster (the stream's seller, or an admin) may
                // publish without subscribing to its own feed: the stream actor checks which.
                let joined = self.joined.contains(&stream);
                let tenant = self.permitted(Action::Chat { joined })?;
                let access = if joined {
                    ChatAccess::Joined
                } else {
                    ChatAccess::NotJoined(self.identity.role)
                };
                let author = ChatAuthor {
                    id: self.identity.user.clone(),
                    name: self.identity.name.clone(),
                };
                let seq = self
                    .engine
                    .chat(&tenant, &stream, author, text, (access, self.identity.role))
                    .await?;
                self.reply(ServerFrame::Ok {
                    r#ref,
                    seq: Some(seq),
                    claim: None,
                })
                .await;
                Ok(())
            }
            ClientOp::React { stream, emoji } => {
                let joined = self.joined.contains(&stream);
                let tenant = self.permitted(Action::React { joined })?;
                let emoji = validate_emoji(&emoji)?;
                self.engine.react(&tenant, &stream, emoji).await
            }
            ClientOp::Claim {
                drop,
                quantity,
                key,
            } => {
                let tenant = self.permitted(Action::Claim)?;
                let outcome = self
                    .engine
                    .claim(&tenant, &drop, &self.identity.user, quantity, key)
                    .await?;
                let claim = serde_json::to_value(&outcome.claim).map_err(|err| {
                    tracing::error!(session_id = %self.session, claim_id = %outcome.claim.id, error = %err, "claim could not be encoded for its reply");
                    Rejection::new(ErrorCode::Internal, "claim could not be encoded")
                })?;
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
    Rejection::not_joined()
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
            self.engine.leave(&stream, self.conn.clone(), None);
        }
    }
}
