//! Property tests of the drop book: under random interleavings of claims, retries with the same
//! key, failed writes, expiries, payments, closes and restarts, a drop is never oversold, nobody
//! exceeds their limit, and every reservation that was answered stays in storage.

use std::collections::HashMap;

use liveshop_engine::drops::{Decision, DropBook};
use liveshop_engine::ids::{ClaimId, DropId, ProductId, StreamId, TenantId, UserId};
use liveshop_engine::records::{Claim, ClaimStatus, Drop, DropStatus};
use liveshop_engine::{ErrorCode, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// user, quantity, key, whether the write succeeds
    Claim(u8, i64, u8, bool),
    Expire(usize),
    Pay(usize),
    Close,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..12, 1i64..4, 0u8..3, proptest::bool::weighted(0.9))
            .prop_map(|(u, q, k, ok)| Step::Claim(u, q, k, ok)),
        2 => any::<usize>().prop_map(Step::Expire),
        1 => any::<usize>().prop_map(Step::Pay),
        1 => Just(Step::Close),
        2 => Just(Step::Restart),
    ]
}

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

proptest! {
    #[test]
    fn a_drop_is_never_oversold_and_answered_reservations_are_kept(
        steps in proptest::collection::vec(step(), 1..200),
        quantity in 1i64..30,
        limit in 1i64..4,
    ) {
        let mut stored_drop = drop_of(quantity, limit);
        // What storage holds: the source of truth a restart rebuilds from.
        let mut storage: Vec<Claim> = Vec::new();
        let mut answered: HashMap<ClaimId, Claim> = HashMap::new();
        let mut book = DropBook::restore(stored_drop.clone(), storage.clone());
        let mut next_id = 0u32;
        for step in steps {
            match step {
                Step::Claim(u, q, k, write_ok) => {
                    next_id += 1;
                    let user = UserId::from_trusted(format!("u{u}"));
                    let id = ClaimId::from_trusted(format!("c{next_id}"));
                    match book.decide(&user, q, &format!("k{k}"), Timestamp(0), || id) {
                        Ok((Decision::Reserved(claim), _)) => {
                            if write_ok {
                                storage.push(claim.clone());
                                answered.insert(claim.id.clone(), claim);
                            } else {
                                book.rollback(std::slice::from_ref(&claim));
                            }
                        }
                        Ok((Decision::Existing(claim), _)) => {
                            // The same key must name a claim storage holds.
                            prop_assert!(storage.iter().any(|c| c.id == claim.id));
                        }
                        Err(r) => prop_assert!(matches!(
                            r.code,
                            ErrorCode::SoldOut | ErrorCode::LimitExceeded | ErrorCode::DropClosed | ErrorCode::Conflict
                        )),
                    }
                }
                Step::Expire(i) if !storage.is_empty() => {
                    let i = i % storage.len();
                    if storage[i].status == ClaimStatus::Reserved {
                        storage[i].status = ClaimStatus::Expired;
                        answered.remove(&storage[i].id);
                        book.apply_expired(&[storage[i].clone()]);
                    }
                }
                Step::Pay(i) if !storage.is_empty() => {
                    let i = i % storage.len();
                    if storage[i].status == ClaimStatus::Reserved {
                        storage[i].status = ClaimStatus::Paid;
                        book.apply_paid(&storage[i]);
                    }
                }
                Step::Close => {
                    book.close();
                    stored_drop.status = DropStatus::Closed;
                }
                Step::Restart => book = DropBook::restore(stored_drop.clone(), storage.clone()),
                _ => {}
            }
            let held: i64 = storage.iter().filter(|c| c.status != ClaimStatus::Expired).map(|c| c.quantity).sum();
            prop_assert!(held <= quantity, "oversold: {held} of {quantity}");
            let d = book.drop();
            prop_assert!(d.reserved + d.sold <= d.quantity);
            prop_assert_eq!(d.reserved + d.sold, held, "book and storage disagree");
            let mut per_user: HashMap<&UserId, i64> = HashMap::new();
            for c in storage.iter().filter(|c| c.status != ClaimStatus::Expired) {
                *per_user.entry(&c.user).or_default() += c.quantity;
            }
            prop_assert!(per_user.values().all(|&n| n <= limit));
            for id in answered.keys() {
                prop_assert!(storage.iter().any(|c| &c.id == id), "answered reservation lost");
            }
        }
    }
}
