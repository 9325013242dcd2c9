//! Pacing of latest-value events (a drop's `inventory`): at most one event per period, and the
//! first one a full period after the change it reports, so a burst of changes (a rush selling
//! a thousand units in 50 ms) goes out as one event with the final value instead of one with a
//! stale value at its start and another at its end. Every viewer's socket pays a write per
//! event, so with ten thousand viewers each event saved is ten thousand writes saved in the
//! busiest moment of a show.
//!
//! Time comes in as an argument; the caller owns the clock and the timer.

use std::time::{Duration, Instant};

/// Decides when a coalesced latest-value event is sent.
#[derive(Debug, Clone)]
pub struct LatestValuePacer {
    every: Duration,
    /// When the value first changed since the last event (None: nothing to send).
    dirty_since: Option<Instant>,
    last_sent: Option<Instant>,
}

impl LatestValuePacer {
    /// A pacer sending at most one event per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            dirty_since: None,
            last_sent: None,
        }
    }

    /// The value changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.dirty_since.get_or_insert(now);
    }

    /// Whether a change is waiting to be sent.
    pub fn is_dirty(&self) -> bool {
        self.dirty_since.is_some()
    }

    /// Whether the timer should send now: a change waited a full period, and the last event is
    /// a full period old.
    pub fn due(&self, now: Instant) -> bool {
        self.dirty_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.every)
            && self.rate_allows(now)
    }

    /// Whether an event may go out early, along with another one that is sent now anyway (the
    /// final count with `sold_out`): a change is waiting and the rate allows one more event.
    pub fn may_send_early(&self, now: Instant) -> bool {
        self.is_dirty() && self.rate_allows(now)
    }

    /// An event with the latest value was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.dirty_since = None;
        self.last_sent = Some(now);
    }

    fn rate_allows(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVERY: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_is_due_without_a_change() {
        let t0 = Instant::now();
        let pacer = LatestValuePacer::new(EVERY);
        assert!(!pacer.due(t0 + ms(1_000)));
        assert!(!pacer.may_send_early(t0));
    }

    #[test]
    fn a_burst_of_changes_is_one_event_a_period_after_the_first() {
        let t0 = Instant::now();
        let mut pacer = LatestValuePacer::new(EVERY);
        for n in 0..50 {
            pacer.changed(t0 + ms(n));
        }
        assert!(!pacer.due(t0 + ms(99)), "held back for a full period");
        assert!(pacer.due(t0 + ms(100)));
        pacer.sent(t0 + ms(100));
        assert!(!pacer.is_dirty());
        assert!(!pacer.due(t0 + ms(500)), "nothing new since");
    }

    #[test]
    fn the_rate_holds_even_for_an_early_event() {
        let t0 = Instant::now();
        let mut pacer = LatestValuePacer::new(EVERY);
        pacer.changed(t0);
        // The first event may ride along with another one at once.
        assert!(pacer.may_send_early(t0 + ms(5)));
        pacer.sent(t0 + ms(5));
        pacer.changed(t0 + ms(10));
        assert!(
            !pacer.may_send_early(t0 + ms(60)),
            "50 ms after the last event"
        );
        assert!(!pacer.due(t0 + ms(104)));
        assert!(pacer.due(t0 + ms(110)));
    }

    proptest! {
        /// Whatever the changes and the tick times, two events are never closer than a
        /// period, and a change is never left unsent once ticks continue past a period.
        #[test]
        fn at_most_one_event_per_period_and_no_change_is_left_behind(
            steps in proptest::collection::vec((0u64..60, any::<bool>(), any::<bool>()), 1..200)
        ) {
            let t0 = Instant::now();
            let mut pacer = LatestValuePacer::new(EVERY);
            let mut now = t0;
            let mut sent: Vec<Instant> = Vec::new();
            for (advance, change, early) in steps {
                now += ms(advance);
                if change {
                    pacer.changed(now);
                }
                if (early && pacer.may_send_early(now)) || pacer.due(now) {
                    pacer.sent(now);
                    sent.push(now);
                }
            }
            for pair in sent.windows(2) {
                prop_assert!(pair[1] - pair[0] >= EVERY);
            }
            // Ticks keep coming: whatever is dirty goes out within two periods.
            if pacer.is_dirty() {
                prop_assert!(pacer.due(now + 2 * EVERY));
            }
        }
    }
}
