//! Every open connection, and the one task that looks after all of them: pings, idle and
//! token-expiry closes, and the 1012 of a graceful drain.
//!
//! One sweep a second over a shared registry replaces a timer (and its heap entry) per
//! connection. Pings are spread over the ping interval by connection id, so a large audience is
//! not pinged in one burst.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use liveshop_actors::clock::{Clock, SystemClock};
use liveshop_actors::connection::Connection;
use liveshop_engine::frames::ws_frame;
use tokio::sync::watch;

use super::close::CloseReason;
use super::conn::Conn;
use crate::state::AppState;

/// How often the sweep runs; also the precision of idle and token-expiry closes.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The open connections, by id, and the clock their sweep reads.
pub struct Live {
    conns: DashMap<u64, Weak<Conn>>,
    clock: Arc<dyn Clock>,
}

impl Default for Live {
    /// No connections, on the machine's clock.
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Pings written.
    pub pinged: usize,
    /// Connections closed for silence.
    pub idle: usize,
    /// Connections closed because their token expired.
    pub expired: usize,
}

/// When and how connections are looked after.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Seconds between two pings of one connection.
    pub ping_secs: u64,
    /// Milliseconds of silence after which a connection is closed.
    pub idle_ms: i64,
}

impl Live {
    /// No connections; the sweep reads `clock` (tests pass one that follows tokio's paused time).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            conns: DashMap::new(),
            clock,
        }
    }

    /// Now on the sweep's clock, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now().millis()
    }

    /// Lists a connection until [`Live::remove`].
    pub fn add(&self, conn: &Arc<Conn>) {
        self.conns.insert(conn.id(), Arc::downgrade(conn));
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, id: u64) {
        self.conns.remove(&id);
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Closes every connection with `reason` (their tasks notice and end).
    pub fn close_all(&self, reason: CloseReason) {
        for conn in self.conns.iter().filter_map(|c| c.value().upgrade()) {
            conn.close(reason);
        }
    }

    /// One round: closes connections whose token expired or that were silent too long, and pings
    /// the ones whose turn it is at second `now_ms / 1000`.
    pub fn sweep(&self, now_ms: i64, policy: Policy, ping: &Bytes) -> Swept {
        let mut swept = Swept::default();
        let ping_secs = policy.ping_secs.max(1);
        let second = u64::try_from(now_ms / 1000).unwrap_or(0);
        for entry in self.conns.iter() {
            let Some(conn) = entry.value().upgrade() else {
                continue;
            };
            if conn.expires_at_ms() <= now_ms {
                conn.close(CloseReason::TokenExpired);
                swept.expired += 1;
            } else if now_ms - conn.last_seen_ms() > policy.idle_ms {
                conn.close(CloseReason::Idle);
                swept.idle += 1;
            } else if (second + conn.id()) % ping_secs == 0 {
                conn.deliver(ping);
                swept.pinged += 1;
            }
        }
        swept
    }
}

/// Runs the sweep every second until the server drains, then closes every connection with 1012
/// (and keeps closing late arrivals until aborted).
pub async fn run(state: AppState) {
    let policy = Policy {
        ping_secs: state.config.ping_interval().as_secs(),
        idle_ms: i64::try_from(state.config.idle_timeout().as_millis()).unwrap_or(i64::MAX),
    };
    look_after(&state.live, policy, state.drain.subscribe()).await;
}

/// The loop of [`run`]: sweeps `live` every second on its clock, until `drain` turns true (then
/// closes every connection with 1012, and late arrivals too) or its sender is gone.
pub async fn look_after(live: &Live, policy: Policy, mut drain: watch::Receiver<bool>) {
    let ping = ws_frame(0x9, b"");
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *drain.borrow_and_update() {
            live.close_all(CloseReason::Restarting);
        } else {
            live.sweep(live.now_ms(), policy, &ping);
        }
        tokio::select! {
            _ = every.tick() => {}
            changed = drain.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A server-side connection and the client's end of its socket.
    async fn pair(expires_at_ms: i64) -> (Arc<Conn>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Conn::new(server, 16, expires_at_ms), client)
    }

    const POLICY: Policy = Policy {
        ping_secs: 1,
        idle_ms: 10_000,
    };

    #[tokio::test]
    async fn expired_and_silent_connections_are_closed_and_the_others_pinged() {
        let now = liveshop_actors::clock::now().millis();
        let live = Live::default();
        let (expired, _c1) = pair(now - 1).await;
        let (silent, _c2) = pair(i64::MAX).await;
        silent.touch(now - 20_000);
        let (fine, mut client) = pair(i64::MAX).await;
        fine.touch(now);
        for conn in [&expired, &silent, &fine] {
            live.add(conn);
        }
        let ping = ws_frame(0x9, b"");
        let swept = live.sweep(now, POLICY, &ping);
        assert_eq!(
            swept,
            Swept {
                pinged: 1,
                idle: 1,
                expired: 1
            }
        );
        assert_eq!(expired.close_reason(), Some(CloseReason::TokenExpired));
        assert_eq!(silent.close_reason(), Some(CloseReason::Idle));
        assert_eq!(fine.close_reason(), None);
        let mut got = [0u8; 2];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x89, 0x00], "an empty ping frame");
    }

    #[tokio::test]
    async fn pings_are_spread_over_the_interval_by_connection() {
        let now = 1_000_000;
        let live = Live::default();
        let mut conns = Vec::new();
        for _ in 0..10 {
            let (conn, client) = pair(i64::MAX).await;
            conn.touch(now);
            live.add(&conn);
            conns.push((conn, client));
        }
        let policy = Policy {
            ping_secs: 5,
            idle_ms: 60_000,
        };
        let ping = ws_frame(0x9, b"");
        let per_second: Vec<usize> = (0..5)
            .map(|s| live.sweep(now + s * 1000, policy, &ping).pinged)
            .collect();
        assert_eq!(
            per_second.iter().sum::<usize>(),
            10,
            "each once per interval"
        );
        // Ids come from a process-wide counter that tests running at the same time also draw
        // from, so they need not be consecutive: each second pings the ids whose turn it is.
        let expected: Vec<usize> = (0..5_u64)
            .map(|s| {
                conns
                    .iter()
                    .filter(|(c, _)| (1000 + s + c.id()) % 5 == 0)
                    .count()
            })
            .collect();
        assert_eq!(per_second, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_idle_timeout_and_not_before() {
        use liveshop_actors::clock::TokioClock;
        let clock = TokioClock::starting_at(liveshop_engine::Timestamp::from_millis(1_000_000));
        let live = Arc::new(Live::with_clock(Arc::new(clock)));
        let (silent, _client) = pair(i64::MAX).await;
        silent.touch(live.now_ms());
        live.add(&silent);
        let (_drain, drain_rx) = watch::channel(false);
        let policy = Policy {
            ping_secs: 60,
            idle_ms: 10_000,
        };
        let sweeping = tokio::spawn({
            let live = live.clone();
            async move { look_after(&live, policy, drain_rx).await }
        });
        let second = || tokio::time::advance(SWEEP_EVERY);
        for _ in 0..10 {
            second().await;
            tokio::task::yield_now().await;
        }
        assert_eq!(
            silent.close_reason(),
            None,
            "silent for exactly the timeout"
        );
        second().await;
        tokio::task::yield_now().await;
        assert_eq!(silent.close_reason(), Some(CloseReason::Idle));
        sweeping.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_heard_from_is_kept_open_past_the_idle_timeout() {
        use liveshop_actors::clock::TokioClock;
        let clock = TokioClock::starting_at(liveshop_engine::Timestamp::from_millis(1_000_000));
        let live = Arc::new(Live::with_clock(Arc::new(clock)));
        let (chatty, _client) = pair(i64::MAX).await;
        chatty.touch(live.now_ms());
        live.add(&chatty);
        let (_drain, drain_rx) = watch::channel(false);
        let policy = Policy {
            ping_secs: 60,
            idle_ms: 10_000,
        };
        let sweeping = tokio::spawn({
            let live = live.clone();
            async move { look_after(&live, policy, drain_rx).await }
        });
        for _ in 0..30 {
            tokio::time::advance(SWEEP_EVERY).await;
            tokio::task::yield_now().await;
            chatty.touch(live.now_ms());
        }
        assert_eq!(chatty.close_reason(), None);
        sweeping.abort();
    }

    #[tokio::test]
    async fn close_all_and_remove() {
        let live = Live::default();
        let (a, _ca) = pair(i64::MAX).await;
        let (b, _cb) = pair(i64::MAX).await;
        live.add(&a);
        live.add(&b);
        live.remove(b.id());
        assert_eq!(live.len(), 1);
        live.close_all(CloseReason::Restarting);
        assert_eq!(a.close_reason(), Some(CloseReason::Restarting));
        assert_eq!(b.close_reason(), None);
    }
}
