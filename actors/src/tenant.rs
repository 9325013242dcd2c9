//! One actor per tenant: the supervisor of that tenant's stream actors.
//!
//! It starts a stream actor the first time a stream is used, restores it from storage when it
//! fails (within a restart budget), and keeps the stream registry in step with its children.

use std::collections::HashMap;
use std::time::Instant;

use liveshop_engine::{DropId, Rejection, StreamId, TenantId};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::drop::{DropActor, DropArgs};
use crate::engine::{DropHandle, Engine, StreamHandle};
use crate::fanout::bus::Control;
use crate::mailbox::{Addr, Depth};
use crate::metrics::{self, AliveGuard, kind};
use crate::restart::RestartBudget;
use crate::stream::{StreamActor, StreamArgs};
use crate::supervisor::spawn_rejection;

/// Messages of a tenant actor.
pub enum TenantMsg {
    /// Returns the stream's running actor, starting it from storage if needed.
    EnsureStream(StreamId, RpcReplyPort<Result<StreamHandle, Rejection>>),
    /// Returns the drop's running actor, starting it from storage if needed.
    EnsureDrop(DropId, RpcReplyPort<Result<DropHandle, Rejection>>),
}

/// Which of the tenant's children an actor is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Child {
    Stream(StreamId),
    Drop(DropId),
}

/// The tenant actor.
pub struct TenantActor;

/// Its state.
pub struct TenantState {
    engine: Engine,
    tenant: TenantId,
    children: HashMap<ActorId, Child>,
    depth: Depth,
    budgets: HashMap<Child, RestartBudget>,
    _alive: AliveGuard,
}

impl TenantState {
    async fn start_stream(
        &mut self,
        myself: &ActorRef<TenantMsg>,
        stream: StreamId,
        restarted: bool,
    ) -> Result<StreamHandle, Rejection> {
        let depth = Depth::new(kind::STREAM);
        let args = StreamArgs {
            engine: self.engine.clone(),
            tenant: self.tenant.clone(),
            stream: stream.clone(),
            restarted,
            depth: depth.clone(),
        };
        match Actor::spawn_linked(None, StreamActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children
                    .insert(actor.get_id(), Child::Stream(stream.clone()));
                let handle = StreamHandle {
                    actor: Addr::new(actor, depth),
                    tenant: self.tenant.clone(),
                };
                self.engine.streams().insert(stream, handle.clone());
                Ok(handle)
            }
            Err(err) => Err(spawn_rejection(err, "stream")),
        }
    }
}

impl TenantState {
    async fn start_drop(
        &mut self,
        myself: &ActorRef<TenantMsg>,
        drop: DropId,
    ) -> Result<DropHandle, Rejection> {
        let depth = Depth::new(kind::DROP);
        let args = DropArgs {
            engine: self.engine.clone(),
            tenant: self.tenant.clone(),
            drop: drop.clone(),
            depth: depth.clone(),
        };
        match Actor::spawn_linked(None, DropActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children
                    .insert(actor.get_id(), Child::Drop(drop.clone()));
                let handle = DropHandle {
                    actor: Addr::new(actor, depth),
                    tenant: self.tenant.clone(),
                };
                self.engine.drops().insert(drop, handle.clone());
                Ok(handle)
            }
            Err(err) => Err(spawn_rejection(err, "drop")),
        }
    }

    /// Restarts a failed child within its budget; true when restarted.
    async fn restart(&mut self, myself: &ActorRef<TenantMsg>, child: Child, err: &str) {
        let (label, id) = match &child {
            Child::Stream(s) => (kind::STREAM, s.to_string()),
            Child::Drop(d) => (kind::DROP, d.to_string()),
        };
        match &child {
            Child::Stream(s) => {
                if let Some((_, h)) = self.engine.streams().remove(s) {
                    h.actor.discard();
                }
            }
            Child::Drop(d) => {
                if let Some((_, h)) = self.engine.drops().remove(d) {
                    h.actor.discard();
                }
            }
        }
        let budget = self
            .budgets
            .entry(child.clone())
            .or_insert_with(RestartBudget::standard);
        if !budget.allow(Instant::now()) {
            tracing::error!(tenant_id = %self.tenant, kind = label, id = %id, error = %err, "actor exhausted its restart budget; it starts again on next use");
            ::metrics::counter!(metrics::ACTOR_ESCALATIONS, "kind" => label).increment(1);
            self.engine.tree().remove(label, &id);
            if let Child::Stream(s) = &child {
                self.engine.fanout().control(s, Control::Rejoin);
                self.engine.fanout().control(s, Control::Remove);
            }
            return;
        }
        tracing::warn!(tenant_id = %self.tenant, kind = label, id = %id, error = %err, "actor failed; restoring it from storage");
        ::metrics::counter!(metrics::ACTOR_RESTARTS, "kind" => label).increment(1);
        self.engine.tree().note_restart(label, &id);
        let restored = match child {
            Child::Stream(s) => self.start_stream(myself, s, true).await.map(|_| ()),
            Child::Drop(d) => self.start_drop(myself, d).await.map(|_| ()),
        };
        if let Err(e) = restored {
            tracing::error!(tenant_id = %self.tenant, kind = label, id = %id, error = %e, "actor could not be restored");
        }
    }
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = (Engine, TenantId, Depth);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (engine, tenant, depth): (Engine, TenantId, Depth),
    ) -> Result<Self::State, ActorProcessingErr> {
        if engine.store().tenant(&tenant).await?.is_none() {
            return Err("tenant not found".into());
        }
        engine
            .tree()
            .register(kind::TENANT, tenant.as_str(), None, depth.clone());
        Ok(TenantState {
            depth,
            engine,
            tenant,
            children: HashMap::new(),
            budgets: HashMap::new(),
            _alive: AliveGuard::new(kind::TENANT),
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
            TenantMsg::EnsureStream(stream, reply) => {
                let existing = state.engine.streams().get(&stream).map(|h| h.clone());
                let result = match existing {
                    Some(h) if h.tenant == state.tenant => Ok(h),
                    Some(_) => Err(Rejection::not_found("stream")),
                    None => state.start_stream(&myself, stream, false).await,
                };
                let _ = reply.send(result);
            }
            TenantMsg::EnsureDrop(drop, reply) => {
                let existing = state.engine.drops().get(&drop).map(|h| h.clone());
                let result = match existing {
                    Some(h) if h.tenant == state.tenant => Ok(h),
                    Some(_) => Err(Rejection::not_found("drop")),
                    None => state.start_drop(&myself, drop).await,
                };
                let _ = reply.send(result);
            }
        }
        metrics::record_handling(kind::TENANT, started);
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
                if let Some(child) = state.children.remove(&cell.get_id()) {
                    state.restart(&myself, child, &err.to_string()).await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                let id = cell.get_id();
                match state.children.remove(&id) {
                    Some(Child::Stream(s)) => {
                        state
                            .engine
                            .streams()
                            .remove_if(&s, |_, h| h.actor.actor().get_id() == id);
                    }
                    Some(Child::Drop(d)) => {
                        state
                            .engine
                            .drops()
                            .remove_if(&d, |_, h| h.actor.actor().get_id() == id);
                    }
                    None => {}
                }
            }
            _ => {}
        }
        Ok(())
    }
}
