//! Time and fresh ids, as capabilities handed to actors at spawn.
//!
//! Actors never read the wall clock or make ids on their own: they ask the [`Clock`] and the
//! [`IdSource`] they were given. Production passes [`SystemClock`] and [`Uuid7`]; tests pass
//! [`TokioClock`], which follows tokio's clock, so under `tokio::time::pause` a hold expiry or a
//! drop's end is reached by advancing time, not by sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use liveshop_engine::Timestamp;

/// Where an actor reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Now, as engine time (Unix milliseconds): what is stored and sent.
    fn now(&self) -> Timestamp;
    /// Now, on a monotonic clock: for pacing and intervals, never stored.
    fn instant(&self) -> Instant;
}

/// Where an actor gets unique suffixes for the ids it creates (chat messages, claims).
pub trait IdSource: Send + Sync + 'static {
    /// A fresh, unique suffix, ordered by creation where the source can.
    fn unique_suffix(&self) -> String;
}

/// The wall clock of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that follows tokio's, so `tokio::time::pause` and `advance` move it: engine time is
/// `start` plus the tokio time elapsed since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: Timestamp,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.origin.elapsed().as_millis() as i64;
        self.start.plus_millis(elapsed)
    }

    fn instant(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// Time-ordered unique ids: UUIDv7 in simple form.
#[derive(Debug, Default, Clone, Copy)]
pub struct Uuid7;

impl IdSource for Uuid7 {
    fn unique_suffix(&self) -> String {
        unique_suffix()
    }
}

/// Ids `1`, `2`, `3`… zero-padded so they sort: readable and predictable in tests.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl IdSource for Counter {
    fn unique_suffix(&self) -> String {
        format!("{:012}", self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// Time and ids together: what nearly every actor is given.
#[derive(Clone)]
pub struct TimeAndIds {
    /// Where the actor reads the time.
    pub clock: Arc<dyn Clock>,
    /// Where the actor gets fresh ids.
    pub ids: Arc<dyn IdSource>,
}

impl TimeAndIds {
    /// The machine's clock and UUIDv7 ids.
    pub fn system() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            ids: Arc::new(Uuid7),
        }
    }
}

impl std::fmt::Debug for TimeAndIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimeAndIds")
    }
}

/// Now, from the machine's wall clock. For the front door, which has no actor capabilities.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// A fresh, time-ordered unique suffix for generated ids (UUIDv7, simple form).
pub fn unique_suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_only_when_tokio_time_moves() {
        let clock = TokioClock::starting_at(Timestamp::from_millis(1_000));
        let before = clock.instant();
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.now(), Timestamp::from_millis(3_500));
        assert_eq!(clock.instant() - before, Duration::from_millis(2_500));
    }

    #[test]
    fn counter_ids_are_unique_and_sort_in_creation_order() {
        let ids = Counter::default();
        let (a, b) = (ids.unique_suffix(), ids.unique_suffix());
        assert!(a < b);
    }
}
