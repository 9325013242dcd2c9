//! One connection's life: welcome, the reader loop, and an orderly close with the right code.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use liveshop_actors::mailbox::{Addr, Depth};
use liveshop_actors::metrics::kind;
use liveshop_actors::session::{
    OUTGOING_CAPACITY, Outgoing, SessionActor, SessionArgs, SessionMsg,
};
use liveshop_engine::frames::{ClientFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame};
use liveshop_engine::limits::TokenBucket;
use liveshop_engine::{ErrorCode, Rejection, SessionId};
use ractor::Actor;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::close::CloseReason;
use super::writer::Writer;
use crate::auth::{Verified, unix_now};
use crate::state::AppState;

/// Runs a connection until it closes, then records why.
pub async fn run(state: AppState, verified: Verified, socket: WebSocket) {
    let session = SessionId::generate(&liveshop_actors::clock::unique_suffix());
    let identity = &verified.identity;
    let span = tracing::info_span!(
        "ws",
        session_id = %session,
        user_id = %identity.user,
        tenant_id = identity.tenant.as_ref().map(|t| t.as_str()).unwrap_or(""),
    );
    metrics::counter!("websocket_connections_total").increment(1);
    metrics::gauge!("websocket_connections_active").increment(1.0);
    state.connections.fetch_add(1, Ordering::SeqCst);
    let reason = serve(&state, verified, session, socket)
        .instrument(span.clone())
        .await;
    span.in_scope(|| tracing::debug!(reason = reason.label(), "connection closed"));
    metrics::counter!("websocket_disconnects_total", "reason" => reason.label()).increment(1);
    metrics::gauge!("websocket_connections_active").decrement(1.0);
    state.connections.fetch_sub(1, Ordering::SeqCst);
}

async fn serve(
    state: &AppState,
    verified: Verified,
    session: SessionId,
    socket: WebSocket,
) -> CloseReason {
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel(OUTGOING_CAPACITY);
    let (close_tx, close_rx) = watch::channel(None);
    let identity = verified.identity;
    let welcome = ServerFrame::Welcome {
        session: session.to_string(),
        user: identity.user.to_string(),
        tenant: identity
            .tenant
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        protocol: PROTOCOL_VERSION,
    };
    let depth = Depth::new(kind::SESSION);
    let session_id = session.clone();
    let args = SessionArgs {
        engine: state.engine.clone(),
        identity,
        session,
        out: out_tx.clone(),
        depth: depth.clone(),
    };
    // Boxed: the spawn future is large and needed once; inline it would stay in this task for
    // the connection's whole life.
    let (actor, mut actor_done) = match Box::pin(Actor::spawn(None, SessionActor, args)).await {
        Ok((actor, done)) => (Addr::new(actor, depth), done),
        Err(err) => {
            tracing::error!(error = %err, "session actor failed to start");
            return CloseReason::Internal;
        }
    };
    state
        .engine
        .register_session(session_id.clone(), actor.clone());
    let _ = out_tx.send(Outgoing::Frame(welcome.encode())).await;
    let rejoin_target = actor.clone();
    let mut writer = tokio::spawn(
        Writer {
            sink,
            out: out_rx,
            close: close_rx,
            rejoin: Box::new(move |stream| {
                rejoin_target.cast(SessionMsg::Rejoin(stream));
            }),
            ping_every: state.config.ping_interval(),
        }
        .run()
        .in_current_span(),
    );

    let limits = state.engine.config().limits;
    let mut bucket = TokenBucket::full(limits.frame_burst, liveshop_actors::clock::now().millis());
    let expires_in = Duration::from_secs(verified.exp.saturating_sub(unix_now()));
    let token_expiry = tokio::time::sleep(expires_in);
    tokio::pin!(token_expiry);
    let idle_timeout = state.config.idle_timeout();
    let mut idle_check = tokio::time::interval(idle_timeout / 4);
    let mut last_seen = Instant::now();
    let mut drain = state.drain.subscribe();
    let mut writer_done = None;

    let reason = loop {
        if *drain.borrow_and_update() {
            break CloseReason::Restarting;
        }
        tokio::select! {
            _ = drain.changed() => continue,
            _ = &mut actor_done => break CloseReason::Internal,
            result = &mut writer => {
                let reason = result.unwrap_or(CloseReason::Internal);
                writer_done = Some(reason);
                break reason;
            }
            _ = &mut token_expiry => break CloseReason::TokenExpired,
            _ = idle_check.tick() => {
                if last_seen.elapsed() > idle_timeout {
                    break CloseReason::Idle;
                }
            }
            message = stream.next() => {
                last_seen = Instant::now();
                let reply = match message {
                    None => break CloseReason::ClientClosed,
                    Some(Err(err)) => break read_error(&err),
                    Some(Ok(Message::Close(_))) => break CloseReason::ClientClosed,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(bytes))) => {
                        if bytes.len() > MAX_FRAME_BYTES {
                            break CloseReason::TooLarge;
                        }
                        ServerFrame::error(None, &Rejection::new(ErrorCode::BadFrame, "frames must be text"))
                    }
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > MAX_FRAME_BYTES {
                            break CloseReason::TooLarge;
                        }
                        let now = liveshop_actors::clock::now().millis();
                        if let Err(wait) = bucket.try_take(now, limits.frame_burst, limits.frames_per_sec) {
                            ServerFrame::error(None, &Rejection::rate_limited(wait))
                        } else {
                            match ClientFrame::decode(text.as_str()) {
                                Ok(frame) => {
                                    actor.cast(SessionMsg::Frame(frame));
                                    continue;
                                }
                                Err(e) => ServerFrame::error(e.r#ref, &e.rejection),
                            }
                        }
                    }
                };
                let _ = out_tx.send(Outgoing::Frame(reply.encode())).await;
            }
        }
    };

    state.engine.unregister_session(&session_id);
    actor.actor().stop(None);
    if reason == CloseReason::Internal {
        // A failed session actor skipped its own clean-up.
        actor.discard();
        state
            .engine
            .tree()
            .remove(kind::SESSION, session_id.as_str());
    }
    if writer_done.is_none() {
        let _ = close_tx.send(Some(reason));
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }
    reason
}

/// Classifies a read error: oversize messages close with 1009, anything else is a broken socket.
fn read_error(err: &axum::Error) -> CloseReason {
    let text = err.to_string();
    if text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("too big")
    {
        CloseReason::TooLarge
    } else {
        CloseReason::TransportError
    }
}
