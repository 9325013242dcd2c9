//! The root of the tree: starts tenant actors on demand and restarts them when they fail.

use std::collections::HashMap;
use std::time::Instant;

use liveshop_engine::{Rejection, TenantId};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::engine::Engine;
use crate::mailbox::{Addr, Depth};
use crate::metrics::{self, AliveGuard, kind};
use crate::restart::RestartBudget;
use crate::tenant::{TenantActor, TenantMsg};

/// Messages of the root supervisor.
pub enum SupervisorMsg {
    /// Returns the tenant's actor, starting it if needed.
    EnsureTenant(TenantId, RpcReplyPort<Result<Addr<TenantMsg>, Rejection>>),
}

/// The root supervisor.
pub struct EngineSupervisor;

/// Its state: which child is which tenant, and their restart budgets.
pub struct SupervisorState {
    engine: Engine,
    children: HashMap<ActorId, TenantId>,
    budgets: HashMap<TenantId, RestartBudget>,
    _alive: AliveGuard,
}

impl EngineSupervisor {
    async fn start_tenant(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        tenant: TenantId,
    ) -> Result<Addr<TenantMsg>, Rejection> {
        let depth = Depth::new(kind::TENANT);
        let args = (state.engine.clone(), tenant.clone(), depth.clone());
        match Actor::spawn_linked(None, TenantActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                state.children.insert(actor.get_id(), tenant.clone());
                let addr = Addr::new(actor, depth);
                state.engine.tenants().insert(tenant, addr.clone());
                Ok(addr)
            }
            Err(err) => Err(spawn_rejection(err, "tenant")),
        }
    }
}

/// Maps a failed `pre_start` (the record is missing, or storage failed) to a refusal.
pub(crate) fn spawn_rejection(err: ractor::SpawnErr, what: &str) -> Rejection {
    let text = err.to_string();
    if text.contains("not found") {
        Rejection::not_found(what)
    } else {
        tracing::error!(error = %text, "{what} actor failed to start");
        Rejection::new(
            liveshop_engine::ErrorCode::Unavailable,
            format!("{what} is unavailable; retry"),
        )
    }
}

impl Actor for EngineSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Engine;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        engine: Engine,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            engine,
            children: HashMap::new(),
            budgets: HashMap::new(),
            _alive: AliveGuard::new(kind::SUPERVISOR),
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
            SupervisorMsg::EnsureTenant(tenant, reply) => {
                let existing = state.engine.tenants().get(&tenant).map(|t| t.clone());
                let result = match existing {
                    Some(existing) => Ok(existing),
                    None => Self::start_tenant(&myself, state, tenant).await,
                };
                let _ = reply.send(result);
            }
        }
        metrics::record_handling(kind::SUPERVISOR, started);
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
                let Some(tenant) = state.children.remove(&cell.get_id()) else {
                    // The persister is the only other child: it keeps no state worth restoring
                    // but the queue it held; restart it so chat keeps being written.
                    tracing::error!(error = %err, "persister failed; restarting it");
                    ::metrics::counter!(metrics::ACTOR_RESTARTS, "kind" => kind::PERSISTER)
                        .increment(1);
                    let _ = Actor::spawn_linked(
                        None,
                        crate::persister::Persister,
                        state.engine.clone(),
                        myself.get_cell(),
                    )
                    .await;
                    return Ok(());
                };
                if let Some((_, addr)) = state.engine.tenants().remove(&tenant) {
                    addr.discard();
                }
                let budget = state
                    .budgets
                    .entry(tenant.clone())
                    .or_insert_with(RestartBudget::standard);
                if budget.allow(Instant::now()) {
                    tracing::warn!(tenant_id = %tenant, error = %err, "tenant actor failed; restarting");
                    ::metrics::counter!(metrics::ACTOR_RESTARTS, "kind" => kind::TENANT)
                        .increment(1);
                    state
                        .engine
                        .tree()
                        .note_restart(kind::TENANT, tenant.as_str());
                    let _ = Self::start_tenant(&myself, state, tenant).await;
                } else {
                    tracing::error!(tenant_id = %tenant, error = %err, "tenant actor keeps failing; giving up until next use");
                    ::metrics::counter!(metrics::ACTOR_ESCALATIONS, "kind" => kind::TENANT)
                        .increment(1);
                    state.engine.tree().remove(kind::TENANT, tenant.as_str());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(tenant) = state.children.remove(&cell.get_id()) {
                    state.engine.tenants().remove(&tenant);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
