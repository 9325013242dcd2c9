//! Fan-out of encoded stream events to the connections that joined the stream.
//!
//! The stream actor publishes each event once; every subscriber reads the same `Bytes` from a shared
//! bounded ring (`tokio::sync::broadcast`), so N viewers cost N socket writes, not N encodes or N
//! mailbox messages. The trait is the seam for cross-node fan-out: a Redis-backed broker can relay
//! the same items between nodes without touching the stream actor.

use bytes::Bytes;
use dashmap::DashMap;
use liveshop_engine::StreamId;
use tokio::sync::broadcast;

/// What travels from a stream to its subscribers.
#[derive(Debug, Clone)]
pub enum StreamOut {
    /// An encoded event frame, written as is.
    Event(Bytes),
    /// The stream actor restarted under a new epoch: subscribers must re-join for a fresh snapshot.
    Restarted,
}

/// Delivers a stream's items to every subscriber of that stream.
pub trait Broker: Send + Sync + 'static {
    /// Hands one item to every current subscriber of `stream`.
    fn publish(&self, stream: &StreamId, item: StreamOut);
    /// Subscribes to `stream`: the receiver sees every item published after this call.
    fn subscribe(&self, stream: &StreamId) -> broadcast::Receiver<StreamOut>;
    /// Connections subscribed to `stream` on this node.
    fn subscribers(&self, stream: &StreamId) -> usize;
    /// Forgets a stream that ended: its subscribers see the channel close.
    fn remove(&self, stream: &StreamId);
}

/// Single-node broker: one broadcast ring per stream, in this process.
pub struct InProcessBroker {
    capacity: usize,
    topics: DashMap<StreamId, broadcast::Sender<StreamOut>>,
}

impl InProcessBroker {
    /// A broker whose rings hold `capacity` items; a subscriber further behind is a slow consumer.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(16),
            topics: DashMap::new(),
        }
    }
}

impl Broker for InProcessBroker {
    fn publish(&self, stream: &StreamId, item: StreamOut) {
        if let Some(tx) = self.topics.get(stream) {
            // No receiver is not an error: nobody is watching right now.
            let _ = tx.send(item);
        }
    }

    fn subscribe(&self, stream: &StreamId) -> broadcast::Receiver<StreamOut> {
        self.topics
            .entry(stream.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    fn subscribers(&self, stream: &StreamId) -> usize {
        self.topics.get(stream).map_or(0, |tx| tx.receiver_count())
    }

    fn remove(&self, stream: &StreamId) {
        self.topics.remove(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_what_is_published_after_they_subscribed() {
        let broker = InProcessBroker::new(16);
        let s = StreamId::from_trusted("s");
        broker.publish(&s, StreamOut::Event(Bytes::from_static(b"before")));
        let mut a = broker.subscribe(&s);
        let mut b = broker.subscribe(&s);
        broker.publish(&s, StreamOut::Event(Bytes::from_static(b"after")));
        for rx in [&mut a, &mut b] {
            match rx.recv().await.unwrap() {
                StreamOut::Event(bytes) => assert_eq!(&bytes[..], b"after"),
                StreamOut::Restarted => panic!("unexpected restart"),
            }
        }
    }

    #[tokio::test]
    async fn removing_a_stream_closes_its_subscribers() {
        let broker = InProcessBroker::new(16);
        let s = StreamId::from_trusted("s");
        let mut rx = broker.subscribe(&s);
        broker.remove(&s);
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
    }
}
