//! Accounting of a drop rush: every claim answer a buyer received, the drop's durable counts
//! before and after, and the verdict on the contract 3.5 invariant (`reserved + sold <=
//! quantity`, and every claim answered `reserved` exists). Pure: no I/O, so it is unit-tested.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Error codes that are decisions of the drop (contract 3.5), not failures.
pub const DECISION_CODES: [&str; 3] = ["sold_out", "limit_exceeded", "drop_closed"];

/// What one claim request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A reservation: the claim's id and units; `replay` when the server said it already had
    /// this key (HTTP 200; WebSocket answers never tell).
    Reserved {
        /// Claim id.
        id: String,
        /// Units held.
        quantity: u64,
        /// The answer was the same claim again (HTTP 200).
        replay: bool,
    },
    /// A refusal with a contract error code (`sold_out`, `limit_exceeded`, `drop_closed`,
    /// `rate_limited`...).
    Refused(String),
    /// No answer from the engine: transport error, timeout, closed socket, unexpected status.
    Failed(String),
}

impl Answer {
    /// Label counted in `answers_by_code`.
    pub fn label(&self) -> &str {
        match self {
            Answer::Reserved { .. } => "reserved",
            Answer::Refused(code) | Answer::Failed(code) => code,
        }
    }

    /// Whether the drop decided (a reservation or a 3.5 refusal).
    pub fn is_decision(&self) -> bool {
        match self {
            Answer::Reserved { .. } => true,
            Answer::Refused(code) => DECISION_CODES.contains(&code.as_str()),
            Answer::Failed(_) => false,
        }
    }
}

/// All answers of one buyer (one per request it sent, in sending order).
#[derive(Debug, Clone, Default)]
pub struct BuyerAnswers {
    /// Buyer index.
    pub buyer: usize,
    /// Answers, one per request (two with `--retry-same-key`).
    pub answers: Vec<Answer>,
}

/// Totals over every buyer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Claim requests sent.
    pub requests: u64,
    /// Answers that were decisions of the drop.
    pub decisions: u64,
    /// Distinct claims answered `reserved`.
    pub reservations: u64,
    /// Units of those distinct claims.
    pub reserved_units: u64,
    /// `sold_out` answers.
    pub sold_out: u64,
    /// Reservations answered as a replay of a known key (HTTP 200).
    pub replays: u64,
    /// Requests without a decision (transport errors, timeouts, other codes).
    pub errors: u64,
    /// Buyers whose requests all failed (no decision at all).
    pub undecided_buyers: u64,
    /// Buyers whose requests with one key got different outcomes (two claim ids, or a
    /// reservation and a refusal): an idempotency violation.
    pub idempotency_mismatches: u64,
    /// Every answer by label (`reserved`, `sold_out`, `limit_exceeded`, `timeout`, `http_500`...).
    pub answers_by_code: BTreeMap<String, u64>,
}

impl Tally {
    /// Adds up the answers of every buyer (each buyer uses one idempotency key).
    pub fn of(buyers: &[BuyerAnswers]) -> Self {
        let mut t = Tally::default();
        let mut distinct: HashMap<&str, u64> = HashMap::new();
        for buyer in buyers {
            let mut ids: Vec<&str> = Vec::new();
            let mut refused = false;
            let mut decided = false;
            for answer in &buyer.answers {
                t.requests += 1;
                *t.answers_by_code
                    .entry(answer.label().to_string())
                    .or_default() += 1;
                if answer.is_decision() {
                    t.decisions += 1;
                    decided = true;
                } else {
                    t.errors += 1;
                }
                match answer {
                    Answer::Reserved {
                        id,
                        quantity,
                        replay,
                    } => {
                        distinct.entry(id).or_insert(*quantity);
                        if !ids.contains(&id.as_str()) {
                            ids.push(id);
                        }
                        t.replays += u64::from(*replay);
                    }
                    Answer::Refused(code) => {
                        t.sold_out += u64::from(code == "sold_out");
                        refused |= answer.is_decision();
                    }
                    Answer::Failed(_) => {}
                }
            }
            if ids.len() > 1 || (!ids.is_empty() && refused) {
                t.idempotency_mismatches += 1;
            }
            if !decided && !buyer.answers.is_empty() {
                t.undecided_buyers += 1;
            }
        }
        t.reservations = distinct.len() as u64;
        t.reserved_units = distinct.values().sum();
        t
    }
}

/// A drop's durable counts (`GET /v1/drops/{id}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    /// Units offered.
    pub quantity: u64,
    /// Units not held nor sold.
    pub remaining: u64,
    /// Units held by unpaid reservations.
    pub reserved: u64,
    /// Units paid for.
    pub sold: u64,
}

impl DropCounts {
    /// Units taken: `reserved + sold`.
    pub fn taken(&self) -> u64 {
        self.reserved + self.sold
    }
}

/// The run's parameters that decide which checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// Buyers that took part.
    pub buyers: u64,
    /// Units per claim.
    pub quantity: u64,
    /// The drop's per-user limit.
    pub per_user_limit: u64,
}

/// Outcome of `GET /v1/claims` for a sample of buyers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// Buyers whose claims were listed.
    pub buyers_checked: u64,
    /// Reservations of those buyers that were looked up.
    pub claims_checked: u64,
    /// Reservations answered to them but absent from their listing.
    pub missing: u64,
    /// Buyers whose listing could not be read.
    pub failed: u64,
}

/// One invariant check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Short name (`no_oversell`, `no_lost_reservation`...).
    pub name: &'static str,
    /// Whether it held; `None` when it did not apply to this run.
    pub passed: Option<bool>,
    /// The figures behind it.
    pub detail: String,
}

/// Everything decided after the rush.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Units taken beyond the drop's quantity (server counts or answered reservations).
    pub oversold: u64,
    /// Reserved units answered to buyers that the drop does not count, plus reservations
    /// missing from the sampled listings.
    pub lost: u64,
    /// Units the drop counts as taken during the run beyond the reservations answered.
    pub unanswered_units: u64,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Judges a run from the buyers' tally, the drop's counts before and after, and the
    /// sampled listings.
    pub fn judge(
        tally: &Tally,
        before: DropCounts,
        after: DropCounts,
        listing: &Listing,
        terms: Terms,
    ) -> Self {
        let taken = after.taken().saturating_sub(before.taken());
        let oversold = after
            .taken()
            .saturating_sub(after.quantity)
            .max(tally.reserved_units.saturating_sub(before.remaining));
        let lost = tally.reserved_units.saturating_sub(taken) + listing.missing;
        let unanswered_units = taken.saturating_sub(tally.reserved_units);
        let mut checks = vec![
            Check {
                name: "no_oversell",
                passed: Some(oversold == 0),
                detail: format!(
                    "reserved {} + sold {} of quantity {}; {} units answered reserved of {} remaining before",
                    after.reserved,
                    after.sold,
                    after.quantity,
                    tally.reserved_units,
                    before.remaining
                ),
            },
            Check {
                name: "no_lost_reservation",
                passed: Some(tally.reserved_units <= taken),
                detail: format!(
                    "{} units answered reserved, drop took {} units during the run",
                    tally.reserved_units, taken
                ),
            },
            Check {
                name: "listed",
                passed: (listing.buyers_checked > 0).then_some(listing.missing == 0),
                detail: format!(
                    "{} of {} answered reservations of {} sampled buyers missing from GET /v1/claims",
                    listing.missing, listing.claims_checked, listing.buyers_checked
                ),
            },
            // Units taken without an answer are only explained by requests that got none.
            Check {
                name: "exact_accounting",
                passed: Some(
                    unanswered_units == 0
                        || (tally.errors > 0 && unanswered_units <= tally.errors * terms.quantity),
                ),
                detail: format!(
                    "drop took {} units, {} answered reserved, {} requests unanswered",
                    taken, tally.reserved_units, tally.errors
                ),
            },
        ];
        // With one unit per claim and per buyer, enough buyers that all got a decision
        // must take every remaining unit: a sold_out while units remain is a wrong answer.
        let applies = terms.quantity == 1
            && terms.per_user_limit == 1
            && terms.buyers >= before.remaining
            && tally.undecided_buyers == 0
            && tally.errors == 0;
        checks.push(Check {
            name: "all_sold",
            passed: applies.then_some(tally.reservations == before.remaining),
            detail: format!(
                "{} reservations for {} remaining units ({} buyers)",
                tally.reservations, before.remaining, terms.buyers
            ),
        });
        checks.push(Check {
            name: "idempotent",
            passed: Some(tally.idempotency_mismatches == 0),
            detail: format!(
                "{} buyers got different outcomes for one key",
                tally.idempotency_mismatches
            ),
        });
        Verdict {
            oversold,
            lost,
            unanswered_units,
            checks,
        }
    }

    /// Names of the checks that failed.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.passed == Some(false))
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved(id: &str) -> Answer {
        Answer::Reserved {
            id: id.into(),
            quantity: 1,
            replay: false,
        }
    }

    fn refused(code: &str) -> Answer {
        Answer::Refused(code.into())
    }

    fn buyers(answers: Vec<Vec<Answer>>) -> Vec<BuyerAnswers> {
        answers
            .into_iter()
            .enumerate()
            .map(|(buyer, answers)| BuyerAnswers { buyer, answers })
            .collect()
    }

    fn counts(quantity: u64, reserved: u64) -> DropCounts {
        DropCounts {
            quantity,
            remaining: quantity - reserved,
            reserved,
            sold: 0,
        }
    }

    const TERMS: Terms = Terms {
        buyers: 4,
        quantity: 1,
        per_user_limit: 1,
    };

    #[test]
    fn tallies_answers_by_code() {
        let t = Tally::of(&buyers(vec![
            vec![reserved("c1")],
            vec![reserved("c2")],
            vec![refused("sold_out")],
            vec![Answer::Failed("timeout".into())],
            vec![refused("rate_limited")],
        ]));
        assert_eq!(t.requests, 5);
        assert_eq!(t.decisions, 3);
        assert_eq!(t.reservations, 2);
        assert_eq!(t.reserved_units, 2);
        assert_eq!(t.sold_out, 1);
        assert_eq!(t.errors, 2);
        assert_eq!(t.undecided_buyers, 2);
        assert_eq!(t.answers_by_code["reserved"], 2);
        assert_eq!(t.answers_by_code["timeout"], 1);
        assert_eq!(t.answers_by_code["rate_limited"], 1);
        assert_eq!(t.idempotency_mismatches, 0);
    }

    #[test]
    fn same_key_twice_counts_one_reservation() {
        let t = Tally::of(&buyers(vec![
            vec![
                reserved("c1"),
                Answer::Reserved {
                    id: "c1".into(),
                    quantity: 1,
                    replay: true,
                },
            ],
            vec![refused("sold_out"), refused("sold_out")],
        ]));
        assert_eq!(t.requests, 4);
        assert_eq!(t.decisions, 4);
        assert_eq!(t.reservations, 1);
        assert_eq!(t.replays, 1);
        assert_eq!(t.idempotency_mismatches, 0);
    }

    #[test]
    fn same_key_with_two_outcomes_is_a_mismatch() {
        let t = Tally::of(&buyers(vec![
            vec![reserved("c1"), reserved("c2")],
            vec![reserved("c3"), refused("sold_out")],
            vec![reserved("c4"), Answer::Failed("timeout".into())],
        ]));
        assert_eq!(t.idempotency_mismatches, 2);
        assert_eq!(t.reservations, 4);
        let v = Verdict::judge(&t, counts(10, 0), counts(10, 4), &Listing::default(), TERMS);
        assert!(v.failures().iter().any(|f| f.starts_with("idempotent")));
    }

    #[test]
    fn clean_sell_out_passes() {
        let t = Tally::of(&buyers(vec![
            vec![reserved("a")],
            vec![reserved("b")],
            vec![refused("sold_out")],
            vec![refused("sold_out")],
        ]));
        let listing = Listing {
            buyers_checked: 2,
            claims_checked: 2,
            missing: 0,
            failed: 0,
        };
        let v = Verdict::judge(&t, counts(2, 0), counts(2, 2), &listing, TERMS);
        assert_eq!(v.oversold, 0);
        assert_eq!(v.lost, 0);
        assert_eq!(v.unanswered_units, 0);
        assert!(v.failures().is_empty(), "{v:?}");
        assert!(v.checks.iter().all(|c| c.passed == Some(true)), "{v:?}");
    }

    #[test]
    fn oversell_is_caught_from_either_side() {
        let t = Tally::of(&buyers(vec![
            vec![reserved("a")],
            vec![reserved("b")],
            vec![reserved("c")],
        ]));
        // The drop's counts exceed its quantity.
        let after = DropCounts {
            quantity: 2,
            remaining: 0,
            reserved: 3,
            sold: 0,
        };
        let v = Verdict::judge(&t, counts(2, 0), after, &Listing::default(), TERMS);
        assert_eq!(v.oversold, 1);
        assert!(v.failures()[0].starts_with("no_oversell"));
        // The counts look fine but three buyers were told they hold one of two units.
        let v = Verdict::judge(&t, counts(2, 0), counts(2, 2), &Listing::default(), TERMS);
        assert_eq!(v.oversold, 1);
        assert_eq!(v.lost, 1);
    }

    #[test]
    fn lost_reservation_is_caught() {
        let t = Tally::of(&buyers(vec![vec![reserved("a")], vec![reserved("b")]]));
        let v = Verdict::judge(&t, counts(5, 0), counts(5, 1), &Listing::default(), TERMS);
        assert_eq!(v.lost, 1);
        assert!(
            v.failures()
                .iter()
                .any(|f| f.starts_with("no_lost_reservation"))
        );
        let listing = Listing {
            buyers_checked: 2,
            claims_checked: 2,
            missing: 1,
            failed: 0,
        };
        let v = Verdict::judge(&t, counts(5, 0), counts(5, 2), &listing, TERMS);
        assert_eq!(v.lost, 1);
        assert!(v.failures().iter().any(|f| f.starts_with("listed")));
    }

    #[test]
    fn unanswered_units_need_unanswered_requests() {
        // One unit taken that nobody was told about, and no request went unanswered: the
        // engine said sold_out (or nothing) to a buyer it actually reserved for.
        let t = Tally::of(&buyers(vec![
            vec![reserved("a")],
            vec![refused("sold_out")],
        ]));
        let v = Verdict::judge(&t, counts(2, 0), counts(2, 2), &Listing::default(), TERMS);
        assert_eq!(v.unanswered_units, 1);
        assert!(
            v.failures()
                .iter()
                .any(|f| f.starts_with("exact_accounting"))
        );
        // The same counts after a timed-out request are explained.
        let t = Tally::of(&buyers(vec![
            vec![reserved("a")],
            vec![Answer::Failed("timeout".into())],
        ]));
        let v = Verdict::judge(&t, counts(2, 0), counts(2, 2), &Listing::default(), TERMS);
        assert!(v.failures().is_empty(), "{v:?}");
        let all_sold = v.checks.iter().find(|c| c.name == "all_sold").unwrap();
        assert_eq!(all_sold.passed, None);
    }

    #[test]
    fn sold_out_while_units_remain_fails_all_sold() {
        let t = Tally::of(&buyers(vec![
            vec![reserved("a")],
            vec![refused("sold_out")],
            vec![refused("sold_out")],
        ]));
        let v = Verdict::judge(&t, counts(2, 0), counts(2, 1), &Listing::default(), TERMS);
        assert_eq!(v.failures().len(), 1, "{v:?}");
        assert!(v.failures()[0].starts_with("all_sold"));
        // Not applicable with fewer buyers than units, or with larger claims.
        let few = Terms { buyers: 1, ..TERMS };
        let v = Verdict::judge(&t, counts(2, 0), counts(2, 1), &Listing::default(), few);
        assert!(v.failures().is_empty());
    }

    #[test]
    fn existing_drop_counts_only_the_run() {
        // 3 units were already held before the run; the run took the last 2.
        let before = DropCounts {
            quantity: 5,
            remaining: 2,
            reserved: 2,
            sold: 1,
        };
        let after = DropCounts {
            quantity: 5,
            remaining: 0,
            reserved: 4,
            sold: 1,
        };
        let t = Tally::of(&buyers(vec![
            vec![reserved("a")],
            vec![reserved("b")],
            vec![refused("sold_out")],
        ]));
        let v = Verdict::judge(&t, before, after, &Listing::default(), TERMS);
        assert!(v.failures().is_empty(), "{v:?}");
        assert_eq!(v.oversold, 0);
    }
}
