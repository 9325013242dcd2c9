//! The upgrade: admission (503 past `LIVESHOP_MAX_CONNECTIONS`, 429 over the upgrade rate per
//! address), origin check (403), authentication (401), the WebSocket handshake (426 for another
//! protocol version, 400 for anything else that is not an RFC 6455 upgrade over HTTP/1.1), then
//! the connection on the raw socket (so fan-out can write pre-framed bytes to it directly).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use liveshop_engine::{ErrorCode, Rejection};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::conn::Conn;
use super::connection;
use crate::admission::Refusal;
use crate::auth::unauthorized;
use crate::error::ApiError;
use crate::extract::authenticate;
use crate::http_io::HttpIo;
use crate::state::AppState;

/// `GET /v1/ws`. Admission comes first, before any WebSocket work or token verification; then
/// the origin and the token; a request that is not a WebSocket upgrade is then refused in the
/// contract's error shape.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "websocket",
    description = "Upgrades to the WebSocket protocol of docs/PROTOCOL.md (RFC 6455 handshake). The token comes as `Authorization: Bearer` or, for this route only, as `?token=`.",
    params((
        "token" = Option<String>,
        Query,
        description = "The token, when it cannot be sent in the Authorization header"
    )),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade (the message says why)"),
        (status = 403, description = "`forbidden`: the Origin is not allowed"),
        (status = 426, description = "`bad_request`: `Sec-WebSocket-Version` is not 13 (the answer names 13)"),
        (status = 503, description = "`unavailable`: the engine has `LIVESHOP_MAX_CONNECTIONS` connections"),
    ),
    security(("bearer" = []), ("token" = [])),
)]
pub async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let permit = match state
        .admission
        .admit_websocket(peer, liveshop_actors::clock::now().millis())
    {
        Ok(permit) => permit,
        Err(refusal) => return refused(refusal),
    };
    let headers = req.headers();
    if let Some(allowed) = &state.config.allowed_origins {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if !origin.is_some_and(|o| allowed.iter().any(|a| a.trim() == o)) {
            return ApiError::new(ErrorCode::Forbidden, "origin not allowed").into_response();
        }
    }
    let header_token = match crate::extract::bearer(headers) {
        Ok(token) => token.map(str::to_owned),
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let Some(token) = header_token.or_else(|| query.get("token").cloned()) else {
        return ApiError::from(unauthorized("missing token")).into_response();
    };
    let verified = match authenticate(&state, &token).await {
        Ok(v) => v,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let key = match handshake_key(req.method(), req.version(), req.headers()) {
        Ok(key) => key,
        Err(problem) => return problem.into_response(),
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
        match upgraded.downcast::<TokioIo<HttpIo>>() {
            Ok(parts) => {
                let socket = parts.io.into_inner().into_inner();
                let _ = socket.set_nodelay(true);
                let expires_at_ms =
                    i64::try_from(verified.exp.saturating_mul(1000)).unwrap_or(i64::MAX);
                let conn = Conn::new(socket, capacity, expires_at_ms);
                // Copy what the client sent early: the `Bytes` may share hyper's whole read
                // buffer, which would otherwise stay allocated for the connection's life.
                let early = parts.read_buf.to_vec();
                drop(parts.read_buf);
                // The connection gets a task of its own, sized for it alone; this one, which
                // waited for the upgrade, ends here. The admission permit lives as long as it.
                tokio::spawn(async move {
                    connection::run(state, verified.identity, conn, early).await;
                    drop(permit);
                });
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

/// The answer to an upgrade refused at admission: 503 `unavailable` past the connection cap,
/// 429 `rate_limited` over the upgrade rate; both say when to retry.
fn refused(refusal: Refusal) -> Response {
    let rejection = match refusal {
        Refusal::UpgradeRate(wait_ms) => Rejection::rate_limited(wait_ms),
        _ => {
            let mut r = Rejection::new(
                ErrorCode::Unavailable,
                "too many WebSocket connections; retry later",
            );
            r.retry_after_ms = Some(1000);
            r
        }
    };
    ApiError::from(rejection).into_response()
}

/// Why a request is not an RFC 6455 upgrade this server accepts.
#[derive(Debug, PartialEq, Eq)]
pub enum NotAnUpgrade {
    /// Answered 400 with the problem named.
    Malformed(&'static str),
    /// Another protocol version: answered 426 with `Sec-WebSocket-Version: 13` (RFC 6455 4.2.2).
    Version,
}

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        match self {
            Self::Malformed(problem) => {
                let message = format!("expected a WebSocket upgrade: {problem}");
                ApiError::new(ErrorCode::BadRequest, message).into_response()
            }
            Self::Version => {
                let body = crate::error::error_body(
                    ErrorCode::BadRequest,
                    "expected a WebSocket upgrade: Sec-WebSocket-Version must be 13",
                );
                let mut response = (StatusCode::UPGRADE_REQUIRED, axum::Json(body)).into_response();
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                response
            }
        }
    }
}

/// Checks the RFC 6455 handshake (section 4.2.1) and returns the client's key. Public for the
/// fuzz target that feeds it parsed requests.
pub fn handshake_key(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<String, NotAnUpgrade> {
    use NotAnUpgrade::Malformed;
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if method != Method::GET {
        return Err(Malformed("method must be GET"));
    }
    if version != Version::HTTP_11 {
        return Err(Malformed("the request must be HTTP/1.1"));
    }
    if !has(header::CONNECTION, "upgrade") {
        return Err(Malformed("Connection header does not contain upgrade"));
    }
    if !has(header::UPGRADE, "websocket") {
        return Err(Malformed("Upgrade header is not websocket"));
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    // Missing, repeated or another version: the client learns which one this server speaks.
    match (versions.next(), versions.next()) {
        (Some(v), None) if v == "13" => {}
        _ => return Err(NotAnUpgrade::Version),
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key,
        (None, _) => return Err(Malformed("Sec-WebSocket-Key is missing")),
        (Some(_), Some(_)) => return Err(Malformed("Sec-WebSocket-Key is repeated")),
    };
    // The key is the base64 of a 16-byte nonce: 24 characters, canonical padding.
    match base64::engine::general_purpose::STANDARD.decode(key.as_bytes()) {
        Ok(nonce) if nonce.len() == 16 => Ok(key.to_str().unwrap_or_default().to_owned()),
        _ => Err(Malformed(
            "Sec-WebSocket-Key must be the base64 of 16 bytes",
        )),
    }
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

    fn check(headers: &HeaderMap) -> Result<String, NotAnUpgrade> {
        handshake_key(&Method::GET, Version::HTTP_11, headers)
    }

    #[test]
    fn a_proper_handshake_yields_its_key() {
        assert_eq!(
            check(&upgrade_headers()).unwrap(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    }

    #[test]
    fn missing_upgrade_headers_are_named() {
        let mut h = upgrade_headers();
        h.remove(header::UPGRADE);
        assert!(matches!(check(&h), Err(NotAnUpgrade::Malformed(p)) if p.contains("Upgrade")));
        assert!(handshake_key(&Method::POST, Version::HTTP_11, &upgrade_headers()).is_err());
    }

    #[test]
    fn another_or_no_protocol_version_asks_for_13() {
        for version in [Some("8"), Some("13, 8"), None] {
            let mut h = upgrade_headers();
            h.remove(header::SEC_WEBSOCKET_VERSION);
            if let Some(v) = version {
                h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static(v));
            }
            assert_eq!(check(&h), Err(NotAnUpgrade::Version), "{version:?}");
        }
    }

    #[test]
    fn an_upgrade_over_http_1_0_is_refused() {
        let problem = handshake_key(&Method::GET, Version::HTTP_10, &upgrade_headers());
        assert!(matches!(problem, Err(NotAnUpgrade::Malformed(p)) if p.contains("HTTP/1.1")));
    }

    #[test]
    fn a_key_must_be_the_base64_of_16_bytes() {
        for bad in [
            "",
            "not base64 at all!",
            "dGhlIHNhbXBsZSBub25jZQ",       // unpadded
            "dGhlIHNhbXBsZSBub25jZSE=",     // 17 bytes
            "dGhlIHNhbXBsZSBub25j",         // 15 bytes
            "dGhlIHNhbXBsZSBub25jZR==",     // 16 bytes with non-zero padding bits
            "dGhlIHNhbXBsZSBub25jZQ==dGhl", // trailing data
        ] {
            let mut h = upgrade_headers();
            h.insert(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_str(bad).unwrap(),
            );
            assert!(
                matches!(check(&h), Err(NotAnUpgrade::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut h = upgrade_headers();
        h.append(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="),
        );
        assert!(check(&h).is_err(), "two keys");
    }

    #[test]
    fn the_accept_key_follows_rfc_6455() {
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
