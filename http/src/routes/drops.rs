//! Drops and claims, contract 3.5. Every claim decision goes through the drop's actor.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use liveshop_engine::auth::{Action, Identity, permit};
use liveshop_engine::drops::{CloseReason, DropTerms};
use liveshop_engine::records::{Claim, Drop, DropStatus};
use liveshop_engine::{DropId, ProductId, StreamId, text};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{fresh, permitted_in, stream_ref};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::state::AppState;

/// Body of `POST /v1/streams/{id}/drops`.
#[derive(Deserialize)]
pub struct NewDrop {
    product: String,
    quantity: i64,
    #[serde(default = "one")]
    per_user_limit: i64,
    #[serde(default = "five_minutes")]
    hold_seconds: i64,
    #[serde(default)]
    duration_seconds: Option<i64>,
}

fn one() -> i64 {
    1
}

fn five_minutes() -> i64 {
    300
}

/// Opens a drop in a live stream (its seller or an admin); 409 `invalid_state` otherwise.
pub async fn open(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(stream_id): ApiPath<String>,
    ApiJson(body): ApiJson<NewDrop>,
) -> ApiResult<(StatusCode, Json<Drop>)> {
    let stream_id = StreamId::parse(&stream_id).map_err(|_| ApiError::not_found("stream"))?;
    let stream = state
        .store
        .stream(&stream_id)
        .await?
        .filter(|s| permit(&caller, Action::ReadStream(&s.tenant)).is_ok())
        .ok_or_else(|| ApiError::not_found("stream"))?;
    permit(&caller, Action::OpenDrop(stream_ref(&stream)))?;
    let terms = DropTerms {
        quantity: body.quantity,
        per_user_limit: body.per_user_limit,
        hold_seconds: body.hold_seconds,
        duration_seconds: body.duration_seconds,
    }
    .validate()?;
    let product = ProductId::parse(&body.product).map_err(|_| ApiError::not_found("product"))?;
    if state
        .store
        .product(&stream.tenant, &product)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("product"));
    }
    let now = liveshop_actors::clock::now();
    let drop = Drop {
        id: DropId::generate(&fresh()),
        tenant: stream.tenant.clone(),
        stream: stream.id.clone(),
        product,
        quantity: terms.quantity,
        remaining: terms.quantity,
        reserved: 0,
        sold: 0,
        per_user_limit: terms.per_user_limit,
        hold_seconds: terms.hold_seconds,
        status: DropStatus::Open,
        opened_at: now,
        ends_at: terms.duration_seconds.map(|d| now.plus_millis(d * 1000)),
        closed_reason: None,
    };
    let drop = state.engine.open_drop(drop).await?;
    tracing::info!(stream_id = %stream.id, drop_id = %drop.id, quantity = drop.quantity, "drop opened");
    Ok((StatusCode::CREATED, Json(drop)))
}

async fn visible_drop(state: &AppState, caller: &Identity, id: &str) -> ApiResult<Drop> {
    let id = DropId::parse(id).map_err(|_| ApiError::not_found("drop"))?;
    state
        .store
        .drop_by_id(&id)
        .await?
        .filter(|d| permit(caller, Action::ReadDrop(&d.tenant)).is_ok())
        .ok_or_else(|| ApiError::not_found("drop"))
}

/// Reads a drop with its durable counts.
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Drop>> {
    Ok(Json(visible_drop(&state, &caller, &id).await?))
}

/// Closes a drop (its stream's seller or an admin).
pub async fn close(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Drop>> {
    let drop = visible_drop(&state, &caller, &id).await?;
    let stream = state
        .store
        .stream(&drop.stream)
        .await?
        .ok_or_else(|| ApiError::not_found("drop"))?;
    permit(&caller, Action::CloseDrop(stream_ref(&stream)))?;
    let closed = state
        .engine
        .close_drop(&drop.tenant, &drop.id, CloseReason::Seller)
        .await?;
    Ok(Json(closed))
}

/// Body of `POST /v1/drops/{id}/claims`.
#[derive(Deserialize)]
pub struct NewClaim {
    quantity: i64,
    idempotency_key: String,
}

/// Claims units: 201 for a new reservation, 200 when the key was used before; 409 `sold_out`,
/// `limit_exceeded` or `drop_closed`.
pub async fn claim(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewClaim>,
) -> ApiResult<(StatusCode, Json<Claim>)> {
    let tenant = permitted_in(&caller, Action::Claim)?.clone();
    let id = DropId::parse(&id).map_err(|_| ApiError::not_found("drop"))?;
    text::idempotency_key("idempotency_key", &body.idempotency_key)?;
    let outcome = state
        .engine
        .claim(
            &tenant,
            &id,
            &caller.user,
            body.quantity,
            body.idempotency_key,
        )
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome.claim)))
}

/// The caller's claims in their tenant, newest first.
pub async fn my_claims(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    let tenant = permitted_in(&caller, Action::ListOwnClaims)?;
    let items = state.store.claims_of_user(tenant, &caller.user).await?;
    Ok(Json(json!({ "items": items })))
}
