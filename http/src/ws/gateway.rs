//! The upgrade: origin check (403), authentication (401), the WebSocket handshake, then the
//! connection on the raw socket (so fan-out can write pre-framed bytes to it directly).

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use liveshop_engine::ErrorCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::conn::Conn;
use super::connection;
use crate::auth::unauthorized;
use crate::error::ApiError;
use crate::extract::authenticate;
use crate::state::AppState;

/// `GET /v1/ws`. The origin and the token are checked first; a request that is not a WebSocket
/// upgrade is then a `bad_request` in the contract's error shape.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
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
    let key = match handshake_key(req.method(), req.headers()) {
        Ok(key) => key,
        Err(problem) => {
            let message = format!("expected a WebSocket upgrade: {problem}");
            return ApiError::new(ErrorCode::BadRequest, message).into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let capacity = state.config.broadcast_capacity;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(err) => {
                tracing::debug!(error = %err, "WebSocket upgrade did not complete");
                return;
            }
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let socket = parts.io.into_inner();
                let _ = socket.set_nodelay(true);
                let expires_at_ms =
                    i64::try_from(verified.exp.saturating_mul(1000)).unwrap_or(i64::MAX);
                let conn = Conn::new(socket, capacity, expires_at_ms);
                // Copy what the client sent early: the `Bytes` may share hyper's whole read
                // buffer, which would otherwise stay allocated for the connection's life.
                let early = parts.read_buf.to_vec();
                drop(parts.read_buf);
                // The connection gets a task of its own, sized for it alone; this one, which
                // waited for the upgrade, ends here.
                tokio::spawn(connection::run(state, verified.identity, conn, early));
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP socket"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Checks the RFC 6455 handshake headers and returns the client's key.
pub fn handshake_key(method: &Method, headers: &HeaderMap) -> Result<String, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if method != Method::GET {
        return Err("method must be GET");
    }
    if !has(header::CONNECTION, "upgrade") {
        return Err("Connection header does not contain upgrade");
    }
    if !has(header::UPGRADE, "websocket") {
        return Err("Upgrade header is not websocket");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or("Sec-WebSocket-Key is missing")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    #[test]
    fn a_proper_handshake_yields_its_key() {
        assert_eq!(
            handshake_key(&Method::GET, &upgrade_headers()).unwrap(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    }

    #[test]
    fn missing_upgrade_headers_are_named() {
        let mut h = upgrade_headers();
        h.remove(header::UPGRADE);
        assert!(
            handshake_key(&Method::GET, &h)
                .unwrap_err()
                .contains("Upgrade")
        );
        let mut h = upgrade_headers();
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(handshake_key(&Method::GET, &h).unwrap_err().contains("13"));
        assert!(handshake_key(&Method::POST, &upgrade_headers()).is_err());
    }

    #[test]
    fn the_accept_key_follows_rfc_6455() {
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
