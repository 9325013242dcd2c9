//! One connection's life: welcome, the reader loop, and an orderly close with the right code.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liveshop_actors::broker::Connection;
use liveshop_actors::mailbox::{Addr, Depth};
use liveshop_actors::metrics::kind;
use liveshop_actors::session::{SessionActor, SessionArgs, SessionMsg};
use liveshop_engine::frames::{
    ClientFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame, ws_frame,
};
use liveshop_engine::limits::TokenBucket;
use liveshop_engine::{ErrorCode, Rejection, SessionId};
use ractor::Actor;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::Instrument;

use super::close::CloseReason;
use super::conn::{Conn, ConnIo};
use crate::auth::{Verified, unix_now};
use crate::state::AppState;

/// Largest message the socket layer assembles before refusing; frames above [`MAX_FRAME_BYTES`]
/// up to this size are refused by the reader with close 1009, larger ones by the library.
const TRANSPORT_MAX_MESSAGE: usize = 64 * MAX_FRAME_BYTES;

/// How long a closing connection may take to hand its last frames to the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs a connection until it closes, then records why.
pub async fn run(state: AppState, verified: Verified, conn: Arc<Conn>, early: Vec<u8>) {
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
    let reason = Box::pin(serve(&state, verified, session, conn, early))
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
    conn: Arc<Conn>,
    early: Vec<u8>,
) -> CloseReason {
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
        conn: conn.clone(),
        depth: depth.clone(),
    };
    // Boxed: the spawn future is large and needed once; inline it would stay in this task for
    // the connection's whole life.
    let (actor, mut actor_done) = match Box::pin(Actor::spawn(None, SessionActor, args)).await {
        Ok((actor, done)) => (Addr::new(actor, depth), done),
        Err(err) => {
            tracing::error!(error = %err, "session actor failed to start");
            conn.close(CloseReason::Internal);
            return CloseReason::Internal;
        }
    };
    conn.set_session(actor.clone());
    state
        .engine
        .register_session(session_id.clone(), actor.clone());
    conn.send_json(&welcome.encode());

    let config = WebSocketConfig::default()
        .max_message_size(Some(TRANSPORT_MAX_MESSAGE))
        .max_frame_size(Some(TRANSPORT_MAX_MESSAGE))
        .read_buffer_size(512)
        .write_buffer_size(0);
    let mut stream = WebSocketStream::from_partially_read(
        ConnIo(conn.clone()),
        early,
        Role::Server,
        Some(config),
    )
    .await;

    let limits = state.engine.config().limits;
    let mut bucket = TokenBucket::full(limits.frame_burst, liveshop_actors::clock::now().millis());
    let expires_in = Duration::from_secs(verified.exp.saturating_sub(unix_now()));
    let token_expiry = tokio::time::sleep(expires_in);
    tokio::pin!(token_expiry);
    let idle_timeout = state.config.idle_timeout();
    let mut idle_check = tokio::time::interval(idle_timeout / 4);
    let mut ping = tokio::time::interval(state.config.ping_interval());
    ping.tick().await;
    let ping_frame = ws_frame(0x9, b"");
    let mut last_seen = Instant::now();
    let mut drain = state.drain.subscribe();

    let reason = loop {
        if *drain.borrow_and_update() {
            break CloseReason::Restarting;
        }
        tokio::select! {
            _ = drain.changed() => continue,
            _ = &mut actor_done => break CloseReason::Internal,
            () = conn.closed() => break conn.close_reason().unwrap_or(CloseReason::TransportError),
            _ = &mut token_expiry => break CloseReason::TokenExpired,
            _ = ping.tick() => {
                conn.deliver(&ping_frame);
            }
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
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
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
                conn.send_json(&reply.encode());
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
    match reason {
        // The library queued its answer to the client's close; flushing writes it, so the
        // client sees a complete closing handshake.
        CloseReason::ClientClosed => {
            let _ = stream.flush().await;
        }
        // A broken socket gets no close frame.
        CloseReason::TransportError => {}
        _ => conn.close(reason),
    }
    let deadline = Instant::now() + CLOSE_GRACE;
    while !conn.drained() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.shutdown();
    reason
}

/// Classifies a read error: oversize messages close with 1009, anything else is a broken socket.
fn read_error(err: &WsError) -> CloseReason {
    match err {
        WsError::Capacity(_) => CloseReason::TooLarge,
        _ => CloseReason::TransportError,
    }
}
