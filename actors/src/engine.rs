//! The engine facade: the one door through which the front door (http) and sessions reach the
//! actor tree. Callers say what they want (start a stream, claim units, join); the facade finds
//! the actor in charge through the [`Directory`] and talks to it, or, in cluster mode, relays the
//! request to the node that runs the stream ([`Remote`]). No caller sends actor messages.
//!
//! Every request for a stream or a drop is a [`Call`]: the facade runs it here when the stream
//! runs here, and the owner node runs a relayed one through [`Engine::serve`], the same way.

use std::sync::Arc;
use std::time::Duration;

use liveshop_engine::drops::CloseReason;
use liveshop_engine::ids::{ChatId, ClaimId};
use liveshop_engine::limits::Limits;
use liveshop_engine::moderation::{Ban, ChatSettings, ModerationEntry, Mute, SettingsPatch};
use liveshop_engine::records::{ChatAuthor, Claim, Drop, Stream, UserSeen};
use liveshop_engine::storage::Storage;
use liveshop_engine::stream::Lifecycle;
use liveshop_engine::stream_book::ChatAccess;
use liveshop_engine::{DropId, ProductId, Rejection, SessionId, StreamId, TenantId, UserId};
use ractor::Actor;
use tokio::task::JoinHandle;

use crate::bans::{self, BanList};
use crate::clock::TimeAndIds;
use crate::connection::Subscriber;
use crate::directory::{Capabilities, Directory, Located, ensure};
use crate::drop::{ClaimOutcome, DropMsg};
use crate::fanout::Fanout;
use crate::fanout::hub::{Join, Snapshot};
use crate::inbox::{SessionInbox, SessionMsg};
use crate::mailbox::{AskError, Depth};
use crate::metrics::kind;
use crate::persister::{Persister, PersisterMsg, PersisterPort, PersisterStores};
use crate::placement::{Local, Placement};
use crate::recovery;
use crate::remote::{Answer, Call, Nowhere, Remote, RemoteSnapshot, Subject};
use crate::stream::{JoinReply, StreamMsg};
use crate::supervise::{ActorChild, Supervisor, SupervisorArgs};
use crate::tree::ActorTree;

/// Tunables of the actor tree.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Protocol limits (rates, joins, resume buffer).
    pub limits: Limits,
    /// Most claims written in one transaction; 1 turns group commit off (one write per claim).
    pub claim_batch_max: usize,
    /// How often storage is searched for drops that must run (holds to expire, an end time) but
    /// whose actor does not: at start, then at this period.
    pub recovery_every: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            claim_batch_max: 1000,
            recovery_every: recovery::EVERY,
        }
    }
}

/// How this node finds the other nodes: where streams run, and how requests reach them.
#[derive(Clone)]
pub struct Cluster {
    /// Which node runs each stream.
    pub placement: Arc<dyn Placement>,
    /// Relays requests to another node.
    pub remote: Arc<dyn Remote>,
    /// True for a node of a cluster: the recovery task also offers every live stream to this
    /// node, so a stream whose owner died is taken by the first node that finds it free.
    pub offer_live_streams: bool,
}

impl Cluster {
    /// One node alone: every stream runs here.
    pub fn single() -> Self {
        Self {
            placement: Arc::new(Local),
            remote: Arc::new(Nowhere),
            offer_live_streams: false,
        }
    }
}

/// Whether a call may be relayed to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// A caller on this node: relay it when the stream runs elsewhere.
    First,
    /// Relayed here by another node: run it here or refuse, never relay it on.
    Last,
}

/// What a located call runs on here.
enum Target {
    /// A stream's actor.
    Stream(crate::mailbox::Addr<StreamMsg>),
    /// A drop's actor (asked through [`Engine::ask_drop`], which retries a stopping one).
    Drop,
}

/// The refusal of a relayed call whose stream no longer runs here (it moved meanwhile).
fn not_here() -> Rejection {
    Rejection::new(
        liveshop_engine::ErrorCode::Unavailable,
        "the stream moved to another node; retry",
    )
}

/// How long shutdown waits for the persister's last writes (its retries take about a second).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An actor of the root of the tree failed to spawn.
    #[error("actor failed to start")]
    Spawn(#[from] ractor::SpawnErr),
    /// The persister did not start.
    #[error("the persister did not start: {0}")]
    Persister(Rejection),
}

/// What an operator's fault injection targets (contract 3.6).
#[derive(Debug, Clone)]
pub enum FaultTarget {
    /// A stream's actor, of a tenant.
    Stream(TenantId, StreamId),
    /// A drop's actor, of a tenant.
    Drop(TenantId, DropId),
    /// A connection's session.
    Session(SessionId),
    /// The chat persister.
    Persister,
}

/// Cheap-to-clone handle on the running engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    directory: Directory,
    store: Arc<dyn Storage>,
    fanout: Fanout,
    persister: PersisterPort,
    remote: Arc<dyn Remote>,
    offer_live_streams: bool,
    sessions: dashmap::DashMap<SessionId, Arc<SessionInbox>>,
    tree: Arc<ActorTree>,
    config: EngineConfig,
    /// How the persister is started; the recovery task starts it again if its supervisor gave
    /// it up.
    persister_child: Arc<dyn crate::supervise::Child>,
    recovery: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The tenant bans this node enforces, and the task that keeps them fresh.
    bans: Arc<BanList>,
    bans_task: std::sync::Mutex<Option<JoinHandle<()>>>,
    clock: Arc<dyn crate::clock::Clock>,
}

impl Engine {
    /// Starts the tree on the machine's clock: root supervisor, persister, and the drops that
    /// storage says must run (see [`recovery`]).
    pub async fn start(
        store: Arc<dyn Storage>,
        fanout: Fanout,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        Self::start_with_time(store, fanout, config, TimeAndIds::system()).await
    }

    /// Like [`Engine::start`], with the clock and id source actors get (tests pass a paused clock).
    pub async fn start_with_time(
        store: Arc<dyn Storage>,
        fanout: Fanout,
        config: EngineConfig,
        time: TimeAndIds,
    ) -> Result<Self, EngineError> {
        Self::start_in_cluster(store, fanout, config, time, Cluster::single()).await
    }

    /// Starts a node: streams run where `cluster`'s placement puts them, and requests for the
    /// others are relayed to their owner. Streams placement takes away from this node are
    /// stopped here.
    pub async fn start_in_cluster(
        store: Arc<dyn Storage>,
        fanout: Fanout,
        config: EngineConfig,
        time: TimeAndIds,
        cluster: Cluster,
    ) -> Result<Self, EngineError> {
        let tree = Arc::new(ActorTree::default());
        let (root, _) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                kind: kind::SUPERVISOR,
                id: "root".into(),
                parent: None,
                listed: false,
                tree: tree.clone(),
                depth: Depth::new(kind::SUPERVISOR),
                check: None,
                clock: time.clock.clone(),
            },
        )
        .await?;
        let persister = PersisterPort::new();
        let clock = time.clock.clone();
        let caps = Capabilities {
            store: store.clone(),
            fanout: fanout.clone(),
            persister: persister.clone(),
            time,
            limits: config.limits,
            claim_batch_max: config.claim_batch_max,
            tree: tree.clone(),
            placement: cluster.placement.clone(),
        };
        let (persister_store, queue) = (PersisterStores::of(&store), persister.clone());
        let persister_child = ActorChild::new(
            kind::PERSISTER,
            "persister".into(),
            || Persister,
            persister.slot().clone(),
            Box::new(move |depth, _| (persister_store.clone(), queue.queue(), depth)),
        );
        let persister_child: Arc<dyn crate::supervise::Child> = Arc::new(persister_child);
        ensure(&root, persister_child.clone(), "persister")
            .await
            .map_err(EngineError::Persister)?;
        let engine = Self {
            inner: Arc::new(EngineInner {
                directory: Directory::new(root, caps),
                store,
                fanout,
                persister,
                remote: cluster.remote.clone(),
                offer_live_streams: cluster.offer_live_streams,
                sessions: dashmap::DashMap::new(),
                tree,
                config,
                persister_child,
                recovery: std::sync::Mutex::new(None),
                bans: Arc::new(BanList::new()),
                bans_task: std::sync::Mutex::new(None),
                clock,
            }),
        };
        engine.start_bans().await;
        let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel();
        cluster.placement.on_lost(lost_tx);
        let weak = Arc::downgrade(&engine.inner);
        tokio::spawn(async move {
            while let Some(stream) = lost_rx.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                let stopped = inner.directory.evict(&stream);
                tracing::warn!(stream_id = %stream, actors = stopped, "stream taken by another node; its actors here stop");
            }
        });
        engine.recover().await;
        let weak = Arc::downgrade(&engine.inner);
        let every = engine.inner.config.recovery_every;
        let task = tokio::spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.tick().await;
            loop {
                timer.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let root = inner.directory.root();
                if let Err(e) = ensure(root, inner.persister_child.clone(), "persister").await {
                    tracing::error!(error = %e, "the persister could not be started again; will retry");
                }
                Engine { inner }.recover().await;
            }
        });
        *engine.lock_recovery() = Some(task);
        Ok(engine)
    }

    /// Loads the bans that hold (so a ban holds across restarts from the first request on), then
    /// keeps them fresh in a task of their own.
    async fn start_bans(&self) {
        let inner = &self.inner;
        let store: Arc<dyn liveshop_engine::storage::ModerationStore> = inner.store.clone();
        let notifier = inner.fanout.notifier().clone();
        match bans::refresh(&*store, &inner.bans, &*notifier, &*inner.clock).await {
            Ok(count) => tracing::info!(bans = count, "tenant bans loaded"),
            Err(error) => {
                tracing::error!(%error, "tenant bans could not be loaded; retrying in the background")
            }
        }
        let task = tokio::spawn(bans::keep_fresh(
            store,
            inner.bans.clone(),
            notifier,
            inner.clock.clone(),
        ));
        *lock(&inner.bans_task) = Some(task);
    }

    /// The tenant bans this node enforces: REST calls and upgrades of a banned user are refused.
    pub fn bans(&self) -> &BanList {
        &self.inner.bans
    }

    /// Bans a user from a tenant (the caller checked who may): stored with `entries` (one per
    /// live stream of the tenant), enforced here at once, and the user's connections to the
    /// tenant closed with 1008 on every node.
    pub async fn ban(&self, ban: Ban, entries: &[ModerationEntry]) -> Result<Ban, Rejection> {
        self.inner
            .store
            .ban(&ban, entries)
            .await
            .map_err(|e| storage_unavailable("ban", e))?;
        self.inner.bans.insert(&ban);
        ::metrics::counter!(crate::metrics::MODERATION_ACTIONS, "action" => "ban").increment(1);
        self.inner
            .fanout
            .notifier()
            .disconnect(&ban.tenant, &ban.user);
        Ok(ban)
    }

    /// Lifts a user's ban from a tenant; false when there was none. Other nodes stop enforcing
    /// it at their next refresh.
    pub async fn unban(
        &self,
        tenant: &TenantId,
        user: &UserId,
        entries: &[ModerationEntry],
    ) -> Result<bool, Rejection> {
        let lifted = self
            .inner
            .store
            .unban(tenant, user, entries)
            .await
            .map_err(|e| storage_unavailable("unban", e))?;
        self.inner.bans.remove(tenant, user);
        if lifted {
            ::metrics::counter!(crate::metrics::MODERATION_ACTIONS, "action" => "unban")
                .increment(1);
        }
        Ok(lifted)
    }

    /// One recovery pass: drops that must run (and, in a cluster, live streams nobody runs).
    async fn recover(&self) {
        let inner = &self.inner;
        if inner.offer_live_streams {
            recovery::offer_live_streams(&inner.directory, inner.store.as_ref()).await;
        }
        recovery::pass(&inner.directory, inner.store.as_ref()).await;
    }

    fn lock_recovery(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.inner
            .recovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Protocol limits.
    pub fn limits(&self) -> Limits {
        self.inner.config.limits
    }

    /// Tunables.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The live actor tree, for operators.
    pub fn tree(&self) -> &ActorTree {
        &self.inner.tree
    }

    /// Viewers of a stream now (over every node, in cluster mode).
    pub fn viewers(&self, stream: &StreamId) -> u64 {
        self.inner.fanout.viewers(stream)
    }

    /// Starts or ends a show. Ending it also closes the drops the stream still had open (or
    /// sold out), each stored and announced as `drop_closed` with reason `stream_ended`.
    pub async fn lifecycle(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        action: Lifecycle,
    ) -> Result<Stream, Rejection> {
        let call = Call::Lifecycle {
            tenant: tenant.clone(),
            stream: stream.clone(),
            action,
        };
        match self.run(call, Hop::First).await? {
            Answer::Stream(stream) => Ok(stream),
            _ => Err(Answer::mismatch("lifecycle")),
        }
    }

    /// Pins a product (already checked to belong to the tenant).
    pub async fn pin(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        product: ProductId,
    ) -> Result<Stream, Rejection> {
        let call = Call::Pin {
            tenant: tenant.clone(),
            stream: stream.clone(),
            product,
        };
        match self.run(call, Hop::First).await? {
            Answer::Stream(stream) => Ok(stream),
            _ => Err(Answer::mismatch("pin")),
        }
    }

    /// Opens a drop in its live stream, stores and announces it, and starts its actor, so that
    /// its end time closes it even if nobody claims.
    pub async fn open_drop(&self, drop: Drop) -> Result<Drop, Rejection> {
        match self.run(Call::OpenDrop(drop), Hop::First).await? {
            Answer::Drop(drop) => Ok(drop),
            _ => Err(Answer::mismatch("open_drop")),
        }
    }

    /// Closes a drop (once; later calls answer it as it is).
    pub async fn close_drop(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        reason: CloseReason,
    ) -> Result<Drop, Rejection> {
        let call = Call::CloseDrop {
            tenant: tenant.clone(),
            drop: drop.clone(),
            reason,
        };
        match self.run(call, Hop::First).await? {
            Answer::Drop(drop) => Ok(drop),
            _ => Err(Answer::mismatch("close_drop")),
        }
    }

    /// Claims units of a drop; answers once the reservation is durable.
    pub async fn claim(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        user: &UserId,
        quantity: i64,
        key: String,
    ) -> Result<ClaimOutcome, Rejection> {
        let call = Call::Claim {
            tenant: tenant.clone(),
            drop: drop.clone(),
            user: user.clone(),
            quantity,
            key,
        };
        match self.run(call, Hop::First).await? {
            Answer::Claim { claim, created } => Ok(ClaimOutcome { claim, created }),
            _ => Err(Answer::mismatch("claim")),
        }
    }

    /// Marks a reserved claim paid; its buyer gets a `claim_update`.
    pub async fn pay(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        claim: ClaimId,
    ) -> Result<Claim, Rejection> {
        let call = Call::Pay {
            tenant: tenant.clone(),
            drop: drop.clone(),
            claim,
        };
        match self.run(call, Hop::First).await? {
            Answer::Paid(claim) => Ok(claim),
            _ => Err(Answer::mismatch("pay")),
        }
    }

    /// Publishes a chat message of an author with `role`; answers its seq. An author whose
    /// connection has not joined must be the stream's broadcaster (its seller, or an admin); the
    /// stream checks, and applies its moderation (staff are not slowed).
    pub async fn chat(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        author: ChatAuthor,
        text: String,
        (access, role): (ChatAccess, liveshop_engine::auth::Role),
    ) -> Result<u64, Rejection> {
        let call = Call::Chat {
            tenant: tenant.clone(),
            stream: stream.clone(),
            author,
            text,
            access,
            role,
        };
        match self.run(call, Hop::First).await? {
            Answer::Seq(seq) => Ok(seq),
            _ => Err(Answer::mismatch("chat")),
        }
    }

    /// Deletes a chat message of a stream (the caller checked who may): stored with its log
    /// entry, then announced by `chat_deleted`; done also when it was deleted already.
    pub async fn delete_chat(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        message: ChatId,
        actor: UserId,
    ) -> Result<(), Rejection> {
        let call = Call::DeleteChat {
            tenant: tenant.clone(),
            stream: stream.clone(),
            message,
            actor,
        };
        match self.run(call, Hop::First).await? {
            Answer::Done => Ok(()),
            _ => Err(Answer::mismatch("delete_chat")),
        }
    }

    /// Mutes a user in a stream's chat (the caller checked who may and the duration).
    pub async fn mute(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        user: UserId,
        duration_seconds: i64,
        actor: UserId,
        reason: Option<String>,
    ) -> Result<Mute, Rejection> {
        let call = Call::Mute {
            tenant: tenant.clone(),
            stream: stream.clone(),
            user,
            duration_seconds,
            actor,
            reason,
        };
        match self.run(call, Hop::First).await? {
            Answer::Mute(mute) => Ok(mute),
            _ => Err(Answer::mismatch("mute")),
        }
    }

    /// Reads (`change: None`) or changes a stream's chat settings (the caller checked who may);
    /// answers the settings after the change.
    pub async fn chat_settings(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        change: Option<(SettingsPatch, UserId)>,
    ) -> Result<ChatSettings, Rejection> {
        let call = Call::ChatSettings {
            tenant: tenant.clone(),
            stream: stream.clone(),
            change,
        };
        match self.run(call, Hop::First).await? {
            Answer::ChatSettings(settings) => Ok(settings),
            _ => Err(Answer::mismatch("chat_settings")),
        }
    }

    /// Counts a reaction (already validated) toward the stream's next coalesced tally.
    pub async fn react(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        emoji: &'static str,
    ) -> Result<(), Rejection> {
        let call = Call::React {
            tenant: tenant.clone(),
            stream: stream.clone(),
            emoji: emoji.to_owned(),
        };
        self.run(call, Hop::First).await.map(|_| ())
    }

    /// Runs a call that another node relayed here because this node runs its stream. It is run
    /// exactly as a local caller's, but never relayed on: if the stream runs elsewhere by now,
    /// the answer is `unavailable` and the caller retries.
    pub async fn serve(&self, call: Call) -> Result<Answer, Rejection> {
        self.run(call, Hop::Last).await
    }

    /// Runs `call` where its stream runs: here, or relayed to the owner node on a first hop. A
    /// relay that finds the owner gone is placed once more (the stream may be free by now, or
    /// have a new owner) before the caller is told to retry.
    async fn run(&self, call: Call, hop: Hop) -> Result<Answer, Rejection> {
        let mut tries = 0;
        loop {
            tries += 1;
            let elsewhere = match self.locate(&call).await? {
                Located::Here(Target::Stream(actor)) => return self.on_stream(actor, call).await,
                Located::Here(Target::Drop) => return self.on_drop(call).await,
                Located::Elsewhere(node) => node,
            };
            if hop == Hop::Last {
                return Err(not_here());
            }
            match self.inner.remote.call(&elsewhere, call.clone()).await {
                Err(rejection) if rejection.code == liveshop_engine::ErrorCode::Unavailable => {
                    if let Some(stream) = self.stream_of_call(&call) {
                        self.inner
                            .directory
                            .placement()
                            .unreachable(&stream, &elsewhere);
                    }
                    if tries >= 2 {
                        return Err(rejection);
                    }
                }
                answered => return answered,
            }
        }
    }

    /// Where the actor a call is for runs.
    async fn locate(&self, call: &Call) -> Result<Located<Target>, Rejection> {
        let directory = &self.inner.directory;
        Ok(match call.subject() {
            Subject::Stream(tenant, stream) => match directory.stream(tenant, stream).await? {
                Located::Here(actor) => Located::Here(Target::Stream(actor)),
                Located::Elsewhere(node) => Located::Elsewhere(node),
            },
            Subject::Drop(tenant, drop) => match directory.drop(tenant, drop).await? {
                Located::Here(_) => Located::Here(Target::Drop),
                Located::Elsewhere(node) => Located::Elsewhere(node),
            },
        })
    }

    /// The stream a call is about (a drop's, for drop calls), when known here.
    fn stream_of_call(&self, call: &Call) -> Option<StreamId> {
        match call.subject() {
            Subject::Stream(_, stream) => Some(stream.clone()),
            Subject::Drop(_, drop) => self.inner.directory.known_stream_of(drop),
        }
    }

    /// Runs a stream call on its actor here.
    async fn on_stream(
        &self,
        actor: crate::mailbox::Addr<StreamMsg>,
        call: Call,
    ) -> Result<Answer, Rejection> {
        match call {
            Call::Lifecycle { tenant, action, .. } => {
                let done = actor
                    .ask(|reply| StreamMsg::Lifecycle { action, reply })
                    .await??;
                for drop in &done.close_drops {
                    let close = Call::CloseDrop {
                        tenant: tenant.clone(),
                        drop: drop.clone(),
                        reason: CloseReason::StreamEnded,
                    };
                    self.on_drop(close).await?;
                }
                Ok(Answer::Stream(done.stream))
            }
            Call::Pin { product, .. } => actor
                .ask(|reply| StreamMsg::Pin { product, reply })
                .await?
                .map(Answer::Stream),
            Call::OpenDrop(drop) => {
                let (tenant, stream) = (drop.tenant.clone(), drop.stream.clone());
                let drop = actor
                    .ask(|reply| StreamMsg::OpenDrop {
                        drop: Box::new(drop),
                        reply,
                    })
                    .await??;
                let directory = &self.inner.directory;
                directory.drop_opened(&tenant, &drop.id, &stream);
                directory.drop(&tenant, &drop.id).await?;
                Ok(Answer::Drop(drop))
            }
            Call::Chat {
                author,
                text,
                access,
                role,
                ..
            } => actor
                .ask(|reply| StreamMsg::Chat {
                    author,
                    text,
                    access,
                    role,
                    reply,
                })
                .await?
                .map(Answer::Seq),
            Call::React { emoji, .. } => {
                let emoji = liveshop_engine::chat::validate_emoji(&emoji)?;
                actor.cast(StreamMsg::React(emoji));
                Ok(Answer::Done)
            }
            Call::Snapshot { .. } => actor.ask(StreamMsg::Snapshot).await?.map(Answer::Snapshot),
            Call::DeleteChat {
                message, actor: by, ..
            } => actor
                .ask(|reply| StreamMsg::DeleteChat {
                    id: message,
                    actor: by,
                    reply,
                })
                .await?
                .map(|()| Answer::Done),
            Call::Mute {
                user,
                duration_seconds,
                actor: by,
                reason,
                ..
            } => actor
                .ask(|reply| StreamMsg::Mute {
                    user,
                    duration_seconds,
                    actor: by,
                    reason,
                    reply,
                })
                .await?
                .map(Answer::Mute),
            Call::ChatSettings { change, .. } => actor
                .ask(|reply| StreamMsg::ChatSettings { change, reply })
                .await?
                .map(Answer::ChatSettings),
            Call::CloseDrop { .. } | Call::Claim { .. } | Call::Pay { .. } => {
                Err(Answer::mismatch(call.name()))
            }
        }
    }

    /// Runs a drop call on its actor here.
    async fn on_drop(&self, call: Call) -> Result<Answer, Rejection> {
        match call {
            Call::CloseDrop {
                tenant,
                drop,
                reason,
            } => self
                .ask_drop(&tenant, &drop, |reply| DropMsg::Close(reason, Some(reply)))
                .await?
                .map(Answer::Drop),
            Call::Claim {
                tenant,
                drop,
                user,
                quantity,
                key,
            } => self
                .ask_drop(&tenant, &drop, |reply| DropMsg::Claim {
                    user: user.clone(),
                    quantity,
                    key: key.clone(),
                    reply,
                })
                .await?
                .map(|outcome| Answer::Claim {
                    claim: outcome.claim,
                    created: outcome.created,
                }),
            Call::Pay {
                tenant,
                drop,
                claim,
            } => self
                .ask_drop(&tenant, &drop, |reply| DropMsg::Pay(claim.clone(), reply))
                .await?
                .map(Answer::Paid),
            other => Err(Answer::mismatch(other.name())),
        }
    }

    /// Asks a drop's actor here. A closed drop's actor stops once nothing is left for it to do;
    /// a request that reaches it as it stops is asked once more of its next incarnation.
    async fn ask_drop<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        build: impl Fn(ractor::RpcReplyPort<T>) -> DropMsg,
    ) -> Result<T, Rejection> {
        let actor = self.drop_here(tenant, drop).await?;
        match actor.try_ask(&build).await {
            Ok(answer) => Ok(answer),
            // Never delivered, so it cannot have been handled: the next incarnation answers.
            Err(AskError::NotDelivered) => {
                let next = self.drop_here(tenant, drop).await?;
                next.ask(&build).await
            }
            Err(AskError::NoAnswer) => Err(crate::mailbox::unavailable()),
        }
    }

    /// The drop's actor on this node; `unavailable` if its stream moved to another node.
    async fn drop_here(
        &self,
        tenant: &TenantId,
        drop: &DropId,
    ) -> Result<crate::mailbox::Addr<DropMsg>, Rejection> {
        match self.inner.directory.drop(tenant, drop).await? {
            Located::Here(actor) => Ok(actor),
            Located::Elsewhere(_) => Err(not_here()),
        }
    }

    /// Joins a connection to a stream (snapshot, or replay from `resume`). This node's hub
    /// watches the stream on the bus first, so no event published after the snapshot is missed;
    /// a stream run by another node is joined with a snapshot its owner takes for this node.
    pub async fn join(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        resume: Option<(u64, u64)>,
        r#ref: Option<String>,
        conn: Subscriber,
    ) -> Result<JoinReply, Rejection> {
        let fanout = &self.inner.fanout;
        fanout.bus().watch(stream).await.map_err(|err| {
            tracing::warn!(stream_id = %stream, error = %err, "could not watch a stream on the bus");
            Rejection::new(liveshop_engine::ErrorCode::Unavailable, "stream feed unavailable; retry")
        })?;
        let located = self.inner.directory.stream(tenant, stream).await;
        tracing::debug!(stream_id = %stream, here = matches!(located, Ok(Located::Here(_))), "joining");
        let node = match located? {
            Located::Here(actor) => {
                return actor
                    .ask(|reply| StreamMsg::Join {
                        resume,
                        r#ref,
                        conn,
                        reply,
                    })
                    .await?;
            }
            Located::Elsewhere(node) => node,
        };
        // Counted and queued at the hub before the snapshot is taken, so every event after it
        // reaches the hub's feed (the hub skips those the snapshot already holds).
        let hub = fanout.hub();
        hub.joining(stream);
        let call = Call::Snapshot {
            tenant: tenant.clone(),
            stream: stream.clone(),
        };
        let snapshot = match self.inner.remote.call(&node, call).await {
            Ok(Answer::Snapshot(snapshot)) => snapshot,
            Ok(_) => {
                hub.leave(stream, conn, None);
                return Err(Answer::mismatch("snapshot"));
            }
            Err(rejection) => {
                hub.leave(stream, conn, None);
                return Err(rejection);
            }
        };
        let RemoteSnapshot { epoch, seq, state } = snapshot;
        let backlog = match resume {
            Some((epoch, since)) => fanout.bus().backlog(stream, epoch, since).await,
            None => None,
        };
        hub.join(
            stream,
            Join {
                subscriber: conn,
                r#ref,
                resume,
                snapshot: Snapshot {
                    epoch,
                    seq,
                    state: Arc::from(state),
                },
                backlog,
            },
        );
        Ok(JoinReply { epoch, seq })
    }

    /// Leaves a stream after the events already sent; `then` (JSON) is written after them.
    pub fn leave(&self, stream: &StreamId, conn: Subscriber, then: Option<bytes::Bytes>) {
        self.inner.fanout.hub().leave(stream, conn, then);
    }

    /// Makes an actor panic so its supervisor's restart path runs (fault injection).
    pub async fn crash(&self, target: FaultTarget) -> Result<(), Rejection> {
        match target {
            FaultTarget::Stream(tenant, stream) => {
                match self.inner.directory.stream(&tenant, &stream).await? {
                    Located::Here(actor) => actor.cast(StreamMsg::Crash),
                    Located::Elsewhere(_) => return Err(not_here()),
                }
            }
            FaultTarget::Drop(tenant, drop) => {
                self.drop_here(&tenant, &drop).await?.cast(DropMsg::Crash)
            }
            FaultTarget::Session(session) => self
                .inner
                .sessions
                .get(&session)
                .ok_or_else(|| Rejection::not_found("session"))?
                .cast(SessionMsg::Crash),
            FaultTarget::Persister => self.inner.persister.slot().cast(PersisterMsg::Crash),
        }
        Ok(())
    }

    /// Registers a connection of `user`, so private frames (`claim_update`) reach it.
    pub fn register_user(&self, tenant: &TenantId, user: &UserId, conn: Subscriber) {
        self.inner.fanout.notifier().register(tenant, user, conn);
    }

    /// Forgets a connection registered with [`Engine::register_user`].
    pub fn unregister_user(&self, tenant: &TenantId, user: &UserId, conn: u64) {
        self.inner.fanout.notifier().unregister(tenant, user, conn);
    }

    /// Lists a connection's session, so operators can reach it (fault injection).
    pub fn register_session(&self, session: SessionId, inbox: Arc<SessionInbox>) {
        self.inner.sessions.insert(session, inbox);
    }

    /// Forgets a connection's session when the connection ends.
    pub fn unregister_session(&self, session: &SessionId) {
        self.inner.sessions.remove(session);
    }

    /// Queues a chat message for the next batched write (stream actors do this for every
    /// accepted message; exposed for tools and tests that store chat directly).
    pub fn persist_chat(&self, message: liveshop_engine::records::ChatMessage) {
        self.inner.persister.chat(message);
    }

    /// Queues a users-seen upsert for the next batched write.
    pub fn persist_user_seen(&self, user: UserSeen) {
        self.inner.persister.user_seen(user);
    }

    /// Waits until every queued chat message is written (used by graceful drain).
    pub async fn flush(&self) {
        self.inner.persister.flush().await;
    }

    /// Hands every stream this node runs to other nodes (a planned shutdown): their actors stop
    /// here, the chat they accepted is written, then their leases are released, so another node
    /// takes each at once instead of waiting for the lease to lapse. Returns how many streams
    /// were handed over.
    pub async fn hand_over(&self) -> usize {
        let placement = self.inner.directory.placement().clone();
        let streams = placement.held();
        for stream in &streams {
            self.inner.directory.evict(stream);
        }
        // Each actor stops after the message it is handling; give them a moment to finish.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while streams
            .iter()
            .any(|s| self.inner.directory.stream_is_running(s))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.flush().await;
        let complete = self.inner.fanout.bus().flush(SHUTDOWN_WAIT).await;
        for stream in &streams {
            placement.hand_over(stream, complete).await;
        }
        streams.len()
    }

    /// Streams this node runs now (cluster mode; 0 single-node).
    pub fn streams_owned(&self) -> usize {
        self.inner.directory.placement().held().len()
    }

    /// Stops the tree, after writing what is queued.
    pub async fn shutdown(&self) {
        if let Some(task) = self.lock_recovery().take() {
            task.abort();
        }
        if let Some(task) = lock(&self.inner.bans_task).take() {
            task.abort();
        }
        self.flush().await;
        // Stopped on its own first, so it runs its last writes (and says what it could not
        // write); stopping the root would kill it without them.
        if let Some(persister) = self.inner.persister.slot().running() {
            let _ = persister
                .actor()
                .stop_and_wait(Some("shutdown".into()), Some(SHUTDOWN_WAIT))
                .await;
        }
        self.inner.directory.root().stop(Some("shutdown".into()));
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A storage failure of a facade write: logged with its cause, answered `unavailable`.
fn storage_unavailable(
    what: &'static str,
    error: liveshop_engine::storage::StorageError,
) -> Rejection {
    tracing::error!(%error, source = ?std::error::Error::source(&error), what, "storage write failed");
    Rejection::new(
        liveshop_engine::ErrorCode::Unavailable,
        "storage unavailable; retry",
    )
}
