//! The engine facade: the one door through which the front door (http) and sessions reach the
//! actor tree. Callers say what they want (start a stream, claim units, join); the facade finds
//! the actor in charge through the [`Directory`] and talks to it. No caller sends actor messages.

use std::sync::Arc;
use std::time::Duration;

use liveshop_engine::drops::CloseReason;
use liveshop_engine::ids::ClaimId;
use liveshop_engine::limits::Limits;
use liveshop_engine::records::{ChatAuthor, Claim, Drop, Stream, UserSeen};
use liveshop_engine::storage::Storage;
use liveshop_engine::stream::Lifecycle;
use liveshop_engine::stream_book::ChatAccess;
use liveshop_engine::{DropId, ProductId, Rejection, SessionId, StreamId, TenantId, UserId};
use ractor::Actor;
use tokio::task::JoinHandle;

use crate::clock::TimeAndIds;
use crate::connection::Subscriber;
use crate::directory::{Capabilities, Directory, ensure};
use crate::drop::{ClaimOutcome, DropMsg};
use crate::fanout::Fanout;
use crate::inbox::{SessionInbox, SessionMsg};
use crate::mailbox::{AskError, Depth};
use crate::metrics::kind;
use crate::persister::{Persister, PersisterMsg, PersisterPort, PersisterStores};
use crate::recovery;
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
    sessions: dashmap::DashMap<SessionId, Arc<SessionInbox>>,
    tree: Arc<ActorTree>,
    config: EngineConfig,
    /// How the persister is started; the recovery task starts it again if its supervisor gave
    /// it up.
    persister_child: Arc<dyn crate::supervise::Child>,
    recovery: std::sync::Mutex<Option<JoinHandle<()>>>,
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
        let caps = Capabilities {
            store: store.clone(),
            fanout: fanout.clone(),
            persister: persister.clone(),
            time,
            limits: config.limits,
            claim_batch_max: config.claim_batch_max,
            tree: tree.clone(),
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
                sessions: dashmap::DashMap::new(),
                tree,
                config,
                persister_child,
                recovery: std::sync::Mutex::new(None),
            }),
        };
        recovery::pass(&engine.inner.directory, engine.inner.store.as_ref()).await;
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
                recovery::pass(&inner.directory, inner.store.as_ref()).await;
            }
        });
        *engine.lock_recovery() = Some(task);
        Ok(engine)
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

    /// Connections joined to a stream on this node right now.
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
        let actor = self.inner.directory.stream(tenant, stream).await?;
        let done = actor
            .ask(|reply| StreamMsg::Lifecycle { action, reply })
            .await??;
        for drop in &done.close_drops {
            self.close_drop(tenant, drop, CloseReason::StreamEnded)
                .await?;
        }
        Ok(done.stream)
    }

    /// Pins a product (already checked to belong to the tenant).
    pub async fn pin(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        product: ProductId,
    ) -> Result<Stream, Rejection> {
        let actor = self.inner.directory.stream(tenant, stream).await?;
        actor.ask(|reply| StreamMsg::Pin { product, reply }).await?
    }

    /// Opens a drop in its live stream, stores and announces it, and starts its actor, so that
    /// its end time closes it even if nobody claims.
    pub async fn open_drop(&self, drop: Drop) -> Result<Drop, Rejection> {
        let (tenant, stream) = (drop.tenant.clone(), drop.stream.clone());
        let actor = self.inner.directory.stream(&tenant, &stream).await?;
        let drop = actor
            .ask(|reply| StreamMsg::OpenDrop {
                drop: Box::new(drop),
                reply,
            })
            .await??;
        self.inner.directory.drop(&tenant, &drop.id).await?;
        Ok(drop)
    }

    /// Closes a drop (once; later calls answer it as it is).
    pub async fn close_drop(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        reason: CloseReason,
    ) -> Result<Drop, Rejection> {
        self.ask_drop(tenant, drop, |reply| DropMsg::Close(reason, Some(reply)))
            .await
    }

    /// Asks a drop's actor. A closed drop's actor stops once nothing is left for it to do; a
    /// request that reaches it as it stops is asked once more of its next incarnation.
    async fn ask_drop<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        build: impl Fn(ractor::RpcReplyPort<T>) -> DropMsg,
    ) -> Result<T, Rejection> {
        let actor = self.inner.directory.drop(tenant, drop).await?;
        match actor.try_ask(&build).await {
            Ok(answer) => Ok(answer),
            // Never delivered, so it cannot have been handled: the next incarnation answers.
            Err(AskError::NotDelivered) => {
                let next = self.inner.directory.drop(tenant, drop).await?;
                next.ask(&build).await
            }
            Err(AskError::NoAnswer) => Err(crate::mailbox::unavailable()),
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
        self.ask_drop(tenant, drop, |reply| DropMsg::Claim {
            user: user.clone(),
            quantity,
            key: key.clone(),
            reply,
        })
        .await?
    }

    /// Marks a reserved claim paid; its buyer gets a `claim_update`.
    pub async fn pay(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        claim: ClaimId,
    ) -> Result<Claim, Rejection> {
        self.ask_drop(tenant, drop, |reply| DropMsg::Pay(claim.clone(), reply))
            .await?
    }

    /// Joins a connection to a stream (snapshot, or replay from `resume`).
    pub async fn join(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        resume: Option<(u64, u64)>,
        r#ref: Option<String>,
        conn: Subscriber,
    ) -> Result<JoinReply, Rejection> {
        let actor = self.inner.directory.stream(tenant, stream).await?;
        actor
            .ask(|reply| StreamMsg::Join {
                resume,
                r#ref,
                conn,
                reply,
            })
            .await?
    }

    /// Leaves a stream after the events already sent; `then` (JSON) is written after them.
    pub fn leave(&self, stream: &StreamId, conn: Subscriber, then: Option<bytes::Bytes>) {
        self.inner.fanout.hub().leave(stream, conn, then);
    }

    /// Publishes a chat message; answers its seq. An author whose connection has not joined
    /// must be the stream's broadcaster (its seller, or an admin); the stream checks.
    pub async fn chat(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        author: ChatAuthor,
        text: String,
        access: ChatAccess,
    ) -> Result<u64, Rejection> {
        let actor = self.inner.directory.stream(tenant, stream).await?;
        actor
            .ask(|reply| StreamMsg::Chat {
                author,
                text,
                access,
                reply,
            })
            .await?
    }

    /// Counts a reaction (already validated) toward the stream's next coalesced tally.
    pub async fn react(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        emoji: &'static str,
    ) -> Result<(), Rejection> {
        let actor = self.inner.directory.stream(tenant, stream).await?;
        actor.cast(StreamMsg::React(emoji));
        Ok(())
    }

    /// Makes an actor panic so its supervisor's restart path runs (fault injection).
    pub async fn crash(&self, target: FaultTarget) -> Result<(), Rejection> {
        match target {
            FaultTarget::Stream(tenant, stream) => self
                .inner
                .directory
                .stream(&tenant, &stream)
                .await?
                .cast(StreamMsg::Crash),
            FaultTarget::Drop(tenant, drop) => self
                .inner
                .directory
                .drop(&tenant, &drop)
                .await?
                .cast(DropMsg::Crash),
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

    /// Stops the tree, after writing what is queued.
    pub async fn shutdown(&self) {
        if let Some(task) = self.lock_recovery().take() {
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
