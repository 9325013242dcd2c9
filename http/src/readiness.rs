//! The readiness cache behind `/ready`: at most one probe of storage (and Redis) at a time and
//! about one a second, however many callers ask.
//!
//! `/ready` is unauthenticated. Probing the database on every call let 500 polling clients slow a
//! claim rush tenfold; with the cache they cost one probe a second between them.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a probe's result is served before the next call probes again. A check that starts
/// failing shows within this time (plus the probe's own).
pub const READY_TTL: Duration = Duration::from_secs(1);

/// The result of one probe: whether everything answered, and each check by name (`ok`/`down`).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Every check answered.
    pub ready: bool,
    /// Each check's outcome, by name.
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// The last probe's report and when it was taken; the async mutex lets one caller probe while
/// the others wait for, and share, its result.
#[derive(Debug)]
pub struct ReadinessCache {
    ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Report)>>,
}

impl Default for ReadinessCache {
    fn default() -> Self {
        Self::new(READY_TTL)
    }
}

impl ReadinessCache {
    /// A cache serving each probe's result for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The current report: the cached one while it is younger than the ttl, else the result of
    /// `probe`, run by this caller alone while concurrent callers wait for it.
    pub async fn get<F, Fut>(&self, probe: F) -> Report
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Report>,
    {
        // Holding the lock across the probe is the point: one probe at a time, and callers that
        // queued behind it find its fresh result.
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < self.ttl
        {
            return report.clone();
        }
        let report = probe().await;
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn report(ready: bool) -> Report {
        Report {
            ready,
            checks: serde_json::Map::new(),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_probe_and_a_stale_result_is_probed_again() {
        let cache = Arc::new(ReadinessCache::new(Duration::from_millis(200)));
        let probes = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, probes) = (cache.clone(), probes.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async {
                        probes.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        report(true)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().ready);
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let failing = cache
            .get(|| async {
                probes.fetch_add(1, Ordering::SeqCst);
                report(false)
            })
            .await;
        assert!(
            !failing.ready,
            "a failing check shows once the cached result is stale"
        );
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }
}
