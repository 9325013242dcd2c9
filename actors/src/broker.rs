//! Fan-out of encoded stream events to the connections that joined the stream.
//!
//! The stream actor publishes each event once. The broker wraps it in a WebSocket frame once and a
//! per-stream fan-out task writes those same bytes to every subscriber's socket from one loop: no
//! wake-up, mailbox message or encode per viewer. When the task falls behind, it takes every queued
//! event at once and writes them to each socket together (one write for several events). The
//! trait is the seam for cross-node fan-out: a Redis-backed broker can relay the same items
//! between nodes without touching the stream actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use liveshop_engine::StreamId;
use liveshop_engine::frames::ws_text_frame;
use tokio::sync::mpsc;

use crate::metrics as names;

/// A live connection as the engine sees it: something frames can be written to.
///
/// Implemented by the WebSocket gateway. Writes never wait: a connection that cannot take more
/// buffers a bounded amount, then closes itself as a slow consumer.
pub trait Connection: Send + Sync + 'static {
    /// Unique id of the connection within the process.
    fn id(&self) -> u64;
    /// Writes already-framed WebSocket bytes; false when the connection is gone.
    fn deliver(&self, frame: &Bytes) -> bool;
    /// Frames and writes one JSON message (replies, private frames).
    fn send_json(&self, json: &[u8]) -> bool {
        self.deliver(&ws_text_frame(json))
    }
    /// A joined stream restarted: its session must join again for a fresh snapshot.
    fn rejoin(&self, stream: &StreamId);
}

/// A subscriber handle.
pub type Subscriber = Arc<dyn Connection>;

/// Delivers a stream's events to every subscriber of that stream.
pub trait Broker: Send + Sync + 'static {
    /// Hands one encoded event (JSON) to every current subscriber of `stream`, in publish order.
    fn publish(&self, stream: &StreamId, event: Bytes);
    /// Counts a connection that is about to subscribe, so a snapshot taken now includes it.
    fn joining(&self, stream: &StreamId);
    /// Adds a subscriber: it first gets `first` (JSON messages: the `joined` reply and any
    /// replayed events), then every event published after this call, and nothing published before.
    fn subscribe(&self, stream: &StreamId, subscriber: Subscriber, first: Vec<Bytes>);
    /// Removes a subscriber after the events already published, then sends it `then` (JSON).
    fn unsubscribe(&self, stream: &StreamId, subscriber: Subscriber, then: Option<Bytes>);
    /// The stream's actor restarted: every subscriber is asked to re-join, and is dropped.
    fn restarted(&self, stream: &StreamId);
    /// Connections subscribed to `stream` on this node.
    fn subscribers(&self, stream: &StreamId) -> usize;
    /// Forgets a stream that ended.
    fn remove(&self, stream: &StreamId);
}

enum FanoutMsg {
    Event(Bytes),
    Subscribe(Subscriber, Vec<Bytes>),
    Unsubscribe(Subscriber, Option<Bytes>),
    Restarted(StreamId),
}

struct Topic {
    tx: mpsc::UnboundedSender<FanoutMsg>,
    count: Arc<AtomicUsize>,
}

/// Single-node broker: one fan-out task per stream, in this process.
///
/// Its queues are unbounded on purpose: their inflow is the stream actor's ordered events, bounded
/// by the chat rate limits, and the task drains them at socket speed; per-connection buffers are
/// bounded by the connections themselves.
#[derive(Default)]
pub struct InProcessBroker {
    topics: DashMap<StreamId, Topic>,
}

impl InProcessBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    fn send(&self, stream: &StreamId, msg: FanoutMsg) {
        let topic = self
            .topics
            .entry(stream.clone())
            .or_insert_with(spawn_topic);
        let _ = topic.tx.send(msg);
    }
}

fn spawn_topic() -> Topic {
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(fan_out(rx, count.clone()));
    Topic { tx, count }
}

/// Most queued messages taken in one round.
const ROUND: usize = 256;

/// Sockets written between two yields of a fan-out task. A broadcast to ten thousand viewers
/// takes tens of milliseconds of one core; the tasks queued behind it on the same worker thread
/// (other connections' claims and replies) get their turn every few hundred writes instead of
/// waiting for all of them.
const WRITES_PER_TURN: usize = 256;

async fn fan_out(mut rx: mpsc::UnboundedReceiver<FanoutMsg>, count: Arc<AtomicUsize>) {
    let mut fanout = Fanout::default();
    let mut round = Vec::with_capacity(ROUND);
    while rx.recv_many(&mut round, ROUND).await > 0 {
        let mut events = BytesMut::new();
        let mut queued = 0u64;
        for msg in round.drain(..) {
            match msg {
                FanoutMsg::Event(json) => {
                    events.extend_from_slice(&ws_text_frame(&json));
                    queued += 1;
                }
                FanoutMsg::Subscribe(subscriber, first) => {
                    // Membership changes apply between events: deliver what came before first.
                    deliver_in_turns(&mut fanout, &events.split().freeze(), queued).await;
                    queued = 0;
                    fanout.subscribe(subscriber, &first);
                }
                FanoutMsg::Unsubscribe(subscriber, then) => {
                    deliver_in_turns(&mut fanout, &events.split().freeze(), queued).await;
                    queued = 0;
                    fanout.unsubscribe(&subscriber, then.as_deref());
                }
                FanoutMsg::Restarted(stream) => {
                    deliver_in_turns(&mut fanout, &events.split().freeze(), queued).await;
                    queued = 0;
                    fanout.restarted(&stream);
                }
            }
            count.store(fanout.len(), Ordering::Relaxed);
        }
        deliver_in_turns(&mut fanout, &events.freeze(), queued).await;
        count.store(fanout.len(), Ordering::Relaxed);
    }
}

/// Writes `frames` to every subscriber, yielding to the runtime every [`WRITES_PER_TURN`]
/// sockets. Nothing else touches `fanout` meanwhile (this task owns it), so the event still
/// reaches exactly the subscribers of the moment it was taken, in publish order.
async fn deliver_in_turns(fanout: &mut Fanout, frames: &Bytes, events: u64) {
    if frames.is_empty() {
        return;
    }
    let mut from = 0;
    while let Some(next) = fanout.deliver_part(frames, from, WRITES_PER_TURN) {
        from = next;
        tokio::task::yield_now().await;
    }
    fanout.count_delivered(events);
}

/// The subscribers of one stream and the loop that writes to them: the hot path of fan-out.
#[derive(Default)]
pub struct Fanout {
    subscribers: Vec<Subscriber>,
}

impl Fanout {
    /// Subscribers now.
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Whether nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Writes `frames` (already framed; `events` of them) to every subscriber, dropping the
    /// connections that are gone. Returns how many subscribers took them.
    pub fn deliver(&mut self, frames: &Bytes, events: u64) -> usize {
        if frames.is_empty() {
            return self.subscribers.len();
        }
        let _ = self.deliver_part(frames, 0, usize::MAX);
        self.count_delivered(events)
    }

    /// Writes `frames` to at most `max` subscribers from index `from` on, dropping the
    /// connections that are gone. Returns the index to go on from, or `None` once every
    /// subscriber has them.
    pub fn deliver_part(&mut self, frames: &Bytes, from: usize, max: usize) -> Option<usize> {
        let mut at = from;
        let mut written = 0;
        while at < self.subscribers.len() {
            if written == max {
                return Some(at);
            }
            written += 1;
            if self.subscribers[at].deliver(frames) {
                at += 1;
            } else {
                // The last subscriber, not yet written, takes this place and is written next.
                self.subscribers.swap_remove(at);
            }
        }
        None
    }

    /// Counts `events` delivered to every current subscriber; returns how many there are.
    pub fn count_delivered(&self, events: u64) -> usize {
        let took = self.subscribers.len();
        metrics::counter!(names::EVENTS_DELIVERED).increment(events * took as u64);
        took
    }

    /// Adds a subscriber after writing it `first` (JSON messages); replaces an earlier
    /// subscription of the same connection.
    pub fn subscribe(&mut self, subscriber: Subscriber, first: &[Bytes]) {
        let id = subscriber.id();
        self.subscribers.retain(|s| s.id() != id);
        let mut frames = BytesMut::new();
        for json in first {
            frames.extend_from_slice(&ws_text_frame(json));
        }
        if frames.is_empty() || subscriber.deliver(&frames.freeze()) {
            self.subscribers.push(subscriber);
        }
    }

    /// Removes a subscriber (if subscribed), then sends it `then` (JSON).
    pub fn unsubscribe(&mut self, subscriber: &Subscriber, then: Option<&[u8]>) {
        let id = subscriber.id();
        self.subscribers.retain(|s| s.id() != id);
        if let Some(json) = then {
            subscriber.send_json(json);
        }
    }

    /// Asks every subscriber to re-join `stream`, and forgets them.
    pub fn restarted(&mut self, stream: &StreamId) {
        for s in self.subscribers.drain(..) {
            s.rejoin(stream);
        }
    }
}

impl Broker for InProcessBroker {
    fn publish(&self, stream: &StreamId, event: Bytes) {
        if let Some(topic) = self.topics.get(stream) {
            let _ = topic.tx.send(FanoutMsg::Event(event));
        }
    }

    fn joining(&self, stream: &StreamId) {
        let topic = self
            .topics
            .entry(stream.clone())
            .or_insert_with(spawn_topic);
        // The fan-out task stores the exact count again once it applied the subscription.
        topic.count.fetch_add(1, Ordering::Relaxed);
    }

    fn subscribe(&self, stream: &StreamId, subscriber: Subscriber, first: Vec<Bytes>) {
        self.send(stream, FanoutMsg::Subscribe(subscriber, first));
    }

    fn unsubscribe(&self, stream: &StreamId, subscriber: Subscriber, then: Option<Bytes>) {
        match self.topics.get(stream) {
            Some(topic) => {
                let _ = topic.tx.send(FanoutMsg::Unsubscribe(subscriber, then));
            }
            // No fan-out task: nothing to leave, but the reply is still owed.
            None => {
                if let Some(json) = then {
                    subscriber.send_json(&json);
                }
            }
        }
    }

    fn restarted(&self, stream: &StreamId) {
        if let Some(topic) = self.topics.get(stream) {
            let _ = topic.tx.send(FanoutMsg::Restarted(stream.clone()));
        }
    }

    fn subscribers(&self, stream: &StreamId) -> usize {
        self.topics
            .get(stream)
            .map_or(0, |t| t.count.load(Ordering::Relaxed))
    }

    fn remove(&self, stream: &StreamId) {
        // Dropping the sender ends the task once it has written what is queued.
        self.topics.remove(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A connection that records what reaches it.
    #[derive(Default)]
    struct Recorder {
        id: u64,
        got: Mutex<Vec<u8>>,
        rejoined: Mutex<Vec<String>>,
        closed: std::sync::atomic::AtomicBool,
    }

    impl Connection for Recorder {
        fn id(&self) -> u64 {
            self.id
        }
        fn deliver(&self, frame: &Bytes) -> bool {
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            self.got.lock().unwrap().extend_from_slice(frame);
            true
        }
        fn rejoin(&self, stream: &StreamId) {
            self.rejoined.lock().unwrap().push(stream.to_string());
        }
    }

    fn recorder(id: u64) -> Arc<Recorder> {
        Arc::new(Recorder {
            id,
            ..Recorder::default()
        })
    }

    /// Decodes the payloads of short unmasked text frames.
    fn payloads(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let len = usize::from(bytes[i + 1]);
            out.push(String::from_utf8(bytes[i + 2..i + 2 + len].to_vec()).unwrap());
            i += 2 + len;
        }
        out
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn subscribers_get_their_first_frames_then_only_later_events() {
        let broker = InProcessBroker::new();
        let s = StreamId::from_trusted("s");
        let a = recorder(1);
        broker.subscribe(&s, a.clone(), vec![Bytes::from_static(b"joined")]);
        broker.publish(&s, Bytes::from_static(b"e1"));
        let b = recorder(2);
        broker.subscribe(&s, b.clone(), vec![Bytes::from_static(b"joined-b")]);
        broker.publish(&s, Bytes::from_static(b"e2"));
        settle().await;
        assert_eq!(payloads(&a.got.lock().unwrap()), ["joined", "e1", "e2"]);
        assert_eq!(payloads(&b.got.lock().unwrap()), ["joined-b", "e2"]);
        assert_eq!(broker.subscribers(&s), 2);
    }

    #[tokio::test]
    async fn unsubscribe_takes_effect_after_earlier_events_and_sends_the_reply_last() {
        let broker = InProcessBroker::new();
        let s = StreamId::from_trusted("s");
        let a = recorder(1);
        broker.subscribe(&s, a.clone(), vec![]);
        broker.publish(&s, Bytes::from_static(b"e1"));
        broker.unsubscribe(&s, a.clone(), Some(Bytes::from_static(b"ok")));
        broker.publish(&s, Bytes::from_static(b"e2"));
        settle().await;
        assert_eq!(payloads(&a.got.lock().unwrap()), ["e1", "ok"]);
        assert_eq!(broker.subscribers(&s), 0);
    }

    #[tokio::test]
    async fn closed_connections_are_dropped_and_a_restart_asks_the_rest_to_rejoin() {
        let broker = InProcessBroker::new();
        let s = StreamId::from_trusted("s");
        let (a, b) = (recorder(1), recorder(2));
        broker.subscribe(&s, a.clone(), vec![]);
        broker.subscribe(&s, b.clone(), vec![]);
        b.closed.store(true, Ordering::Relaxed);
        broker.publish(&s, Bytes::from_static(b"e1"));
        broker.restarted(&s);
        settle().await;
        assert_eq!(payloads(&a.got.lock().unwrap()), ["e1"]);
        assert_eq!(a.rejoined.lock().unwrap().as_slice(), ["s"]);
        assert!(b.rejoined.lock().unwrap().is_empty());
        assert_eq!(broker.subscribers(&s), 0);
    }

    #[test]
    fn delivery_in_parts_reaches_every_live_subscriber_once() {
        let mut fanout = Fanout::default();
        let subs: Vec<Arc<Recorder>> = (0..7).map(recorder).collect();
        for s in &subs {
            fanout.subscribe(s.clone(), &[]);
        }
        // Gone: the first, one in the middle and the last (swapped into an earlier place).
        for gone in [0, 3, 6] {
            subs[gone].closed.store(true, Ordering::Relaxed);
        }
        let frame = ws_text_frame(b"e1");
        let mut from = 0;
        let mut parts = 1;
        while let Some(next) = fanout.deliver_part(&frame, from, 2) {
            from = next;
            parts += 1;
        }
        assert_eq!(parts, 4, "seven subscribers, two writes per part");
        for (i, s) in subs.iter().enumerate() {
            let want: &[&str] = if [0, 3, 6].contains(&i) { &[] } else { &["e1"] };
            assert_eq!(payloads(&s.got.lock().unwrap()), want, "subscriber {i}");
        }
        assert_eq!(fanout.len(), 4);
    }

    #[tokio::test]
    async fn a_broadcast_larger_than_a_turn_keeps_order_and_membership() {
        let broker = InProcessBroker::new();
        let s = StreamId::from_trusted("s");
        let many: Vec<Arc<Recorder>> = (0..(3 * WRITES_PER_TURN as u64 + 5))
            .map(recorder)
            .collect();
        for r in &many {
            broker.subscribe(&s, r.clone(), vec![]);
        }
        broker.publish(&s, Bytes::from_static(b"e1"));
        broker.publish(&s, Bytes::from_static(b"e2"));
        let late = recorder(u64::MAX);
        broker.subscribe(&s, late.clone(), vec![Bytes::from_static(b"joined")]);
        broker.publish(&s, Bytes::from_static(b"e3"));
        settle().await;
        for r in &many {
            assert_eq!(payloads(&r.got.lock().unwrap()), ["e1", "e2", "e3"]);
        }
        assert_eq!(payloads(&late.got.lock().unwrap()), ["joined", "e3"]);
        assert_eq!(broker.subscribers(&s), many.len() + 1);
    }
}
