//! Property tests of the group commit: under random interleavings of new items, repeated keys,
//! batches and write outcomes (some of them short), no item or waiter is lost or answered twice,
//! items come back in the order they were added, and no batch exceeds its maximum.

use std::collections::HashMap;

use liveshop_engine::group_commit::GroupCommit;
use liveshop_engine::storage::RowOutcome;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// A new request with this key (a repeat while pending joins the pending item).
    Add(u8),
    /// A repeated request with this key.
    Attach(u8),
    /// The actor tries to start a write.
    Start,
    /// The write in flight ends; outcomes by index (0 stored, 1 refused, 2 failed), maybe short.
    Finish(Vec<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..8).prop_map(Step::Add),
        2 => (0u8..8).prop_map(Step::Attach),
        3 => Just(Step::Start),
        3 => proptest::collection::vec(0u8..3, 0..12).prop_map(Step::Finish),
    ]
}

fn outcome(code: u8) -> RowOutcome {
    match code {
        0 => RowOutcome::Stored,
        1 => RowOutcome::Refused("refused".into()),
        _ => RowOutcome::Failed,
    }
}

proptest! {
    #[test]
    fn no_item_or_waiter_is_lost_or_answered_twice_and_order_is_kept(
        max in 1usize..6,
        steps in proptest::collection::vec(step(), 0..120),
    ) {
        // Item = a sequence number; waiter = a sequence number.
        let mut commit: GroupCommit<u8, u32, u32> = GroupCommit::new(max);
        let mut next_item = 0u32;
        let mut next_waiter = 0u32;
        let mut answered: HashMap<u32, u32> = HashMap::new();
        let mut expected_waiters: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut pending: HashMap<u8, u32> = HashMap::new();
        let mut last_finished: Option<u32> = None;
        let mut writing = false;

        let finish = |commit: &mut GroupCommit<u8, u32, u32>,
                          codes: &[u8],
                          answered: &mut HashMap<u32, u32>,
                          pending: &mut HashMap<u8, u32>,
                          expected: &mut HashMap<u32, Vec<u32>>,
                          last: &mut Option<u32>| {
            let outcomes: Vec<RowOutcome> = codes.iter().copied().map(outcome).collect();
            let done = commit.finish(outcomes.clone());
            for (i, f) in done.iter().enumerate() {
                prop_assert!(last.is_none_or(|l| f.item > l), "items come back in order");
                *last = Some(f.item);
                let want = outcomes.get(i).cloned().unwrap_or(RowOutcome::Failed);
                prop_assert_eq!(&f.outcome, &want);
                prop_assert_eq!(Some(&f.waiters), expected.get(&f.item));
                expected.remove(&f.item);
                pending.retain(|_, item| *item != f.item);
                for w in &f.waiters {
                    *answered.entry(*w).or_default() += 1;
                }
            }
            Ok(done.len())
        };

        for s in steps {
            match s {
                Step::Add(key) => {
                    let w = next_waiter;
                    next_waiter += 1;
                    let item = next_item;
                    next_item += 1;
                    commit.add(key, item, w);
                    match pending.get(&key) {
                        Some(existing) => expected_waiters.get_mut(existing).unwrap().push(w),
                        None => {
                            pending.insert(key, item);
                            expected_waiters.insert(item, vec![w]);
                        }
                    }
                }
                Step::Attach(key) => {
                    let w = next_waiter;
                    next_waiter += 1;
                    match (commit.attach(&key, w), pending.get(&key)) {
                        (Ok(()), Some(item)) => expected_waiters.get_mut(item).unwrap().push(w),
                        (Err(back), None) => {
                            prop_assert_eq!(back, w);
                            // The caller answers it itself.
                            *answered.entry(w).or_default() += 1;
                        }
                        (got, model) => prop_assert!(false, "attach {got:?} but model {model:?}"),
                    }
                }
                Step::Start => {
                    let was_writing = writing;
                    match commit.start_batch() {
                        Some(batch) => {
                            prop_assert!(!was_writing, "one write at a time");
                            prop_assert!(!batch.is_empty() && batch.len() <= max);
                            writing = true;
                        }
                        None => prop_assert!(was_writing || commit.is_idle()),
                    }
                }
                Step::Finish(codes) => {
                    let n = finish(&mut commit, &codes, &mut answered, &mut pending,
                        &mut expected_waiters, &mut last_finished)?;
                    prop_assert_eq!(n > 0, writing);
                    writing = false;
                }
            }
            for (key, _) in pending.iter() {
                prop_assert!(commit.is_pending(key));
            }
        }
        // Drain: the write in flight ends, then everything still queued is written.
        loop {
            finish(&mut commit, &[], &mut answered, &mut pending,
                &mut expected_waiters, &mut last_finished)?;
            if commit.start_batch().is_none() {
                break;
            }
        }
        prop_assert!(commit.is_idle());
        prop_assert!(expected_waiters.is_empty(), "every item came back");
        prop_assert_eq!(answered.len() as u32, next_waiter, "every waiter answered");
        prop_assert!(answered.values().all(|n| *n == 1), "nobody answered twice");
    }
}
