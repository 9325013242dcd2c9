//! One connection's life: welcome, the read loop that runs its session, and an orderly close
//! with the right code.
//!
//! The connection's task is also its session's: it reads the socket into the worker thread's
//! scratch buffer, decodes whole frames ([`FrameReader`] keeps only a frame that has not fully
//! arrived), and hands each client frame to the [`Session`] in order. Messages for the session
//! from elsewhere arrive in its inbox. Pings, idle and token-expiry closes and the drain's 1012
//! come from [`super::keepalive`], so an idle connection waits on nothing but its socket, its
//! inbox and its close signal.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use liveshop_actors::connection::Connection;
use liveshop_actors::session::{Session, SessionArgs, SessionCrashed, SessionInbox, SessionMsg};
use liveshop_engine::auth::Identity;
use liveshop_engine::frames::{
    ClientFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame, ws_frame,
};
use liveshop_engine::limits::{Limits, TokenBucket};
use liveshop_engine::wire::{FrameReader, Inbound, WireError};
use liveshop_engine::{ErrorCode, Rejection, SessionId};
use tokio::time::Instant;
use tracing::Instrument;

use super::close::CloseReason;
use super::conn::Conn;
use crate::state::AppState;

/// Size of each worker thread's read buffer.
const SCRATCH_BYTES: usize = 16 * 1024;

/// Most bytes read from one socket per wake-up, so one busy client cannot starve the others.
const READ_BUDGET: usize = 4 * SCRATCH_BYTES;

thread_local! {
    /// The read buffer shared by every connection served on this worker thread.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// Runs a connection until it closes, then records why.
pub async fn run(state: AppState, identity: Identity, conn: Arc<Conn>, early: Vec<u8>) {
    let session = SessionId::generate(&liveshop_actors::clock::unique_suffix());
    let span = tracing::info_span!(
        "ws",
        session_id = %session,
        user_id = %identity.user,
        tenant_id = identity.tenant.as_ref().map(|t| t.as_str()).unwrap_or(""),
    );
    metrics::counter!("websocket_connections_total").increment(1);
    metrics::gauge!("websocket_connections_active").increment(1.0);
    state.live.add(&conn);
    // Built outside this future's state: only `Serving` itself is kept while it runs.
    let serving = open(&state, identity, session.clone(), &conn, early);
    let reason = serving.instrument(span.clone()).await;
    // Dropping `Serving` above ran the session's clean-up (streams left, actor tree updated),
    // also after a panic.
    state.engine.unregister_session(&session);
    match reason {
        // A broken socket gets no close frame.
        CloseReason::TransportError => {}
        // Everything else, including the answer to the client's own close, ends with a close
        // frame after what is already queued.
        _ => conn.close(reason),
    }
    let deadline = Instant::now() + Duration::from_millis(state.config.close_grace_ms);
    while !conn.drained() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Boxed: its read buffer and timers would otherwise enlarge every connection's task for its
    // whole life, not only while it closes.
    Box::pin(conn.linger(deadline)).await;
    conn.shutdown();
    state.live.remove(conn.id());
    span.in_scope(|| tracing::debug!(reason = reason.label(), "connection closed"));
    metrics::counter!("websocket_disconnects_total", "reason" => reason.label()).increment(1);
    metrics::gauge!("websocket_connections_active").decrement(1.0);
}

/// What the client sent since the last look, and whether the socket is done.
#[derive(Default)]
struct Received {
    messages: VecDeque<Inbound>,
    /// Set when reading must stop: the end of the stream, a broken socket, or bad framing.
    end: Option<CloseReason>,
}

/// Starts the session, sends the welcome and decodes what the client sent with its upgrade.
fn open(
    state: &AppState,
    identity: Identity,
    session: SessionId,
    conn: &Arc<Conn>,
    early: Vec<u8>,
) -> Serving {
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
    let inbox = SessionInbox::new();
    state
        .engine
        .register_session(session.clone(), inbox.clone());
    conn.set_session(inbox.clone());
    let session = Session::start(SessionArgs {
        engine: state.engine.clone(),
        identity,
        session,
        conn: conn.clone(),
        inbox: inbox.clone(),
    });
    conn.send_json(&welcome.encode());

    let limits = state.engine.config().limits;
    let mut received = Received::default();
    let mut frames = FrameReader::new(MAX_FRAME_BYTES);
    if let Err(e) = frames.feed(&early, &mut |m| received.messages.push_back(m)) {
        received.end = Some(wire_close(e));
    }
    if *state.drain.borrow() {
        // The drain began while this connection was being set up.
        received.end.get_or_insert(CloseReason::Restarting);
    }
    Serving {
        conn: conn.clone(),
        inbox,
        session: Some(session),
        busy: None,
        frames,
        received,
        bucket: TokenBucket::full(limits.frame_burst, liveshop_actors::clock::now().millis()),
        limits,
        dropping: false,
    }
}

/// A session message being handled; the session is inside and comes back with the outcome.
type Busy = Pin<Box<dyn Future<Output = (Session, Result<(), SessionCrashed>)> + Send>>;

/// The connection's read loop as a hand-written future, so that an idle connection's task holds
/// exactly these fields: its socket, its session, a frame reader and a rate limiter.
struct Serving {
    conn: Arc<Conn>,
    inbox: Arc<SessionInbox>,
    /// The session, unless it is inside `busy`.
    session: Option<Session>,
    busy: Option<Busy>,
    frames: FrameReader,
    received: Received,
    bucket: TokenBucket,
    limits: Limits,
    /// A fragment of the message being received was over the frame allowance: the rest of the
    /// message is dropped too.
    dropping: bool,
}

impl Serving {
    /// Starts handling `message`.
    fn start(&mut self, message: SessionMsg) {
        if let Some(session) = self.session.take() {
            self.busy = Some(Box::pin(session.dispatch(message)));
        }
    }

    /// Deals with one frame the client sent; `Some` ends the connection.
    ///
    /// Every frame but a close costs one token of the connection's frame allowance, whatever it
    /// carries: a binary frame, a ping or an empty continuation is as much work to read as a text
    /// frame, so none of them may be sent without limit. A frame over the allowance is answered
    /// `rate_limited` and dropped unread (a ping gets no pong; a refused fragment drops the whole
    /// message it belongs to). Pongs are dropped silently either way: they answer the server.
    fn take(&mut self, message: Inbound) -> Option<CloseReason> {
        if let Inbound::Close(_) = message {
            return Some(CloseReason::ClientClosed);
        }
        let now = liveshop_actors::clock::now().millis();
        let (burst, rate) = (self.limits.frame_burst, self.limits.frames_per_sec);
        let allowed = self.bucket.try_take(now, burst, rate);
        let refusal = match (message, allowed) {
            (Inbound::Pong, _) => return None,
            (Inbound::Fragment, Err(wait)) => {
                self.dropping = true;
                ServerFrame::error(None, &Rejection::rate_limited(wait))
            }
            (Inbound::Text(_) | Inbound::Binary(_), Ok(())) if self.dropping => {
                // The end of a message one of whose fragments was refused (and answered).
                self.dropping = false;
                return None;
            }
            (Inbound::Text(_) | Inbound::Binary(_), Err(wait)) => {
                self.dropping = false;
                ServerFrame::error(None, &Rejection::rate_limited(wait))
            }
            (_, Err(wait)) => ServerFrame::error(None, &Rejection::rate_limited(wait)),
            (Inbound::Fragment, Ok(())) => return None,
            (Inbound::Text(text), Ok(())) => match ClientFrame::decode(&text) {
                Ok(frame) => {
                    self.start(SessionMsg::Frame(frame));
                    return None;
                }
                Err(e) => ServerFrame::error(e.r#ref, &e.rejection),
            },
            (Inbound::Binary(_), Ok(())) => ServerFrame::error(
                None,
                &Rejection::new(ErrorCode::BadFrame, "frames must be text"),
            ),
            (Inbound::Ping(payload), Ok(())) => {
                self.conn.deliver(&ws_frame(0xA, &payload));
                return None;
            }
            (Inbound::Close(_), Ok(())) => return Some(CloseReason::ClientClosed),
        };
        self.conn.send_json(&refusal.encode());
        None
    }
}

impl Future for Serving {
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let this = &mut *self;
        loop {
            // One message at a time, in order, like any actor.
            if let Some(busy) = &mut this.busy {
                let (session, outcome) = ready!(busy.as_mut().poll(cx));
                this.busy = None;
                this.session = Some(session);
                if outcome.is_err() {
                    return Poll::Ready(CloseReason::Internal);
                }
            }
            if let Poll::Ready(reason) = this.conn.poll_closed(cx) {
                return Poll::Ready(reason);
            }
            if let Some(message) = this.received.messages.pop_front() {
                if let Some(reason) = this.take(message) {
                    return Poll::Ready(reason);
                }
                continue;
            }
            if this.received.messages.capacity() > 0 {
                // Idle connections keep no queue.
                this.received.messages = VecDeque::new();
            }
            if let Some(end) = this.received.end {
                return Poll::Ready(end);
            }
            if let Poll::Ready(message) = this.inbox.poll_recv(cx) {
                this.start(message);
                continue;
            }
            match this.conn.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {
                    read_available(&this.conn, &mut this.frames, &mut this.received);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(CloseReason::TransportError),
                // Woken by the socket, the inbox or a close.
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Reads what the socket has into the thread's scratch buffer and decodes the whole frames.
///
/// Only a whole frame is a sign of life for the idle timeout, not a byte: a client that trickles
/// a frame that never completes (a byte at a time, or a header announcing more than it sends)
/// is closed as idle like a silent one, instead of holding its connection forever.
fn read_available(conn: &Conn, frames: &mut FrameReader, received: &mut Received) {
    let before = received.messages.len();
    read_frames(conn, frames, received);
    if received.messages.len() > before {
        conn.touch(liveshop_actors::clock::now().millis());
    }
}

/// Reads up to [`READ_BUDGET`] bytes and queues the frames they complete.
fn read_frames(conn: &Conn, frames: &mut FrameReader, received: &mut Received) {
    SCRATCH.with_borrow_mut(|buf| {
        let mut total = 0;
        while total < READ_BUDGET {
            match conn.try_read(buf) {
                Ok(0) => {
                    received.end = Some(CloseReason::ClientClosed);
                    return;
                }
                Ok(n) => {
                    total += n;
                    if let Err(e) = frames.feed(&buf[..n], &mut |m| received.messages.push_back(m))
                    {
                        received.end = Some(wire_close(e));
                        return;
                    }
                    if n < buf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    received.end = Some(CloseReason::TransportError);
                    return;
                }
            }
        }
    });
}

/// The close for bytes that cannot be framed.
fn wire_close(error: WireError) -> CloseReason {
    match error {
        WireError::TooLarge(_) => CloseReason::TooLarge,
        WireError::InvalidUtf8 => CloseReason::InvalidPayload,
        WireError::Protocol(_) => CloseReason::ProtocolError,
    }
}
