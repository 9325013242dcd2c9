//! Operator endpoints: fault injection (contract 3.6, routed only when enabled) and marking a
//! claim paid.

use axum::Json;
use axum::extract::State;
use liveshop_actors::FaultTarget;
use liveshop_engine::auth::{Action, permit};
use liveshop_engine::ids::ClaimId;
use liveshop_engine::records::Claim;
use liveshop_engine::{DropId, SessionId, StreamId};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, Caller};
use crate::state::AppState;

/// Makes a stream's actor panic so its supervisor restores it; 404 unless fault injection is on.
#[utoipa::path(
    post,
    path = "/v1/admin/streams/{id}/crash",
    tag = "faults",
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The crash was requested", body = crate::openapi::StreamCrashed),
        (status = 403, description = "`forbidden`: operator role required"),
        (status = 404, description = "`not_found`: no such stream, or fault injection is off (the route does not exist then)"),
    ),
    security(("bearer" = [])),
)]
pub async fn crash_stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    permit(&caller, Action::Operate)?;
    let id = StreamId::parse(&id).map_err(|_| ApiError::not_found("stream"))?;
    let stream = state
        .store
        .stream(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    state
        .engine
        .crash(FaultTarget::Stream(stream.tenant, stream.id))
        .await?;
    tracing::warn!(stream_id = %id, "fault injection: stream actor crash requested");
    Ok(Json(json!({ "stream": id, "crashed": true })))
}

/// Makes a drop's actor panic so its supervisor restores it from storage.
#[utoipa::path(
    post,
    path = "/v1/admin/drops/{id}/crash",
    tag = "faults",
    params(("id" = String, Path, description = "Drop id")),
    responses(
        (status = 200, description = "The crash was requested", body = crate::openapi::DropCrashed),
        (status = 403, description = "`forbidden`: operator role required"),
        (status = 404, description = "`not_found`: no such drop, or fault injection is off (the route does not exist then)"),
    ),
    security(("bearer" = [])),
)]
pub async fn crash_drop(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    permit(&caller, Action::Operate)?;
    let id = DropId::parse(&id).map_err(|_| ApiError::not_found("drop"))?;
    let drop = state
        .store
        .drop_by_id(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("drop"))?;
    state
        .engine
        .crash(FaultTarget::Drop(drop.tenant, id.clone()))
        .await?;
    tracing::warn!(drop_id = %id, "fault injection: drop actor crash requested");
    Ok(Json(json!({ "drop": id, "crashed": true })))
}

/// Marks a reserved claim paid (operator; payments will call the same path). Reserved units
/// become sold and the buyer gets a `claim_update`.
#[utoipa::path(
    post,
    path = "/v1/admin/claims/{id}/pay",
    tag = "operator",
    params(("id" = String, Path, description = "Claim id")),
    responses(
        (status = 200, description = "The claim, `paid`", body = Claim),
        (status = 403, description = "`forbidden`: operator role required"),
        (status = 404, description = "`not_found`: no such claim"),
        (status = 409, description = "`invalid_state`: the claim is not reserved"),
    ),
    security(("bearer" = [])),
)]
pub async fn pay_claim(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Claim>> {
    permit(&caller, Action::PayClaim)?;
    let id = ClaimId::parse(&id).map_err(|_| ApiError::not_found("claim"))?;
    let drop_id = state
        .store
        .claim_by_id(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("claim"))?
        .drop;
    let drop = state
        .store
        .drop_by_id(&drop_id)
        .await?
        .ok_or_else(|| ApiError::not_found("claim"))?;
    let paid = state.engine.pay(&drop.tenant, &drop_id, id).await?;
    Ok(Json(paid))
}

/// The live actor tree: kind, id, parent, mailbox depth, restarts and uptime of every actor.
#[utoipa::path(
    get,
    path = "/v1/admin/actors",
    tag = "operator",
    responses(
        (status = 200, description = "Every live actor of this node", body = crate::openapi::ActorTree),
        (status = 403, description = "`forbidden`: operator role required"),
    ),
    security(("bearer" = [])),
)]
pub async fn actors(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    permit(&caller, Action::Operate)?;
    let items = state.engine.tree().snapshot();
    Ok(Json(json!({ "count": items.len(), "items": items })))
}

/// The nodes of the cluster (contract section 6): this node's id and every node that renewed
/// its heartbeat within `2 × LIVESHOP_OWNER_LEASE_MS`. A single node lists itself alone.
#[utoipa::path(
    get,
    path = "/v1/admin/cluster",
    tag = "operator",
    responses(
        (status = 200, description = "This node and the live nodes of the cluster", body = crate::openapi::ClusterView),
        (status = 403, description = "`forbidden`: operator role required"),
    ),
    security(("bearer" = [])),
)]
pub async fn cluster(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    permit(&caller, Action::Operate)?;
    let Some(cluster) = &state.cluster else {
        return Ok(Json(json!({
            "self": state.node_id,
            "nodes": [{
                "id": state.node_id,
                "started_at": state.started_at,
                "connections": state.live.len(),
                "streams_owned": 0,
            }],
        })));
    };
    let nodes = match cluster.nodes() {
        Some(nodes) => nodes.list().await.map_err(|err| {
            tracing::warn!(error = %err, "the node list could not be read");
            ApiError::from(liveshop_engine::Rejection::new(
                liveshop_engine::ErrorCode::Unavailable,
                "the cluster cannot be reached; retry",
            ))
        })?,
        None => Vec::new(),
    };
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id,
                "started_at": n.started_at,
                "connections": n.connections,
                "streams_owned": n.streams_owned,
            })
        })
        .collect();
    Ok(Json(json!({ "self": cluster.node_id, "nodes": nodes })))
}

/// Makes a connection's session actor panic: that connection, and only that one, closes with 1011.
#[utoipa::path(
    post,
    path = "/v1/admin/sessions/{id}/crash",
    tag = "faults",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The crash was requested", body = crate::openapi::SessionCrashed),
        (status = 403, description = "`forbidden`: operator role required"),
        (status = 404, description = "`not_found`: no such session, or fault injection is off (the route does not exist then)"),
    ),
    security(("bearer" = [])),
)]
pub async fn crash_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    permit(&caller, Action::Operate)?;
    let id = SessionId::parse(&id).map_err(|_| ApiError::not_found("session"))?;
    state.engine.crash(FaultTarget::Session(id.clone())).await?;
    tracing::warn!(session_id = %id, "fault injection: session crash requested");
    Ok(Json(json!({ "session": id, "crashed": true })))
}

/// Makes the chat persister panic so its supervisor restarts it; chat keeps being stored.
#[utoipa::path(
    post,
    path = "/v1/admin/persister/crash",
    tag = "faults",
    responses(
        (status = 200, description = "The crash was requested", body = crate::openapi::PersisterCrashed),
        (status = 403, description = "`forbidden`: operator role required"),
        (status = 404, description = "`not_found`: fault injection is off (the route does not exist then)"),
    ),
    security(("bearer" = [])),
)]
pub async fn crash_persister(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    permit(&caller, Action::Operate)?;
    state.engine.crash(FaultTarget::Persister).await?;
    tracing::warn!("fault injection: persister crash requested");
    Ok(Json(json!({ "persister": true, "crashed": true })))
}
