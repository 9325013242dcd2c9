//! Restart budgets: how many times a supervisor restarts a child before it gives up and escalates.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `max` restarts within `window`; one more means the child is failing for good.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// A budget of `max` restarts per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            recent: VecDeque::with_capacity(max + 1),
        }
    }

    /// The default for every actor kind: 5 restarts in 10 seconds.
    pub fn standard() -> Self {
        Self::new(5, Duration::from_secs(10))
    }

    /// Records a failure at `now`; true when a restart is still within budget.
    pub fn allow(&mut self, now: Instant) -> bool {
        while let Some(first) = self.recent.front() {
            if now.duration_since(*first) > self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_within_budget_are_allowed_then_refused() {
        let mut b = RestartBudget::new(2, Duration::from_secs(10));
        let t = Instant::now();
        assert!(b.allow(t));
        assert!(b.allow(t));
        assert!(!b.allow(t));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut b = RestartBudget::new(1, Duration::from_secs(10));
        let t = Instant::now();
        assert!(b.allow(t));
        assert!(!b.allow(t + Duration::from_secs(5)));
        assert!(b.allow(t + Duration::from_secs(11)));
    }
}
