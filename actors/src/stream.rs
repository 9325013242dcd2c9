//! One actor per stream in use: the only place a stream's state changes.
//!
//! It numbers ordered events (chat, status, pins, drop events) within its epoch, encodes each once
//! and publishes it on the bus; each node's hub keeps the recent ones for resume. Ephemeral tallies
//! (viewers, reactions) are coalesced on a timer. Every start begins a new epoch, announced on the
//! bus: after a restart (a failure) the subscribers re-join, so each gets a fresh snapshot and
//! keeps receiving events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use liveshop_engine::auth::Role;
use liveshop_engine::chat::validate_chat_text;
use liveshop_engine::frames::{EventBody, encode_event, pinned_body};
use liveshop_engine::ids::ChatId;
use liveshop_engine::limits::TokenBucket;
use liveshop_engine::records::{ChatAuthor, ChatMessage, DropStatus, Stream, StreamStatus};
use liveshop_engine::stream::{EventLog, Lifecycle, accepts_interaction, transition};
use liveshop_engine::{ErrorCode, ProductId, Rejection, StreamId, TenantId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::clock::TimeAndIds;
use crate::connection::Subscriber;
use crate::fanout::Fanout;
use crate::fanout::bus::{Control, StreamEvent};
use crate::fanout::hub::{Join, Snapshot};
use crate::mailbox::Depth;
use crate::metrics::{self, AliveGuard, kind};
use crate::persister::PersisterPort;
use crate::supervise::StartError;
use crate::tree::ActorTree;
use liveshop_engine::limits::Limits;
use liveshop_engine::storage::{Fence, Storage};

/// How often ephemeral tallies are considered for sending.
pub const TICK: Duration = Duration::from_millis(250);
/// Viewer counts are sent at most this often.
pub const VIEWERS_EVERY: Duration = Duration::from_secs(1);
/// Idle per-user chat allowances are forgotten after this long.
const BUCKET_IDLE_MS: i64 = 60_000;

/// What a stream actor is given at spawn: only what it uses.
#[derive(Clone)]
pub struct StreamCaps {
    /// Streams, chat history and drops, read at start; status, pin and new drops written.
    pub store: Arc<dyn Storage>,
    /// Where its events go out to viewers, and their count.
    pub fanout: Fanout,
    /// Where accepted chat goes to be stored.
    pub persister: PersisterPort,
    /// Time and fresh ids.
    pub time: TimeAndIds,
    /// Rates and sizes of the protocol.
    pub limits: Limits,
    /// Where it lists itself for operators.
    pub tree: Arc<ActorTree>,
}

/// Start-up arguments of a stream actor.
pub struct StreamArgs {
    /// Its capabilities.
    pub caps: StreamCaps,
    /// Owning tenant (checked against storage).
    pub tenant: TenantId,
    /// The stream to run.
    pub stream: StreamId,
    /// True when restarting after a failure. Either way the new epoch is announced, and viewers
    /// of an older one re-join.
    pub restarted: bool,
    /// Its mailbox counter.
    pub depth: Depth,
}

/// What a joining session learns. Its connection gets the `joined` frame (and any replay) from
/// the hub, which decides between resume and snapshot in order with the events.
#[derive(Debug, Clone, Copy)]
pub struct JoinReply {
    /// Current epoch.
    pub epoch: u64,
    /// Last seq at the time of joining.
    pub seq: u64,
}

/// Messages of a stream actor.
pub enum StreamMsg {
    /// A connection joins, possibly resuming.
    Join {
        /// Epoch and last seq seen.
        resume: Option<(u64, u64)>,
        /// The client's correlation string for the `joined` reply.
        r#ref: Option<String>,
        /// The joining connection.
        conn: Subscriber,
        /// The answer.
        reply: RpcReplyPort<Result<JoinReply, Rejection>>,
    },
    /// A chat message; answers its seq.
    Chat {
        /// Who wrote it.
        author: ChatAuthor,
        /// Raw text.
        text: String,
        /// Set when the author has not joined: their role, which must make them the stream's
        /// broadcaster (its seller, or an admin) to publish.
        publisher: Option<liveshop_engine::auth::Role>,
        /// The answer.
        reply: RpcReplyPort<Result<u64, Rejection>>,
    },
    /// A reaction (already validated), tallied and sent coalesced.
    React(&'static str),
    /// Start or end the show.
    Lifecycle {
        /// What to do.
        action: Lifecycle,
        /// The stream after the change.
        reply: RpcReplyPort<Result<Stream, Rejection>>,
    },
    /// Pin a product (already checked to belong to the tenant).
    Pin {
        /// Product to pin.
        product: ProductId,
        /// The stream after the change.
        reply: RpcReplyPort<Result<Stream, Rejection>>,
    },
    /// Opens a drop in this stream: only while live; stores it and announces `drop_opened`.
    OpenDrop {
        /// The new drop (status open).
        drop: Box<liveshop_engine::records::Drop>,
        /// The stored drop.
        reply: RpcReplyPort<Result<liveshop_engine::records::Drop, Rejection>>,
    },
    /// A drop's counts or status changed: refresh it in the snapshot (closed drops leave it).
    DropChanged(Value),
    /// Publishes an ordered event on behalf of a child (drop actors).
    Publish(EventBody),
    /// Publishes an ephemeral event on behalf of a child (inventory).
    PublishEphemeral(EventBody),
    /// Timer for coalesced tallies and housekeeping.
    Tick,
    /// Fault injection: panic, so the supervisor's restart path can be exercised.
    Crash,
}

/// The stream actor.
pub struct StreamActor;

/// Its state.
pub struct StreamState {
    caps: StreamCaps,
    record: Stream,
    log: EventLog,
    recent_chat: VecDeque<Value>,
    drops: Vec<Value>,
    chat_buckets: HashMap<liveshop_engine::UserId, (TokenBucket, i64)>,
    reactions: BTreeMap<String, u64>,
    last_viewers: (u64, Instant),
    restarted: bool,
    /// The serialized snapshot, valid until the next change (see `invalidate`).
    snapshot_cache: Option<Arc<RawValue>>,
    /// Viewer count the cached snapshot shows (refreshed on the tick, like `viewers` events).
    snapshot_viewers: u64,
    depth: Depth,
    _alive: AliveGuard,
}

impl StreamState {
    fn id(&self) -> &StreamId {
        &self.record.id
    }

    fn current(&self) -> Stream {
        let mut s = self.record.clone();
        s.viewers = self.caps.fanout.viewers(&s.id);
        s
    }

    /// The stream's state for joiners. Serialized once and shared until something changes; the
    /// viewer count in it is refreshed at most every tick, like the `viewers` event.
    fn snapshot(&mut self) -> Arc<RawValue> {
        if let Some(cached) = &self.snapshot_cache {
            return cached.clone();
        }
        let mut stream = self.record.clone();
        stream.viewers = self.caps.fanout.viewers(&stream.id);
        self.snapshot_viewers = stream.viewers;
        let snapshot = serde_json::json!({
            "stream": stream,
            "viewers": stream.viewers,
            "pinned": stream.pinned,
            "drops": self.drops,
            "chat": self.recent_chat,
        });
        let raw: Arc<RawValue> = serde_json::value::to_raw_value(&snapshot)
            .map(Arc::from)
            .unwrap_or_else(|_| {
                Arc::from(RawValue::from_string("null".into()).expect("null is JSON"))
            });
        self.snapshot_cache = Some(raw.clone());
        raw
    }

    /// Forgets the cached snapshot after any change of state.
    fn invalidate(&mut self) {
        self.snapshot_cache = None;
    }

    fn publish_ordered(&mut self, body: EventBody) -> u64 {
        self.invalidate();
        let started = Instant::now();
        let (seq, bytes) = self.log.append(body);
        let event = StreamEvent {
            epoch: self.log.epoch(),
            seq: Some(seq),
            bytes,
        };
        self.caps.fanout.publish(&self.record.id, event);
        ::metrics::histogram!(metrics::FANOUT_SECONDS).record(started.elapsed().as_secs_f64());
        seq
    }

    fn publish_ephemeral(&self, body: EventBody) {
        let event = StreamEvent {
            epoch: self.log.epoch(),
            seq: None,
            bytes: encode_event(&self.record.id, None, body),
        };
        self.caps.fanout.publish(&self.record.id, event);
    }

    /// Joins a connection. Doing it inside the actor, in the same step as the snapshot, queues the
    /// join at the hub behind every event published before and ahead of every later one; the hub
    /// then answers from its resume ring, or with this snapshot, with no gap and no duplicate.
    fn join(
        &mut self,
        resume: Option<(u64, u64)>,
        r#ref: Option<String>,
        conn: Subscriber,
    ) -> JoinReply {
        let (epoch, seq) = (self.log.epoch(), self.log.seq());
        let hub = self.caps.fanout.hub().clone();
        hub.joining(self.id());
        let snapshot = Snapshot {
            epoch,
            seq,
            state: self.snapshot(),
        };
        hub.join(
            self.id(),
            Join {
                subscriber: conn,
                r#ref,
                resume,
                snapshot,
            },
        );
        JoinReply { epoch, seq }
    }

    fn chat(&mut self, author: ChatAuthor, text: &str) -> Result<u64, Rejection> {
        accepts_interaction(self.record.status)?;
        let text = validate_chat_text(text)?;
        let now = self.caps.time.clock.now();
        let limits = &self.caps.limits;
        let (bucket, last_used) = self
            .chat_buckets
            .entry(author.id.clone())
            .or_insert_with(|| (TokenBucket::full(limits.chat_burst, now.millis()), 0));
        *last_used = now.millis();
        bucket
            .try_take(now.millis(), limits.chat_burst, limits.chat_per_sec)
            .map_err(Rejection::rate_limited)?;
        let message = ChatMessage {
            id: ChatId::generate(&self.caps.time.ids.unique_suffix()),
            stream: self.record.id.clone(),
            tenant: self.record.tenant.clone(),
            user: author,
            text,
            at: now,
        };
        let data = serde_json::to_value(&message).unwrap_or(Value::Null);
        if self.recent_chat.len() == self.caps.limits.snapshot_chat {
            self.recent_chat.pop_front();
        }
        self.recent_chat.push_back(data.clone());
        let seq = self.publish_ordered(EventBody::Chat(data));
        self.caps.persister.chat(message);
        Ok(seq)
    }

    async fn lifecycle(&mut self, action: Lifecycle) -> Result<Stream, Rejection> {
        let next = transition(self.record.status, action)?;
        let now = self.caps.time.clock.now();
        let (started_at, ended_at) = match next {
            StreamStatus::Live => (Some(now), None),
            _ => (self.record.started_at, Some(now)),
        };
        self.caps
            .store
            .update_stream_status(
                &self.record.id,
                next,
                started_at,
                ended_at,
                &Fence::Unfenced,
            )
            .await
            .map_err(internal)?;
        self.record.status = next;
        self.record.started_at = started_at;
        self.record.ended_at = ended_at;
        self.publish_ordered(EventBody::Status {
            status: next.as_str().to_owned(),
        });
        Ok(self.current())
    }

    async fn pin(&mut self, product: ProductId) -> Result<Stream, Rejection> {
        if self.record.status == StreamStatus::Ended {
            return Err(Rejection::new(ErrorCode::InvalidState, "stream has ended"));
        }
        self.caps
            .store
            .set_pinned(&self.record.id, Some(&product), &Fence::Unfenced)
            .await
            .map_err(internal)?;
        self.publish_ordered(pinned_body(Some(&product)));
        self.record.pinned = Some(product);
        Ok(self.current())
    }

    async fn open_drop(
        &mut self,
        drop: liveshop_engine::records::Drop,
    ) -> Result<liveshop_engine::records::Drop, Rejection> {
        accepts_interaction(self.record.status)?;
        self.caps
            .store
            .create_drop(&drop, &Fence::Unfenced)
            .await
            .map_err(internal)?;
        let value = serde_json::to_value(&drop).unwrap_or(Value::Null);
        self.drops.push(value.clone());
        self.publish_ordered(EventBody::DropOpened(value));
        Ok(drop)
    }

    fn drop_changed(&mut self, value: Value) {
        self.invalidate();
        let id = value.get("id").cloned();
        self.drops.retain(|d| d.get("id") != id.as_ref());
        if value.get("status").and_then(Value::as_str) != Some(DropStatus::Closed.as_str()) {
            self.drops.push(value);
        }
    }

    fn tick(&mut self, myself: &ActorRef<StreamMsg>) {
        if !self.reactions.is_empty() {
            let counts = std::mem::take(&mut self.reactions);
            self.publish_ephemeral(EventBody::Reactions { counts });
        }
        let viewers = self.caps.fanout.viewers(self.id());
        if viewers != self.snapshot_viewers {
            self.invalidate();
        }
        if viewers != self.last_viewers.0 && self.last_viewers.1.elapsed() >= VIEWERS_EVERY {
            self.last_viewers = (viewers, Instant::now());
            self.publish_ephemeral(EventBody::Viewers { count: viewers });
        }
        // An allowance idle for a minute is full again, like a new one: forget it.
        let now = self.caps.time.clock.now().millis();
        let limits = self.caps.limits;
        let refill_ms =
            (f64::from(limits.chat_burst) / limits.chat_per_sec.max(1e-3) * 1000.0) as i64;
        let idle_ms = BUCKET_IDLE_MS.max(refill_ms);
        self.chat_buckets
            .retain(|_, (_, last_used)| now - *last_used < idle_ms);
        if self.record.status == StreamStatus::Ended && viewers == 0 {
            myself.stop(Some("ended and empty".into()));
        }
    }
}

fn internal(err: liveshop_engine::storage::StorageError) -> Rejection {
    tracing::error!(error = %err, source = ?std::error::Error::source(&err), "storage call failed in stream actor");
    Rejection::new(ErrorCode::Unavailable, "storage unavailable; retry")
}

impl Actor for StreamActor {
    type Msg = StreamMsg;
    type State = StreamState;
    type Arguments = StreamArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: StreamArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let store = args.caps.store.clone();
        let record = match store.stream(&args.stream).await? {
            Some(r) if r.tenant == args.tenant => r,
            _ => return Err(Box::new(StartError::NotFound("stream"))),
        };
        let epoch = store.next_epoch(&args.stream).await?;
        let limits = args.caps.limits;
        let recent_chat = store
            .recent_chat(&args.stream, limits.snapshot_chat as u32)
            .await?
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .collect();
        let drops = store
            .drops_of_stream(&args.stream)
            .await?
            .iter()
            .filter(|d| d.status != DropStatus::Closed)
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
            .collect();
        myself.send_interval(TICK, || StreamMsg::Tick);
        args.caps.tree.register(
            kind::STREAM,
            args.stream.as_str(),
            Some(format!("tenant:{}", args.tenant)),
            args.depth.clone(),
        );
        Ok(StreamState {
            depth: args.depth,
            log: EventLog::new(args.stream.clone(), epoch),
            caps: args.caps,
            record,
            recent_chat,
            drops,
            chat_buckets: HashMap::new(),
            reactions: BTreeMap::new(),
            last_viewers: (u64::MAX, Instant::now() - VIEWERS_EVERY),
            restarted: args.restarted,
            snapshot_cache: None,
            snapshot_viewers: 0,
            _alive: AliveGuard::new(kind::STREAM),
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Hubs restart their resume ring; viewers of an older epoch (after a failure) re-join.
        if state.restarted {
            tracing::info!(stream_id = %state.record.id, epoch = state.log.epoch(), "stream restored; its viewers re-join");
        }
        let epoch = Control::Epoch(state.log.epoch());
        state.caps.fanout.control(&state.record.id, epoch);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        if !matches!(message, StreamMsg::Tick) {
            state.depth.taken();
        }
        match message {
            StreamMsg::Join {
                resume,
                r#ref,
                conn,
                reply,
            } => {
                let _ = reply.send(Ok(state.join(resume, r#ref, conn)));
            }
            StreamMsg::Chat {
                author,
                text,
                publisher,
                reply,
            } => {
                let allowed = match publisher {
                    None => true,
                    Some(Role::Admin) => true,
                    Some(Role::Seller) => author.id == state.record.seller,
                    Some(_) => false,
                };
                let result = if allowed {
                    state.chat(author, &text)
                } else {
                    Err(crate::session::not_joined())
                };
                let _ = reply.send(result);
            }
            StreamMsg::React(emoji) => {
                if state.record.status == StreamStatus::Live {
                    *state.reactions.entry(emoji.to_owned()).or_default() += 1;
                }
            }
            StreamMsg::Lifecycle { action, reply } => {
                let _ = reply.send(state.lifecycle(action).await);
            }
            StreamMsg::Pin { product, reply } => {
                let _ = reply.send(state.pin(product).await);
            }
            StreamMsg::OpenDrop { drop, reply } => {
                let _ = reply.send(state.open_drop(*drop).await);
            }
            StreamMsg::DropChanged(value) => state.drop_changed(value),
            StreamMsg::Publish(body) => {
                state.publish_ordered(body);
            }
            StreamMsg::PublishEphemeral(body) => state.publish_ephemeral(body),
            StreamMsg::Tick => state.tick(&myself),
            StreamMsg::Crash => panic!("fault injection: stream actor crash requested"),
        }
        metrics::record_handling(kind::STREAM, started);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if state.record.status == StreamStatus::Ended {
            state.caps.fanout.control(&state.record.id, Control::Remove);
        }
        state
            .caps
            .tree
            .remove(kind::STREAM, state.record.id.as_str());
        Ok(())
    }
}
