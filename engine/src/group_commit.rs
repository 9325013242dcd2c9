//! Group commit: items decided while one write is in flight wait and all go into the next single
//! write, and every caller waiting for an item is answered only once it is durable (or refused).
//!
//! Pure bookkeeping, generic over the item (a claim today, a bid next), its key (a repeated
//! request with the same key waits for the same item) and the waiter (a reply port). The actor
//! owns the IO: it takes a batch with [`GroupCommit::start_batch`], writes it, and hands the
//! per-row outcomes to [`GroupCommit::finish`], which gives every item back with its waiters.
//!
//! Invariants: every added item comes back exactly once, in the order it was added; at most one
//! batch is in flight; a batch holds at most `max` items.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::storage::RowOutcome;

/// Items waiting to be written, the batch being written, and who waits for each.
#[derive(Debug)]
pub struct GroupCommit<K, T, W> {
    /// Largest batch (at least 1).
    max: usize,
    /// Added since the batch in flight was taken, oldest first.
    queued: VecDeque<(K, T)>,
    /// The batch being written now (empty when none is).
    in_flight: Vec<(K, T)>,
    /// Everyone waiting for each not yet durable item, first waiter first.
    waiters: HashMap<K, Vec<W>>,
}

/// An item of a finished batch, handed back with everyone who waited for it.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished<T, W> {
    /// The item as it was added.
    pub item: T,
    /// Its waiters, in the order they came (the first one added the item).
    pub waiters: Vec<W>,
    /// What storage did with it.
    pub outcome: RowOutcome,
}

impl<K: Eq + Hash + Clone, T, W> GroupCommit<K, T, W> {
    /// Nothing waiting; batches of at most `max` items (0 counts as 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            queued: VecDeque::new(),
            in_flight: Vec::new(),
            waiters: HashMap::new(),
        }
    }

    /// Queues a new item for the next write with its first waiter. A key that is already
    /// pending is the same item asked again: the waiter joins it and `item` is dropped.
    pub fn add(&mut self, key: K, item: T, waiter: W) {
        if let Some(waiters) = self.waiters.get_mut(&key) {
            waiters.push(waiter);
            return;
        }
        self.waiters.insert(key.clone(), vec![waiter]);
        self.queued.push_back((key, item));
    }

    /// Adds a waiter to the pending item with this key (a repeated request). When no item with
    /// that key is pending (it is durable already, or was never added) the waiter comes back, for
    /// the caller to answer from what it knows.
    pub fn attach(&mut self, key: &K, waiter: W) -> Result<(), W> {
        match self.waiters.get_mut(key) {
            Some(waiters) => {
                waiters.push(waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// Takes the next batch (the oldest items, at most `max`) for writing, when no write is in
    /// flight and something is queued; else `None`.
    pub fn start_batch(&mut self) -> Option<&[(K, T)]> {
        if !self.in_flight.is_empty() || self.queued.is_empty() {
            return None;
        }
        let take = self.queued.len().min(self.max);
        self.in_flight.extend(self.queued.drain(..take));
        Some(&self.in_flight)
    }

    /// Ends the write in flight with one outcome per item, in the batch's order, and hands every
    /// item back with its waiters. An item without an outcome (a short list) counts as
    /// [`RowOutcome::Failed`], so nobody is left waiting; extra outcomes are ignored.
    pub fn finish(&mut self, outcomes: Vec<RowOutcome>) -> Vec<Finished<T, W>> {
        let mut outcomes = outcomes.into_iter();
        std::mem::take(&mut self.in_flight)
            .into_iter()
            .map(|(key, item)| Finished {
                waiters: self.waiters.remove(&key).unwrap_or_default(),
                item,
                outcome: outcomes.next().unwrap_or(RowOutcome::Failed),
            })
            .collect()
    }

    /// Nothing in flight and nothing queued.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.queued.is_empty()
    }

    /// A write is in flight.
    pub fn is_writing(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Items queued for the write after the one in flight.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Whether the item with this key is queued or being written (not yet durable).
    pub fn is_pending(&self, key: &K) -> bool {
        self.waiters.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Commit = GroupCommit<&'static str, u32, &'static str>;

    fn keys(batch: Option<&[(&'static str, u32)]>) -> Vec<&'static str> {
        batch.unwrap_or_default().iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn the_first_item_is_written_at_once_and_later_ones_wait_for_the_next_batch() {
        let mut c = Commit::new(10);
        c.add("a", 1, "wa");
        assert_eq!(keys(c.start_batch()), vec!["a"]);
        c.add("b", 2, "wb");
        c.add("c", 3, "wc");
        assert!(c.start_batch().is_none(), "one write at a time");
        let done = c.finish(vec![RowOutcome::Stored]);
        assert_eq!(
            done,
            vec![Finished {
                item: 1,
                waiters: vec!["wa"],
                outcome: RowOutcome::Stored
            }]
        );
        assert_eq!(keys(c.start_batch()), vec!["b", "c"]);
    }

    #[test]
    fn a_batch_never_holds_more_than_max_items() {
        let mut c = Commit::new(2);
        for (k, i) in [("a", 1), ("b", 2), ("c", 3)] {
            c.add(k, i, k);
        }
        assert_eq!(keys(c.start_batch()), vec!["a", "b"]);
        c.finish(vec![RowOutcome::Stored, RowOutcome::Stored]);
        assert_eq!(keys(c.start_batch()), vec!["c"]);
    }

    #[test]
    fn a_repeated_key_waits_for_the_same_item_in_flight_or_queued() {
        let mut c = Commit::new(10);
        c.add("a", 1, "first");
        c.start_batch();
        c.add("b", 2, "second");
        assert_eq!(c.attach(&"a", "again-a"), Ok(()));
        assert_eq!(c.attach(&"b", "again-b"), Ok(()));
        c.add("b", 99, "third-b");
        let done = c.finish(vec![RowOutcome::Stored]);
        assert_eq!(done[0].waiters, vec!["first", "again-a"]);
        c.start_batch();
        let done = c.finish(vec![RowOutcome::Failed]);
        assert_eq!(done[0].item, 2, "the first item of a key is kept");
        assert_eq!(done[0].waiters, vec!["second", "again-b", "third-b"]);
        assert_eq!(done[0].outcome, RowOutcome::Failed);
    }

    #[test]
    fn a_key_that_is_durable_already_hands_its_waiter_back() {
        let mut c = Commit::new(10);
        c.add("a", 1, "w");
        c.start_batch();
        c.finish(vec![RowOutcome::Stored]);
        assert!(!c.is_pending(&"a"));
        assert_eq!(c.attach(&"a", "late"), Err("late"));
        assert_eq!(c.attach(&"never", "x"), Err("x"));
    }

    #[test]
    fn items_without_an_outcome_count_as_failed() {
        let mut c = Commit::new(10);
        c.add("a", 1, "wa");
        c.add("b", 2, "wb");
        c.start_batch();
        let done = c.finish(vec![RowOutcome::Refused("bad".into())]);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].outcome, RowOutcome::Refused("bad".into()));
        assert_eq!(done[1].outcome, RowOutcome::Failed);
        assert!(c.is_idle());
    }

    #[test]
    fn idle_writing_and_pending_say_where_items_are() {
        let mut c = Commit::new(1);
        assert!(c.is_idle() && !c.is_writing());
        c.add("a", 1, "wa");
        c.add("b", 2, "wb");
        assert!(!c.is_idle() && !c.is_writing() && c.is_pending(&"a"));
        c.start_batch();
        assert!(c.is_writing());
        assert_eq!(c.queued(), 1);
        c.finish(vec![RowOutcome::Stored]);
        assert!(!c.is_pending(&"a") && c.is_pending(&"b"));
        assert!(c.finish(Vec::new()).is_empty(), "nothing in flight");
    }
}
