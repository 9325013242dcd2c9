//! Per-viewer ordering check of a stream's seq numbers: the contract promises every
//! subscriber each ordered event exactly once, in order, without gaps, so any gap is a loss
//! and any seq at or below the last one seen is a duplicate or a reordering.

/// What one observed seq meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The next seq, as expected.
    InOrder,
    /// Seqs were skipped; the payload is how many.
    Gap(u64),
    /// A seq at or below the last one seen: duplicate or out of order.
    Stale,
    /// Seq 1 after higher seqs: the stream actor restarted into a new epoch.
    Restart,
}

/// Ordering state of one viewer in one stream.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    last: Option<u64>,
    /// Events received in order.
    pub in_order: u64,
    /// Seqs never received (sum of gap sizes).
    pub lost: u64,
    /// Number of distinct gaps.
    pub gaps: u64,
    /// Duplicates and out-of-order events.
    pub out_of_order: u64,
    /// Epoch restarts detected from the seq space starting over.
    pub restarts: u64,
}

impl SeqTracker {
    /// Last seq seen (or the join baseline), if any.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Sets the baseline after a fresh join: later events must have a greater seq.
    pub fn start_at(&mut self, baseline: u64) {
        self.last = Some(baseline);
    }

    /// A fresh snapshot replaced the resume (`resumed:false`): returns how many seqs of the
    /// same seq space were skipped (0 when unknown), and moves the baseline.
    pub fn resync(&mut self, baseline: u64, same_epoch: bool) -> u64 {
        let skipped = match self.last {
            Some(last) if same_epoch => baseline.saturating_sub(last),
            _ => 0,
        };
        self.last = Some(baseline);
        skipped
    }

    /// Records one ordered event.
    pub fn observe(&mut self, seq: u64) -> Observation {
        let Some(last) = self.last else {
            self.last = Some(seq);
            self.in_order += 1;
            return Observation::InOrder;
        };
        if seq == last + 1 {
            self.last = Some(seq);
            self.in_order += 1;
            Observation::InOrder
        } else if seq > last + 1 {
            let missing = seq - last - 1;
            self.lost += missing;
            self.gaps += 1;
            self.last = Some(seq);
            self.in_order += 1;
            Observation::Gap(missing)
        } else if seq == 1 && last >= 2 {
            self.restarts += 1;
            self.last = Some(seq);
            self.in_order += 1;
            Observation::Restart
        } else {
            self.out_of_order += 1;
            Observation::Stale
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream() {
        let mut t = SeqTracker::default();
        t.start_at(3);
        for seq in 4..=10 {
            assert_eq!(t.observe(seq), Observation::InOrder);
        }
        assert_eq!((t.in_order, t.lost, t.out_of_order), (7, 0, 0));
        assert_eq!(t.last(), Some(10));
    }

    #[test]
    fn gaps_and_duplicates() {
        let mut t = SeqTracker::default();
        t.start_at(0);
        assert_eq!(t.observe(1), Observation::InOrder);
        assert_eq!(t.observe(4), Observation::Gap(2));
        assert_eq!(t.observe(4), Observation::Stale);
        assert_eq!(t.observe(3), Observation::Stale);
        assert_eq!(t.observe(5), Observation::InOrder);
        assert_eq!((t.lost, t.gaps, t.out_of_order), (2, 1, 2));
    }

    #[test]
    fn epoch_restart() {
        let mut t = SeqTracker::default();
        t.start_at(0);
        t.observe(1);
        t.observe(2);
        assert_eq!(t.observe(1), Observation::Restart);
        assert_eq!(t.observe(2), Observation::InOrder);
        assert_eq!((t.restarts, t.lost, t.out_of_order), (1, 0, 0));
    }

    #[test]
    fn resync_counts_skipped() {
        let mut t = SeqTracker::default();
        t.start_at(5);
        t.observe(6);
        assert_eq!(t.resync(20, true), 14);
        assert_eq!(t.observe(21), Observation::InOrder);
        assert_eq!(t.resync(3, false), 0);
        assert_eq!(t.last(), Some(3));
        assert_eq!(t.lost, 0);
    }

    #[test]
    fn first_event_without_baseline() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(9), Observation::InOrder);
        assert_eq!(t.last(), Some(9));
    }
}
