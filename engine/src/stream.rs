//! The stream state machine and its ordered event log.
//!
//! A stream moves scheduled → live → ended. While its actor runs it numbers ordered events 1, 2, 3…
//! within an epoch (a new epoch per actor start) and keeps the most recent ones, already encoded, so a
//! reconnecting client can resume exactly where it left off.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frames::{EventBody, encode_event};
use crate::ids::StreamId;
use crate::records::StreamStatus;
use crate::rejection::{ErrorCode, Rejection};

/// What a seller or admin asks of a stream's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Go on air.
    Start,
    /// End the show.
    End,
}

/// Applies a lifecycle action: only scheduled → live and live → ended are allowed.
pub fn transition(current: StreamStatus, action: Lifecycle) -> Result<StreamStatus, Rejection> {
    match (current, action) {
        (StreamStatus::Scheduled, Lifecycle::Start) => Ok(StreamStatus::Live),
        (StreamStatus::Live, Lifecycle::End) => Ok(StreamStatus::Ended),
        (from, Lifecycle::Start) => Err(Rejection::new(
            ErrorCode::InvalidState,
            format!("cannot start a stream that is {}", from.as_str()),
        )),
        (from, Lifecycle::End) => Err(Rejection::new(
            ErrorCode::InvalidState,
            format!("cannot end a stream that is {}", from.as_str()),
        )),
    }
}

/// Whether viewers may chat, react and claim in a stream with this status.
pub fn accepts_interaction(status: StreamStatus) -> Result<(), Rejection> {
    if status == StreamStatus::Live {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::InvalidState,
            format!("stream is {}", status.as_str()),
        ))
    }
}

/// How a join with `epoch` + `since` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The epoch is current and every event after `since` is buffered: these follow, in order.
    Replay(Vec<Bytes>),
    /// Too old, another epoch, or a seq from the future: the client gets a fresh snapshot.
    Snapshot,
}

/// Ordered events of one stream epoch, numbered without gaps, the latest kept for resume.
#[derive(Debug, Clone)]
pub struct EventLog {
    stream: StreamId,
    epoch: u64,
    seq: u64,
    capacity: usize,
    recent: VecDeque<(u64, Bytes)>,
}

impl EventLog {
    /// An empty log for a new epoch, keeping the last `capacity` events (at least 1).
    pub fn new(stream: StreamId, epoch: u64, capacity: usize) -> Self {
        Self {
            stream,
            epoch,
            seq: 0,
            capacity: capacity.max(1),
            recent: VecDeque::with_capacity(capacity.clamp(1, 4096)),
        }
    }

    /// The epoch this log numbers.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The last seq handed out (0 before the first event).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Numbers an ordered event with the next seq, encodes it once and keeps it for resume.
    pub fn append(&mut self, body: EventBody) -> (u64, Bytes) {
        debug_assert!(body.is_ordered(), "ephemeral events carry no seq");
        self.seq += 1;
        let bytes = encode_event(&self.stream, Some(self.seq), body);
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((self.seq, bytes.clone()));
        (self.seq, bytes)
    }

    /// Decides how to answer a client that saw everything up to `since` in `epoch`.
    pub fn resume(&self, epoch: u64, since: u64) -> Resume {
        if epoch != self.epoch || since > self.seq {
            return Resume::Snapshot;
        }
        if since == self.seq {
            return Resume::Replay(Vec::new());
        }
        let oldest = self.recent.front().map_or(self.seq + 1, |(s, _)| *s);
        if since + 1 < oldest {
            return Resume::Snapshot;
        }
        let skip = (since + 1 - oldest) as usize;
        Resume::Replay(
            self.recent
                .iter()
                .skip(skip)
                .map(|(_, b)| b.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(n: u64) -> EventBody {
        EventBody::Chat(serde_json::json!({ "n": n }))
    }

    fn log(capacity: usize) -> EventLog {
        EventLog::new(StreamId::from_trusted("s"), 7, capacity)
    }

    fn seq_of(bytes: &Bytes) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v["seq"].as_u64().unwrap()
    }

    #[test]
    fn a_scheduled_stream_can_start_and_a_live_one_can_end() {
        assert_eq!(
            transition(StreamStatus::Scheduled, Lifecycle::Start),
            Ok(StreamStatus::Live)
        );
        assert_eq!(
            transition(StreamStatus::Live, Lifecycle::End),
            Ok(StreamStatus::Ended)
        );
    }

    #[test]
    fn lifecycle_never_goes_backwards_or_repeats() {
        for (from, action) in [
            (StreamStatus::Live, Lifecycle::Start),
            (StreamStatus::Ended, Lifecycle::Start),
            (StreamStatus::Scheduled, Lifecycle::End),
            (StreamStatus::Ended, Lifecycle::End),
        ] {
            let err = transition(from, action).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidState);
        }
    }

    #[test]
    fn only_live_streams_accept_chat() {
        assert!(accepts_interaction(StreamStatus::Live).is_ok());
        assert!(accepts_interaction(StreamStatus::Scheduled).is_err());
        assert!(accepts_interaction(StreamStatus::Ended).is_err());
    }

    #[test]
    fn seq_starts_at_one_and_grows_by_one() {
        let mut l = log(10);
        assert_eq!(l.append(chat(1)).0, 1);
        assert_eq!(l.append(chat(2)).0, 2);
        assert_eq!(l.seq(), 2);
    }

    #[test]
    fn resume_replays_exactly_the_missed_events() {
        let mut l = log(10);
        for n in 0..5 {
            l.append(chat(n));
        }
        let Resume::Replay(events) = l.resume(7, 2) else {
            panic!("expected replay")
        };
        assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), vec![3, 4, 5]);
    }

    #[test]
    fn resume_at_the_head_replays_nothing() {
        let mut l = log(10);
        l.append(chat(0));
        assert_eq!(l.resume(7, 1), Resume::Replay(vec![]));
    }

    #[test]
    fn resume_falls_back_to_snapshot_when_events_were_dropped_from_the_buffer() {
        let mut l = log(3);
        for n in 0..6 {
            l.append(chat(n));
        }
        assert_eq!(l.resume(7, 2), Resume::Snapshot);
        assert!(matches!(l.resume(7, 3), Resume::Replay(ref e) if e.len() == 3));
    }

    #[test]
    fn resume_from_another_epoch_or_the_future_is_a_snapshot() {
        let mut l = log(10);
        l.append(chat(0));
        assert_eq!(l.resume(6, 0), Resume::Snapshot);
        assert_eq!(l.resume(7, 5), Resume::Snapshot);
    }
}
