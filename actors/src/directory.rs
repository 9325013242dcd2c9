//! The directory: finds the actor in charge of an id, or starts it under the right supervisor.
//!
//! It is the one place that knows where actors run. Single-node, every stream and drop runs under
//! its tenant's supervisor in this process; cluster mode plugs the ownership lease in here.
//! Each actor is started with only the capabilities it uses, built here from [`Capabilities`].

use std::sync::Arc;

use dashmap::DashMap;
use liveshop_engine::limits::Limits;
use liveshop_engine::storage::Storage;
use liveshop_engine::{DropId, Rejection, StreamId, TenantId};
use ractor::ActorRef;
use tokio::sync::Mutex;

use crate::clock::TimeAndIds;
use crate::drop::{DropActor, DropArgs, DropCaps, DropMsg};
use crate::fanout::Fanout;
use crate::fanout::bus::Control;
use crate::mailbox::Addr;
use crate::metrics::kind;
use crate::persister::PersisterPort;
use crate::stream::{StreamActor, StreamArgs, StreamCaps, StreamMsg, StreamStores};
use crate::supervise::{
    ActorChild, Child, Place, Registered, Registry, StartError, Supervisor, SupervisorArgs,
    SupervisorMsg,
};
use crate::tree::ActorTree;

/// Everything the tree's actors may be given; each gets only its part.
#[derive(Clone)]
pub struct Capabilities {
    /// The database.
    pub store: Arc<dyn Storage>,
    /// This node's fan-out: hub, bus, presence and the user notifier.
    pub fanout: Fanout,
    /// Batched chat writes.
    pub persister: PersisterPort,
    /// Time and fresh ids.
    pub time: TimeAndIds,
    /// Protocol limits.
    pub limits: Limits,
    /// Most claims written in one transaction.
    pub claim_batch_max: usize,
    /// The actor tree operators see.
    pub tree: Arc<ActorTree>,
}

/// Finds or starts tenants' supervisors, streams and drops.
pub struct Directory {
    root: ActorRef<SupervisorMsg>,
    caps: Capabilities,
    tenants: Arc<Registry<TenantId, SupervisorMsg>>,
    streams: Arc<Registry<StreamId, StreamMsg>>,
    drops: Arc<Registry<DropId, DropMsg>>,
    /// Each drop's commit lock, shared by its incarnations.
    commit_locks: DashMap<DropId, Arc<Mutex<()>>>,
}

impl Directory {
    /// A directory whose tenants' supervisors run under `root`.
    pub fn new(root: ActorRef<SupervisorMsg>, caps: Capabilities) -> Self {
        Self {
            root,
            caps,
            tenants: Arc::new(Registry::new(kind::TENANT)),
            streams: Arc::new(Registry::new(kind::STREAM)),
            drops: Arc::new(Registry::new(kind::DROP)),
            commit_locks: DashMap::new(),
        }
    }

    /// The supervisor of `tenant`, started if needed; `not_found` for an unknown tenant.
    pub async fn tenant(&self, tenant: &TenantId) -> Result<Addr<SupervisorMsg>, Rejection> {
        if let Some(addr) = self.tenants.running(tenant, tenant)? {
            return Ok(addr);
        }
        let store = self.caps.store.clone();
        let tree = self.caps.tree.clone();
        let clock = self.caps.time.clock.clone();
        let id = tenant.clone();
        let child = ActorChild::new(
            kind::TENANT,
            tenant.to_string(),
            || Supervisor,
            Registered::new(self.tenants.clone(), tenant.clone(), tenant.clone()),
            Box::new(move |depth, _restarted| {
                let (store, id) = (store.clone(), id.clone());
                SupervisorArgs {
                    kind: kind::TENANT,
                    id: id.to_string(),
                    parent: None,
                    listed: true,
                    tree: tree.clone(),
                    depth,
                    clock: clock.clone(),
                    check: Some(Box::pin(async move {
                        match store.tenant(&id).await? {
                            Some(_) => Ok(()),
                            None => Err(StartError::NotFound("tenant")),
                        }
                    })),
                }
            }),
        );
        started(
            &self.tenants,
            &self.root,
            Arc::new(child),
            tenant,
            tenant,
            "tenant",
        )
        .await
    }

    /// The actor of a stream of `tenant`, started (restored from storage) if needed. A stream of
    /// another tenant, or none at all, is `not_found`.
    pub async fn stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Addr<StreamMsg>, Rejection> {
        if let Some(addr) = self.streams.running(tenant, stream)? {
            return Ok(addr);
        }
        let supervisor = self.tenant(tenant).await?;
        let caps = StreamCaps {
            store: StreamStores::of(&self.caps.store),
            fanout: self.caps.fanout.clone(),
            persister: self.caps.persister.clone(),
            time: self.caps.time.clone(),
            limits: self.caps.limits,
            tree: self.caps.tree.clone(),
        };
        let (tenant_id, stream_id) = (tenant.clone(), stream.clone());
        let place = StreamPlace {
            registered: Registered::new(self.streams.clone(), tenant.clone(), stream.clone()),
            fanout: self.caps.fanout.clone(),
            stream: stream.clone(),
        };
        let child = ActorChild::new(
            kind::STREAM,
            stream.to_string(),
            || StreamActor,
            place,
            Box::new(move |depth, restarted| StreamArgs {
                caps: caps.clone(),
                tenant: tenant_id.clone(),
                stream: stream_id.clone(),
                restarted,
                depth,
            }),
        );
        started(
            &self.streams,
            supervisor.actor(),
            Arc::new(child),
            tenant,
            stream,
            "stream",
        )
        .await
    }

    /// The actor of a drop of `tenant`, started (restored from storage) if needed.
    pub async fn drop(&self, tenant: &TenantId, drop: &DropId) -> Result<Addr<DropMsg>, Rejection> {
        if let Some(addr) = self.drops.running(tenant, drop)? {
            return Ok(addr);
        }
        let supervisor = self.tenant(tenant).await?;
        let caps = DropCaps {
            store: self.caps.store.clone(),
            notifier: self.caps.fanout.notifier().clone(),
            streams: self.streams.clone(),
            time: self.caps.time.clone(),
            claim_batch_max: self.caps.claim_batch_max,
            tree: self.caps.tree.clone(),
        };
        let lock = self
            .commit_locks
            .entry(drop.clone())
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone();
        let (tenant_id, drop_id) = (tenant.clone(), drop.clone());
        let child = ActorChild::new(
            kind::DROP,
            drop.to_string(),
            || DropActor,
            Registered::new(self.drops.clone(), tenant.clone(), drop.clone()),
            Box::new(move |depth, _restarted| DropArgs {
                caps: caps.clone(),
                tenant: tenant_id.clone(),
                drop: drop_id.clone(),
                lock: lock.clone(),
                depth,
            }),
        );
        started(
            &self.drops,
            supervisor.actor(),
            Arc::new(child),
            tenant,
            drop,
            "drop",
        )
        .await
    }

    /// Whether the drop's actor runs now.
    pub fn drop_is_running(&self, drop: &DropId) -> bool {
        self.drops.is_running(drop)
    }

    /// The root supervisor.
    pub fn root(&self) -> &ActorRef<SupervisorMsg> {
        &self.root
    }
}

/// Has `supervisor` start `child` unless it runs, then finds it in `registry`.
async fn started<K, M>(
    registry: &Registry<K, M>,
    supervisor: &ActorRef<SupervisorMsg>,
    child: Arc<dyn Child>,
    tenant: &TenantId,
    key: &K,
    what: &'static str,
) -> Result<Addr<M>, Rejection>
where
    K: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
    M: ractor::Message,
{
    ensure(supervisor, child, what).await?;
    registry
        .running(tenant, key)?
        .ok_or_else(|| StartError::NotFound(what).into_rejection(what))
}

/// Asks `supervisor` to start `child` unless it runs.
pub(crate) async fn ensure(
    supervisor: &ActorRef<SupervisorMsg>,
    child: Arc<dyn Child>,
    what: &str,
) -> Result<(), Rejection> {
    crate::mailbox::ask(supervisor, |reply| SupervisorMsg::Ensure(child, reply))
        .await?
        .map_err(|e| e.into_rejection(what))
}

/// A stream's place: its registry entry, and when its supervisor gives it up, its viewers are
/// asked to join again (so each learns whether it can be restored) and its fan-out is dropped.
struct StreamPlace {
    registered: Registered<StreamId, StreamMsg>,
    fanout: Fanout,
    stream: StreamId,
}

impl Place<StreamMsg> for StreamPlace {
    fn attach(&self, addr: Addr<StreamMsg>) {
        self.registered.attach(addr);
    }
    fn restarting(&self, failed: ractor::ActorId) -> bool {
        self.registered.restarting(failed)
    }
    fn stopped(&self, actor: Option<ractor::ActorId>) {
        if actor.is_none() {
            self.fanout.control(&self.stream, Control::Rejoin);
            self.fanout.control(&self.stream, Control::Remove);
        }
        self.registered.stopped(actor);
    }
    fn is_running(&self) -> bool {
        self.registered.is_running()
    }
}
