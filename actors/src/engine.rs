//! The engine handle: the shared context every actor and the front door use to reach each other.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use liveshop_engine::limits::Limits;
use liveshop_engine::records::{ChatMessage, UserSeen};
use liveshop_engine::storage::Storage;
use liveshop_engine::{DropId, ErrorCode, Rejection, SessionId, StreamId, TenantId, UserId};
use ractor::{Actor, ActorRef, RpcReplyPort};
use tokio::sync::Mutex;

use crate::connection::Subscriber;
use crate::drop::{ClaimOutcome, DropMsg};
use crate::fanout::Fanout;
use crate::mailbox::Addr;
use crate::persister::{Persister, PersisterMsg};
use crate::session::SessionInbox;
use crate::stream::StreamMsg;
use crate::supervisor::{EngineSupervisor, SupervisorMsg};
use crate::tenant::TenantMsg;
use crate::tree::ActorTree;

/// How long a caller waits for an actor's answer before reporting `unavailable`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Tunables of the actor tree.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Protocol limits (rates, joins, resume buffer).
    pub limits: Limits,
    /// Most claims written in one transaction; 1 turns group commit off (one write per claim).
    pub claim_batch_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            claim_batch_max: 1000,
        }
    }
}

/// A running stream actor and the tenant it belongs to.
#[derive(Clone, Debug)]
pub struct StreamHandle {
    /// The actor that owns the stream's state.
    pub actor: Addr<StreamMsg>,
    /// Owning tenant, checked on every lookup.
    pub tenant: TenantId,
}

/// A running drop actor and the tenant it belongs to.
#[derive(Clone, Debug)]
pub struct DropHandle {
    /// The actor that owns the drop's inventory.
    pub actor: Addr<DropMsg>,
    /// Owning tenant, checked on every lookup.
    pub tenant: TenantId,
}

/// Cheap-to-clone handle on the running engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    store: Arc<dyn Storage>,
    fanout: Fanout,
    config: EngineConfig,
    streams: DashMap<StreamId, StreamHandle>,
    tenants: DashMap<TenantId, Addr<TenantMsg>>,
    tree: ActorTree,
    drops: DashMap<DropId, DropHandle>,
    drop_locks: DashMap<DropId, Arc<Mutex<()>>>,
    sessions: DashMap<SessionId, Arc<SessionInbox>>,
    supervisor: OnceLock<ActorRef<SupervisorMsg>>,
    persister: OnceLock<ActorRef<PersisterMsg>>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An actor of the root of the tree failed to spawn.
    #[error("actor failed to start")]
    Spawn(#[from] ractor::SpawnErr),
}

impl Engine {
    /// Starts the root of the actor tree (supervisor and persister).
    pub async fn start(
        store: Arc<dyn Storage>,
        fanout: Fanout,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let engine = Self {
            inner: Arc::new(EngineInner {
                store,
                fanout,
                config,
                streams: DashMap::new(),
                tenants: DashMap::new(),
                tree: ActorTree::default(),
                drops: DashMap::new(),
                drop_locks: DashMap::new(),
                sessions: DashMap::new(),
                supervisor: OnceLock::new(),
                persister: OnceLock::new(),
            }),
        };
        let (supervisor, _) = Actor::spawn(None, EngineSupervisor, engine.clone()).await?;
        let (persister, _) =
            Actor::spawn_linked(None, Persister, engine.clone(), supervisor.get_cell()).await?;
        let _ = engine.inner.supervisor.set(supervisor);
        let _ = engine.inner.persister.set(persister);
        Ok(engine)
    }

    /// The storage every actor reads from and writes to.
    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.inner.store
    }

    /// Fan-out: this node's hub, the bus, presence and the user notifier.
    pub fn fanout(&self) -> &Fanout {
        &self.inner.fanout
    }

    /// Tunables.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Registry of running stream actors, maintained by their tenant actors.
    pub(crate) fn streams(&self) -> &DashMap<StreamId, StreamHandle> {
        &self.inner.streams
    }

    /// Registry of running tenant actors, maintained by the supervisor.
    pub(crate) fn tenants(&self) -> &DashMap<TenantId, Addr<TenantMsg>> {
        &self.inner.tenants
    }

    /// The live actor tree, for operators.
    pub fn tree(&self) -> &ActorTree {
        &self.inner.tree
    }

    /// Registry of running drop actors, maintained by their tenant actors.
    pub(crate) fn drops(&self) -> &DashMap<DropId, DropHandle> {
        &self.inner.drops
    }

    /// The commit lock of a drop; it outlives the drop's actor incarnations.
    pub(crate) fn drop_lock(&self, drop: &DropId) -> Arc<Mutex<()>> {
        self.inner
            .drop_locks
            .entry(drop.clone())
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    }

    /// The stream's actor if it is running (no start-up).
    pub fn running_stream(&self, stream: &StreamId) -> Option<StreamHandle> {
        self.inner.streams.get(stream).map(|h| h.clone())
    }

    /// Registers a connection of `user`, so private frames (`claim_update`) reach it.
    pub fn register_user(&self, tenant: &TenantId, user: &UserId, conn: Subscriber) {
        self.inner.fanout.notifier().register(tenant, user, conn);
    }

    /// Forgets a connection registered with [`Engine::register_user`].
    pub fn unregister_user(&self, tenant: &TenantId, user: &UserId, conn: u64) {
        self.inner.fanout.notifier().unregister(tenant, user, conn);
    }

    /// Sends a private frame to every connection of `user`.
    pub fn notify_user(&self, tenant: &TenantId, user: &UserId, frame: bytes::Bytes) {
        self.inner.fanout.notifier().notify(tenant, user, frame);
    }

    /// Lists a connection's session, so operators can reach it (fault injection).
    pub fn register_session(&self, session: SessionId, inbox: Arc<SessionInbox>) {
        self.inner.sessions.insert(session, inbox);
    }

    /// Forgets a connection's session when the connection ends.
    pub fn unregister_session(&self, session: &SessionId) {
        self.inner.sessions.remove(session);
    }

    /// The inbox of a live connection's session.
    pub fn session(&self, session: &SessionId) -> Option<Arc<SessionInbox>> {
        self.inner.sessions.get(session).map(|a| a.clone())
    }

    /// The running actor of a drop of `tenant`, started (restored from storage) if needed.
    pub async fn drop_actor(
        &self,
        tenant: &TenantId,
        id: &DropId,
    ) -> Result<DropHandle, Rejection> {
        if let Some(h) = self.inner.drops.get(id) {
            return if &h.tenant == tenant {
                Ok(h.clone())
            } else {
                Err(Rejection::not_found("drop"))
            };
        }
        let tenant_actor = self.tenant(tenant).await?;
        let id = id.clone();
        tenant_actor
            .ask(|reply| TenantMsg::EnsureDrop(id, reply))
            .await?
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
        let handle = self.drop_actor(tenant, drop).await?;
        let user = user.clone();
        handle
            .actor
            .ask(|reply| DropMsg::Claim {
                user,
                quantity,
                key,
                reply,
            })
            .await?
    }

    /// Viewers of a stream right now (this node's joined connections in single-node mode).
    pub fn viewers(&self, stream: &StreamId) -> u64 {
        self.inner.fanout.viewers(stream)
    }

    /// Queues a chat message for the next batched write.
    pub fn persist_chat(&self, message: ChatMessage) {
        if let Some(p) = self.inner.persister.get() {
            let _ = p.cast(PersisterMsg::Chat(message));
        }
    }

    /// Queues a users-seen upsert for the next batched write.
    pub fn persist_user_seen(&self, user: UserSeen) {
        if let Some(p) = self.inner.persister.get() {
            let _ = p.cast(PersisterMsg::UserSeen(user));
        }
    }

    /// Waits until every queued chat message is written (used by graceful drain).
    pub async fn flush(&self) {
        if let Some(p) = self.inner.persister.get() {
            let _ = p.call(PersisterMsg::Flush, Some(CALL_TIMEOUT)).await;
        }
    }

    /// The running actor of a stream of `tenant`, started (restored from storage) if needed.
    /// A stream of another tenant, or none at all, is `not_found`.
    pub async fn stream(
        &self,
        tenant: &TenantId,
        id: &StreamId,
    ) -> Result<StreamHandle, Rejection> {
        if let Some(h) = self.inner.streams.get(id) {
            return if &h.tenant == tenant {
                Ok(h.clone())
            } else {
                Err(Rejection::not_found("stream"))
            };
        }
        let tenant_actor = self.tenant(tenant).await?;
        let id = id.clone();
        tenant_actor
            .ask(|reply| TenantMsg::EnsureStream(id, reply))
            .await?
    }

    /// The running actor of a tenant, started if needed; `not_found` for unknown tenants.
    pub async fn tenant(&self, tenant: &TenantId) -> Result<Addr<TenantMsg>, Rejection> {
        if let Some(t) = self.inner.tenants.get(tenant) {
            return Ok(t.clone());
        }
        let supervisor = self
            .inner
            .supervisor
            .get()
            .ok_or_else(|| Rejection::new(ErrorCode::Unavailable, "engine is starting"))?;
        let tenant = tenant.clone();
        ask(supervisor, |reply| {
            SupervisorMsg::EnsureTenant(tenant, reply)
        })
        .await?
    }

    /// Stops the tree, after writing what is queued.
    pub async fn shutdown(&self) {
        self.flush().await;
        if let Some(s) = self.inner.supervisor.get() {
            s.stop(Some("shutdown".into()));
        }
    }
}

/// Sends an RPC and maps a dead or stuck actor to `unavailable`.
pub async fn ask<M, T>(
    actor: &ActorRef<M>,
    build: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, Rejection>
where
    M: ractor::Message,
    T: Send + 'static,
{
    match actor.call(build, Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        Ok(_) | Err(_) => Err(Rejection::new(
            ErrorCode::Unavailable,
            "the actor in charge did not answer; retry",
        )),
    }
}
