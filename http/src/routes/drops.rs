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
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewDrop {
    /// Id of a product of the stream's tenant.
    product: String,
    /// Units offered.
    #[schema(minimum = 1, maximum = 1_000_000)]
    quantity: i64,
    /// Most units one user may hold or buy.
    #[serde(default = "one")]
    #[schema(minimum = 1, default = 1)]
    per_user_limit: i64,
    /// How long a reservation is held unless paid, in seconds.
    #[serde(default = "five_minutes")]
    #[schema(minimum = 1, maximum = 86_400, default = 300)]
    hold_seconds: i64,
    /// When given, the drop closes by itself this many seconds after it opens.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400)]
    duration_seconds: Option<i64>,
}

fn one() -> i64 {
    1
}

fn five_minutes() -> i64 {
    300
}

/// Opens a drop in a live stream (its seller or an admin); 409 `invalid_state` otherwise.
#[utoipa::path(
    post,
    path = "/v1/streams/{id}/drops",
    tag = "drops",
    params(("id" = String, Path, description = "Stream id")),
    request_body = NewDrop,
    responses(
        (status = 201, description = "The drop, `open`", body = Drop),
        (status = 400, description = "`bad_request`: a field is out of its range"),
        (status = 403, description = "`forbidden`: only the stream's seller or an admin"),
        (status = 404, description = "`not_found`: no such stream or product in the caller's tenant"),
        (status = 409, description = "`invalid_state`: the stream is not live"),
    ),
    security(("bearer" = [])),
)]
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
#[utoipa::path(
    get,
    path = "/v1/drops/{id}",
    tag = "drops",
    params(("id" = String, Path, description = "Drop id")),
    responses(
        (status = 200, description = "The drop", body = Drop),
        (status = 404, description = "`not_found`: no such drop in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Drop>> {
    Ok(Json(visible_drop(&state, &caller, &id).await?))
}

/// Closes a drop (its stream's seller or an admin).
#[utoipa::path(
    post,
    path = "/v1/drops/{id}/close",
    tag = "drops",
    params(("id" = String, Path, description = "Drop id")),
    responses(
        (status = 200, description = "The drop, `closed` (also when it was closed already)", body = Drop),
        (status = 403, description = "`forbidden`: only the stream's seller or an admin"),
        (status = 404, description = "`not_found`: no such drop in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
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
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewClaim {
    /// Units to reserve.
    #[schema(minimum = 1)]
    quantity: i64,
    /// The client's key: the same key on the same drop from the same user is the same claim.
    #[schema(min_length = 1, max_length = 128)]
    idempotency_key: String,
}

/// Claims units: 201 for a new reservation, 200 when the key was used before; 409 `sold_out`,
/// `limit_exceeded` or `drop_closed`.
#[utoipa::path(
    post,
    path = "/v1/drops/{id}/claims",
    tag = "drops",
    params(("id" = String, Path, description = "Drop id")),
    request_body = NewClaim,
    responses(
        (status = 201, description = "A new reservation", body = Claim),
        (status = 200, description = "The claim made earlier with this idempotency key", body = Claim),
        (status = 400, description = "`bad_request`: the quantity or the key fails its rules"),
        (status = 403, description = "`forbidden`: a tenant role is required"),
        (status = 404, description = "`not_found`: no such drop in the caller's tenant"),
        (status = 409, description = "`sold_out`, `limit_exceeded`, `drop_closed`, or `conflict` (the key was used with another quantity)"),
    ),
    security(("bearer" = [])),
)]
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
#[utoipa::path(
    get,
    path = "/v1/claims",
    tag = "drops",
    responses(
        (status = 200, description = "The caller's claims, newest first", body = crate::openapi::ClaimList),
        (status = 403, description = "`forbidden`: a tenant role is required"),
    ),
    security(("bearer" = [])),
)]
pub async fn my_claims(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    let tenant = permitted_in(&caller, Action::ListOwnClaims)?;
    let items = state.store.claims_of_user(tenant, &caller.user).await?;
    Ok(Json(json!({ "items": items })))
}
