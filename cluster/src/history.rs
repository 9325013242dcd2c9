//! Reading a stream's history in Redis: what any node resumes a client from, and where a new
//! owner finds the stream's epoch and last seq.
//!
//! What the history guarantees (the bus's publish script keeps it, atomically with each
//! `PUBLISH`):
//! - it holds events of one epoch only, the one in `meta`, with contiguous seqs ending at
//!   `meta.seq` (entry ids are `<seq>-0`); anything that would break that (a new epoch, a seq that
//!   does not follow) empties it first;
//! - every ordered event a node received over the bus was in the history first;
//! - it keeps at least the bus's `history_len` latest events (older ones are trimmed).
//!
//! So "the history covers `since + 1`" is a yes/no question [`History::since`] answers, and a
//! `None` means: the client (or node) must start over from a snapshot.

use bytes::Bytes;
use liveshop_actors::fanout::bus::StreamEvent;
use liveshop_engine::StreamId;
use redis::Value;
use redis::streams::StreamRangeReply;

use crate::keys;
use crate::link::{Link, LinkError};

/// Reads the Redis history of streams. Cheap to clone.
#[derive(Clone)]
pub struct History {
    link: Link,
}

impl History {
    /// Reads through `link`.
    pub fn new(link: Link) -> Self {
        Self { link }
    }

    /// The stream's epoch and last seq in the history, or `None` when Redis knows nothing of it
    /// (never published, expired, or Redis restarted empty).
    pub async fn head(&self, stream: &StreamId) -> Result<Option<(u64, u64)>, LinkError> {
        let (epoch, seq): (Option<u64>, Option<u64>) = self
            .link
            .query(
                "history_head",
                redis::cmd("HMGET")
                    .arg(keys::meta(stream))
                    .arg("epoch")
                    .arg("seq"),
            )
            .await?;
        Ok(epoch.map(|epoch| (epoch, seq.unwrap_or(0))))
    }

    /// The ordered events of `epoch` after `since`, in order through the history's head; `None`
    /// when the history does not cover `since + 1` (another epoch, trimmed away, empty, or a
    /// `since` ahead of the head).
    pub async fn since(
        &self,
        stream: &StreamId,
        epoch: u64,
        since: u64,
    ) -> Result<Option<Vec<StreamEvent>>, LinkError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(keys::meta(stream))
            .arg("epoch")
            .arg("seq")
            .cmd("XRANGE")
            .arg(keys::history(stream))
            .arg(format!("{}-0", since.saturating_add(1)))
            .arg("+");
        let ((head_epoch, head_seq), range): ((Option<u64>, Option<u64>), StreamRangeReply) =
            self.link.pipe("history_since", &pipe).await?;
        let (Some(head_epoch), Some(head_seq)) = (head_epoch, head_seq) else {
            return Ok(None);
        };
        if head_epoch != epoch || since > head_seq {
            return Ok(None);
        }
        let events: Option<Vec<StreamEvent>> = range.ids.iter().map(entry).collect();
        let Some(events) = events else {
            return Ok(None);
        };
        let contiguous = events
            .iter()
            .zip(since + 1..)
            .all(|(event, want)| event.epoch == epoch && event.seq == Some(want));
        let complete = since + events.len() as u64 == head_seq;
        Ok((contiguous && complete).then_some(events))
    }
}

/// Decodes one history entry (fields `e`, `s`, `b`).
fn entry(entry: &redis::streams::StreamId) -> Option<StreamEvent> {
    let number = |field: &str| match entry.map.get(field)? {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse::<u64>().ok(),
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    };
    let bytes = match entry.map.get("b")? {
        Value::BulkString(bytes) => Bytes::copy_from_slice(bytes),
        _ => return None,
    };
    Some(StreamEvent {
        epoch: number("e")?,
        seq: Some(number("s")?),
        bytes,
    })
}
