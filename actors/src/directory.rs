//! The directory: finds the actor in charge of an id, or starts it under the right supervisor.
//!
//! It is the one place that knows where actors run. It asks [`Placement`] where a stream runs:
//! single-node always here; in cluster mode here only when this node holds the stream's lease,
//! else on the owner node, which the facade relays to. A stream's drops run where the stream runs.
//! Each actor is started with only the capabilities it uses, built here from [`Capabilities`],
//! and writes behind the fence placement gave it.

use std::sync::Arc;

use dashmap::DashMap;
use liveshop_engine::limits::Limits;
use liveshop_engine::storage::{Fence, Storage};
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
use crate::placement::{Placed, Placement};
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
    /// Which node runs each stream.
    pub placement: Arc<dyn Placement>,
}

/// Where the actor in charge of an id runs.
pub enum Located<T> {
    /// On this node.
    Here(T),
    /// On the node with this id (cluster mode).
    Elsewhere(String),
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
    /// Streams known to exist, with their tenant (checked in storage before one is placed, so a
    /// probe with a made-up id never takes a lease).
    known_streams: DashMap<StreamId, TenantId>,
    /// The stream and tenant of each drop looked up (a drop never changes stream).
    drop_streams: DashMap<DropId, (TenantId, StreamId)>,
    /// Streams whose actors are being stopped because they move to another node: their lease is
    /// not released when they stop (it was lost, or the hand-over releases it after the last
    /// chat is written).
    moving: Arc<dashmap::DashSet<StreamId>>,
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
            known_streams: DashMap::new(),
            drop_streams: DashMap::new(),
            moving: Arc::new(dashmap::DashSet::new()),
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

    /// Where the actor of a stream of `tenant` runs: here (started, restored from storage, if
    /// placement gives it to this node) or on its owner node. A stream of another tenant, or none
    /// at all, is `not_found`.
    pub async fn stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Located<Addr<StreamMsg>>, Rejection> {
        if let Some(addr) = self.streams.running(tenant, stream)? {
            return Ok(Located::Here(addr));
        }
        self.check_stream(tenant, stream).await?;
        match self.caps.placement.place(stream).await? {
            Placed::Here(fence) => self
                .start_stream(tenant, stream, fence)
                .await
                .map(Located::Here),
            Placed::Elsewhere(node) => Ok(Located::Elsewhere(node)),
        }
    }

    /// `not_found` unless `stream` exists and belongs to `tenant` (asked of storage once).
    async fn check_stream(&self, tenant: &TenantId, stream: &StreamId) -> Result<(), Rejection> {
        if let Some(known) = self.known_streams.get(stream) {
            return if &*known == tenant {
                Ok(())
            } else {
                Err(Rejection::not_found("stream"))
            };
        }
        match self.caps.store.stream(stream).await {
            Ok(Some(record)) if &record.tenant == tenant => {
                self.known_streams.insert(stream.clone(), tenant.clone());
                Ok(())
            }
            Ok(_) => Err(Rejection::not_found("stream")),
            Err(err) => Err(crate::mailbox::storage_unavailable(&err)),
        }
    }

    async fn start_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        fence: Fence,
    ) -> Result<Addr<StreamMsg>, Rejection> {
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
        let continue_from = self.caps.placement.take_continuation(stream);
        let place = StreamPlace {
            registered: Registered::new(self.streams.clone(), tenant.clone(), stream.clone()),
            fanout: self.caps.fanout.clone(),
            stream: stream.clone(),
            placement: self.caps.placement.clone(),
            moving: self.moving.clone(),
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
                fence: fence.clone(),
                // Only the first incarnation continues; one restarted after a failure begins a
                // new epoch, as on a single node.
                continue_from: if restarted { None } else { continue_from },
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

    /// Where the actor of a drop of `tenant` runs: where its stream runs. Started (restored
    /// from storage) here if that is this node, together with its stream's actor (the drop
    /// publishes through it).
    pub async fn drop(
        &self,
        tenant: &TenantId,
        drop: &DropId,
    ) -> Result<Located<Addr<DropMsg>>, Rejection> {
        if let Some(addr) = self.drops.running(tenant, drop)? {
            return Ok(Located::Here(addr));
        }
        let stream = self.stream_of(tenant, drop).await?;
        match self.caps.placement.place(&stream).await? {
            Placed::Elsewhere(node) => Ok(Located::Elsewhere(node)),
            Placed::Here(fence) => {
                self.stream(tenant, &stream).await?;
                self.start_drop(tenant, drop, fence)
                    .await
                    .map(Located::Here)
            }
        }
    }

    /// The stream of a drop of `tenant` (`not_found` for a drop of another tenant, or none).
    async fn stream_of(&self, tenant: &TenantId, drop: &DropId) -> Result<StreamId, Rejection> {
        if let Some(entry) = self.drop_streams.get(drop) {
            let (owner, stream) = &*entry;
            return if owner == tenant {
                Ok(stream.clone())
            } else {
                Err(Rejection::not_found("drop"))
            };
        }
        match self.caps.store.drop_by_id(drop).await {
            Ok(Some(record)) if &record.tenant == tenant => {
                self.drop_streams
                    .insert(drop.clone(), (tenant.clone(), record.stream.clone()));
                Ok(record.stream)
            }
            Ok(_) => Err(Rejection::not_found("drop")),
            Err(err) => Err(crate::mailbox::storage_unavailable(&err)),
        }
    }

    /// The stream of a drop, if this node has looked it up.
    pub fn known_stream_of(&self, drop: &DropId) -> Option<StreamId> {
        self.drop_streams.get(drop).map(|entry| entry.1.clone())
    }

    /// Remembers the stream of a drop this node just opened.
    pub fn drop_opened(&self, tenant: &TenantId, drop: &DropId, stream: &StreamId) {
        self.drop_streams
            .insert(drop.clone(), (tenant.clone(), stream.clone()));
    }

    async fn start_drop(
        &self,
        tenant: &TenantId,
        drop: &DropId,
        fence: Fence,
    ) -> Result<Addr<DropMsg>, Rejection> {
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
                fence: fence.clone(),
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

    /// Whether the stream's actor runs now.
    pub fn stream_is_running(&self, stream: &StreamId) -> bool {
        self.streams.is_running(stream)
    }

    /// Stops the actors of `stream` and of its drops that run here (the stream went to another
    /// node, or this node hands it over); they stop after the message they are handling.
    /// Returns how many actors were asked to stop.
    pub fn evict(&self, stream: &StreamId) -> usize {
        let mut stopped = 0;
        let drops: Vec<DropId> = self
            .drop_streams
            .iter()
            .filter(|entry| &entry.value().1 == stream)
            .map(|entry| entry.key().clone())
            .collect();
        for drop in drops {
            if let Some(addr) = self.drops.existing(&drop).and_then(|slot| slot.running()) {
                addr.actor()
                    .stop(Some("its stream runs on another node".into()));
                stopped += 1;
            }
        }
        if let Some(addr) = self
            .streams
            .existing(stream)
            .and_then(|slot| slot.running())
        {
            self.moving.insert(stream.clone());
            addr.actor().stop(Some("it runs on another node".into()));
            stopped += 1;
        }
        stopped
    }

    /// Where streams run.
    pub fn placement(&self) -> &Arc<dyn Placement> {
        &self.caps.placement
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
    placement: Arc<dyn Placement>,
    moving: Arc<dashmap::DashSet<StreamId>>,
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
        // Ended or given up: any node may run it next. One that moves keeps its lease until
        // whoever moved it releases it (or it is another node's already).
        if self.moving.remove(&self.stream).is_none() {
            self.placement.released(&self.stream);
        }
    }
    fn is_running(&self) -> bool {
        self.registered.is_running()
    }
}
