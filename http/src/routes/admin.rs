//! Operator endpoints: fault injection (contract 3.6), off unless enabled.

use axum::Json;
use axum::extract::{Path, State};
use liveshop_actors::stream::StreamMsg;
use liveshop_engine::StreamId;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;

/// Makes a stream's actor panic so its supervisor restores it; 404 unless fault injection is on.
pub async fn crash_stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if !state.config.fault_injection {
        return Err(ApiError::not_found("route"));
    }
    caller.require_operator()?;
    let id = StreamId::parse(&id).map_err(|_| ApiError::not_found("stream"))?;
    let stream = state
        .store
        .stream(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    let handle = state.engine.stream(&stream.tenant, &stream.id).await?;
    let _ = handle.actor.cast(StreamMsg::Crash);
    tracing::warn!(stream_id = %id, "fault injection: stream actor crash requested");
    Ok(Json(json!({ "stream": id, "crashed": true })))
}
