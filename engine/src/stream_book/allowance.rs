//! Per-user chat allowances of one stream: a token bucket per author, forgotten once idle.

use std::collections::HashMap;

use crate::ids::UserId;
use crate::limits::{Limits, TokenBucket};
use crate::rejection::Rejection;
use crate::timestamp::Timestamp;

/// An allowance unused this long is forgotten (unless refilling takes longer): it would be full
/// again, exactly like a new one, so forgetting it changes nothing but the memory it holds.
pub const BUCKET_IDLE_MS: i64 = 60_000;

/// The chat allowance of every author who wrote recently, with when each last tried.
#[derive(Debug, Clone, Default)]
pub struct ChatAllowances {
    buckets: HashMap<UserId, (TokenBucket, i64)>,
}

impl ChatAllowances {
    /// No allowance yet: every author starts with a full burst.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one message from `user`'s allowance at `now`, or refuses with `rate_limited` and
    /// when to retry. A refused attempt still counts as use (it keeps the allowance remembered).
    pub fn take(
        &mut self,
        user: &UserId,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<(), Rejection> {
        let now = now.millis();
        let (bucket, last_used) = self
            .buckets
            .entry(user.clone())
            .or_insert_with(|| (TokenBucket::full(limits.chat_burst, now), 0));
        *last_used = now;
        bucket
            .try_take(now, limits.chat_burst, limits.chat_per_sec)
            .map_err(Rejection::rate_limited)
    }

    /// Forgets the allowances idle for [`idle_after_ms`] or longer at `now`.
    pub fn forget_idle(&mut self, now: Timestamp, limits: &Limits) {
        let now = now.millis();
        let idle_ms = idle_after_ms(limits);
        self.buckets
            .retain(|_, (_, last_used)| now - *last_used < idle_ms);
    }

    /// Authors whose allowance is remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// No allowance is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// How long an allowance must be unused before it is forgotten: [`BUCKET_IDLE_MS`], or the time
/// an empty bucket takes to refill when that is longer.
pub fn idle_after_ms(limits: &Limits) -> i64 {
    let refill_ms = (f64::from(limits.chat_burst) / limits.chat_per_sec.max(1e-3) * 1000.0) as i64;
    BUCKET_IDLE_MS.max(refill_ms)
}
