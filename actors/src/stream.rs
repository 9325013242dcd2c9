//! One actor per stream in use: the only place a stream's state changes.
//!
//! The stream's state and rules are a [`StreamBook`] (pure, in `engine`); the actor does the IO
//! around it. It turns each message into a command, writes what a durable command must store
//! (plan → write → commit, so a failed write changes nothing), and performs the effects the book
//! returns, in order: ordered events are numbered within the epoch by the [`EventLog`], encoded
//! once and published on the bus, whose hubs keep the recent ones for resume; ephemeral tallies
//! (viewers, reactions) go out on the timer. Every start begins a new epoch, announced on the bus:
//! after a restart (a failure) the subscribers re-join, so each gets a fresh snapshot and keeps
//! receiving events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liveshop_engine::auth::Role;
use liveshop_engine::frames::{EventBody, encode_event};
use liveshop_engine::ids::ChatId;
use liveshop_engine::limits::Limits;
use liveshop_engine::moderation::{ChatSettings, Mute, SettingsPatch};
use liveshop_engine::records::{ChatAuthor, Drop, Stream, StreamStatus};
use liveshop_engine::storage::{
    ChatStore, DropStore, Fence, ModerationStore, Storage, StorageError, StreamStore,
};
use liveshop_engine::stream::{EventLog, Lifecycle};
use liveshop_engine::stream_book::{
    ChatAccess, ChatCommand, Command, DurableCommand, Effect, Effects, Known, StreamBook, Write,
};
use liveshop_engine::{DropId, ErrorCode, ProductId, Rejection, StreamId, TenantId, UserId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::value::RawValue;

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

/// How often ephemeral tallies are considered for sending.
pub const TICK: Duration = Duration::from_millis(250);

/// The stores a stream actor uses: its own record, the chat it shows joiners, and the drops it
/// opens and shows.
#[derive(Clone)]
pub struct StreamStores {
    /// The stream's record, status, pinned product and epochs.
    pub streams: Arc<dyn StreamStore>,
    /// Recent chat, read for the snapshot at start.
    pub chat: Arc<dyn ChatStore>,
    /// The stream's drops: read at start, created when opened.
    pub drops: Arc<dyn DropStore>,
    /// Its chat settings and mutes, read at start; deletes, mutes and settings written.
    pub moderation: Arc<dyn ModerationStore>,
}

impl StreamStores {
    /// The three parts of one database.
    pub fn of(store: &Arc<dyn Storage>) -> Self {
        Self {
            streams: store.clone(),
            chat: store.clone(),
            drops: store.clone(),
            moderation: store.clone(),
        }
    }
}

/// What a stream actor is given at spawn: only what it uses.
#[derive(Clone)]
pub struct StreamCaps {
    /// Streams, chat history and drops, read at start; status, pin and new drops written.
    pub store: StreamStores,
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
    /// What its writes carry: the owner's token in cluster mode.
    pub fence: Fence,
    /// The epoch and last seq to continue from (a stream handed over in order by its previous
    /// owner node); `None` begins a new epoch.
    pub continue_from: Option<(u64, u64)>,
    /// True when restarting after a failure: subscribers are told to re-join.
    pub restarted: bool,
    /// Its mailbox counter.
    pub depth: Depth,
}

/// What a joining session learns (its connection got the `joined` frame and the replay).
#[derive(Debug, Clone, Copy)]
pub struct JoinReply {
    /// Current epoch.
    pub epoch: u64,
    /// Last seq at the time of joining.
    pub seq: u64,
}

/// A stored lifecycle change: the stream after it, and the drops its end leaves for the caller
/// to close (the stream actor has no way to reach drop actors; the facade does).
#[derive(Debug, Clone)]
pub struct LifecycleDone {
    /// The stream after the change, with its live viewer count.
    pub stream: Stream,
    /// Drops still open or sold out when the stream ended; empty for any other change.
    pub close_drops: Vec<DropId>,
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
        /// Whether the author's connection joined; one that did not must be the stream's
        /// broadcaster (its seller, or an admin) to publish.
        access: ChatAccess,
        /// The author's role (slow mode spares staff).
        role: Role,
        /// The answer.
        reply: RpcReplyPort<Result<u64, Rejection>>,
    },
    /// A reaction (already validated), tallied and sent coalesced.
    React(&'static str),
    /// Start or end the show.
    Lifecycle {
        /// What to do.
        action: Lifecycle,
        /// The stream after the change, and the drops to close.
        reply: RpcReplyPort<Result<LifecycleDone, Rejection>>,
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
        drop: Box<Drop>,
        /// The stored drop.
        reply: RpcReplyPort<Result<Drop, Rejection>>,
    },
    /// A drop's counts or status changed: refresh it in the snapshot (closed drops leave it).
    DropChanged(Box<Drop>),
    /// A moderator deletes a chat message: stored, then announced by `chat_deleted`.
    DeleteChat {
        /// The message.
        id: ChatId,
        /// The moderator.
        actor: UserId,
        /// Done (also when it was deleted already).
        reply: RpcReplyPort<Result<(), Rejection>>,
    },
    /// A moderator mutes a user in this stream.
    Mute {
        /// Who.
        user: UserId,
        /// For how long, checked.
        duration_seconds: i64,
        /// The moderator.
        actor: UserId,
        /// Why, checked.
        reason: Option<String>,
        /// The stored mute.
        reply: RpcReplyPort<Result<Mute, Rejection>>,
    },
    /// A moderator changes the chat settings (`None`: only read them).
    ChatSettings {
        /// What changes, and who changes it.
        change: Option<(SettingsPatch, UserId)>,
        /// The settings after the change.
        reply: RpcReplyPort<Result<ChatSettings, Rejection>>,
    },
    /// The stream's state for a joiner on another node (cluster mode), without joining.
    Snapshot(RpcReplyPort<Result<crate::remote::RemoteSnapshot, Rejection>>),
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

/// A serialized snapshot and what it was built from: valid while the book's revision is the
/// same, and until the tick sees another viewer count (like the `viewers` event, the count in a
/// snapshot is refreshed at most every tick, so a burst of joins shares one serialization).
struct CachedSnapshot {
    revision: u64,
    viewers: u64,
    json: Arc<RawValue>,
}

/// What performing a command's effects produced for its caller.
#[derive(Default)]
struct Performed {
    /// Seq of the last ordered event published.
    seq: Option<u64>,
    /// Drops the stream's end leaves to close.
    close_drops: Vec<DropId>,
}

/// Its state: the book (every rule) and the IO around it.
pub struct StreamState {
    caps: StreamCaps,
    /// What its writes carry.
    fence: Fence,
    book: StreamBook,
    /// Numbers, encodes and keeps ordered events for resume.
    log: EventLog,
    restarted: bool,
    snapshot: Option<CachedSnapshot>,
    depth: Depth,
    _alive: AliveGuard,
}

impl StreamState {
    fn id(&self) -> &StreamId {
        self.book.id()
    }

    fn viewers(&self) -> u64 {
        self.caps.fanout.viewers(self.book.id())
    }

    /// The stream record with its live viewer count.
    fn current(&self) -> Stream {
        let mut stream = self.book.stream().clone();
        stream.viewers = self.viewers();
        stream
    }

    /// The stream's state for joiners, serialized once and shared while it is valid (see
    /// [`CachedSnapshot`]).
    fn snapshot(&mut self) -> Result<Arc<RawValue>, Rejection> {
        let revision = self.book.revision();
        if let Some(cached) = &self.snapshot
            && cached.revision == revision
        {
            return Ok(cached.json.clone());
        }
        let viewers = self.viewers();
        let json: Arc<RawValue> = serde_json::value::to_raw_value(&self.book.snapshot(viewers))
            .map(Arc::from)
            .map_err(|err| {
                tracing::error!(stream_id = %self.id(), error = %err, "snapshot could not be encoded");
                Rejection::new(ErrorCode::Internal, "snapshot could not be encoded")
            })?;
        self.snapshot = Some(CachedSnapshot {
            revision,
            viewers,
            json: json.clone(),
        });
        Ok(json)
    }

    fn publish_ordered(&mut self, body: EventBody) -> u64 {
        let started = Instant::now();
        let (seq, bytes) = self.log.append(body);
        let event = StreamEvent {
            epoch: self.log.epoch(),
            seq: Some(seq),
            bytes,
        };
        self.caps.fanout.publish(self.book.id(), event);
        ::metrics::histogram!(metrics::FANOUT_SECONDS).record(started.elapsed().as_secs_f64());
        seq
    }

    fn publish_ephemeral(&self, body: EventBody) {
        let event = StreamEvent {
            epoch: self.log.epoch(),
            seq: None,
            bytes: encode_event(self.book.id(), None, body),
        };
        self.caps.fanout.publish(self.book.id(), event);
    }

    /// Does what the book asked, in order.
    fn perform(&mut self, myself: &ActorRef<StreamMsg>, effects: Effects) -> Performed {
        let mut done = Performed::default();
        for effect in effects {
            match effect {
                Effect::PublishOrdered(body) => done.seq = Some(self.publish_ordered(body)),
                Effect::PublishEphemeral(body) => self.publish_ephemeral(body),
                Effect::PersistChat(message) => {
                    self.caps.persister.chat_behind(message, self.fence.clone());
                }
                Effect::CloseDrops(drops) => done.close_drops.extend(drops),
                Effect::Stop => myself.stop(Some("ended and empty".into())),
            }
        }
        done
    }

    /// Applies a command that needs no write, performing its effects.
    fn apply(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        command: Command,
    ) -> Result<Performed, Rejection> {
        let now = self.caps.time.clock.now();
        let effects = self.book.apply(command, now)?;
        Ok(self.perform(myself, effects))
    }

    /// Checks a durable command, stores what it changes, and only then applies it. The actor
    /// awaits the write before its next message, so nothing falls between plan and commit.
    async fn apply_durable(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        command: DurableCommand,
    ) -> Result<Performed, Rejection> {
        let change = self.book.plan(command, self.caps.time.clock.now())?;
        self.write(change.write()).await.map_err(unavailable)?;
        count_moderation(change.write());
        let effects = self.book.commit(change);
        Ok(self.perform(myself, effects))
    }

    async fn write(&self, write: &Write) -> Result<(), StorageError> {
        let store = &self.caps.store;
        match write {
            Write::StreamStatus {
                stream,
                status,
                started_at,
                ended_at,
            } => {
                store
                    .streams
                    .update_stream_status(stream, *status, *started_at, *ended_at, &self.fence)
                    .await
            }
            Write::Pinned { stream, product } => {
                store
                    .streams
                    .set_pinned(stream, Some(product), &self.fence)
                    .await
            }
            Write::NewDrop(drop) => store.drops.create_drop(drop, &self.fence).await,
            Write::DeleteChat {
                stream,
                message,
                entry,
            } => {
                store
                    .moderation
                    .delete_chat(stream, message, entry, &self.fence)
                    .await
            }
            Write::Mute { mute, entry } => store.moderation.mute(mute, entry, &self.fence).await,
            Write::ChatSettings {
                stream,
                settings,
                entry,
            } => {
                store
                    .moderation
                    .set_chat_settings(stream, settings, entry, &self.fence)
                    .await
            }
        }
    }

    /// Deletes a message the book knows, or one storage has; a message deleted already is
    /// done, one nobody has is `not_found`.
    async fn delete_chat(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        id: ChatId,
        actor: UserId,
    ) -> Result<(), Rejection> {
        let stored = match self.book.known_message(&id) {
            Known::Deleted => return Ok(()),
            Known::Live => false,
            Known::Unknown => match self
                .caps
                .store
                .moderation
                .chat_message(self.id(), &id)
                .await
                .map_err(unavailable)?
            {
                None => return Err(Rejection::not_found("message")),
                Some((_, true)) => return Ok(()),
                Some((_, false)) => true,
            },
        };
        self.apply_durable(myself, DurableCommand::DeleteChat { id, actor, stored })
            .await?;
        Ok(())
    }

    async fn mute(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        command: DurableCommand,
    ) -> Result<Mute, Rejection> {
        let change = self.book.plan(command, self.caps.time.clock.now())?;
        let Write::Mute { mute, .. } = change.write() else {
            return Err(Rejection::new(
                ErrorCode::Internal,
                "mute planned another write",
            ));
        };
        let mute = mute.clone();
        self.write(change.write()).await.map_err(unavailable)?;
        count_moderation(change.write());
        let effects = self.book.commit(change);
        self.perform(myself, effects);
        Ok(mute)
    }

    async fn chat_settings(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        change: Option<(SettingsPatch, UserId)>,
    ) -> Result<ChatSettings, Rejection> {
        if let Some((patch, actor)) = change {
            self.apply_durable(myself, DurableCommand::ChatSettings { patch, actor })
                .await?;
        }
        Ok(self.book.chat_settings().clone())
    }

    /// Joins a connection. Doing it inside the actor, in the same step as the snapshot, queues the
    /// join at the hub behind every event published before and ahead of every later one; the hub
    /// then answers from its resume ring, or with this snapshot, with no gap and no duplicate.
    fn join(
        &mut self,
        resume: Option<(u64, u64)>,
        r#ref: Option<String>,
        conn: Subscriber,
    ) -> Result<JoinReply, Rejection> {
        let (epoch, seq) = (self.log.epoch(), self.log.seq());
        let hub = self.caps.fanout.hub().clone();
        hub.joining(self.id());
        let state = match self.snapshot() {
            Ok(snapshot) => snapshot,
            Err(rejection) => {
                // Counted as joining above; it will not subscribe after all.
                hub.leave(self.id(), conn, None);
                return Err(rejection);
            }
        };
        hub.join(
            self.id(),
            Join {
                subscriber: conn,
                r#ref,
                resume,
                snapshot: Snapshot { epoch, seq, state },
                backlog: None,
            },
        );
        Ok(JoinReply { epoch, seq })
    }

    /// The snapshot a joiner on another node starts from, with where it stands.
    fn remote_snapshot(&mut self) -> Result<crate::remote::RemoteSnapshot, Rejection> {
        let state = self.snapshot()?;
        Ok(crate::remote::RemoteSnapshot {
            epoch: self.log.epoch(),
            seq: self.log.seq(),
            state: (*state).to_owned(),
        })
    }

    fn chat(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        command: ChatCommand,
    ) -> Result<u64, Rejection> {
        let performed = self
            .apply(myself, Command::Chat(command))
            .inspect_err(count_moderated)?;
        performed.seq.ok_or_else(|| {
            tracing::error!(stream_id = %self.id(), "accepted chat was not published");
            Rejection::new(ErrorCode::Internal, "chat was not published")
        })
    }

    async fn lifecycle(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        action: Lifecycle,
    ) -> Result<LifecycleDone, Rejection> {
        let performed = self
            .apply_durable(myself, DurableCommand::Lifecycle(action))
            .await?;
        Ok(LifecycleDone {
            stream: self.current(),
            close_drops: performed.close_drops,
        })
    }

    async fn pin(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        product: ProductId,
    ) -> Result<Stream, Rejection> {
        self.apply_durable(myself, DurableCommand::Pin(product))
            .await?;
        Ok(self.current())
    }

    async fn open_drop(
        &mut self,
        myself: &ActorRef<StreamMsg>,
        drop: Box<Drop>,
    ) -> Result<Drop, Rejection> {
        let stored = (*drop).clone();
        self.apply_durable(myself, DurableCommand::OpenDrop(drop))
            .await?;
        Ok(stored)
    }

    fn tick(&mut self, myself: &ActorRef<StreamMsg>) {
        let viewers = self.viewers();
        if self
            .snapshot
            .as_ref()
            .is_some_and(|cached| cached.viewers != viewers)
        {
            self.snapshot = None;
        }
        if let Err(rejection) = self.apply(myself, Command::Tick { viewers }) {
            tracing::error!(stream_id = %self.id(), error = %rejection, "stream tick was refused");
        }
    }

    /// Applies a command whose refusal nobody waits for (a reaction, a drop's new counts).
    fn apply_unanswered(&mut self, myself: &ActorRef<StreamMsg>, command: Command) {
        if let Err(rejection) = self.apply(myself, command) {
            tracing::warn!(stream_id = %self.id(), error = %rejection, "stream command was refused");
        }
    }
}

/// Counts a stored moderation action.
fn count_moderation(write: &Write) {
    if let Write::DeleteChat { entry, .. }
    | Write::Mute { entry, .. }
    | Write::ChatSettings { entry, .. } = write
    {
        ::metrics::counter!(metrics::MODERATION_ACTIONS, "action" => entry.action.as_str())
            .increment(1);
    }
}

/// Counts a chat refused by moderation (a mute, a blocked word, slow mode).
fn count_moderated(refusal: &Rejection) {
    let reason = match refusal.code {
        ErrorCode::Muted => "muted",
        ErrorCode::Blocked => "blocked",
        // The burst allowance also answers `rate_limited`; slow mode says so in its message.
        ErrorCode::RateLimited if refusal.message.starts_with("slow mode") => "slow_mode",
        _ => return,
    };
    ::metrics::counter!(metrics::CHAT_MODERATED, "reason" => reason).increment(1);
}

fn unavailable(err: StorageError) -> Rejection {
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
        let record = match store.streams.stream(&args.stream).await? {
            Some(r) if r.tenant == args.tenant => r,
            _ => return Err(Box::new(StartError::NotFound("stream"))),
        };
        let (epoch, seq) = match args.continue_from {
            Some(at) => at,
            None => (store.streams.next_epoch(&args.stream).await?, 0),
        };
        let limits = args.caps.limits;
        let recent_chat = store
            .chat
            .recent_chat(&args.stream, limits.snapshot_chat as u32)
            .await?;
        let drops = store.drops.drops_of_stream(&args.stream).await?;
        let moderation = store
            .moderation
            .stream_moderation(&args.stream, args.caps.time.clock.now())
            .await?;
        myself.send_interval(TICK, || StreamMsg::Tick);
        args.caps.tree.register(
            kind::STREAM,
            args.stream.as_str(),
            Some(format!("tenant:{}", args.tenant)),
            args.depth.clone(),
        );
        Ok(StreamState {
            depth: args.depth,
            log: EventLog::continuing(args.stream.clone(), epoch, seq),
            book: StreamBook::restore(record, drops, recent_chat, limits).moderated(moderation),
            caps: args.caps,
            fence: args.fence,
            restarted: args.restarted,
            snapshot: None,
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
            tracing::info!(stream_id = %state.book.id(), epoch = state.log.epoch(), "stream restored; its viewers re-join");
        }
        let epoch = Control::Epoch(state.log.epoch());
        state.caps.fanout.control(state.book.id(), epoch);
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
                let _ = reply.send(state.join(resume, r#ref, conn));
            }
            StreamMsg::Chat {
                author,
                text,
                access,
                role,
                reply,
            } => {
                let command = ChatCommand {
                    id: ChatId::generate(&state.caps.time.ids.unique_suffix()),
                    author,
                    text,
                    access,
                    role,
                };
                let _ = reply.send(state.chat(&myself, command));
            }
            StreamMsg::React(emoji) => state.apply_unanswered(&myself, Command::React(emoji)),
            StreamMsg::Lifecycle { action, reply } => {
                let _ = reply.send(state.lifecycle(&myself, action).await);
            }
            StreamMsg::Pin { product, reply } => {
                let _ = reply.send(state.pin(&myself, product).await);
            }
            StreamMsg::OpenDrop { drop, reply } => {
                let _ = reply.send(state.open_drop(&myself, drop).await);
            }
            StreamMsg::DropChanged(drop) => {
                state.apply_unanswered(&myself, Command::DropChanged(drop));
            }
            StreamMsg::DeleteChat { id, actor, reply } => {
                let _ = reply.send(state.delete_chat(&myself, id, actor).await);
            }
            StreamMsg::Mute {
                user,
                duration_seconds,
                actor,
                reason,
                reply,
            } => {
                let command = DurableCommand::Mute {
                    user,
                    duration_seconds,
                    actor,
                    reason,
                };
                let _ = reply.send(state.mute(&myself, command).await);
            }
            StreamMsg::ChatSettings { change, reply } => {
                let _ = reply.send(state.chat_settings(&myself, change).await);
            }
            StreamMsg::Snapshot(reply) => {
                let _ = reply.send(state.remote_snapshot());
            }
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
        if state.book.stream().status == StreamStatus::Ended {
            state.caps.fanout.control(state.book.id(), Control::Remove);
        }
        state
            .caps
            .tree
            .remove(kind::STREAM, state.book.id().as_str());
        Ok(())
    }
}
