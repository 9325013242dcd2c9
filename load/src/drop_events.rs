//! What buyers who joined the drop's live stream (`drop --join`) saw of its events during a
//! rush, and the checks on it: every viewer learns of the sell-out exactly once (`sold_out` is an
//! ordered event) and ends up with the drop's latest inventory (`inventory` is coalesced, at most
//! 10/s, but always the latest value; contract section 4).

use crate::claims::Check;
use crate::client::Frame;
use serde::Serialize;

/// The drop events one joined buyer received.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    /// `sold_out` events for the drop.
    pub sold_out: u32,
    /// `inventory` events for the drop.
    pub inventory: u32,
    /// `remaining` of the last `inventory` event.
    pub last_remaining: Option<u64>,
}

impl Seen {
    /// Counts `frame` if it is an event about `drop`.
    pub fn observe(&mut self, frame: &Frame, drop: &str) {
        if frame.kind != "event" {
            return;
        }
        let Some(data) = frame.data.as_ref() else {
            return;
        };
        if data.drop.as_deref() != Some(drop) {
            return;
        }
        match frame.event.as_deref() {
            Some("sold_out") => self.sold_out += 1,
            Some("inventory") => {
                self.inventory += 1;
                self.last_remaining = data.remaining;
            }
            _ => {}
        }
    }

    /// Whether this buyer has seen everything the drop's final state calls for.
    pub fn settled(&self, outcome: &Final) -> bool {
        (!outcome.sold_out() || self.sold_out > 0)
            && (!outcome.changed() || self.last_remaining == Some(outcome.remaining))
    }
}

/// The drop's remaining units before and after the rush, as `GET /v1/drops/{id}` read them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Final {
    /// Remaining before the barrier opened.
    pub before: u64,
    /// Remaining after the last answer.
    pub remaining: u64,
}

impl Final {
    /// The rush sold the last unit.
    pub fn sold_out(&self) -> bool {
        self.before > 0 && self.remaining == 0
    }

    /// The rush changed the inventory, so an `inventory` event is owed.
    pub fn changed(&self) -> bool {
        self.before != self.remaining
    }
}

/// The events of all joined buyers, summed up for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Watched {
    /// Buyers that joined the stream and were watched to the end.
    pub joined: u64,
    /// Buyers that got `sold_out` exactly once.
    pub sold_out_once: u64,
    /// Buyers that got it more than once.
    pub sold_out_repeated: u64,
    /// Buyers that never got it.
    pub sold_out_never: u64,
    /// Buyers whose last `inventory` showed the drop's final remaining.
    pub inventory_latest: u64,
    /// `inventory` events received, over all buyers.
    pub inventory_events: u64,
    /// Most `inventory` events one buyer received.
    pub inventory_events_max: u32,
}

impl Watched {
    /// Sums up what each buyer saw.
    pub fn of(seen: &[Seen], outcome: &Final) -> Self {
        let mut w = Watched {
            joined: seen.len() as u64,
            ..Watched::default()
        };
        for s in seen {
            w.sold_out_once += u64::from(s.sold_out == 1);
            w.sold_out_repeated += u64::from(s.sold_out > 1);
            w.sold_out_never += u64::from(s.sold_out == 0);
            w.inventory_latest += u64::from(s.last_remaining == Some(outcome.remaining));
            w.inventory_events += u64::from(s.inventory);
            w.inventory_events_max = w.inventory_events_max.max(s.inventory);
        }
        w
    }

    /// `sold_out_once`: each joined buyer got `sold_out` once if the rush sold the drop out,
    /// and never otherwise. `inventory_latest`: each ended with the final remaining, when the
    /// rush changed it. Neither applies when nobody joined.
    pub fn checks(&self, outcome: &Final) -> Vec<Check> {
        let watched = self.joined > 0;
        let sold_out_ok = if outcome.sold_out() {
            self.sold_out_once == self.joined
        } else {
            self.sold_out_never == self.joined
        };
        vec![
            Check {
                name: "sold_out_once",
                passed: watched.then_some(sold_out_ok),
                detail: format!(
                    "{} of {} joined buyers got sold_out once, {} more than once, {} never \
                     (drop {}sold out)",
                    self.sold_out_once,
                    self.joined,
                    self.sold_out_repeated,
                    self.sold_out_never,
                    if outcome.sold_out() { "" } else { "not " }
                ),
            },
            Check {
                name: "inventory_latest",
                passed: (watched && outcome.changed())
                    .then_some(self.inventory_latest == self.joined),
                detail: format!(
                    "{} of {} joined buyers ended with inventory remaining {} ({} inventory \
                     events, at most {} per buyer)",
                    self.inventory_latest,
                    self.joined,
                    outcome.remaining,
                    self.inventory_events,
                    self.inventory_events_max
                ),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: &str) -> Frame {
        Frame::parse(&format!(
            r#"{{"type":"event","stream":"s","kind":"{kind}","data":{data}}}"#
        ))
    }

    fn sold_out_run() -> Final {
        Final {
            before: 10,
            remaining: 0,
        }
    }

    #[test]
    fn counts_only_this_drops_events() {
        let mut seen = Seen::default();
        seen.observe(&event("inventory", r#"{"drop":"d","remaining":4}"#), "d");
        seen.observe(
            &event("inventory", r#"{"drop":"other","remaining":9}"#),
            "d",
        );
        seen.observe(&event("sold_out", r#"{"drop":"other"}"#), "d");
        seen.observe(
            &event(
                "chat",
                r#"{"id":"m","user":{"id":"u","name":"n"},"text":"hi"}"#,
            ),
            "d",
        );
        assert_eq!(
            seen,
            Seen {
                sold_out: 0,
                inventory: 1,
                last_remaining: Some(4)
            }
        );
        seen.observe(&event("inventory", r#"{"drop":"d","remaining":0}"#), "d");
        seen.observe(&event("sold_out", r#"{"drop":"d"}"#), "d");
        assert_eq!(seen.inventory, 2);
        assert_eq!(seen.last_remaining, Some(0));
        assert_eq!(seen.sold_out, 1);
    }

    #[test]
    fn settled_needs_sold_out_and_the_final_inventory() {
        let end = sold_out_run();
        let mut seen = Seen::default();
        assert!(!seen.settled(&end));
        seen.observe(&event("sold_out", r#"{"drop":"d"}"#), "d");
        assert!(!seen.settled(&end), "the inventory of 0 is still owed");
        seen.observe(&event("inventory", r#"{"drop":"d","remaining":0}"#), "d");
        assert!(seen.settled(&end));
        // Nothing changed: nothing is owed.
        let idle = Final {
            before: 5,
            remaining: 5,
        };
        assert!(Seen::default().settled(&idle));
    }

    #[test]
    fn checks_fail_on_a_missing_or_repeated_sold_out_and_a_stale_inventory() {
        let end = sold_out_run();
        let good = Seen {
            sold_out: 1,
            inventory: 2,
            last_remaining: Some(0),
        };
        let all_good = vec![good; 3];
        let w = Watched::of(&all_good, &end);
        assert!(w.checks(&end).iter().all(|c| c.passed == Some(true)));
        assert_eq!(w.inventory_events, 6);

        let repeated = vec![
            good,
            Seen {
                sold_out: 2,
                ..good
            },
        ];
        let stale = vec![
            good,
            Seen {
                last_remaining: Some(3),
                ..good
            },
        ];
        let missing = vec![
            good,
            Seen {
                sold_out: 0,
                ..good
            },
        ];
        for seen in [repeated, stale, missing] {
            let w = Watched::of(&seen, &end);
            assert!(
                w.checks(&end).iter().any(|c| c.passed == Some(false)),
                "{w:?}"
            );
        }
    }

    #[test]
    fn sold_out_is_wrong_when_units_remain_and_nothing_applies_without_viewers() {
        let open = Final {
            before: 10,
            remaining: 4,
        };
        let seen = vec![Seen {
            sold_out: 1,
            inventory: 1,
            last_remaining: Some(4),
        }];
        let checks = Watched::of(&seen, &open).checks(&open);
        assert_eq!(checks[0].passed, Some(false));
        assert_eq!(checks[1].passed, Some(true));
        let none = Watched::of(&[], &open).checks(&open);
        assert!(none.iter().all(|c| c.passed.is_none()));
    }
}
