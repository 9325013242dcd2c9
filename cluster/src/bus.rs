//! The Redis bus: a stream's events and control messages from its owner node to every node that
//! watches the stream, with the history any node resumes from.
//!
//! ```text
//! publish ─▶ queue ─▶ publisher task ─▶ one Lua script per stream and batch:
//!                          │              XADD history + meta, then PUBLISH on the stream's channel
//!                          └─ Redis failed: this node's sink directly (local fallback), and the
//!                             ordered events and controls wait in the outbox for Redis
//! channel ─▶ subscriber task (own pub/sub connection) ─▶ dedupe / gap fill ─▶ sink (the hub)
//! ```
//!
//! Invariants:
//! - **Redis-first.** This node's hub gets events from its subscription like every other node's,
//!   so every ordered event any viewer saw is in the history (see [`crate::history`]) unless it
//!   was delivered by the local fallback while Redis was unreachable.
//! - **Exactly once, in order, or a re-join.** Per watched stream the bus remembers the last
//!   `(epoch, seq)` it handed the sink: repeats (re-sends, echoes of events the fallback already
//!   delivered) are dropped; a gap is filled from the history before the event, and when the
//!   history cannot fill it the sink gets [`Control::Rejoin`] (its viewers join again for a fresh
//!   snapshot). Never a silent gap. The fallback closes the gap between what came back from
//!   Redis and what it delivers with the events this node published lately (the last 256 per
//!   stream); if even those do not close it, this node's viewers re-join.
//! - **The fallback bound.** While Redis is unreachable, at most [`BusOptions::max_pending`]
//!   messages wait in the outbox (ephemeral events never wait: they only reach this node). Past
//!   that the outbox is dropped and, once Redis is back, each stream it held gets
//!   [`Control::Rejoin`] before anything newer, so other nodes re-join instead of missing events.
//!   The outbox is retried in order with backoff ([`MIN_BACKOFF`]..[`MAX_BACKOFF`]).
//! - **Recovery.** The subscriber reconnects with the same backoff, subscribes every watched
//!   stream again and catches each up from the history since its last seq (or re-joins it when
//!   the history no longer covers that, e.g. Redis restarted empty), so cross-node delivery
//!   resumes within about [`MAX_BACKOFF`] plus one call timeout of Redis being back.
//!
//! Not done here: a Rejoin published for an overflowed outbox also reaches this node's own
//! viewers, who had every event through the fallback and re-join needlessly. An ephemeral event
//! whose batch timed out after Redis ran it reaches this node twice (once by fallback, once by
//! the echo): ephemeral events carry no seq to drop the repeat by.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use futures_util::StreamExt;
use futures_util::future::join_all;
use liveshop_actors::fanout::bus::{Bus, BusError, BusMessage, BusSink, Control, StreamEvent};
use liveshop_engine::StreamId;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::history::History;
use crate::keys;
use crate::link::{CALL_TIMEOUT, Link, LinkError, timed};
use crate::wire;

/// Counter of messages this node put on Redis (each once, whatever the number of nodes).
pub const MESSAGES_PUBLISHED: &str = "liveshop_cluster_messages_published_total";
/// Counter of messages this node took from its subscription.
pub const MESSAGES_RECEIVED: &str = "liveshop_cluster_messages_received_total";

/// First wait before retrying Redis (publishing or reconnecting) after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two retries: with [`CALL_TIMEOUT`] it bounds how long after Redis is
/// back cross-node delivery resumes (the contract allows 5 s).
pub const MAX_BACKOFF: Duration = Duration::from_millis(1000);

/// Most messages the publisher sends to Redis in one round.
const MAX_BATCH: usize = 1024;

/// How often the subscriber pings its connection (a half-open connection is found within this
/// plus [`CALL_TIMEOUT`]) and looks for streams nobody views any more.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Expiry of a stream's history and meta, renewed by every publish: streams that stop without
/// being removed do not stay in Redis for ever.
const HISTORY_TTL_SECS: u64 = 24 * 3600;
/// Expiry of a stream's history once it was removed (ended): nodes may still resume briefly.
const REMOVED_TTL_SECS: u64 = 3600;

/// Publishes one stream's messages of a batch, in order, atomically. ARGV: history length,
/// history ttl, removed ttl, then per message kind, epoch, seq, wire header, body.
///
/// Ordered events go to the history (contiguous seqs of the meta's epoch: an event that does not
/// follow, or of another epoch, empties it first), except repeats (`seq <= meta.seq` in the
/// meta's epoch), which were published already and are skipped entirely. `Epoch(e)` empties the
/// history when `e` is not the meta's epoch. Everything else is published as is.
const PUBLISH_SCRIPT: &str = r"
local hist, meta, channel = KEYS[1], KEYS[2], KEYS[3]
local keep = ARGV[1]
local epoch = tonumber(redis.call('HGET', meta, 'epoch') or '0')
local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
local published = 0
local removed = false
for i = 4, #ARGV, 5 do
  local kind, e, s, head, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local send = true
  local en = tonumber(e)
  if (kind == 'o' or kind == 'e') and en < epoch then
    -- An older epoch's owner that lost the stream meanwhile: never published, never kept.
    send = false
  elseif kind == 'o' then
    local n = tonumber(s)
    if en == epoch and n <= seq then
      send = false
    else
      if en ~= epoch or n ~= seq + 1 then
        redis.call('DEL', hist)
      end
      redis.call('XADD', hist, 'MAXLEN', '~', keep, s .. '-0', 'e', e, 's', s, 'b', body)
      redis.call('HSET', meta, 'epoch', e, 'seq', s)
      epoch, seq = en, n
    end
  elseif kind == 'e' then
    if en ~= epoch then
      redis.call('DEL', hist)
      redis.call('HSET', meta, 'epoch', e, 'seq', 0)
      epoch, seq = en, 0
    end
  elseif kind == 'x' then
    removed = true
  end
  if send then
    redis.call('PUBLISH', channel, head .. body)
    published = published + 1
  end
end
local ttl = ARGV[2]
if removed then ttl = ARGV[3] end
redis.call('EXPIRE', hist, ttl)
redis.call('EXPIRE', meta, ttl)
return published
";

/// Settings of a [`RedisBus`].
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Ordered events the history keeps at least per stream (at least the hubs' resume buffer,
    /// so a resume on any node reaches as far back as on the node that served the client).
    pub history_len: usize,
    /// Most messages waiting for Redis while it is unreachable (the fallback bound).
    pub max_pending: usize,
    /// How long a watched stream has had no viewer on this node (and no new watch) before the
    /// bus stops watching it.
    pub unwatch_grace: Duration,
}

impl BusOptions {
    /// Defaults for a history of at least `history_len` events: 100 000 pending messages (with
    /// events of a few hundred bytes, tens of MB at most), unwatch after 30 s without viewers.
    pub fn new(history_len: usize) -> Self {
        Self {
            history_len: history_len.max(1),
            max_pending: 100_000,
            unwatch_grace: Duration::from_secs(30),
        }
    }
}

/// The bus of a node in cluster mode. See the module documentation for its guarantees.
pub struct RedisBus {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<(StreamId, BusMessage)>,
    tasks: Vec<AbortHandle>,
}

impl RedisBus {
    /// Starts the bus of node `node_id`, delivering to `sink` (the node's hub), keeping at least
    /// `history_len` events per stream in Redis (the larger of the resume buffer and 1000).
    pub fn start(
        link: Link,
        node_id: impl Into<String>,
        sink: Arc<dyn BusSink>,
        history_len: usize,
    ) -> Arc<Self> {
        Self::start_with(link, node_id, sink, BusOptions::new(history_len))
    }

    /// Starts the bus with explicit [`BusOptions`].
    pub fn start_with(
        link: Link,
        node_id: impl Into<String>,
        sink: Arc<dyn BusSink>,
        options: BusOptions,
    ) -> Arc<Self> {
        let (subscription, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            node_id: node_id.into(),
            history: History::new(link.clone()),
            link,
            sink,
            watched: DashMap::new(),
            subscription,
            ever_connected: AtomicBool::new(false),
            recent: DashMap::new(),
            subscribing: DashMap::new(),
            enqueued: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            options,
            script: redis::Script::new(PUBLISH_SCRIPT),
        });
        let (outgoing, rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(publisher(shared.clone(), rx)).abort_handle(),
            tokio::spawn(subscriber(shared.clone())).abort_handle(),
            tokio::spawn(janitor(shared.clone())).abort_handle(),
        ];
        Arc::new(Self {
            shared,
            outgoing,
            tasks,
        })
    }

    /// This node's id, as it appears as the origin of its messages.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// Whether the bus is subscribed now (Redis reachable from the subscriber's connection).
    pub fn is_connected(&self) -> bool {
        self.shared.subscription.borrow().is_some()
    }

    /// Streams this node watches now.
    pub fn watched(&self) -> Vec<StreamId> {
        self.shared
            .watched
            .iter()
            .map(|w| w.key().clone())
            .collect()
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    fn publish(&self, stream: &StreamId, message: BusMessage) {
        self.shared.enqueued.fetch_add(1, Ordering::SeqCst);
        let _ = self.outgoing.send((stream.clone(), message));
    }

    async fn flush(&self, within: Duration) -> bool {
        let target = self.shared.enqueued.load(Ordering::SeqCst);
        let deadline = Instant::now() + within;
        while self.shared.settled.load(Ordering::SeqCst) < target {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Cheap when the stream is already watched and subscribed. Before the subscriber's first
    /// connection it waits for it at most [`CALL_TIMEOUT`]; once connected before, a lost
    /// connection fails at once (no join waits on a Redis outage). On failure the stream stays
    /// watched: it is subscribed and caught up when the connection comes back, and events of
    /// streams this node owns reach its viewers through the fallback meanwhile.
    async fn watch(&self, stream: &StreamId) -> Result<(), BusError> {
        let subscribed = match self.shared.watched.entry(stream.clone()) {
            Entry::Occupied(mut entry) => {
                let watched = entry.get_mut();
                watched.touched = Instant::now();
                watched.subscribed
            }
            Entry::Vacant(entry) => {
                entry.insert(Watched::new());
                false
            }
        };
        let mut connected = self.shared.subscription.subscribe();
        let patience = if self.shared.ever_connected.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            CALL_TIMEOUT
        };
        let sink = match tokio::time::timeout(patience, connected.wait_for(Option::is_some)).await {
            Ok(Ok(sink)) => sink.clone(),
            _ => return Err(unavailable("the bus is not connected to redis")),
        };
        let Some(mut sink) = sink else {
            return Err(unavailable("the bus is not connected to redis"));
        };
        if subscribed {
            return Ok(());
        }
        // A burst of joins to a stream not yet subscribed sends one SUBSCRIBE; the others wait
        // for its confirmation instead of sending their own.
        let gate = self
            .shared
            .subscribing
            .entry(stream.clone())
            .or_default()
            .clone();
        let _one_at_a_time = gate.lock().await;
        if self
            .shared
            .watched
            .get(stream)
            .is_some_and(|watched| watched.subscribed)
        {
            return Ok(());
        }
        let subscribed = timed("bus_subscribe", sink.subscribe(keys::events(stream))).await;
        self.shared.subscribing.remove(stream);
        subscribed.map_err(|e| BusError::Unavailable(Box::new(e)))?;
        if let Some(mut watched) = self.shared.watched.get_mut(stream) {
            watched.subscribed = true;
        }
        Ok(())
    }

    async fn unwatch(&self, stream: &StreamId) -> Result<(), BusError> {
        self.shared.watched.remove(stream);
        self.shared.unsubscribe(stream).await
    }

    async fn backlog(&self, stream: &StreamId, epoch: u64, since: u64) -> Option<Vec<StreamEvent>> {
        match self.shared.history.since(stream, epoch, since).await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(stream_id = %stream, error = %err, "the history could not be read for a resume");
                None
            }
        }
    }
}

fn unavailable(why: &'static str) -> BusError {
    BusError::Unavailable(why.into())
}

/// A stream this node watches.
struct Watched {
    /// Last ordered event handed to the sink; `None` until the first, and after a re-join.
    last: Option<(u64, u64)>,
    /// Whether the subscription is confirmed on the current connection.
    subscribed: bool,
    /// Last call of `watch` for it.
    touched: Instant,
    /// Since when the sink has reported no viewer.
    idle_since: Option<Instant>,
}

impl Watched {
    fn new() -> Self {
        Self {
            last: None,
            subscribed: false,
            touched: Instant::now(),
            idle_since: None,
        }
    }
}

/// Ordered events this node published lately for a stream: the echo of the last few may not
/// have come back when Redis fails, and the fallback hands them over first.
struct Recent {
    events: VecDeque<StreamEvent>,
    /// Last publish.
    at: Instant,
}

/// Ordered events kept per stream in [`Recent`] (more than a second's worth of a busy stream).
const RECENT: usize = 256;

/// How long [`Recent`] events of a stream are kept after its last publish.
const RECENT_FOR: Duration = Duration::from_secs(10);

/// What became of a message offered to the sink.
enum Offer {
    /// Handed to the sink.
    Delivered,
    /// Already handed (a repeat), or older than what was: dropped.
    Dropped,
    /// It does not follow the last event handed: events `last + 1 ..` of `epoch` are missing.
    Gap { epoch: u64, last: u64 },
    /// Not watched here.
    Unwatched,
}

struct Shared {
    /// Streams whose SUBSCRIBE is on its way, so concurrent watches send one.
    subscribing: DashMap<StreamId, Arc<tokio::sync::Mutex<()>>>,
    /// Messages handed to `publish` so far.
    enqueued: AtomicU64,
    /// Messages Redis has taken so far (they are in order, so all up to this count).
    settled: AtomicU64,
    node_id: String,
    link: Link,
    history: History,
    sink: Arc<dyn BusSink>,
    watched: DashMap<StreamId, Watched>,
    /// The subscriber's connection, while it is up and every watched stream is subscribed.
    subscription: watch::Sender<Option<PubSubSink>>,
    /// Whether the subscriber has connected once.
    ever_connected: AtomicBool,
    /// Ordered events lately published, per watched stream.
    recent: DashMap<StreamId, Recent>,
    options: BusOptions,
    script: redis::Script,
}

impl Shared {
    /// Hands `message` to the sink unless it repeats or does not follow what the sink got. The
    /// check and the hand-off happen under the stream's entry lock, so the subscriber and the
    /// fallback never interleave the sink's messages of one stream.
    fn offer(&self, stream: &StreamId, message: BusMessage) -> Offer {
        let Some(mut watched) = self.watched.get_mut(stream) else {
            return Offer::Unwatched;
        };
        match &message {
            BusMessage::Event(StreamEvent {
                epoch,
                seq: Some(seq),
                ..
            }) => {
                match watched.last {
                    Some((last_epoch, _)) if *epoch < last_epoch => return Offer::Dropped,
                    Some((last_epoch, last)) if *epoch == last_epoch && *seq <= last => {
                        return Offer::Dropped;
                    }
                    Some((last_epoch, last)) if *epoch == last_epoch && *seq > last + 1 => {
                        return Offer::Gap {
                            epoch: last_epoch,
                            last,
                        };
                    }
                    // In order, the first one, or a new epoch (the hub restarts its feed).
                    _ => watched.last = Some((*epoch, *seq)),
                }
            }
            BusMessage::Event(_) => {}
            BusMessage::Control(Control::Epoch(epoch)) => {
                if watched
                    .last
                    .is_none_or(|(last_epoch, _)| *epoch > last_epoch)
                {
                    watched.last = Some((*epoch, 0));
                }
            }
            BusMessage::Control(Control::Rejoin | Control::Remove) => watched.last = None,
        }
        self.sink.receive(stream, message);
        Offer::Delivered
    }

    /// Asks the stream's viewers on this node to join again, and takes the next event as it
    /// comes.
    fn rejoin(&self, stream: &StreamId) {
        self.offer(stream, BusMessage::Control(Control::Rejoin));
    }

    /// A message from the subscription: handed on once, in order, a gap filled from the history
    /// first (or a re-join when the history cannot fill it).
    async fn receive(&self, stream: &StreamId, message: BusMessage) {
        let Offer::Gap { epoch, last } = self.offer(stream, message.clone()) else {
            return;
        };
        match self.history.since(stream, epoch, last).await {
            Ok(Some(events)) => {
                for event in events {
                    self.offer(stream, BusMessage::Event(event));
                }
            }
            Ok(None) => self.rejoin(stream),
            Err(error) => {
                tracing::warn!(stream_id = %stream, %error, "history read for a gap failed");
                self.rejoin(stream);
            }
        }
        if let Offer::Gap { .. } = self.offer(stream, message.clone()) {
            self.rejoin(stream);
            self.offer(stream, message);
        }
    }

    /// Delivers a message Redis could not take to this node's sink (the local fallback).
    ///
    /// Events published just before Redis failed may not have come back to this node: they are
    /// handed over from [`Shared::recent`] first, and when even those do not close the gap, this
    /// node's viewers start over.
    fn deliver_locally(&self, stream: &StreamId, message: BusMessage) {
        let (epoch, last) = match self.offer(stream, message.clone()) {
            Offer::Gap { epoch, last } => (epoch, last),
            Offer::Unwatched => return self.sink.receive(stream, message),
            Offer::Delivered | Offer::Dropped => return,
        };
        let missed: Vec<StreamEvent> = self.recent.get(stream).map_or_else(Vec::new, |recent| {
            recent
                .events
                .iter()
                .filter(|e| e.epoch == epoch && e.seq > Some(last))
                .cloned()
                .collect()
        });
        for event in missed {
            self.offer(stream, BusMessage::Event(event));
        }
        if let Offer::Gap { .. } = self.offer(stream, message.clone()) {
            self.rejoin(stream);
            self.offer(stream, message);
        }
    }

    /// Keeps the last [`RECENT`] ordered events published for a watched stream.
    fn remember(&self, stream: &StreamId, messages: &[BusMessage]) {
        if !self.watched.contains_key(stream) {
            return;
        }
        let mut recent = self.recent.entry(stream.clone()).or_insert_with(|| Recent {
            events: VecDeque::new(),
            at: Instant::now(),
        });
        recent.at = Instant::now();
        for message in messages {
            match message {
                BusMessage::Event(event @ StreamEvent { seq: Some(_), .. }) => {
                    if recent.events.len() == RECENT {
                        recent.events.pop_front();
                    }
                    recent.events.push_back(event.clone());
                }
                BusMessage::Control(Control::Epoch(_) | Control::Remove) => recent.events.clear(),
                _ => {}
            }
        }
    }

    /// Publishes a batch; returns the messages Redis did not take, in order.
    async fn send(&self, batch: Vec<(StreamId, BusMessage)>) -> Vec<(StreamId, BusMessage)> {
        let mut at: HashMap<StreamId, usize> = HashMap::new();
        let mut groups: Vec<(StreamId, Vec<BusMessage>)> = Vec::new();
        for (stream, message) in batch {
            let index = *at.entry(stream.clone()).or_insert_with(|| {
                groups.push((stream, Vec::new()));
                groups.len() - 1
            });
            groups[index].1.push(message);
        }
        let results = join_all(
            groups
                .iter()
                .map(|(stream, messages)| self.send_stream(stream, messages)),
        )
        .await;
        let mut failed = Vec::new();
        for ((stream, messages), result) in groups.into_iter().zip(results) {
            match result {
                Ok(published) => {
                    metrics::counter!(MESSAGES_PUBLISHED).increment(published);
                    self.settled
                        .fetch_add(messages.len() as u64, Ordering::SeqCst);
                    self.remember(&stream, &messages);
                }
                Err(error) => {
                    tracing::warn!(stream_id = %stream, %error, "publishing on redis failed");
                    failed.extend(messages.into_iter().map(|m| (stream.clone(), m)));
                }
            }
        }
        failed
    }

    async fn send_stream(
        &self,
        stream: &StreamId,
        messages: &[BusMessage],
    ) -> Result<u64, LinkError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(keys::history(stream))
            .key(keys::meta(stream))
            .key(keys::events(stream))
            .arg(self.options.history_len)
            .arg(HISTORY_TTL_SECS)
            .arg(REMOVED_TTL_SECS);
        for message in messages {
            let (kind, epoch, seq) = wire::parts(message);
            invocation
                .arg(&[kind][..])
                .arg(epoch)
                .arg(seq)
                .arg(wire::header(&self.node_id, message))
                .arg(wire::body(message).as_ref());
        }
        self.link.script("bus_publish", &invocation).await
    }

    /// Unsubscribes a stream that is no longer watched. A `watch` of it that ran meanwhile may
    /// have subscribed before this unsubscribe reached Redis: it is subscribed again then.
    async fn unsubscribe(&self, stream: &StreamId) -> Result<(), BusError> {
        let sink = self.subscription.borrow().clone();
        let Some(mut sink) = sink else {
            return Ok(());
        };
        let channel = keys::events(stream);
        timed("bus_unsubscribe", sink.unsubscribe(&channel))
            .await
            .map_err(|e| BusError::Unavailable(Box::new(e)))?;
        if self.watched.contains_key(stream) {
            timed("bus_subscribe", sink.subscribe(&channel))
                .await
                .map_err(|e| BusError::Unavailable(Box::new(e)))?;
        }
        Ok(())
    }

    /// Opens the subscriber's connection, subscribes every watched stream and catches them up.
    async fn connect(&self) -> Result<PubSubStream, LinkError> {
        let pubsub = timed("bus_connect", self.link.client().get_async_pubsub()).await?;
        let (mut sink, messages) = pubsub.split();
        let streams: Vec<StreamId> = self.watched.iter().map(|w| w.key().clone()).collect();
        if !streams.is_empty() {
            let channels: Vec<String> = streams.iter().map(keys::events).collect();
            timed("bus_subscribe", sink.subscribe(channels)).await?;
        }
        // Streams watched since are subscribed by their own `watch`.
        for stream in &streams {
            if let Some(mut watched) = self.watched.get_mut(stream) {
                watched.subscribed = true;
            }
        }
        self.subscription.send_replace(Some(sink));
        self.ever_connected.store(true, Ordering::Relaxed);
        self.catch_up().await?;
        Ok(messages)
    }

    /// Hands the sink what each watched stream missed while the subscription was down, from the
    /// history, or a re-join where the history has moved past what it covers.
    async fn catch_up(&self) -> Result<(), LinkError> {
        let positions: Vec<(StreamId, (u64, u64))> = self
            .watched
            .iter()
            .filter_map(|w| w.last.map(|last| (w.key().clone(), last)))
            .collect();
        for (stream, (epoch, last)) in positions {
            if let Some(events) = self.history.since(&stream, epoch, last).await? {
                for event in events {
                    self.offer(&stream, BusMessage::Event(event));
                }
                continue;
            }
            match self.history.head(&stream).await? {
                // Newer events the history no longer covers: start over.
                Some((head_epoch, head))
                    if head_epoch > epoch || (head_epoch == epoch && head > last) =>
                {
                    self.rejoin(&stream);
                }
                // Nothing newer (or nothing at all: Redis restarted empty, and the owner re-sends
                // what it holds): the next event is checked for a gap.
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads the subscription until the connection fails.
    async fn listen(&self, mut messages: PubSubStream) {
        let mut ping = tokio::time::interval(HOUSEKEEPING);
        ping.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return };
                    let Some(stream) = keys::stream_of_events(message.get_channel_name()) else {
                        continue;
                    };
                    match wire::decode(message.get_payload_bytes()) {
                        Ok(received) => {
                            metrics::counter!(MESSAGES_RECEIVED).increment(1);
                            self.receive(&stream, received.message).await;
                        }
                        Err(error) => {
                            tracing::warn!(stream_id = %stream, %error, "bus message dropped");
                        }
                    }
                }
                _ = ping.tick() => {
                    let sink = self.subscription.borrow().clone();
                    let Some(mut sink) = sink else { return };
                    if timed("bus_ping", sink.ping::<redis::Value>()).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Sends what is published to Redis, in order, batching what queued meanwhile; falls back to
/// this node's sink while Redis fails.
async fn publisher(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<(StreamId, BusMessage)>) {
    let mut outbox = Outbox::new(shared.options.max_pending);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if outbox.is_empty() {
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            let failed = shared.send(std::mem::take(&mut batch)).await;
            for (stream, message) in failed {
                shared.deliver_locally(&stream, message.clone());
                outbox.push(stream, message);
            }
            continue;
        }
        tokio::select! {
            received = rx.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return;
                }
                // Behind what waits for Redis: this node's viewers get it now.
                for (stream, message) in batch.drain(..) {
                    shared.deliver_locally(&stream, message.clone());
                    outbox.push(stream, message);
                }
            }
            () = tokio::time::sleep_until(outbox.retry_at) => outbox.retry(&shared).await,
        }
    }
}

/// Messages waiting for Redis, bounded (see the module documentation).
struct Outbox {
    pending: VecDeque<(StreamId, BusMessage)>,
    /// Streams whose waiting messages were dropped: each gets a Rejoin first.
    overflowed: BTreeSet<StreamId>,
    max: usize,
    backoff: Duration,
    retry_at: Instant,
}

impl Outbox {
    fn new(max: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            overflowed: BTreeSet::new(),
            max: max.max(1),
            backoff: MIN_BACKOFF,
            retry_at: Instant::now(),
        }
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.overflowed.is_empty()
    }

    /// Keeps a message (already delivered locally) for Redis; ephemeral events are not kept.
    fn push(&mut self, stream: StreamId, message: BusMessage) {
        if let BusMessage::Event(StreamEvent { seq: None, .. }) = message {
            return;
        }
        if self.is_empty() {
            self.retry_at = Instant::now() + self.backoff;
        }
        if self.pending.len() >= self.max {
            tracing::warn!(
                dropped = self.pending.len() + 1,
                "redis unreachable too long: waiting messages dropped, their streams will re-join"
            );
            for (stream, _) in self.pending.drain(..) {
                self.overflowed.insert(stream);
            }
            self.overflowed.insert(stream);
            return;
        }
        self.pending.push_back((stream, message));
    }

    /// Sends the Rejoins owed, then what waits, in order; backs off at the first failure.
    async fn retry(&mut self, shared: &Shared) {
        if !self.overflowed.is_empty() {
            let rejoins = self
                .overflowed
                .iter()
                .map(|stream| (stream.clone(), BusMessage::Control(Control::Rejoin)))
                .collect();
            self.overflowed = shared
                .send(rejoins)
                .await
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            if !self.overflowed.is_empty() {
                return self.back_off();
            }
        }
        while !self.pending.is_empty() {
            let chunk = self
                .pending
                .drain(..self.pending.len().min(MAX_BATCH))
                .collect();
            let failed = shared.send(chunk).await;
            if !failed.is_empty() {
                for message in failed.into_iter().rev() {
                    self.pending.push_front(message);
                }
                return self.back_off();
            }
        }
        self.backoff = MIN_BACKOFF;
    }

    fn back_off(&mut self) {
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.retry_at = Instant::now() + self.backoff;
    }
}

/// Keeps the subscriber's connection up: connect, subscribe, catch up, listen; again with
/// backoff when it fails.
async fn subscriber(shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match shared.connect().await {
            Ok(messages) => {
                backoff = MIN_BACKOFF;
                shared.listen(messages).await;
                tracing::warn!("bus subscription lost");
            }
            Err(error) => tracing::warn!(%error, "bus subscription failed"),
        }
        shared.subscription.send_replace(None);
        for mut watched in shared.watched.iter_mut() {
            watched.subscribed = false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Stops watching streams that have had no viewer on this node for the grace period, and forgets
/// the recent events of streams no longer published.
async fn janitor(shared: Arc<Shared>) {
    let grace = shared.options.unwatch_grace;
    let idle_enough = move |w: &Watched| {
        w.touched.elapsed() >= grace && w.idle_since.is_some_and(|s| s.elapsed() >= grace)
    };
    let mut tick = tokio::time::interval(HOUSEKEEPING.min(grace.max(Duration::from_millis(10))));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut idle = Vec::new();
        for mut watched in shared.watched.iter_mut() {
            match shared.sink.local_viewers(watched.key()) {
                Some(0) => {
                    watched.idle_since.get_or_insert(now);
                    if idle_enough(&watched) {
                        idle.push(watched.key().clone());
                    }
                }
                Some(_) => watched.idle_since = None,
                None => {}
            }
        }
        shared
            .recent
            .retain(|_, recent| recent.at.elapsed() <= RECENT_FOR);
        for stream in idle {
            if shared
                .watched
                .remove_if(&stream, |_, w| idle_enough(w))
                .is_some()
                && let Err(error) = shared.unsubscribe(&stream).await
            {
                tracing::warn!(stream_id = %stream, %error, "unsubscribing an idle stream failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
