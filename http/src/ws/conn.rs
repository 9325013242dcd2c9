//! One WebSocket connection's socket, shared by everyone who writes to it.
//!
//! Fan-out tasks, the session and the reader all write through [`Conn::deliver`], which tries
//! the socket directly (a non-blocking `try_write`) and only when the socket is full keeps the rest
//! in a bounded buffer, drained by a flusher task started on demand. So the common path costs one
//! syscall per delivery and no task wake-up; a client that stops reading fills its buffer and is
//! closed as a slow consumer (4008). Frames from different writers never interleave: every write
//! happens under the connection's lock.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use liveshop_actors::connection::Connection;
use liveshop_actors::metrics as names;
use liveshop_actors::session::{SessionInbox, SessionMsg};
use liveshop_engine::StreamId;
use liveshop_engine::frames::ws_close_frame;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::close::CloseReason;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A connection's socket and its write buffer.
pub struct Conn {
    id: u64,
    me: Weak<Conn>,
    socket: TcpStream,
    out: Mutex<Out>,
    /// Most frames (or byte chunks) buffered before the connection is a slow consumer.
    max_pending: usize,
    /// Woken when the connection closes, so its task stops.
    closed: AtomicWaker,
    session: OnceLock<Arc<SessionInbox>>,
    /// When the client last completed a frame (ms since the epoch), for the idle timeout.
    last_seen_ms: AtomicI64,
    /// When the connection's token expires (ms since the epoch).
    expires_at_ms: i64,
}

#[derive(Default)]
struct Out {
    pending: VecDeque<Bytes>,
    /// The front of `pending` is the rest of a frame the socket took in part: it must go out
    /// whole before anything else, or the stream of frames would be corrupt.
    front_partial: bool,
    flushing: bool,
    /// Set once a close frame was queued: nothing else is written after it.
    closing: Option<CloseReason>,
    /// The socket failed.
    broken: bool,
}

impl Conn {
    /// Wraps an upgraded socket whose token expires at `expires_at_ms`.
    pub fn new(socket: TcpStream, max_pending: usize, expires_at_ms: i64) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
            socket,
            out: Mutex::new(Out::default()),
            max_pending: max_pending.max(16),
            closed: AtomicWaker::new(),
            session: OnceLock::new(),
            last_seen_ms: AtomicI64::new(liveshop_actors::clock::now().millis()),
            expires_at_ms,
        })
    }

    /// Notes a sign of life from the client: a whole frame (a partial one is not).
    pub fn touch(&self, now_ms: i64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When the client last completed a frame.
    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    /// When the connection's token expires.
    pub fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }

    /// Ready when the socket has bytes to read (or failed); wakes the connection's task then.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_read_ready(cx)
    }

    /// Reads what the socket has without waiting (`WouldBlock` when nothing; `Ok(0)` at its end).
    ///
    /// A read that leaves the socket drained (fewer bytes than `buf` holds) also clears the
    /// socket's read readiness, as tokio's own `poll_read` does. Otherwise the next
    /// `poll_read_ready` would answer ready at once and the connection would spend a read that
    /// finds nothing: one wasted syscall per frame received. Bytes arriving after the read raise
    /// a new readiness event, which this does not clear.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let capacity = buf.len();
        let mut drained = None;
        let read = self.socket.try_io(Interest::READABLE, || {
            let n = (&*SockRef::from(&self.socket)).read(buf)?;
            if n > 0 && n < capacity {
                // Reported as `WouldBlock` so tokio clears the readiness it handed out.
                drained = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (read, drained) {
            (Err(_), Some(n)) => Ok(n),
            (read, _) => read,
        }
    }

    /// Ties the connection to its session (for re-joins after a stream restart).
    pub fn set_session(&self, session: Arc<SessionInbox>) {
        let _ = self.session.set(session);
    }

    /// Why the connection closed, once it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        let out = self.lock();
        if out.broken {
            Some(CloseReason::TransportError)
        } else {
            out.closing
        }
    }

    /// Ready with the reason once the connection closed (by the server, or because the socket
    /// failed); until then the connection's task is woken when it does.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        if let Some(reason) = self.close_reason() {
            return Poll::Ready(reason);
        }
        self.closed.register(cx.waker());
        match self.close_reason() {
            Some(reason) => Poll::Ready(reason),
            None => Poll::Pending,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a close frame with the reason's code after what is already queued; nothing is
    /// written after it. The reader notices and ends the connection.
    pub fn close(&self, reason: CloseReason) {
        let mut out = self.lock();
        self.close_locked(&mut out, reason);
        drop(out);
        self.closed.wake();
    }

    fn close_locked(&self, out: &mut Out, reason: CloseReason) {
        if out.closing.is_some() || out.broken {
            return;
        }
        if reason == CloseReason::SlowConsumer {
            // The client is not reading: what it has not taken is dropped, and counted.
            // A frame already begun must be finished; everything after it is dropped.
            let keep = usize::from(out.front_partial);
            let dropped = out.pending.len().saturating_sub(keep);
            metrics::counter!(names::BROADCAST_LAG).increment(dropped as u64);
            out.pending.truncate(keep);
            count_slow_consumer();
        }
        let frame = ws_close_frame(reason.code(), reason.label());
        self.write_locked(out, frame);
        out.closing = Some(reason);
    }

    /// Writes `frame` now if the socket takes it, else buffers it (bounded). Must hold the lock.
    /// Returns false when the connection no longer takes frames.
    fn write_locked(&self, out: &mut Out, frame: Bytes) -> bool {
        if out.broken || out.closing.is_some() {
            return false;
        }
        if out.pending.len() >= self.max_pending {
            self.close_locked(out, CloseReason::SlowConsumer);
            self.closed.wake();
            return false;
        }
        if out.pending.is_empty() && !out.flushing {
            match self.socket.try_write(&frame) {
                Ok(n) if n == frame.len() => return true,
                Ok(n) => {
                    out.pending.push_back(frame.slice(n..));
                    out.front_partial = n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => out.pending.push_back(frame),
                Err(_) => {
                    out.broken = true;
                    self.closed.wake();
                    return false;
                }
            }
        } else {
            out.pending.push_back(frame);
        }
        if !out.flushing
            && let Some(conn) = self.me.upgrade()
        {
            out.flushing = true;
            tokio::spawn(conn.flush());
        }
        true
    }

    /// Drains the buffer as the socket becomes writable; once a closing connection's last frame
    /// is out (or the socket failed), wakes the connection's task ([`Conn::poll_closed`]).
    async fn flush(self: Arc<Self>) {
        loop {
            {
                let mut out = self.lock();
                while let Some(front) = out.pending.front_mut() {
                    match self.socket.try_write(front) {
                        Ok(n) if n == front.len() => {
                            out.pending.pop_front();
                            out.front_partial = false;
                        }
                        Ok(n) => {
                            let rest = front.slice(n..);
                            *front = rest;
                            out.front_partial |= n > 0;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            out.broken = true;
                            out.pending.clear();
                            break;
                        }
                    }
                }
                if out.pending.is_empty() || out.broken {
                    out.flushing = false;
                    let done = out.broken || out.closing.is_some();
                    drop(out);
                    if done {
                        self.closed.wake();
                    }
                    return;
                }
            }
            if self.socket.writable().await.is_err() {
                let mut out = self.lock();
                out.broken = true;
                out.flushing = false;
                drop(out);
                self.closed.wake();
                return;
            }
        }
    }

    /// Whether everything queued has reached the socket.
    pub fn drained(&self) -> bool {
        let out = self.lock();
        out.pending.is_empty() || out.broken
    }
}

impl Connection for Conn {
    fn id(&self) -> u64 {
        self.id
    }

    fn deliver(&self, frame: &Bytes) -> bool {
        let mut out = self.lock();
        self.write_locked(&mut out, frame.clone())
    }

    fn rejoin(&self, stream: &StreamId) {
        if let Some(session) = self.session.get() {
            session.cast(SessionMsg::Rejoin(stream.clone()));
        }
    }

    fn close_banned(&self) {
        self.close(CloseReason::Banned);
    }
}

/// Counts a slow consumer.
pub fn count_slow_consumer() {
    metrics::counter!(names::SLOW_CONSUMERS).increment(1);
}

impl Conn {
    /// Lingering close: once everything queued (the close frame included) has reached the socket,
    /// ends this side (FIN) and reads and drops whatever the peer still sends (a pong to an earlier
    /// ping, its close reply) until it ends its side, fails, or `deadline` passes. Closing a socket
    /// that still has unread data makes the kernel send a reset, and a reset makes the peer's
    /// kernel discard what the peer has not read yet, our close frame included. A connection that
    /// never took its frames is not waited for.
    pub async fn linger(&self, deadline: tokio::time::Instant) {
        if !self.drained() || self.lock().broken {
            return;
        }
        let _ = socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Write);
        let mut sink = [0_u8; 512];
        loop {
            match tokio::time::timeout_at(deadline, self.socket.readable()).await {
                Ok(Ok(())) => match self.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                },
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Shuts the socket down both ways, so the peer sees the end even while fan-out lists still
    /// hold this connection (they drop it at their next write).
    pub fn shutdown(&self) {
        {
            let mut out = self.lock();
            out.broken = true;
            out.pending.clear();
        }
        let _ = socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Both);
        self.closed.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Waker;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A `Conn` on the server side of a loopback connection, and the client's end.
    async fn pair() -> (Arc<Conn>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Conn::new(server, 16, i64::MAX), client)
    }

    async fn readable(conn: &Conn) {
        tokio::time::timeout(
            Duration::from_secs(5),
            poll_fn(|cx| conn.poll_read_ready(cx)),
        )
        .await
        .expect("the socket became readable")
        .unwrap();
    }

    fn ready_now(conn: &Conn) -> bool {
        conn.poll_read_ready(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[tokio::test]
    async fn a_read_that_drains_the_socket_waits_for_new_bytes_before_reading_again() {
        let (conn, mut client) = pair().await;
        client.write_all(b"hello").await.unwrap();
        readable(&conn).await;
        let mut buf = [0u8; 64];
        assert_eq!(conn.try_read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert!(
            !ready_now(&conn),
            "a drained socket must not report ready (its next read would find nothing)"
        );

        client.write_all(b"again").await.unwrap();
        readable(&conn).await;
        assert_eq!(conn.try_read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"again");
    }

    #[tokio::test]
    async fn a_read_that_fills_the_buffer_stays_ready_for_the_rest() {
        let (conn, mut client) = pair().await;
        client.write_all(b"0123456789").await.unwrap();
        // One write on loopback arrives as one segment: all ten bytes are there once readable.
        readable(&conn).await;
        let mut buf = [0u8; 4];
        assert_eq!(conn.try_read(&mut buf).unwrap(), 4);
        assert!(ready_now(&conn), "bytes are left: the socket stays ready");
        assert_eq!(conn.try_read(&mut buf).unwrap(), 4);
        assert_eq!(conn.try_read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"89");
        assert!(!ready_now(&conn));
        assert_eq!(
            conn.try_read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[tokio::test]
    async fn the_end_of_the_stream_reads_as_zero() {
        let (conn, client) = pair().await;
        drop(client);
        readable(&conn).await;
        let mut buf = [0u8; 16];
        assert_eq!(conn.try_read(&mut buf).unwrap(), 0);
    }
}
