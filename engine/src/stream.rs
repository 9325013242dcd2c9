//! The stream state machine and its ordered event log.
//!
//! A stream moves scheduled → live → ended. While its actor runs it numbers ordered events 1, 2, 3…
//! within an epoch (a new epoch per actor start) and encodes each once. [`resume`] decides whether
//! the recent events kept for a reconnecting client let it resume exactly where it left off.

use bytes::Bytes;

use crate::frames::{EventBody, encode_event};
use crate::ids::StreamId;
use crate::records::StreamStatus;
use crate::rejection::{ErrorCode, Rejection};

/// What a seller or admin asks of a stream's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// What a resume buffer holds: the epoch it belongs to, the last seq in it, and the first seq it
/// still keeps (`head + 1` when it keeps none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Epoch of the events kept.
    pub epoch: u64,
    /// Last seq seen in that epoch (0 before the first event).
    pub head: u64,
    /// First seq still kept; `head + 1` when nothing is.
    pub oldest: u64,
}

/// How a join with `epoch` + `since` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The epoch is current and every event after `since` is kept: the events from seq `from`
    /// through the head follow, in order (none when `from` is past the head).
    Replay {
        /// First seq to replay (`since + 1`).
        from: u64,
    },
    /// Too old, another epoch, or a seq from the future: the client gets a fresh snapshot.
    Snapshot,
}

/// Decides how to answer a client that saw everything up to `since` in `epoch`, given what a
/// resume buffer keeps.
pub fn resume(kept: Kept, epoch: u64, since: u64) -> Resume {
    if epoch != kept.epoch || since > kept.head {
        return Resume::Snapshot;
    }
    if since == kept.head || since + 1 >= kept.oldest {
        Resume::Replay { from: since + 1 }
    } else {
        Resume::Snapshot
    }
}

/// Ordered events of one stream epoch, numbered without gaps and encoded once.
///
/// Boundary: it keeps no events. The recent ones a resume replays are kept where they are fanned
/// out (the hub of each node), and [`resume`] decides from what is kept there.
#[derive(Debug, Clone)]
pub struct EventLog {
    stream: StreamId,
    epoch: u64,
    seq: u64,
}

impl EventLog {
    /// An empty log for a new epoch.
    pub fn new(stream: StreamId, epoch: u64) -> Self {
        Self {
            stream,
            epoch,
            seq: 0,
        }
    }

    /// A log that continues `epoch` after `seq` (a stream handed over by its previous owner
    /// node with everything it numbered published).
    pub fn continuing(stream: StreamId, epoch: u64, seq: u64) -> Self {
        Self { stream, epoch, seq }
    }

    /// The epoch this log numbers.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The last seq handed out (0 before the first event).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Numbers an ordered event with the next seq and encodes it once.
    pub fn append(&mut self, body: EventBody) -> (u64, Bytes) {
        debug_assert!(body.is_ordered(), "ephemeral events carry no seq");
        self.seq += 1;
        let bytes = encode_event(&self.stream, Some(self.seq), body);
        (self.seq, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(n: u64) -> EventBody {
        EventBody::Chat(serde_json::json!({ "n": n }))
    }

    fn log() -> EventLog {
        EventLog::new(StreamId::from_trusted("s"), 7)
    }

    /// A buffer of epoch 7 at `head` keeping the last `kept` events.
    fn kept(head: u64, kept: u64) -> Kept {
        Kept {
            epoch: 7,
            head,
            oldest: head + 1 - kept.min(head),
        }
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
        let mut l = log();
        assert_eq!(l.append(chat(1)).0, 1);
        assert_eq!(l.append(chat(2)).0, 2);
        assert_eq!(l.seq(), 2);
    }

    #[test]
    fn each_event_is_encoded_with_its_seq() {
        let mut l = log();
        l.append(chat(1));
        let (_, bytes) = l.append(chat(2));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["seq"], 2);
        assert_eq!(v["data"]["n"], 2);
    }

    #[test]
    fn resume_replays_exactly_the_missed_events() {
        assert_eq!(resume(kept(5, 5), 7, 2), Resume::Replay { from: 3 });
    }

    #[test]
    fn resume_at_the_head_replays_nothing() {
        assert_eq!(resume(kept(1, 1), 7, 1), Resume::Replay { from: 2 });
        assert_eq!(resume(kept(4, 0), 7, 4), Resume::Replay { from: 5 });
    }

    #[test]
    fn resume_falls_back_to_snapshot_when_events_were_dropped_from_the_buffer() {
        assert_eq!(resume(kept(6, 3), 7, 2), Resume::Snapshot);
        assert_eq!(resume(kept(6, 3), 7, 3), Resume::Replay { from: 4 });
    }

    #[test]
    fn resume_from_another_epoch_or_the_future_is_a_snapshot() {
        assert_eq!(resume(kept(1, 1), 6, 0), Resume::Snapshot);
        assert_eq!(resume(kept(1, 1), 7, 5), Resume::Snapshot);
    }
}
