//! The upgrade: origin check (403), authentication (401), then the connection.

use std::collections::HashMap;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use liveshop_engine::ErrorCode;
use liveshop_engine::frames::MAX_FRAME_BYTES;

use super::connection;
use crate::auth::unauthorized;
use crate::error::ApiError;
use crate::extract::authenticate;
use crate::state::AppState;

/// Largest message the socket layer buffers before refusing; frames above
/// [`MAX_FRAME_BYTES`] up to this size are refused by the reader with close 1009.
const TRANSPORT_MAX_MESSAGE: usize = 64 * MAX_FRAME_BYTES;

/// `GET /v1/ws`. The origin and the token are checked first; a request that is not a WebSocket
/// upgrade is then a `bad_request` in the contract's error shape.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Some(allowed) = &state.config.allowed_origins {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if !origin.is_some_and(|o| allowed.iter().any(|a| a.trim() == o)) {
            return ApiError::new(ErrorCode::Forbidden, "origin not allowed").into_response();
        }
    }
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(token) = header_token.or_else(|| query.get("token").cloned()) else {
        return ApiError::from(unauthorized("missing token")).into_response();
    };
    let verified = match authenticate(&state, &token).await {
        Ok(v) => v,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            let message = format!("expected a WebSocket upgrade: {}", rejection.body_text());
            return ApiError::new(ErrorCode::BadRequest, message).into_response();
        }
    };
    ws.max_message_size(TRANSPORT_MAX_MESSAGE)
        .max_frame_size(TRANSPORT_MAX_MESSAGE)
        .read_buffer_size(512)
        .write_buffer_size(0)
        .on_upgrade(move |socket| connection::run(state, verified, socket))
}
