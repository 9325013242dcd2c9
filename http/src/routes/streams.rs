//! Streams, contract 3.4. Reads come from storage; every change goes through the stream's actor.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use liveshop_engine::auth::{Action, Identity, permit};
use liveshop_engine::records::{Stream, StreamStatus};
use liveshop_engine::stream::Lifecycle;
use liveshop_engine::{ErrorCode, ProductId, StreamId, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{fresh, permitted_in, stream_ref, text_field};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::state::AppState;

/// Body of `POST /v1/streams`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewStream {
    /// Display title, 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    /// Announced start: RFC 3339, any offset, within the years 0000 to 9999 UTC.
    #[serde(default)]
    #[schema(format = DateTime)]
    scheduled_at: Option<String>,
}

/// Creates a scheduled stream run by the caller.
#[utoipa::path(
    post,
    path = "/v1/streams",
    tag = "streams",
    request_body = NewStream,
    responses(
        (status = 201, description = "The stream, `scheduled`", body = Stream),
        (status = 400, description = "`bad_request`: the title or `scheduled_at` fails its rules"),
        (status = 403, description = "`forbidden`: seller or admin role required"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<NewStream>,
) -> ApiResult<(StatusCode, Json<Stream>)> {
    let tenant = permitted_in(&caller, Action::CreateStream)?.clone();
    let scheduled_at = match body.scheduled_at.as_deref() {
        None => None,
        Some(text) => Some(Timestamp::parse_rfc3339(text).ok_or_else(|| {
            ApiError::field(
                "scheduled_at",
                "must be an RFC 3339 timestamp within the years 0000 to 9999 UTC",
            )
        })?),
    };
    let stream = Stream {
        id: StreamId::generate(&fresh()),
        tenant,
        seller: caller.user.clone(),
        title: text_field("title", &body.title, 200)?,
        status: StreamStatus::Scheduled,
        scheduled_at,
        started_at: None,
        ended_at: None,
        pinned: None,
        viewers: 0,
    };
    state.store.create_stream(&stream).await?;
    tracing::info!(stream_id = %stream.id, "stream created");
    Ok((StatusCode::CREATED, Json(stream)))
}

/// Query of `GET /v1/streams`.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
}

/// Lists the caller's tenant's streams, newest first, optionally by status.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "streams",
    params((
        "status" = Option<StreamStatus>,
        Query,
        description = "Only streams with this status (empty: all)"
    )),
    responses(
        (status = 200, description = "The tenant's streams, newest first", body = crate::openapi::StreamList),
        (status = 400, description = "`bad_request`: `status` is not a stream status"),
        (status = 403, description = "`forbidden`: a tenant role is required"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let tenant = permitted_in(&caller, Action::ListStreams)?;
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let status =
        match query.status.as_deref() {
            None | Some("") => None,
            Some(text) => Some(StreamStatus::parse(text).ok_or_else(|| {
                ApiError::field("status", "must be one of scheduled, live, ended")
            })?),
        };
    let mut items = state.store.streams(tenant, status).await?;
    for s in &mut items {
        s.viewers = state.engine.viewers(&s.id);
    }
    Ok(Json(json!({ "items": items })))
}

/// Loads a stream the caller may see; other tenants' streams are `not_found`.
pub(crate) async fn visible_stream(
    state: &AppState,
    caller: &Identity,
    id: &str,
) -> ApiResult<Stream> {
    let id = StreamId::parse(id).map_err(|_| ApiError::not_found("stream"))?;
    let mut stream = state
        .store
        .stream(&id)
        .await?
        .filter(|s| permit(caller, Action::ReadStream(&s.tenant)).is_ok())
        .ok_or_else(|| ApiError::not_found("stream"))?;
    stream.viewers = state.engine.viewers(&stream.id);
    tracing::Span::current().record("stream_id", tracing::field::display(&stream.id));
    Ok(stream)
}

/// Reads one stream with its live viewer count.
#[utoipa::path(
    get,
    path = "/v1/streams/{id}",
    tag = "streams",
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The stream", body = Stream),
        (status = 404, description = "`not_found`: no such stream in the caller's tenant"),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Stream>> {
    Ok(Json(visible_stream(&state, &caller, &id).await?))
}

async fn lifecycle(
    state: &AppState,
    caller: &Identity,
    id: &str,
    action: Lifecycle,
) -> ApiResult<Json<Stream>> {
    let stream = visible_stream(state, caller, id).await?;
    let target = stream_ref(&stream);
    permit(
        caller,
        match action {
            Lifecycle::Start => Action::StartStream(target),
            Lifecycle::End => Action::EndStream(target),
        },
    )?;
    let updated = state
        .engine
        .lifecycle(&stream.tenant, &stream.id, action)
        .await?;
    tracing::info!(stream_id = %stream.id, status = updated.status.as_str(), "stream status changed");
    Ok(Json(updated))
}

/// Goes live: scheduled → live, else 409 `invalid_state`.
#[utoipa::path(
    post,
    path = "/v1/streams/{id}/start",
    tag = "streams",
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The stream, `live`", body = Stream),
        (status = 403, description = "`forbidden`: only the stream's seller or an admin"),
        (status = 404, description = "`not_found`: no such stream in the caller's tenant"),
        (status = 409, description = "`invalid_state`: the stream is not scheduled"),
    ),
    security(("bearer" = [])),
)]
pub async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Stream>> {
    lifecycle(&state, &caller, &id, Lifecycle::Start).await
}

/// Ends the show: live → ended, else 409 `invalid_state`.
#[utoipa::path(
    post,
    path = "/v1/streams/{id}/end",
    tag = "streams",
    params(("id" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The stream, `ended`; its open drops close", body = Stream),
        (status = 403, description = "`forbidden`: only the stream's seller or an admin"),
        (status = 404, description = "`not_found`: no such stream in the caller's tenant"),
        (status = 409, description = "`invalid_state`: the stream is not live"),
    ),
    security(("bearer" = [])),
)]
pub async fn end(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Stream>> {
    lifecycle(&state, &caller, &id, Lifecycle::End).await
}

/// Body of `POST /v1/streams/{id}/pin`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PinBody {
    /// Id of a product of the stream's tenant.
    product: String,
}

/// Pins a product of the tenant and broadcasts `pinned`.
#[utoipa::path(
    post,
    path = "/v1/streams/{id}/pin",
    tag = "streams",
    params(("id" = String, Path, description = "Stream id")),
    request_body = PinBody,
    responses(
        (status = 200, description = "The stream with the product pinned", body = Stream),
        (status = 403, description = "`forbidden`: only the stream's seller or an admin"),
        (status = 404, description = "`not_found`: no such stream or product in the caller's tenant"),
        (status = 409, description = "`invalid_state`: the stream has ended"),
    ),
    security(("bearer" = [])),
)]
pub async fn pin(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PinBody>,
) -> ApiResult<Json<Stream>> {
    let stream = visible_stream(&state, &caller, &id).await?;
    permit(&caller, Action::PinProduct(stream_ref(&stream)))?;
    let product = ProductId::parse(&body.product).map_err(|_| ApiError::not_found("product"))?;
    if state
        .store
        .product(&stream.tenant, &product)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("product"));
    }
    let updated = state
        .engine
        .pin(&stream.tenant, &stream.id, product)
        .await?;
    Ok(Json(updated))
}
