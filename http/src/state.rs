//! Shared state of the front door.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use liveshop_actors::Engine;
use liveshop_engine::limits::TokenBucket;
use liveshop_engine::storage::Storage;
use liveshop_engine::{Rejection, TenantId, UserId};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::auth::Keys;
use crate::config::Config;

/// How often a user's `users_seen` row is refreshed at most.
const USER_SEEN_EVERY: Duration = Duration::from_secs(300);

/// Everything a handler may need, behind one `Arc`.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// The fields of [`AppState`].
pub struct Inner {
    /// Settings.
    pub config: Config,
    /// Token keys.
    pub keys: Keys,
    /// Storage.
    pub store: Arc<dyn Storage>,
    /// The actor tree.
    pub engine: Engine,
    /// Prometheus exposition.
    pub metrics: PrometheusHandle,
    /// The last readiness probe, shared by `/ready` callers for about a second.
    pub readiness: crate::readiness::ReadinessCache,
    /// Tenants known to exist (tenants are never deleted, so a positive answer stays true).
    pub known_tenants: DashMap<TenantId, ()>,
    /// When each user was last recorded as seen.
    pub seen: SeenMarks,
    /// REST allowance per caller.
    pub http_buckets: DashMap<(Option<TenantId>, UserId), (TokenBucket, i64)>,
    /// Flips to true when the server starts draining.
    pub drain: watch::Sender<bool>,
    /// Open WebSocket connections, looked after by [`crate::ws::keepalive::run`].
    pub live: Arc<crate::ws::keepalive::Live>,
    /// Redis client for the readiness check, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::ClusterNode>>,
    /// This node's id (`LIVESHOP_NODE_ID`, or generated at start).
    pub node_id: String,
    /// When this node started.
    pub started_at: liveshop_engine::timestamp::Timestamp,
    /// Connection caps and the upgrade rate per address, shared with the accept loop.
    pub admission: Arc<crate::admission::Admission>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    /// Takes one REST token for the caller, or says when to retry.
    pub fn take_http_token(
        &self,
        tenant: &Option<TenantId>,
        user: &UserId,
    ) -> Result<(), Rejection> {
        let now = liveshop_actors::clock::now().millis();
        let (burst, rate) = (self.config.http_burst, self.config.http_per_sec);
        let mut entry = self
            .http_buckets
            .entry((tenant.clone(), user.clone()))
            .or_insert_with(|| (TokenBucket::full(burst, now), now));
        entry.1 = now;
        entry
            .0
            .try_take(now, burst, rate)
            .map_err(Rejection::rate_limited)
    }

    /// Forgets allowances and seen-marks nobody used for a while, so the maps stay bounded by
    /// the number of active users.
    pub fn forget_idle(&self) {
        let now = liveshop_actors::clock::now().millis();
        let refill_ms = (f64::from(self.config.http_burst) / self.config.http_per_sec.max(1e-3)
            * 1000.0) as i64;
        let idle_ms = refill_ms.max(60_000);
        self.http_buckets
            .retain(|_, (_, last)| now - *last < idle_ms);
        self.seen.forget_older_than(Instant::now());
        self.admission.forget_idle(now, 60_000);
    }

    /// Whether the user's `users_seen` row is due for a refresh (and marks it refreshed).
    pub fn user_seen_due(&self, tenant: &TenantId, user: &UserId) -> bool {
        self.seen
            .due((tenant.clone(), user.clone()), Instant::now())
    }
}

/// When each user was last recorded as seen, so `users_seen` is written at most every
/// [`USER_SEEN_EVERY`] per user.
#[derive(Debug, Default)]
pub struct SeenMarks {
    marks: DashMap<(TenantId, UserId), Instant>,
}

impl SeenMarks {
    /// Whether `key` is due at `now`; marks it when it is.
    pub fn due(&self, key: (TenantId, UserId), now: Instant) -> bool {
        // The read guard must be gone before the insert: both lock the same shard.
        let due = self
            .marks
            .get(&key)
            .is_none_or(|at| now.saturating_duration_since(*at) >= USER_SEEN_EVERY);
        if due {
            self.marks.insert(key, now);
        }
        due
    }

    /// Forgets marks old enough to be due anyway.
    pub fn forget_older_than(&self, now: Instant) {
        self.marks
            .retain(|_, at| now.saturating_duration_since(*at) < USER_SEEN_EVERY);
    }

    /// Marks held.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether no mark is held.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (TenantId, UserId) {
        (TenantId::from_trusted("t"), UserId::from_trusted("u"))
    }

    #[test]
    fn a_user_is_due_once_per_period_and_again_after_it() {
        let marks = SeenMarks::default();
        let t0 = Instant::now();
        assert!(marks.due(key(), t0));
        assert!(!marks.due(key(), t0 + Duration::from_secs(10)));
        // A stale mark must be replaced without locking up (its read guard is gone first).
        let (tx, rx) = std::sync::mpsc::channel();
        let marks = std::sync::Arc::new(marks);
        let m = marks.clone();
        std::thread::spawn(move || {
            let _ = tx.send(m.due(key(), t0 + USER_SEEN_EVERY + Duration::from_secs(1)));
        });
        let again = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("a stale mark is refreshed without deadlocking");
        assert!(again);
        marks.forget_older_than(t0 + USER_SEEN_EVERY * 3);
        assert!(marks.is_empty());
    }
}
