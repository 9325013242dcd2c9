//! The hub: this node's sockets per stream, the resume ring, and the no-gap join.
//!
//! Each stream with viewers on this node has one fan-out task. Everything about the stream's feed
//! on this node goes through that task's queue, in order: events from the bus, joins, leaves and
//! control messages. The task frames each event once and writes the same bytes to every
//! subscriber from one loop, yielding every [`WRITES_PER_TURN`] writes; when it falls behind it
//! takes every queued event at once and writes them to each socket together.
//!
//! Because joins are queued with the events, the task answers a join knowing exactly which events
//! its subscribers already got: it keeps the last `resume_buffer` ordered events of the current
//! epoch (the [`Ring`]) and sends a joiner either `joined` with `resumed:true` and the events it
//! missed, or the snapshot `joined` frame (completed from the ring when the snapshot is older than
//! what the task already sent, or held back until the events it includes have arrived). Each
//! joiner therefore gets every event after its snapshot or resume point exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use liveshop_engine::StreamId;
use liveshop_engine::frames::{encode_joined, ws_text_frame};
use liveshop_engine::moderation::redact::redact;
use liveshop_engine::stream::{Resume, resume};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::bus::{BusMessage, BusSink, Control, StreamEvent};
use super::ring::Ring;
use crate::connection::Subscriber;
use crate::metrics as names;

/// The stream's state as a joiner sees it, taken by the stream actor at `(epoch, seq)`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Epoch the snapshot belongs to.
    pub epoch: u64,
    /// Last seq included in the snapshot.
    pub seq: u64,
    /// The `snapshot` object of the `joined` frame, serialized once and shared by joiners.
    pub state: Arc<RawValue>,
}

/// A connection joining a stream on this node.
pub struct Join {
    /// The joining connection.
    pub subscriber: Subscriber,
    /// The client's correlation string, echoed in `joined`.
    pub r#ref: Option<String>,
    /// The client's `(epoch, since)` when it resumes.
    pub resume: Option<(u64, u64)>,
    /// The stream's snapshot, sent when neither the ring nor `backlog` can resume the client.
    pub snapshot: Snapshot,
    /// Events `since + 1 ..` of the resume's epoch from a history kept elsewhere (the cluster's
    /// history in Redis), for a client resuming on a node whose ring does not reach back that
    /// far. Used only when the ring cannot resume the client and the backlog joins up with it;
    /// events it holds that the feed has not had yet go to every subscriber at once, and the
    /// feed ignores them when they arrive later.
    pub backlog: Option<Vec<StreamEvent>>,
}

/// What a stream's fan-out task takes from its queue.
enum HubMsg {
    /// An event to write.
    Event(StreamEvent),
    /// A change of who gets the events, applied between two events.
    Change(Change),
}

enum Change {
    Join(Join),
    Leave(Subscriber, Option<Bytes>),
    Control(Control),
}

struct Topic {
    tx: mpsc::UnboundedSender<HubMsg>,
    count: Arc<AtomicUsize>,
}

/// This node's connections per stream, each stream served by its own fan-out task.
///
/// Its queues are unbounded on purpose: their inflow is the streams' ordered events, bounded by
/// the chat rate limits, and the tasks drain them at socket speed; per-connection buffers are
/// bounded by the connections themselves.
pub struct Hub {
    topics: DashMap<StreamId, Topic>,
    resume_buffer: usize,
}

impl Hub {
    /// An empty hub whose streams each keep their last `resume_buffer` ordered events.
    pub fn new(resume_buffer: usize) -> Self {
        Self {
            topics: DashMap::new(),
            resume_buffer,
        }
    }

    fn send(&self, stream: &StreamId, msg: HubMsg) {
        let topic = self
            .topics
            .entry(stream.clone())
            .or_insert_with(|| spawn_topic(stream.clone(), self.resume_buffer));
        let _ = topic.tx.send(msg);
    }

    /// Counts a connection that is about to join, so a snapshot taken now includes it.
    pub fn joining(&self, stream: &StreamId) {
        let topic = self
            .topics
            .entry(stream.clone())
            .or_insert_with(|| spawn_topic(stream.clone(), self.resume_buffer));
        // The fan-out task stores the exact count again once it applied the join.
        topic.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a subscriber after the messages already queued: it gets its `joined` frame (and the
    /// events it missed), then every later event. Joining again replaces the earlier subscription.
    pub fn join(&self, stream: &StreamId, join: Join) {
        self.send(stream, HubMsg::Change(Change::Join(join)));
    }

    /// Removes a subscriber after the events already queued, then sends it `then` (JSON).
    pub fn leave(&self, stream: &StreamId, subscriber: Subscriber, then: Option<Bytes>) {
        match self.topics.get(stream) {
            Some(topic) => {
                let _ = topic
                    .tx
                    .send(HubMsg::Change(Change::Leave(subscriber, then)));
            }
            // No fan-out task: nothing to leave, but the reply is still owed.
            None => {
                if let Some(json) = then {
                    subscriber.send_json(&json);
                }
            }
        }
    }

    /// Connections joined to `stream` on this node (including those whose join is in progress).
    pub fn subscribers(&self, stream: &StreamId) -> usize {
        self.topics
            .get(stream)
            .map_or(0, |t| t.count.load(Ordering::Relaxed))
    }

    /// Every stream with a fan-out task on this node and its connections, for presence that
    /// publishes this node's counts.
    pub fn streams(&self) -> Vec<(StreamId, usize)> {
        self.topics
            .iter()
            .map(|t| (t.key().clone(), t.count.load(Ordering::Relaxed)))
            .collect()
    }
}

impl BusSink for Hub {
    fn receive(&self, stream: &StreamId, message: BusMessage) {
        let msg = match message {
            // Dropping the sender ends the task once it has written what is queued.
            BusMessage::Control(Control::Remove) => {
                self.topics.remove(stream);
                return;
            }
            BusMessage::Event(event) => HubMsg::Event(event),
            BusMessage::Control(control) => HubMsg::Change(Change::Control(control)),
        };
        // Streams without viewers on this node have no task: nothing to write, nobody to resume.
        if let Some(topic) = self.topics.get(stream) {
            let _ = topic.tx.send(msg);
        }
    }

    fn local_viewers(&self, stream: &StreamId) -> Option<usize> {
        Some(self.subscribers(stream))
    }
}

fn spawn_topic(stream: StreamId, resume_buffer: usize) -> Topic {
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(fan_out(Feed::new(stream, resume_buffer), rx, count.clone()));
    Topic { tx, count }
}

/// Most queued messages taken in one round.
const ROUND: usize = 256;

/// Sockets written between two yields of a fan-out task. A broadcast to ten thousand viewers
/// takes tens of milliseconds of one core; the tasks queued behind it on the same worker thread
/// (other connections' claims and replies) get their turn every few hundred writes instead of
/// waiting for all of them.
pub const WRITES_PER_TURN: usize = 256;

async fn fan_out(mut feed: Feed, mut rx: mpsc::UnboundedReceiver<HubMsg>, count: Arc<AtomicUsize>) {
    let mut round = Vec::with_capacity(ROUND);
    let mut batch = Batch::default();
    while rx.recv_many(&mut round, ROUND).await > 0 {
        for msg in round.drain(..) {
            match msg {
                HubMsg::Event(event) => feed.event(event, &mut batch).await,
                // Membership changes apply between events: deliver what came before first.
                HubMsg::Change(change) => {
                    batch.flush(&mut feed.subscribers).await;
                    feed.apply(change);
                }
            }
            count.store(feed.len(), Ordering::Relaxed);
        }
        batch.flush(&mut feed.subscribers).await;
        count.store(feed.len(), Ordering::Relaxed);
    }
}

/// Events framed and queued for the subscribers, written together.
#[derive(Default)]
struct Batch {
    frames: BytesMut,
    events: u64,
}

impl Batch {
    fn push(&mut self, json: &[u8]) {
        self.frames.extend_from_slice(&ws_text_frame(json));
        self.events += 1;
    }

    async fn flush(&mut self, subscribers: &mut Subscribers) {
        let events = std::mem::take(&mut self.events);
        deliver_in_turns(subscribers, &self.frames.split().freeze(), events).await;
    }
}

/// What the feed does with an event from the bus.
enum Accepted {
    /// Next in the feed: write it.
    Deliver,
    /// Already sent, or from an older epoch: drop it.
    Ignore,
    /// It does not follow what the subscribers got (a gap, an unannounced epoch): they must
    /// re-join. The ring restarted at this event.
    Resync,
}

/// Where a joiner's snapshot stands against what the feed already sent.
enum Fit {
    /// Send it now, followed by the ring's events from this seq.
    Now { from: u64 },
    /// It includes events that have not reached this node yet: hold the joiner back.
    Later,
    /// It is older than what the ring can complete: the joiner must take a new snapshot.
    Never,
}

/// One stream's feed on this node: its subscribers, its ring and the joiners held back.
struct Feed {
    stream: StreamId,
    subscribers: Subscribers,
    ring: Ring,
    /// Joiners whose snapshot is ahead of the events this node got (cross-node lag).
    pending: Vec<Join>,
}

impl Feed {
    fn new(stream: StreamId, resume_buffer: usize) -> Self {
        Self {
            stream,
            subscribers: Subscribers::default(),
            ring: Ring::new(resume_buffer),
            pending: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.subscribers.len() + self.pending.len()
    }

    async fn event(&mut self, event: StreamEvent, batch: &mut Batch) {
        match self.accept(&event) {
            Accepted::Deliver => {
                batch.push(&event.bytes);
                if event.seq.is_some() && !self.pending.is_empty() {
                    batch.flush(&mut self.subscribers).await;
                    self.admit_pending();
                }
            }
            Accepted::Ignore => {}
            Accepted::Resync => {
                batch.flush(&mut self.subscribers).await;
                self.subscribers.restarted(&self.stream);
                self.admit_pending();
            }
        }
    }

    fn accept(&mut self, event: &StreamEvent) -> Accepted {
        let current = self.ring.epoch();
        let Some(seq) = event.seq else {
            return if current.is_some_and(|epoch| event.epoch < epoch) {
                Accepted::Ignore
            } else {
                Accepted::Deliver
            };
        };
        let restart = |ring: &mut Ring| {
            ring.reset(event.epoch, seq.saturating_sub(1));
            ring.push(event.bytes.clone());
        };
        match current {
            None => {
                restart(&mut self.ring);
                Accepted::Deliver
            }
            Some(epoch) if event.epoch < epoch => Accepted::Ignore,
            Some(epoch) if event.epoch > epoch => {
                restart(&mut self.ring);
                Accepted::Resync
            }
            Some(_) if seq <= self.ring.head() => Accepted::Ignore,
            Some(_) if seq == self.ring.head() + 1 => {
                self.ring.push(event.bytes.clone());
                Accepted::Deliver
            }
            Some(_) => {
                restart(&mut self.ring);
                Accepted::Resync
            }
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Join(join) => self.join(join),
            Change::Leave(subscriber, then) => {
                let id = subscriber.id();
                self.pending.retain(|j| j.subscriber.id() != id);
                self.subscribers.unsubscribe(&subscriber, then.as_deref());
            }
            Change::Control(Control::Epoch(epoch)) => {
                if self.ring.epoch().is_none_or(|current| epoch > current) {
                    self.new_epoch(epoch);
                }
            }
            Change::Control(Control::Rejoin) => {
                self.subscribers.restarted(&self.stream);
                for join in self.pending.drain(..) {
                    join.subscriber.rejoin(&self.stream);
                }
            }
            // Handled by the hub, which drops the task's queue.
            Change::Control(Control::Remove) => {}
        }
    }

    /// A new incarnation numbers from 1 in `epoch`: the ring restarts, and the subscribers (all of
    /// an older epoch) re-join.
    fn new_epoch(&mut self, epoch: u64) {
        self.ring.reset(epoch, 0);
        self.subscribers.restarted(&self.stream);
        self.admit_pending();
    }

    fn join(&mut self, join: Join) {
        let id = join.subscriber.id();
        self.pending.retain(|j| j.subscriber.id() != id);
        if let (Some((epoch, since)), Some(kept)) = (join.resume, self.ring.kept())
            && let Resume::Replay { from } = resume(kept, epoch, since)
        {
            let mut first = Vec::with_capacity(1 + (kept.head + 1 - from) as usize);
            first.push(encode_joined(
                join.r#ref.as_deref(),
                self.stream.as_str(),
                kept.epoch,
                kept.head,
                true,
                None,
            ));
            first.extend(self.ring.since(from).cloned());
            redact(&self.stream, &mut first[1..]);
            self.subscribers.subscribe(join.subscriber, &first);
            return;
        }
        if let Some((epoch, since)) = join.resume
            && let Some(backlog) = join.backlog.as_deref()
            && let Some(first) = self.replay_with_backlog(
                join.r#ref.as_deref(),
                &join.snapshot,
                epoch,
                since,
                backlog,
            )
        {
            self.subscribers.subscribe(join.subscriber, &first);
            return;
        }
        if self.ring.epoch().is_none() {
            // The first join teaches this node's feed where the stream stands.
            self.ring.reset(join.snapshot.epoch, join.snapshot.seq);
        } else if let Some(kept) = self.ring.kept()
            && join.snapshot.epoch > kept.epoch
            && join.snapshot.seq == 0
        {
            // A new epoch whose announcement has not arrived yet, and nothing numbered in it.
            self.new_epoch(join.snapshot.epoch);
        }
        match self.fit(&join.snapshot) {
            Fit::Now { from } => self.admit(join, from),
            Fit::Later => {
                self.subscribers.remove(id);
                self.pending.push(join);
            }
            Fit::Never => {
                self.subscribers.remove(id);
                join.subscriber.rejoin(&self.stream);
            }
        }
    }

    /// The `joined` frame and events for a resume from `(epoch, since)` that the ring alone
    /// cannot serve, with `backlog` (events `since + 1 ..`) filling in what the ring lacks;
    /// `None` when the two together do not cover every event after `since` without a gap.
    ///
    /// Backlog events past the feed's head advance the feed first: they are pushed to the ring
    /// and written to the current subscribers, so every subscriber (the joiner included) gets
    /// each of them once, and the same events arriving later from the bus are ignored.
    fn replay_with_backlog(
        &mut self,
        r#ref: Option<&str>,
        snapshot: &Snapshot,
        epoch: u64,
        since: u64,
        backlog: &[StreamEvent],
    ) -> Option<Vec<Bytes>> {
        // Only the stream's current epoch is resumed, from contiguous events after `since`.
        let contiguous = backlog
            .iter()
            .zip(since + 1..)
            .all(|(event, want)| event.epoch == epoch && event.seq == Some(want));
        if snapshot.epoch != epoch || !contiguous {
            return None;
        }
        let end = since + backlog.len() as u64;
        match self.ring.kept() {
            None => {
                self.ring.reset(epoch, since);
                for event in backlog {
                    self.ring.push(event.bytes.clone());
                }
            }
            Some(kept) if kept.epoch == epoch && since <= kept.head && end + 1 >= kept.oldest => {
                if end > kept.head {
                    let mut frames = BytesMut::new();
                    let newer = &backlog[(kept.head - since) as usize..];
                    for event in newer {
                        self.ring.push(event.bytes.clone());
                        frames.extend_from_slice(&ws_text_frame(&event.bytes));
                    }
                    self.subscribers
                        .deliver(&frames.freeze(), newer.len() as u64);
                }
            }
            Some(_) => return None,
        }
        let kept = self.ring.kept()?;
        let from_ring = kept.oldest.max(since + 1);
        let mut first = Vec::with_capacity(1 + (kept.head - since) as usize);
        first.push(encode_joined(
            r#ref,
            self.stream.as_str(),
            epoch,
            kept.head,
            true,
            None,
        ));
        first.extend(
            backlog
                .iter()
                .take_while(|event| event.seq < Some(from_ring))
                .map(|event| event.bytes.clone()),
        );
        first.extend(self.ring.since(from_ring).cloned());
        redact(&self.stream, &mut first[1..]);
        // The feed may have reached snapshots held back for it.
        self.admit_pending();
        Some(first)
    }

    fn fit(&self, snapshot: &Snapshot) -> Fit {
        let Some(kept) = self.ring.kept() else {
            return Fit::Later;
        };
        if snapshot.epoch > kept.epoch || (snapshot.epoch == kept.epoch && snapshot.seq > kept.head)
        {
            return Fit::Later;
        }
        match resume(kept, snapshot.epoch, snapshot.seq) {
            Resume::Replay { from } => Fit::Now { from },
            Resume::Snapshot => Fit::Never,
        }
    }

    /// Sends the snapshot `joined` frame and the ring's events from `from`, then subscribes.
    fn admit(&mut self, join: Join, from: u64) {
        let snapshot = &join.snapshot;
        let mut first = vec![encode_joined(
            join.r#ref.as_deref(),
            self.stream.as_str(),
            snapshot.epoch,
            snapshot.seq,
            false,
            Some(&snapshot.state),
        )];
        first.extend(self.ring.since(from).cloned());
        redact(&self.stream, &mut first[1..]);
        self.subscribers.subscribe(join.subscriber, &first);
    }

    /// Admits the held-back joiners whose snapshot the feed has now reached.
    fn admit_pending(&mut self) {
        for join in std::mem::take(&mut self.pending) {
            match self.fit(&join.snapshot) {
                Fit::Now { from } => self.admit(join, from),
                Fit::Later => self.pending.push(join),
                Fit::Never => join.subscriber.rejoin(&self.stream),
            }
        }
    }
}

/// Writes `frames` to every subscriber, yielding to the runtime every [`WRITES_PER_TURN`]
/// sockets. Nothing else touches `subscribers` meanwhile (the stream's task owns them), so the
/// events still reach exactly the subscribers of the moment they were taken, in publish order.
async fn deliver_in_turns(subscribers: &mut Subscribers, frames: &Bytes, events: u64) {
    if frames.is_empty() {
        return;
    }
    let mut from = 0;
    while let Some(next) = subscribers.deliver_part(frames, from, WRITES_PER_TURN) {
        from = next;
        tokio::task::yield_now().await;
    }
    subscribers.count_delivered(events);
}

/// The subscribers of one stream on this node and the loop that writes to them: the hot path of
/// fan-out.
#[derive(Default)]
pub struct Subscribers {
    subscribers: Vec<Subscriber>,
}

impl Subscribers {
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
        self.remove(subscriber.id());
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
        self.remove(subscriber.id());
        if let Some(json) = then {
            subscriber.send_json(json);
        }
    }

    /// Forgets the connection with id `id`, if subscribed.
    pub fn remove(&mut self, id: u64) {
        self.subscribers.retain(|s| s.id() != id);
    }

    /// Asks every subscriber to re-join `stream`, and forgets them.
    pub fn restarted(&mut self, stream: &StreamId) {
        for s in self.subscribers.drain(..) {
            s.rejoin(stream);
        }
    }
}
