//! The resume ring of one stream on one node: its latest ordered events, already encoded.

use std::collections::VecDeque;

use bytes::Bytes;
use liveshop_engine::stream::Kept;

/// The last `capacity` ordered events of the stream's current epoch, contiguous in seq.
///
/// Invariant: the events kept are exactly seqs `head - len + 1 ..= head` of `epoch`; anything
/// that would break contiguity (a gap, a new epoch) restarts the ring.
#[derive(Debug)]
pub struct Ring {
    /// The epoch the ring belongs to; `None` until the hub learns one.
    epoch: Option<u64>,
    /// Last seq seen in `epoch`.
    head: u64,
    capacity: usize,
    recent: VecDeque<Bytes>,
}

impl Ring {
    /// An empty ring of no epoch yet, keeping at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            epoch: None,
            head: 0,
            capacity: capacity.max(1),
            recent: VecDeque::new(),
        }
    }

    /// The epoch, if known.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The last seq seen in the epoch.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Events kept now.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// What the ring keeps, for [`liveshop_engine::stream::resume`]; `None` before any epoch.
    pub fn kept(&self) -> Option<Kept> {
        self.epoch.map(|epoch| Kept {
            epoch,
            head: self.head,
            oldest: self.head + 1 - self.recent.len() as u64,
        })
    }

    /// Starts over in `epoch`, at `head` (the seq the next event follows), keeping nothing.
    pub fn reset(&mut self, epoch: u64, head: u64) {
        self.epoch = Some(epoch);
        self.head = head;
        self.recent.clear();
    }

    /// Keeps the event that follows the head (the caller checked `seq == head + 1`).
    pub fn push(&mut self, bytes: Bytes) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(bytes);
        self.head += 1;
    }

    /// The kept events from seq `from` through the head (empty when `from` is past the head).
    /// The caller checked that `from` is kept (see [`liveshop_engine::stream::resume`]).
    pub fn since(&self, from: u64) -> impl Iterator<Item = &Bytes> {
        let after = self.head.saturating_sub(from.saturating_sub(1)) as usize;
        let skip = self.recent.len().saturating_sub(after);
        self.recent.iter().skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveshop_engine::stream::{Resume, resume};

    fn ring_with(capacity: usize, epoch: u64, events: u64) -> Ring {
        let mut ring = Ring::new(capacity);
        ring.reset(epoch, 0);
        for seq in 1..=events {
            ring.push(Bytes::from(seq.to_string()));
        }
        ring
    }

    fn texts<'a>(events: impl Iterator<Item = &'a Bytes>) -> Vec<String> {
        events
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn the_ring_keeps_only_the_last_capacity_events() {
        let ring = ring_with(3, 1, 10);
        assert_eq!(ring.len(), 3);
        assert_eq!(
            ring.kept(),
            Some(Kept {
                epoch: 1,
                head: 10,
                oldest: 8
            })
        );
        assert_eq!(texts(ring.since(8)), ["8", "9", "10"]);
        assert_eq!(texts(ring.since(10)), ["10"]);
        assert!(texts(ring.since(11)).is_empty());
    }

    #[test]
    fn a_ring_that_knows_no_epoch_keeps_nothing_to_resume_from() {
        assert_eq!(Ring::new(8).kept(), None);
    }

    #[test]
    fn a_reset_ring_resumes_only_from_its_new_head() {
        let mut ring = ring_with(8, 1, 5);
        ring.reset(2, 0);
        let kept = ring.kept().unwrap();
        assert_eq!(resume(kept, 1, 5), Resume::Snapshot);
        assert_eq!(resume(kept, 2, 0), Resume::Replay { from: 1 });
        ring.reset(2, 40);
        ring.push(Bytes::from_static(b"41"));
        let kept = ring.kept().unwrap();
        assert_eq!(resume(kept, 2, 39), Resume::Snapshot);
        assert_eq!(resume(kept, 2, 40), Resume::Replay { from: 41 });
        assert_eq!(texts(ring.since(41)), ["41"]);
    }
}
