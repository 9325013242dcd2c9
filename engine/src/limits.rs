//! Limits and the token bucket that enforces rates.

/// Configurable limits of the protocol. Defaults are the contract's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Chat messages a user may burst per stream.
    pub chat_burst: u32,
    /// Chat messages per second a user may sustain per stream.
    pub chat_per_sec: f64,
    /// Frames a connection may burst.
    pub frame_burst: u32,
    /// Frames per second a connection may sustain.
    pub frames_per_sec: f64,
    /// Streams one connection may have joined at once.
    pub max_joins_per_connection: usize,
    /// Ordered events each stream keeps for resume (at least 1,000 by contract).
    pub resume_buffer: usize,
    /// Chat messages a snapshot carries.
    pub snapshot_chat: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            chat_burst: 20,
            chat_per_sec: 5.0,
            frame_burst: 100,
            frames_per_sec: 50.0,
            max_joins_per_connection: 20,
            resume_buffer: 1024,
            snapshot_chat: 50,
        }
    }
}

/// A token bucket driven by the caller's clock (milliseconds), so it is pure and testable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn full(burst: u32, now_ms: i64) -> Self {
        Self {
            tokens: f64::from(burst),
            last_ms: now_ms,
        }
    }

    /// Takes one token, refilling at `per_sec` up to `burst`. On refusal returns how many
    /// milliseconds until a token is available.
    pub fn try_take(&mut self, now_ms: i64, burst: u32, per_sec: f64) -> Result<(), u64> {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(burst));
        self.last_ms = now_ms.max(self.last_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if per_sec <= 0.0 {
            Err(u64::MAX)
        } else {
            let wait = ((1.0 - self.tokens) / per_sec * 1000.0).ceil();
            Err(wait.max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_its_burst_then_refuses() {
        let mut b = TokenBucket::full(3, 0);
        for _ in 0..3 {
            assert!(b.try_take(0, 3, 1.0).is_ok());
        }
        assert_eq!(b.try_take(0, 3, 1.0), Err(1000));
    }

    #[test]
    fn tokens_refill_with_time_but_never_past_the_burst() {
        let mut b = TokenBucket::full(2, 0);
        b.try_take(0, 2, 5.0).unwrap();
        b.try_take(0, 2, 5.0).unwrap();
        assert!(b.try_take(100, 2, 5.0).is_err());
        assert!(b.try_take(200, 2, 5.0).is_ok());
        let mut later = b;
        assert!(later.try_take(60_000, 2, 5.0).is_ok());
        assert!(later.try_take(60_000, 2, 5.0).is_ok());
        assert!(later.try_take(60_000, 2, 5.0).is_err());
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut b = TokenBucket::full(1, 1000);
        b.try_take(1000, 1, 1.0).unwrap();
        assert!(b.try_take(0, 1, 1.0).is_err());
    }
}
