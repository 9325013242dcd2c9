//! Full-jitter exponential backoff: after a mass disconnect, spreading reconnects uniformly
//! over a growing window keeps the herd from hitting the server in lock step.

use rand::Rng;
use std::time::Duration;

/// Backoff policy: attempt `n` (from 0) sleeps a uniform random time in
/// `[0, min(cap, base * 2^n)]`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Window of the first attempt.
    pub base: Duration,
    /// Largest window.
    pub cap: Duration,
}

impl Backoff {
    /// Upper bound of the window for attempt `attempt`.
    pub fn window(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.min(20);
        let millis = (self.base.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(millis).min(self.cap)
    }

    /// A random delay in `[0, window(attempt)]`.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        full_jitter(self.window(attempt), rng)
    }
}

/// A uniform random delay in `[0, window]`.
pub fn full_jitter<R: Rng + ?Sized>(window: Duration, rng: &mut R) -> Duration {
    let micros = window.as_micros() as u64;
    if micros == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(0..=micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_window() {
        let policy = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        let mut rng = rand::rng();
        for attempt in 0..40 {
            let window = policy.window(attempt);
            assert!(window <= Duration::from_secs(2));
            for _ in 0..200 {
                assert!(policy.delay(attempt, &mut rng) <= window);
            }
        }
        assert_eq!(policy.window(0), Duration::from_millis(100));
        assert_eq!(policy.window(1), Duration::from_millis(200));
        assert_eq!(policy.window(10), Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_values() {
        let mut rng = rand::rng();
        let window = Duration::from_millis(1000);
        let samples: Vec<_> = (0..500).map(|_| full_jitter(window, &mut rng)).collect();
        assert!(samples.iter().any(|d| *d < Duration::from_millis(250)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(750)));
        assert_eq!(full_jitter(Duration::ZERO, &mut rng), Duration::ZERO);
    }
}
