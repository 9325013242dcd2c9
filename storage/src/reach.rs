//! How long a storage call may wait when Postgres is away, and failing at once while it is.
//!
//! A database that is down refuses connections, and sqlx keeps retrying them until its acquire
//! timeout; a database behind a network partition accepts nothing and answers nothing, and a
//! statement on an open connection would wait for as long as TCP does. Either way a caller (the
//! stream actor, holding up its chat; a buyer) would wait far too long for its `unavailable`.
//! So every call on Postgres is bounded:
//!
//! - No call waits longer than [`DEADLINE`].
//! - A call that fails for the database's sake, or is still running after [`SLOW`], starts a
//!   probe: a fresh connection and `SELECT 1`, within [`PROBE_TIMEOUT`]. It opens its own
//!   connection, so a pool busy with a rush does not make the database look away.
//! - When the probe fails the database is away: the calls waiting fail now, and every call fails
//!   at once (without touching the network) until a probe, repeated every [`PROBE_EVERY`],
//!   reaches the database again.
//!
//! So a partition is found about 3 s after the first call meets it (`SLOW` + `PROBE_TIMEOUT`),
//! and a server that refuses connections at once.
//!
//! A call cut short may have been carried out by the database all the same (the commit went
//! through, its answer did not come back): callers treat `Unavailable` as "not known", never as
//! "not done" (the drop actor reads the truth back from storage before it decides again).
//!
//! A call given up before it finished (cut short here, or dropped by its caller) may also leave
//! its pooled connection inside a transaction the database still holds open: sqlx forgets a
//! `BEGIN` whose answer it did not read, and a later statement on that connection would run in
//! that transaction and never be committed. So no connection opened before the latest abandoned
//! call is handed out again ([`Reach::predates_abandonment`], checked by the pool before every
//! acquire): it is closed, which ends any such transaction, and a fresh one is opened.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use liveshop_engine::storage::{StorageError, StorageResult};
use sqlx::Connection;
use tokio::sync::watch;

/// The longest any storage call waits for its answer.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// A call still waiting after this long makes the store check whether the database is there.
pub const SLOW: Duration = Duration::from_secs(1);
/// How long a probe may take before the database counts as away. A fresh connection to a
/// healthy server takes milliseconds; the margin keeps a busy machine from looking like an
/// outage.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a database that is away is probed again.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Why a call failed without an answer from the database.
#[derive(Debug, thiserror::Error)]
enum Away {
    /// The call took longer than [`DEADLINE`].
    #[error("storage did not answer within {0:?}")]
    TimedOut(Duration),
    /// A probe found the database unreachable; calls fail at once until it answers again.
    #[error("storage is unreachable (failing at once until it answers a probe)")]
    Unreachable,
}

/// Whether the database is reachable, as the last probe found it, and the probe in charge.
pub(crate) struct Reach {
    url: String,
    away: watch::Sender<bool>,
    probing: AtomicBool,
    /// Origin of [`Reach::abandoned_at`].
    born: Instant,
    /// When a call was last given up before it finished: milliseconds since `born`, plus one;
    /// 0 when none was.
    abandoned_at: AtomicU64,
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the url: it may hold a password.
        f.debug_struct("Reach")
            .field("away", &*self.away.borrow())
            .finish_non_exhaustive()
    }
}

impl Reach {
    /// Watches the database at `url`, thought reachable until a probe says otherwise.
    pub(crate) fn new(url: &str) -> Arc<Self> {
        Arc::new(Self {
            url: url.to_owned(),
            away: watch::Sender::new(false),
            probing: AtomicBool::new(false),
            born: Instant::now(),
            abandoned_at: AtomicU64::new(0),
        })
    }

    /// A call was given up before it finished.
    fn abandoned(&self) {
        let at = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.abandoned_at.fetch_max(at + 1, Ordering::AcqRel);
    }

    /// Whether a connection of this `age` was opened before (or in the same millisecond as) the
    /// latest abandoned call, and so must not be used again.
    pub(crate) fn predates_abandonment(&self, age: Duration) -> bool {
        match self.abandoned_at.load(Ordering::Acquire) {
            0 => false,
            at => {
                let abandoned = Duration::from_millis(at - 1);
                let opened = self.born.elapsed().saturating_sub(age);
                opened <= abandoned + Duration::from_millis(1)
            }
        }
    }

    /// Whether the last probe found the database away.
    #[cfg(test)]
    pub(crate) fn is_away(&self) -> bool {
        *self.away.borrow()
    }

    /// Runs `call` within [`DEADLINE`]; fails it at once, or as soon as a probe finds the
    /// database away.
    pub(crate) async fn bounded<T>(
        self: &Arc<Self>,
        call: impl Future<Output = StorageResult<T>>,
    ) -> StorageResult<T> {
        let mut away = self.away.subscribe();
        if *away.borrow_and_update() {
            return Err(StorageError::Unavailable(Box::new(Away::Unreachable)));
        }
        let mut unfinished = Unfinished(Some(self));
        let call = tokio::time::timeout(DEADLINE, call);
        tokio::pin!(call);
        let slow = tokio::time::sleep(SLOW);
        tokio::pin!(slow);
        let mut checking = false;
        loop {
            tokio::select! {
                result = &mut call => {
                    unfinished.0 = None;
                    return match result {
                        Ok(Err(err @ StorageError::Unavailable(_))) => {
                            self.check();
                            Err(err)
                        }
                        Ok(answer) => answer,
                        Err(_) => {
                            self.abandoned();
                            self.check();
                            Err(StorageError::Unavailable(Box::new(Away::TimedOut(DEADLINE))))
                        }
                    };
                }
                () = &mut slow, if !checking => {
                    checking = true;
                    self.check();
                }
                Ok(_) = away.wait_for(|away| *away) => {
                    return Err(StorageError::Unavailable(Box::new(Away::Unreachable)));
                }
            }
        }
    }

    /// Starts a probe unless one runs.
    fn check(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let reach = self.clone();
        tokio::spawn(async move { reach.probe_until_reached().await });
    }

    /// Probes until the database answers, saying it is away meanwhile.
    async fn probe_until_reached(&self) {
        loop {
            let reached = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, probe(&self.url)).await,
                Ok(Ok(()))
            );
            if reached {
                if self.away.send_replace(false) {
                    tracing::warn!("storage is reachable again");
                }
                break;
            }
            if !self.away.send_replace(true) {
                tracing::error!(
                    "storage is unreachable; storage calls fail at once until it answers again"
                );
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        self.probing.store(false, Ordering::Release);
    }
}

/// Marks the call abandoned when dropped before it finished (cut short here, or its caller
/// dropped it).
struct Unfinished<'a>(Option<&'a Reach>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(reach) = self.0 {
            reach.abandoned();
        }
    }
}

/// A fresh connection and `SELECT 1`.
async fn probe(url: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    conn.ping().await?;
    conn.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on this port (it is bound, then released).
    async fn dead_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        sqlx::any::install_default_drivers();
        format!("postgres://postgres@127.0.0.1:{port}/none")
    }

    #[tokio::test]
    async fn a_call_never_waits_past_the_deadline_and_the_store_then_fails_at_once() {
        let reach = Reach::new(&dead_url().await);
        let started = std::time::Instant::now();
        let hung = reach.bounded(std::future::pending::<StorageResult<()>>());
        assert!(matches!(hung.await, Err(StorageError::Unavailable(_))));
        // The probe after SLOW fails, and the waiting call fails with it, well before DEADLINE.
        let waited = started.elapsed();
        assert!(
            waited < SLOW + PROBE_TIMEOUT + Duration::from_millis(500),
            "{waited:?}"
        );
        assert!(reach.is_away());
        // The connection the hung call may have held is not used again; a newer one is.
        assert!(reach.predates_abandonment(started.elapsed()));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!reach.predates_abandonment(Duration::ZERO));
        let started = std::time::Instant::now();
        let next = reach.bounded(async { Ok(()) }).await;
        assert!(matches!(next, Err(StorageError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn answers_and_refusals_of_a_reachable_store_pass_through() {
        let reach = Reach::new(&dead_url().await);
        assert_eq!(reach.bounded(async { Ok(7) }).await.unwrap(), 7);
        let refused = reach
            .bounded(async { Err::<(), _>(StorageError::Conflict("slug")) })
            .await;
        assert!(matches!(refused, Err(StorageError::Conflict("slug"))));
        assert!(!reach.is_away(), "a refusal is no reason to probe");
        assert!(
            !reach.predates_abandonment(Duration::from_secs(3600)),
            "every call finished: every connection may be used again"
        );
    }

    #[tokio::test]
    async fn a_call_its_caller_drops_marks_older_connections_stale() {
        let reach = Reach::new(&dead_url().await);
        let call = reach.bounded(std::future::pending::<StorageResult<()>>());
        let _ = tokio::time::timeout(Duration::from_millis(10), call).await;
        assert!(reach.predates_abandonment(Duration::from_secs(1)));
    }
}
