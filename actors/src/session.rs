//! One actor per WebSocket connection: identity, joined streams, and the protocol's operations.
//!
//! The connection's reader decodes frames and casts them here. Replies are written straight to the
//! connection; stream events reach it from the streams' fan-out tasks, never through this mailbox.

use std::collections::HashSet;
use std::time::Instant;

use liveshop_engine::auth::{Identity, Role};
use liveshop_engine::chat::validate_emoji;
use liveshop_engine::frames::{ClientFrame, ClientOp, ServerFrame};
use liveshop_engine::records::ChatAuthor;
use liveshop_engine::{ErrorCode, Rejection, SessionId, StreamId};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::broker::Subscriber;
use crate::engine::Engine;
use crate::mailbox::Depth;
use crate::metrics::{self, AliveGuard, kind};
use crate::stream::{JoinReply, StreamMsg};

/// Start-up arguments of a session actor.
pub struct SessionArgs {
    /// Shared context.
    pub engine: Engine,
    /// The authenticated caller.
    pub identity: Identity,
    /// This connection's id.
    pub session: SessionId,
    /// The connection replies and events are written to.
    pub conn: Subscriber,
    /// Its mailbox counter (the reader sends through an [`crate::mailbox::Addr`]).
    pub depth: Depth,
}

/// Messages of a session actor.
pub enum SessionMsg {
    /// A decoded client frame.
    Frame(ClientFrame),
    /// A joined stream restarted: join it again for a fresh snapshot.
    Rejoin(StreamId),
    /// Fault injection: panic, so the connection closes with 1011.
    Crash,
}

/// The session actor.
pub struct SessionActor;

/// Its state.
pub struct SessionState {
    engine: Engine,
    identity: Identity,
    session: SessionId,
    conn: Subscriber,
    joined: HashSet<StreamId>,
    depth: Depth,
    _alive: AliveGuard,
}

impl SessionState {
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
                    .broker()
                    .unsubscribe(&stream, self.conn.clone(), Some(reply));
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

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        if let Some(tenant) = &args.identity.tenant {
            args.engine
                .register_user(tenant, &args.identity.user, args.conn.clone());
        }
        let parent = args.identity.tenant.as_ref().map(|t| format!("tenant:{t}"));
        args.engine.tree().register(
            kind::SESSION,
            args.session.as_str(),
            parent,
            args.depth.clone(),
        );
        Ok(SessionState {
            depth: args.depth,
            engine: args.engine,
            identity: args.identity,
            session: args.session,
            conn: args.conn,
            joined: HashSet::new(),
            _alive: AliveGuard::new(kind::SESSION),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        state.depth.taken();
        match message {
            SessionMsg::Frame(frame) => {
                let r#ref = frame.r#ref.clone();
                // Boxed: the handler's future is large (it awaits other actors); inline, its size
                // would stay reserved in every idle session's task.
                if let Err(rejection) = Box::pin(state.handle_frame(frame)).await {
                    state.refuse(r#ref, &rejection).await;
                }
            }
            SessionMsg::Rejoin(stream) => {
                if state.joined.contains(&stream)
                    && let Err(rejection) = Box::pin(state.join(None, stream.clone(), None)).await
                {
                    tracing::warn!(session_id = %state.session, stream_id = %stream, error = %rejection, "re-join after stream restart failed");
                    state.joined.remove(&stream);
                    state.refuse(None, &rejection).await;
                }
            }
            SessionMsg::Crash => panic!("fault injection: session actor crash requested"),
        }
        metrics::record_handling(kind::SESSION, started);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(tenant) = &state.identity.tenant {
            state
                .engine
                .unregister_user(tenant, &state.identity.user, state.conn.id());
        }
        state
            .engine
            .tree()
            .remove(kind::SESSION, state.session.as_str());
        // Leave every joined stream now, so viewer counts drop and the socket is released without
        // waiting for the streams' next event.
        for stream in state.joined.drain() {
            state
                .engine
                .broker()
                .unsubscribe(&stream, state.conn.clone(), None);
        }
        Ok(())
    }
}
