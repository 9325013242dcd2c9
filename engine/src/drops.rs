//! The drop state machine: who gets which units, decided in arrival order, never oversold.
//!
//! A [`DropBook`] is the in-memory inventory of one drop. Its owner (the drop actor) asks it to
//! decide each claim, writes the reservations it made to storage, and only then answers the buyer.
//! If a write fails, [`DropBook::rollback`] returns the units. After a restart the book is rebuilt
//! from storage with [`DropBook::restore`], so storage stays the source of truth.

use std::collections::HashMap;

use crate::ids::{ClaimId, DropId, UserId};
use crate::records::{Claim, ClaimStatus, Drop, DropStatus};
use crate::rejection::{ErrorCode, Rejection};
use crate::timestamp::Timestamp;

/// Longest idempotency key, in characters.
pub const MAX_KEY_CHARS: usize = 128;

/// Why a drop closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CloseReason {
    /// Its duration ran out.
    Time,
    /// The seller closed it.
    Seller,
    /// Its stream ended.
    StreamEnded,
}

impl CloseReason {
    /// The wire spelling (the `reason` of `drop_closed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Time => "time",
            Self::Seller => "seller",
            Self::StreamEnded => "stream_ended",
        }
    }
}

/// What the book decided about a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new reservation; write it before answering.
    Reserved(Claim),
    /// The same key was used before: answer with that claim.
    Existing(Claim),
}

/// Side effects a decision or change asks the owner to announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Announce {
    /// The drop just sold out for the first time: send `sold_out` (exactly once per drop) once
    /// the reservation that sold it out is durable.
    pub sold_out: bool,
    /// Remaining units changed: send a coalesced `inventory`.
    pub inventory: bool,
}

/// In-memory inventory of one drop.
#[derive(Debug, Clone)]
pub struct DropBook {
    drop: Drop,
    holdings: HashMap<UserId, i64>,
    by_key: HashMap<(UserId, String), ClaimId>,
    claims: HashMap<ClaimId, Claim>,
    sold_out_announced: bool,
}

impl DropBook {
    /// Rebuilds the book from the stored drop and all its claims.
    pub fn restore(mut drop: Drop, claims: Vec<Claim>) -> Self {
        let mut book = Self {
            holdings: HashMap::new(),
            by_key: HashMap::new(),
            claims: HashMap::new(),
            sold_out_announced: drop.status == DropStatus::SoldOut,
            drop: {
                drop.reserved = 0;
                drop.sold = 0;
                drop
            },
        };
        for claim in claims {
            book.index(claim);
        }
        book.drop.remaining = book.drop.quantity - book.drop.reserved - book.drop.sold;
        book
    }

    fn index(&mut self, claim: Claim) {
        match claim.status {
            ClaimStatus::Reserved => self.drop.reserved += claim.quantity,
            ClaimStatus::Paid => self.drop.sold += claim.quantity,
            ClaimStatus::Expired => {}
        }
        if claim.status != ClaimStatus::Expired {
            *self.holdings.entry(claim.user.clone()).or_default() += claim.quantity;
        }
        self.by_key.insert(
            (claim.user.clone(), claim.idempotency_key.clone()),
            claim.id.clone(),
        );
        self.claims.insert(claim.id.clone(), claim);
    }

    fn refresh_remaining(&mut self) {
        self.drop.remaining = self.drop.quantity - self.drop.reserved - self.drop.sold;
    }

    /// The drop with its current counts (including reservations not yet written).
    pub fn drop(&self) -> &Drop {
        &self.drop
    }

    /// The drop's id.
    pub fn id(&self) -> &DropId {
        &self.drop.id
    }

    /// A claim by id.
    pub fn claim(&self, id: &ClaimId) -> Option<&Claim> {
        self.claims.get(id)
    }

    /// Whether some hold has reached its end at `now`: the drop actor asks storage to expire
    /// holds only then, so a rush (whose holds all lie minutes ahead) runs no expiry statements.
    /// The book is rebuilt from storage on restart, so this still follows what is stored.
    pub fn holds_due(&self, now: Timestamp) -> bool {
        self.claims
            .values()
            .any(|c| c.status == ClaimStatus::Reserved && c.expires_at <= now)
    }

    /// Units `user` holds or bought.
    pub fn holdings(&self, user: &UserId) -> i64 {
        self.holdings.get(user).copied().unwrap_or(0)
    }

    /// Decides a claim at `now`, in arrival order. `new_id` names the claim if one is created;
    /// it is called only then, so a refusal (most answers of a rush) generates no id.
    pub fn decide(
        &mut self,
        user: &UserId,
        quantity: i64,
        key: &str,
        now: Timestamp,
        new_id: impl FnOnce() -> ClaimId,
    ) -> Result<(Decision, Announce), Rejection> {
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(Rejection::field(
                "idempotency_key",
                "must be 1 to 128 characters",
            ));
        }
        if let Some(id) = self.by_key.get(&(user.clone(), key.to_owned())) {
            let existing = self.claims[id].clone();
            if existing.quantity != quantity {
                return Err(Rejection::new(
                    ErrorCode::Conflict,
                    "idempotency_key was already used with another quantity",
                ));
            }
            return Ok((Decision::Existing(existing), Announce::default()));
        }
        if quantity < 1 {
            return Err(Rejection::field("quantity", "must be at least 1"));
        }
        self.close_if_due(now);
        if self.drop.status == DropStatus::Closed {
            return Err(Rejection::new(ErrorCode::DropClosed, "drop is closed"));
        }
        // Saturating: a quantity near `i64::MAX` on top of a holding must be refused, not overflow.
        if self.holdings(user).saturating_add(quantity) > self.drop.per_user_limit {
            return Err(Rejection::new(
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} per buyer in this drop",
                    self.drop.per_user_limit
                ),
            ));
        }
        if self.drop.remaining < quantity {
            return Err(Rejection::new(ErrorCode::SoldOut, "not enough units left"));
        }
        let claim = Claim {
            id: new_id(),
            tenant: self.drop.tenant.clone(),
            drop: self.drop.id.clone(),
            user: user.clone(),
            quantity,
            status: ClaimStatus::Reserved,
            idempotency_key: key.to_owned(),
            created_at: now,
            expires_at: now.plus_millis(self.drop.hold_seconds.saturating_mul(1000)),
        };
        self.index(claim.clone());
        self.refresh_remaining();
        let mut announce = Announce {
            inventory: true,
            sold_out: false,
        };
        if self.drop.remaining == 0 {
            self.drop.status = DropStatus::SoldOut;
            announce.sold_out = !self.sold_out_announced;
            self.sold_out_announced = true;
        }
        Ok((Decision::Reserved(claim), announce))
    }

    /// Undoes reservations whose write failed: their units return, their keys are forgotten.
    pub fn rollback(&mut self, claims: &[Claim]) {
        for claim in claims {
            if self.claims.remove(&claim.id).is_some() {
                self.drop.reserved -= claim.quantity;
                if let Some(h) = self.holdings.get_mut(&claim.user) {
                    *h -= claim.quantity;
                }
                self.by_key
                    .remove(&(claim.user.clone(), claim.idempotency_key.clone()));
            }
        }
        self.refresh_remaining();
        if self.drop.status == DropStatus::SoldOut && self.drop.remaining > 0 {
            self.drop.status = DropStatus::Open;
            // The owner announces a sell-out only once its write succeeded, so this one never was.
            self.sold_out_announced = false;
        }
    }

    /// Applies expiries that storage performed: units return and a sold-out drop reopens.
    pub fn apply_expired(&mut self, expired: &[Claim]) -> Announce {
        let mut changed = false;
        for e in expired {
            if let Some(claim) = self.claims.get_mut(&e.id)
                && claim.status == ClaimStatus::Reserved
            {
                claim.status = ClaimStatus::Expired;
                self.drop.reserved -= claim.quantity;
                if let Some(h) = self.holdings.get_mut(&claim.user) {
                    *h -= claim.quantity;
                }
                changed = true;
            }
        }
        self.refresh_remaining();
        if changed && self.drop.status == DropStatus::SoldOut && self.drop.remaining > 0 {
            self.drop.status = DropStatus::Open;
        }
        Announce {
            inventory: changed,
            sold_out: false,
        }
    }

    /// Applies a payment that storage recorded: reserved units become sold.
    pub fn apply_paid(&mut self, paid: &Claim) {
        if let Some(claim) = self.claims.get_mut(&paid.id)
            && claim.status == ClaimStatus::Reserved
        {
            claim.status = ClaimStatus::Paid;
            self.drop.reserved -= claim.quantity;
            self.drop.sold += claim.quantity;
        }
    }

    /// Closes the drop for good; false when it already was.
    pub fn close(&mut self) -> bool {
        if self.drop.status == DropStatus::Closed {
            return false;
        }
        self.drop.status = DropStatus::Closed;
        true
    }

    /// Closes the drop when its duration has run out; true when this call closed it.
    pub fn close_if_due(&mut self, now: Timestamp) -> bool {
        match self.drop.ends_at {
            Some(end) if now >= end => self.close(),
            _ => false,
        }
    }
}

/// Validated parameters of a new drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropTerms {
    /// Units offered.
    pub quantity: i64,
    /// Most units per buyer.
    pub per_user_limit: i64,
    /// Seconds a reservation is held.
    pub hold_seconds: i64,
    /// Seconds the drop stays open, if limited.
    pub duration_seconds: Option<i64>,
}

impl DropTerms {
    /// Checks the terms of a new drop: quantity 1..=1,000,000, per-user limit ≥ 1, holds of
    /// 1 s to 24 h, durations of 1 s to 24 h.
    pub fn validate(self) -> Result<Self, Rejection> {
        if !(1..=1_000_000).contains(&self.quantity) {
            return Err(Rejection::field("quantity", "must be 1 to 1000000"));
        }
        if self.per_user_limit < 1 {
            return Err(Rejection::field("per_user_limit", "must be at least 1"));
        }
        if !(1..=86_400).contains(&self.hold_seconds) {
            return Err(Rejection::field("hold_seconds", "must be 1 to 86400"));
        }
        if let Some(d) = self.duration_seconds
            && !(1..=86_400).contains(&d)
        {
            return Err(Rejection::field("duration_seconds", "must be 1 to 86400"));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProductId, StreamId, TenantId};

    fn drop_of(quantity: i64, limit: i64) -> Drop {
        Drop {
            id: DropId::from_trusted("d"),
            tenant: TenantId::from_trusted("t"),
            stream: StreamId::from_trusted("s"),
            product: ProductId::from_trusted("p"),
            quantity,
            remaining: quantity,
            reserved: 0,
            sold: 0,
            per_user_limit: limit,
            hold_seconds: 60,
            status: DropStatus::Open,
            opened_at: Timestamp(0),
            ends_at: None,
            closed_reason: None,
        }
    }

    fn user(n: u32) -> UserId {
        UserId::from_trusted(format!("u{n}"))
    }

    fn claim(book: &mut DropBook, u: u32, q: i64, key: &str) -> Result<Decision, Rejection> {
        let id = ClaimId::from_trusted(format!("c-{u}-{key}"));
        book.decide(&user(u), q, key, Timestamp(1000), || id)
            .map(|(d, _)| d)
    }

    #[test]
    fn a_claim_reserves_units_until_the_hold_ends() {
        let mut book = DropBook::restore(drop_of(2, 1), vec![]);
        let Decision::Reserved(c) = claim(&mut book, 1, 1, "k").unwrap() else {
            panic!("expected a reservation")
        };
        assert_eq!(c.expires_at, Timestamp(61_000));
        assert_eq!(book.drop().remaining, 1);
    }

    #[test]
    fn holds_are_due_only_once_they_end_and_while_reserved() {
        let mut book = DropBook::restore(drop_of(3, 1), vec![]);
        assert!(!book.holds_due(Timestamp(1_000_000)));
        let Decision::Reserved(a) = claim(&mut book, 1, 1, "k").unwrap() else {
            panic!("expected a reservation")
        };
        let Decision::Reserved(b) = claim(&mut book, 2, 1, "k").unwrap() else {
            panic!("expected a reservation")
        };
        assert!(!book.holds_due(Timestamp(60_999)));
        assert!(book.holds_due(Timestamp(61_000)));
        book.apply_expired(&[a]);
        assert!(book.holds_due(Timestamp(61_000)));
        book.apply_paid(&b);
        assert!(!book.holds_due(Timestamp(61_000)));
    }

    #[test]
    fn a_refusal_names_no_claim() {
        let mut book = DropBook::restore(drop_of(1, 1), vec![]);
        claim(&mut book, 1, 1, "k").unwrap();
        let refused = book.decide(&user(2), 1, "k", Timestamp(1000), || {
            panic!("an id was generated for a refusal")
        });
        assert_eq!(refused.unwrap_err().code, ErrorCode::SoldOut);
    }

    #[test]
    fn claim_is_refused_when_drop_is_sold_out() {
        let mut book = DropBook::restore(drop_of(1, 1), vec![]);
        claim(&mut book, 1, 1, "k").unwrap();
        assert_eq!(
            claim(&mut book, 2, 1, "k").unwrap_err().code,
            ErrorCode::SoldOut
        );
    }

    #[test]
    fn the_same_key_returns_the_same_claim() {
        let mut book = DropBook::restore(drop_of(5, 2), vec![]);
        let Decision::Reserved(first) = claim(&mut book, 1, 1, "k").unwrap() else {
            panic!()
        };
        assert_eq!(
            claim(&mut book, 1, 1, "k").unwrap(),
            Decision::Existing(first)
        );
        assert_eq!(book.drop().reserved, 1);
    }

    #[test]
    fn a_second_claim_past_the_per_user_limit_is_refused() {
        let mut book = DropBook::restore(drop_of(5, 1), vec![]);
        claim(&mut book, 1, 1, "a").unwrap();
        assert_eq!(
            claim(&mut book, 1, 1, "b").unwrap_err().code,
            ErrorCode::LimitExceeded
        );
    }

    #[test]
    fn a_huge_quantity_on_top_of_a_holding_is_refused_not_overflowed() {
        let mut book = DropBook::restore(drop_of(5, i64::MAX), vec![]);
        claim(&mut book, 1, 1, "a").unwrap();
        assert_eq!(
            claim(&mut book, 1, i64::MAX, "b").unwrap_err().code,
            ErrorCode::SoldOut
        );
        let mut limited = DropBook::restore(drop_of(5, 2), vec![]);
        claim(&mut limited, 1, 1, "a").unwrap();
        assert_eq!(
            claim(&mut limited, 1, i64::MAX, "b").unwrap_err().code,
            ErrorCode::LimitExceeded
        );
        assert_eq!(limited.drop().reserved, 1);
    }

    #[test]
    fn sold_out_is_announced_exactly_once() {
        let mut book = DropBook::restore(drop_of(1, 1), vec![]);
        let (_, a) = book
            .decide(&user(1), 1, "k", Timestamp(0), || {
                ClaimId::from_trusted("c1")
            })
            .unwrap();
        assert!(a.sold_out);
        let c1 = book.claim(&ClaimId::from_trusted("c1")).unwrap().clone();
        book.apply_expired(&[c1]);
        assert_eq!(book.drop().status, DropStatus::Open);
        let (_, again) = book
            .decide(&user(2), 1, "k", Timestamp(0), || {
                ClaimId::from_trusted("c2")
            })
            .unwrap();
        assert!(!again.sold_out);
    }

    #[test]
    fn expired_holds_return_units_and_free_the_buyer_limit() {
        let mut book = DropBook::restore(drop_of(1, 1), vec![]);
        let Decision::Reserved(c) = claim(&mut book, 1, 1, "k").unwrap() else {
            panic!()
        };
        book.apply_expired(&[c]);
        assert_eq!(book.drop().remaining, 1);
        assert_eq!(book.holdings(&user(1)), 0);
    }

    #[test]
    fn a_closed_drop_refuses_claims() {
        let mut book = DropBook::restore(drop_of(5, 1), vec![]);
        assert!(book.close());
        assert_eq!(
            claim(&mut book, 1, 1, "k").unwrap_err().code,
            ErrorCode::DropClosed
        );
    }

    #[test]
    fn a_drop_past_its_end_closes_on_the_next_claim() {
        let mut d = drop_of(5, 1);
        d.ends_at = Some(Timestamp(500));
        let mut book = DropBook::restore(d, vec![]);
        assert_eq!(
            claim(&mut book, 1, 1, "k").unwrap_err().code,
            ErrorCode::DropClosed
        );
    }

    #[test]
    fn rollback_returns_units_and_forgets_the_key() {
        let mut book = DropBook::restore(drop_of(1, 1), vec![]);
        let Decision::Reserved(c) = claim(&mut book, 1, 1, "k").unwrap() else {
            panic!()
        };
        book.rollback(&[c]);
        assert_eq!(book.drop().remaining, 1);
        assert_eq!(book.drop().status, DropStatus::Open);
        assert!(matches!(
            claim(&mut book, 1, 1, "k").unwrap(),
            Decision::Reserved(_)
        ));
    }

    #[test]
    fn restore_counts_reserved_and_paid_but_not_expired() {
        let mut book = DropBook::restore(drop_of(10, 5), vec![]);
        let Decision::Reserved(a) = claim(&mut book, 1, 2, "a").unwrap() else {
            panic!()
        };
        let Decision::Reserved(b) = claim(&mut book, 2, 3, "b").unwrap() else {
            panic!()
        };
        let Decision::Reserved(c) = claim(&mut book, 3, 1, "c").unwrap() else {
            panic!()
        };
        let mut paid = b.clone();
        paid.status = ClaimStatus::Paid;
        let mut expired = c.clone();
        expired.status = ClaimStatus::Expired;
        let again = DropBook::restore(drop_of(10, 5), vec![a, paid, expired]);
        assert_eq!(again.drop().reserved, 2);
        assert_eq!(again.drop().sold, 3);
        assert_eq!(again.drop().remaining, 5);
    }

    #[test]
    fn terms_are_validated_field_by_field() {
        let ok = DropTerms {
            quantity: 10,
            per_user_limit: 1,
            hold_seconds: 300,
            duration_seconds: None,
        };
        assert!(ok.validate().is_ok());
        let e = DropTerms { quantity: 0, ..ok }.validate().unwrap_err();
        assert!(e.message.starts_with("quantity"));
        let e = DropTerms {
            hold_seconds: 0,
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.message.starts_with("hold_seconds"));
    }
}
