//! One supervisor for every level of the tree: the root (tenants, the persister) and each tenant
//! (its streams, drops and, later, auctions).
//!
//! A supervisor does not know the types of its children. Each child is a [`Child`]: something
//! that can start an incarnation linked to the supervisor and that owns the stable address
//! ([`Place`]) where others find it. A failed child is restarted within its [`RestartBudget`];
//! what is sent to it meanwhile waits in its [`Slot`](crate::slot::Slot). A new actor kind is
//! therefore one module that builds its arguments: nothing here changes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use liveshop_engine::storage::StorageError;
use liveshop_engine::{ErrorCode, Rejection};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::clock::Clock;
use crate::mailbox::{Addr, Depth};
use crate::metrics::{self, AliveGuard};
use crate::restart::RestartBudget;
use crate::slot::Slot;
use crate::tree::ActorTree;

/// Why an actor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The record it serves does not exist (or belongs to another tenant).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Storage failed while the actor read its state.
    #[error("storage failed while starting")]
    Storage(#[from] StorageError),
    /// The actor failed to start for another reason (a panic in its start-up).
    #[error("actor failed to start: {0}")]
    Spawn(String),
}

impl StartError {
    /// Recovers the typed reason from ractor's start-up error.
    pub fn from_spawn(err: ractor::SpawnErr) -> Self {
        match err {
            ractor::SpawnErr::StartupFailed(inner) => match inner.downcast::<StartError>() {
                Ok(typed) => *typed,
                Err(other) => match other.downcast::<StorageError>() {
                    Ok(storage) => Self::Storage(*storage),
                    Err(other) => Self::Spawn(other.to_string()),
                },
            },
            other => Self::Spawn(other.to_string()),
        }
    }

    /// The answer a caller gets: `not_found`, or `unavailable` (logged with its cause).
    pub fn into_rejection(self, what: &str) -> Rejection {
        match self {
            Self::NotFound(_) => Rejection::not_found(what),
            other => {
                tracing::error!(error = %other, source = ?std::error::Error::source(&other), "{what} actor failed to start");
                Rejection::new(
                    ErrorCode::Unavailable,
                    format!("{what} is unavailable; retry"),
                )
            }
        }
    }
}

/// Where a child's running incarnation is found by others; it outlives the incarnations.
pub trait Place<M: ractor::Message>: Send + Sync + 'static {
    /// The new incarnation runs.
    fn attach(&self, addr: Addr<M>);
    /// The incarnation `failed` failed and another is coming; false when a newer incarnation
    /// already runs (then none is needed).
    fn restarting(&self, failed: ActorId) -> bool;
    /// No incarnation runs any more; `actor` is the one that stopped, if known.
    fn stopped(&self, actor: Option<ActorId>);
    /// Whether an incarnation runs now.
    fn is_running(&self) -> bool;
}

impl<M: ractor::Message> Place<M> for Arc<Slot<M>> {
    fn attach(&self, addr: Addr<M>) {
        Slot::attach(self, addr);
    }
    fn restarting(&self, failed: ActorId) -> bool {
        Slot::restarting(self, failed)
    }
    fn stopped(&self, actor: Option<ActorId>) {
        match actor {
            Some(actor) => self.stop_if_running(actor),
            None => self.stop(),
        }
    }
    fn is_running(&self) -> bool {
        self.running().is_some()
    }
}

/// A child a supervisor can start and restart without knowing its type.
#[async_trait]
pub trait Child: Send + Sync + 'static {
    /// Its kind, the `kind` label of metrics and of the actor tree.
    fn kind(&self) -> &'static str;
    /// Its id within its kind.
    fn id(&self) -> String;
    /// Whether an incarnation runs now.
    fn is_running(&self) -> bool;
    /// Starts an incarnation linked to `supervisor` and makes it findable; `restarted` tells it
    /// that an earlier incarnation failed.
    async fn start(&self, supervisor: ActorCell, restarted: bool) -> Result<ActorId, StartError>;
    /// The incarnation `actor` failed: what is sent to it now waits for the next one. False
    /// when a newer incarnation already runs, so no restart is needed.
    fn failed(&self, actor: ActorId) -> bool;
    /// No incarnation will run (it stopped, or restarts were given up).
    fn stopped(&self, actor: Option<ActorId>);
}

/// Builds one incarnation's start-up arguments from its mailbox counter and whether it restarts.
pub type MakeArgs<A> = Box<dyn Fn(Depth, bool) -> <A as Actor>::Arguments + Send + Sync>;

/// The [`Child`] of every actor kind: an actor value, how to make its arguments, and its place.
pub struct ActorChild<A: Actor, P> {
    kind: &'static str,
    id: String,
    actor: fn() -> A,
    make_args: MakeArgs<A>,
    place: P,
}

impl<A: Actor, P: Place<A::Msg>> ActorChild<A, P> {
    /// A child of `kind` with `id`, found at `place`.
    pub fn new(
        kind: &'static str,
        id: String,
        actor: fn() -> A,
        place: P,
        make_args: MakeArgs<A>,
    ) -> Self {
        Self {
            kind,
            id,
            actor,
            make_args,
            place,
        }
    }
}

#[async_trait]
impl<A: Actor, P: Place<A::Msg>> Child for ActorChild<A, P> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn id(&self) -> String {
        self.id.clone()
    }

    fn is_running(&self) -> bool {
        self.place.is_running()
    }

    async fn start(&self, supervisor: ActorCell, restarted: bool) -> Result<ActorId, StartError> {
        let depth = Depth::new(self.kind);
        let args = (self.make_args)(depth.clone(), restarted);
        let (actor, _) = Actor::spawn_linked(None, (self.actor)(), args, supervisor)
            .await
            .map_err(StartError::from_spawn)?;
        let id = actor.get_id();
        self.place.attach(Addr::new(actor, depth));
        Ok(id)
    }

    fn failed(&self, actor: ActorId) -> bool {
        self.place.restarting(actor)
    }

    fn stopped(&self, actor: Option<ActorId>) {
        self.place.stopped(actor);
    }
}

/// A registry of the running actors of one kind, by id, with the tenant each belongs to.
pub struct Registry<K, M: ractor::Message> {
    kind: &'static str,
    entries: dashmap::DashMap<K, (liveshop_engine::TenantId, Arc<Slot<M>>)>,
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static, M: ractor::Message> Registry<K, M> {
    /// An empty registry for actors of `kind`.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            entries: dashmap::DashMap::new(),
        }
    }

    /// The running actor of `key`, if it runs; `not_found` when it belongs to another tenant.
    pub fn running(
        &self,
        tenant: &liveshop_engine::TenantId,
        key: &K,
    ) -> Result<Option<Addr<M>>, Rejection> {
        match self.entries.get(key) {
            Some(entry) if &entry.0 == tenant => Ok(entry.1.running()),
            Some(_) => Err(Rejection::not_found(self.kind)),
            None => Ok(None),
        }
    }

    /// The stable address of `key`, made if new. Only for a `tenant` already known to own `key`
    /// (from a stored record), so a probe with another tenant's id cannot claim it.
    pub fn slot(&self, tenant: &liveshop_engine::TenantId, key: &K) -> Arc<Slot<M>> {
        self.entries
            .entry(key.clone())
            .or_insert_with(|| (tenant.clone(), Arc::new(Slot::new(self.kind))))
            .1
            .clone()
    }

    /// The stable address of `key` if it has one, whatever its tenant (for the tree itself).
    pub fn existing(&self, key: &K) -> Option<Arc<Slot<M>>> {
        self.entries.get(key).map(|e| e.1.clone())
    }

    /// Whether an incarnation of `key` runs now, whatever its tenant.
    pub fn is_running(&self, key: &K) -> bool {
        self.existing(key)
            .is_some_and(|slot| slot.running().is_some())
    }
}

/// A child's place in a [`Registry`]: the entry is made when an incarnation first runs (its
/// tenant verified by its start-up), and found by key afterwards.
pub struct Registered<K, M: ractor::Message> {
    registry: Arc<Registry<K, M>>,
    tenant: liveshop_engine::TenantId,
    key: K,
}

impl<K, M: ractor::Message> Registered<K, M> {
    /// The place of `key` of `tenant` in `registry`.
    pub fn new(registry: Arc<Registry<K, M>>, tenant: liveshop_engine::TenantId, key: K) -> Self {
        Self {
            registry,
            tenant,
            key,
        }
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static, M: ractor::Message> Place<M>
    for Registered<K, M>
{
    fn attach(&self, addr: Addr<M>) {
        self.registry.slot(&self.tenant, &self.key).attach(addr);
    }
    fn restarting(&self, failed: ActorId) -> bool {
        self.registry
            .existing(&self.key)
            .is_none_or(|slot| slot.restarting(failed))
    }
    fn stopped(&self, actor: Option<ActorId>) {
        if let Some(slot) = self.registry.existing(&self.key) {
            Place::stopped(&slot, actor);
        }
    }
    fn is_running(&self) -> bool {
        self.registry.is_running(&self.key)
    }
}

/// A check a supervisor runs before it starts (a tenant checks that the tenant exists).
pub type StartCheck =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StartError>> + Send>>;

/// Start-up arguments of a supervisor.
pub struct SupervisorArgs {
    /// Its kind (`supervisor` for the root, `tenant`).
    pub kind: &'static str,
    /// Its id in the actor tree.
    pub id: String,
    /// Its parent in the actor tree.
    pub parent: Option<String>,
    /// Whether operators see it in the actor tree (tenants are listed; the root is not).
    pub listed: bool,
    /// Where it lists itself and its children's restarts.
    pub tree: Arc<ActorTree>,
    /// Its mailbox counter.
    pub depth: Depth,
    /// What must hold before it starts.
    pub check: Option<StartCheck>,
    /// The clock restart budgets are measured on.
    pub clock: Arc<dyn Clock>,
}

/// Messages of a supervisor.
pub enum SupervisorMsg {
    /// Starts the child unless it runs.
    Ensure(Arc<dyn Child>, RpcReplyPort<Result<(), StartError>>),
}

/// The supervisor actor.
pub struct Supervisor;

/// Its state: which running actor is which child, and their restart budgets.
pub struct SupervisorState {
    kind: &'static str,
    id: String,
    tree: Arc<ActorTree>,
    depth: Depth,
    children: HashMap<ActorId, Arc<dyn Child>>,
    budgets: HashMap<(&'static str, String), RestartBudget>,
    clock: Arc<dyn Clock>,
    _alive: AliveGuard,
}

impl SupervisorState {
    async fn ensure(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        child: Arc<dyn Child>,
    ) -> Result<(), StartError> {
        if child.is_running() {
            return Ok(());
        }
        let id = child.start(myself.get_cell(), false).await?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Restarts a failed child within its budget, else gives it up until its next use.
    async fn restart(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        failed: ActorId,
        child: Arc<dyn Child>,
        err: &str,
    ) {
        let (kind, id) = (child.kind(), child.id());
        if !child.failed(failed) {
            tracing::warn!(kind, id = %id, error = %err, "an earlier incarnation failed; the one started since keeps running");
            return;
        }
        let budget = self
            .budgets
            .entry((kind, id.clone()))
            .or_insert_with(RestartBudget::standard);
        if !budget.allow(self.clock.instant()) {
            tracing::error!(supervisor = self.kind, supervisor_id = %self.id, kind, id = %id, error = %err,
                "actor exhausted its restart budget; it starts again on next use");
            ::metrics::counter!(metrics::ACTOR_ESCALATIONS, "kind" => kind).increment(1);
            self.tree.remove(kind, &id);
            child.stopped(None);
            return;
        }
        tracing::warn!(supervisor = self.kind, supervisor_id = %self.id, kind, id = %id, error = %err,
            "actor failed; restoring it from storage");
        ::metrics::counter!(metrics::ACTOR_RESTARTS, "kind" => kind).increment(1);
        self.tree.note_restart(kind, &id);
        match child.start(myself.get_cell(), true).await {
            Ok(actor) => {
                self.children.insert(actor, child);
            }
            Err(e) => {
                tracing::error!(kind, id = %id, error = %e, source = ?std::error::Error::source(&e),
                    "actor could not be restored; it starts again on next use");
                child.stopped(None);
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        if let Some(check) = args.check {
            check.await?;
        }
        if args.listed {
            args.tree
                .register(args.kind, &args.id, args.parent, args.depth.clone());
        }
        Ok(SupervisorState {
            kind: args.kind,
            id: args.id,
            tree: args.tree,
            depth: args.depth,
            children: HashMap::new(),
            budgets: HashMap::new(),
            clock: args.clock,
            _alive: AliveGuard::new(args.kind),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        state.depth.taken();
        match message {
            SupervisorMsg::Ensure(child, reply) => {
                let _ = reply.send(state.ensure(&myself, child).await);
            }
        }
        metrics::record_handling(state.kind, started);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let failed = cell.get_id();
                if let Some(child) = state.children.remove(&failed) {
                    state
                        .restart(&myself, failed, child, &err.to_string())
                        .await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                let id = cell.get_id();
                if let Some(child) = state.children.remove(&id) {
                    child.stopped(Some(id));
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.tree.remove(state.kind, &state.id);
        Ok(())
    }
}
