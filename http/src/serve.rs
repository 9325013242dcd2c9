//! The accept loop: HTTP/1.1 with upgrades on plain TCP sockets.
//!
//! Serving each connection with hyper's HTTP/1 builder directly (rather than through a
//! protocol-sniffing wrapper) keeps an upgraded connection's IO our own [`HttpIo`] around the
//! `TcpStream`, so the WebSocket gateway can take the raw socket back and write pre-framed bytes
//! to it.
//!
//! What an outsider cannot do here:
//! - hold a connection without sending a request: hyper's header-read timer (`LIVESHOP_HEADER_READ_SECS`)
//!   closes a connection whose request head is not complete in time, counted from the moment
//!   it waits for one (a new connection, or a kept-alive one after its answer);
//! - hold more connections than admission allows (`admission.rs`): a refused one gets a short
//!   error answer and is closed at once, before hyper or the router see it;
//! - make the loop spin when descriptors run out: a failed accept backs off (growing, capped)
//!   and is logged at most once a second with the number of failures not logged ([`AcceptBackoff`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use liveshop_engine::ErrorCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::admission::{Admission, HttpPermit, Refusal};
use crate::http_io::HttpIo;

/// How long in-flight HTTP requests get to finish once shutdown starts.
const HTTP_GRACE: Duration = Duration::from_secs(10);

/// First pause after an accept failed for lack of resources; doubled on each further failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);

/// Longest pause between two accepts that fail for lack of resources.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Shortest time between two log lines about failed accepts.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Counter of failed accepts, by `kind`: `resources` (out of descriptors or memory: the loop
/// backs off) or `connection` (the client gave up before the accept: nothing to wait for).
pub const ACCEPT_ERRORS: &str = "liveshop_accept_errors_total";

/// Counter of HTTP connections closed because their request head did not arrive in time.
pub const HEADER_TIMEOUTS: &str = "liveshop_http_header_timeouts_total";

/// What the accept loop needs besides the listener and the router.
pub struct Serving {
    /// Connection caps, shared with the WebSocket gateway.
    pub admission: Arc<Admission>,
    /// Time a client has to send a request head.
    pub header_read_timeout: Duration,
    /// Production mode: answers written outside the router carry HSTS too.
    pub production: bool,
}

/// Accepts and serves connections until `shutdown` resolves; then stops accepting and waits for
/// in-flight HTTP requests (upgraded WebSockets are drained by their own connections).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
) {
    metrics::counter!(ACCEPT_ERRORS, "kind" => "resources").increment(0);
    metrics::counter!(ACCEPT_ERRORS, "kind" => "connection").increment(0);
    metrics::counter!(HEADER_TIMEOUTS).increment(0);
    for status in ["400", "414", "431"] {
        metrics::counter!(crate::http_io::MALFORMED, "status" => status).increment(0);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let refusals = Refusals::new(serving.production);
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.on_success(Instant::now());
                match serving.admission.admit_http(peer.ip()) {
                    Ok(permit) => {
                        spawn_connection(stream, peer, permit, &router, &serving, stop_rx.clone());
                    }
                    Err(refusal) => refusals.answer(&stream, refusal),
                }
            }
            Err(err) => {
                let pause = backoff.on_error(&err, Instant::now());
                if !pause.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + HTTP_GRACE;
    while serving.admission.http_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if serving.admission.http_connections() > 0 {
        tracing::warn!("HTTP connections still open after the grace period");
    }
}

/// Serves `stream` in a task of its own: hyper's HTTP/1 connection with the header-read timer
/// and upgrades, the client's address in each request's extensions (`ConnectInfo`, for the
/// gateway's limits), and `permit` held until the connection ends or is upgraded. On shutdown,
/// the request in flight finishes and no new one is read.
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    permit: HttpPermit,
    router: &Router,
    serving: &Serving,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = router
        .clone()
        .map_request(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(serving.header_read_timeout)
        .serve_connection(
            TokioIo::new(HttpIo::new(stream, serving.production)),
            TowerToHyperService::new(service),
        )
        .with_upgrades();
    tokio::spawn(async move {
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        drop(permit);
        match result {
            Err(err) if err.is_timeout() => {
                metrics::counter!(HEADER_TIMEOUTS).increment(1);
                tracing::debug!("HTTP connection closed: request head not received in time");
            }
            Err(err) => tracing::debug!(error = %err, "HTTP connection ended with an error"),
            Ok(()) => {}
        }
    });
}

/// The answers of refused connections, built once.
struct Refusals {
    busy: Vec<u8>,
    per_ip: Vec<u8>,
}

impl Refusals {
    fn new(production: bool) -> Self {
        Self {
            busy: crate::plain::error_answer(
                503,
                ErrorCode::Unavailable,
                "too many connections; retry later",
                production,
                Some(1),
            ),
            per_ip: crate::plain::error_answer(
                429,
                ErrorCode::RateLimited,
                "too many connections from this address",
                production,
                Some(1),
            ),
        }
    }

    /// Writes the answer the socket takes without waiting (a fresh socket takes it whole) and
    /// closes the connection by dropping it.
    fn answer(&self, stream: &TcpStream, refusal: Refusal) {
        let answer = match refusal {
            Refusal::HttpConnectionsPerIp => &self.per_ip,
            _ => &self.busy,
        };
        let _ = stream.try_write(answer);
    }
}

/// When to try `accept` again after it failed, and when to say so in the log.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    pause: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    /// Records a failed accept at `now`; returns how long to wait before the next one. Running
    /// out of descriptors or memory waits longer each time (up to [`BACKOFF_MAX`]); a client that
    /// gave up before the accept needs no wait.
    pub fn on_error(&mut self, err: &io::Error, now: Instant) -> Duration {
        let connection_level = matches!(
            err.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        );
        let kind = if connection_level {
            "connection"
        } else {
            "resources"
        };
        metrics::counter!(ACCEPT_ERRORS, "kind" => kind).increment(1);
        if self.log_due(now) {
            tracing::warn!(
                error = %err,
                suppressed = self.suppressed,
                "accept failed (suppressed: failures not logged since the last line)"
            );
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        if connection_level {
            return Duration::ZERO;
        }
        self.pause = if self.pause.is_zero() {
            BACKOFF_FIRST
        } else {
            (self.pause * 2).min(BACKOFF_MAX)
        };
        self.pause
    }

    /// Records a successful accept: the next failure starts from the shortest pause again. The
    /// failures not yet logged are reported once the log line is due.
    pub fn on_success(&mut self, now: Instant) {
        self.pause = Duration::ZERO;
        if self.suppressed > 0 && self.log_due(now) {
            tracing::warn!(
                suppressed = self.suppressed,
                "accepting again after failed accepts"
            );
            self.suppressed = 0;
        }
    }

    fn log_due(&mut self, now: Instant) -> bool {
        let due = self
            .last_log
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY);
        if due {
            self.last_log = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn running_out_of_descriptors_backs_off_longer_each_time_up_to_a_cap() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let pauses: Vec<_> = (0..12).map(|_| b.on_error(&emfile(), t0)).collect();
        assert_eq!(pauses[0], BACKOFF_FIRST);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*pauses.last().unwrap(), BACKOFF_MAX);
        b.on_success(t0);
        assert_eq!(b.on_error(&emfile(), t0), BACKOFF_FIRST);
    }

    #[test]
    fn a_client_that_gave_up_is_no_reason_to_wait() {
        let mut b = AcceptBackoff::default();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.on_error(&aborted, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn failures_are_logged_at_most_once_a_second_with_a_count_of_the_rest() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        b.on_error(&emfile(), t0);
        assert_eq!(b.suppressed, 0, "the first failure is logged");
        for i in 1..=50 {
            b.on_error(&emfile(), t0 + Duration::from_millis(i * 10));
        }
        assert_eq!(
            b.suppressed, 50,
            "the rest of the second is counted, not logged"
        );
        b.on_error(&emfile(), t0 + Duration::from_millis(1000));
        assert_eq!(
            b.suppressed, 0,
            "the next second logs again, with the count"
        );
        b.on_error(&emfile(), t0 + Duration::from_millis(1100));
        b.on_success(t0 + Duration::from_millis(1200));
        assert_eq!(
            b.suppressed, 1,
            "recovery within the second waits for its turn"
        );
        b.on_success(t0 + Duration::from_millis(2100));
        assert_eq!(b.suppressed, 0);
    }
}
