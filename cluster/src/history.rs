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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use liveshop_actors::fanout::bus::{Bus, BusMessage, Control};
    use liveshop_actors::fanout::contract::Recorder;

    use super::*;
    use crate::bus::RedisBus;
    use crate::testing::RedisServer;

    fn stream() -> StreamId {
        StreamId::from_trusted(format!("str_{}", uuid::Uuid::new_v4().simple()))
    }

    fn event(epoch: u64, seq: u64) -> StreamEvent {
        StreamEvent {
            epoch,
            seq: Some(seq),
            bytes: Bytes::from(format!("{{\"seq\":{seq}}}")),
        }
    }

    /// Publishes `events` of epoch 1 through a bus keeping `history_len`, and waits until they
    /// went round.
    async fn published(
        server: &RedisServer,
        history_len: usize,
        events: u64,
    ) -> (StreamId, History) {
        let link = Link::open(&server.url()).unwrap();
        let recorder = Arc::new(Recorder::default());
        let bus = RedisBus::start(link.clone(), "a", recorder.clone(), history_len);
        let s = stream();
        bus.watch(&s).await.unwrap();
        bus.publish(&s, BusMessage::Control(Control::Epoch(1)));
        for seq in 1..=events {
            bus.publish(&s, BusMessage::Event(event(1, seq)));
        }
        recorder.wait_for(&s, events as usize + 1).await;
        (s, History::new(link))
    }

    #[tokio::test]
    async fn a_stream_redis_never_saw_has_no_head_and_no_history() {
        let server = RedisServer::start();
        let history = History::new(Link::open(&server.url()).unwrap());
        let s = stream();
        assert_eq!(history.head(&s).await.unwrap(), None);
        assert_eq!(history.since(&s, 1, 0).await.unwrap(), None);
    }

    #[tokio::test]
    async fn since_gives_the_events_after_a_seq_it_covers_and_none_otherwise() {
        let server = RedisServer::start();
        let (s, history) = published(&server, 1000, 5).await;
        assert_eq!(history.head(&s).await.unwrap(), Some((1, 5)));
        assert_eq!(
            history.since(&s, 1, 2).await.unwrap(),
            Some(vec![event(1, 3), event(1, 4), event(1, 5)])
        );
        assert_eq!(history.since(&s, 1, 5).await.unwrap(), Some(vec![]));
        assert_eq!(
            history.since(&s, 1, 6).await.unwrap(),
            None,
            "ahead of the head"
        );
        assert_eq!(
            history.since(&s, 2, 0).await.unwrap(),
            None,
            "another epoch"
        );
    }

    #[tokio::test]
    async fn a_trimmed_history_covers_only_its_latest_events() {
        let server = RedisServer::start();
        let (s, history) = published(&server, 10, 500).await;
        assert_eq!(history.since(&s, 1, 0).await.unwrap(), None);
        let latest = history.since(&s, 1, 490).await.unwrap().expect("kept");
        assert_eq!(
            latest,
            (491..=500).map(|seq| event(1, seq)).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn reading_a_history_while_redis_is_down_is_an_error_not_a_wait() {
        let mut server = RedisServer::start();
        let history = History::new(Link::open(&server.url()).unwrap());
        server.stop();
        let started = std::time::Instant::now();
        assert!(history.head(&stream()).await.is_err());
        assert!(started.elapsed() < crate::link::CALL_TIMEOUT * 4);
    }
}
