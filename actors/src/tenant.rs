//! One actor per tenant: the supervisor of that tenant's stream actors.
//!
//! It starts a stream actor the first time a stream is used, restores it from storage when it
//! fails (within a restart budget), and keeps the stream registry in step with its children.

use std::collections::HashMap;
use std::time::Instant;

use liveshop_engine::{Rejection, StreamId, TenantId};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::broker::StreamOut;
use crate::engine::{Engine, StreamHandle};
use crate::metrics::{self, AliveGuard, kind};
use crate::restart::RestartBudget;
use crate::stream::{StreamActor, StreamArgs};
use crate::supervisor::spawn_rejection;

/// Messages of a tenant actor.
pub enum TenantMsg {
    /// Returns the stream's running actor, starting it from storage if needed.
    EnsureStream(StreamId, RpcReplyPort<Result<StreamHandle, Rejection>>),
}

/// The tenant actor.
pub struct TenantActor;

/// Its state.
pub struct TenantState {
    engine: Engine,
    tenant: TenantId,
    children: HashMap<ActorId, StreamId>,
    budgets: HashMap<StreamId, RestartBudget>,
    _alive: AliveGuard,
}

impl TenantState {
    async fn start_stream(
        &mut self,
        myself: &ActorRef<TenantMsg>,
        stream: StreamId,
        restarted: bool,
    ) -> Result<StreamHandle, Rejection> {
        let args = StreamArgs {
            engine: self.engine.clone(),
            tenant: self.tenant.clone(),
            stream: stream.clone(),
            restarted,
        };
        match Actor::spawn_linked(None, StreamActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children.insert(actor.get_id(), stream.clone());
                let handle = StreamHandle {
                    actor,
                    tenant: self.tenant.clone(),
                };
                self.engine.streams().insert(stream, handle.clone());
                Ok(handle)
            }
            Err(err) => Err(spawn_rejection(err, "stream")),
        }
    }
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = (Engine, TenantId);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (engine, tenant): (Engine, TenantId),
    ) -> Result<Self::State, ActorProcessingErr> {
        if engine.store().tenant(&tenant).await?.is_none() {
            return Err("tenant not found".into());
        }
        Ok(TenantState {
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
                let Some(stream) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.engine.streams().remove(&stream);
                let budget = state
                    .budgets
                    .entry(stream.clone())
                    .or_insert_with(RestartBudget::standard);
                if budget.allow(Instant::now()) {
                    tracing::warn!(tenant_id = %state.tenant, stream_id = %stream, error = %err, "stream actor failed; restoring it from storage");
                    ::metrics::counter!(metrics::ACTOR_RESTARTS, "kind" => kind::STREAM)
                        .increment(1);
                    if let Err(e) = state.start_stream(&myself, stream.clone(), true).await {
                        tracing::error!(tenant_id = %state.tenant, stream_id = %stream, error = %e, "stream actor could not be restored");
                        state.engine.broker().remove(&stream);
                    }
                } else {
                    tracing::error!(tenant_id = %state.tenant, stream_id = %stream, error = %err, "stream actor exhausted its restart budget; viewers are disconnected from it");
                    ::metrics::counter!(metrics::ACTOR_ESCALATIONS, "kind" => kind::STREAM)
                        .increment(1);
                    state.engine.broker().publish(&stream, StreamOut::Restarted);
                    state.engine.broker().remove(&stream);
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(stream) = state.children.remove(&cell.get_id()) {
                    state
                        .engine
                        .streams()
                        .remove_if(&stream, |_, h| h.actor.get_id() == cell.get_id());
                }
            }
            _ => {}
        }
        Ok(())
    }
}
