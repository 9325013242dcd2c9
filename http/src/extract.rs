//! Request extractors: the authenticated caller and JSON bodies with contract-shaped errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use liveshop_engine::auth::Identity;
use liveshop_engine::records::UserSeen;
use liveshop_engine::{ErrorCode, Rejection};
use serde::de::DeserializeOwned;

use crate::auth::{Verified, unauthorized};
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a REST request, after the per-caller rate limit.
pub struct Caller(pub Identity);

/// Verifies a token and checks that its tenant exists (cached: tenants are never deleted).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Verified, Rejection> {
    let verified = state.keys.verify(token)?;
    if let Some(tenant) = &verified.identity.tenant {
        if !state.known_tenants.contains_key(tenant) {
            match state.store.tenant(tenant).await {
                Ok(Some(_)) => {
                    state.known_tenants.insert(tenant.clone(), ());
                }
                Ok(None) => return Err(unauthorized("tid names no tenant")),
                Err(err) => {
                    tracing::error!(error = %err, "tenant lookup failed during authentication");
                    return Err(Rejection::new(
                        ErrorCode::Unavailable,
                        "storage unavailable; retry",
                    ));
                }
            }
        }
        if let Some(until) = state.engine.bans().holds(
            tenant,
            &verified.identity.user,
            liveshop_actors::clock::now(),
        ) {
            return Err(banned(until));
        }
        if state.user_seen_due(tenant, &verified.identity.user) {
            state.engine.persist_user_seen(UserSeen {
                tenant: tenant.clone(),
                id: verified.identity.user.clone(),
                name: verified.identity.name.clone(),
                role: verified.identity.role.as_str().to_owned(),
                last_seen_at: liveshop_actors::clock::now(),
            });
        }
    }
    Ok(verified)
}

/// The refusal of a banned user, saying until when.
fn banned(until: Option<liveshop_engine::Timestamp>) -> Rejection {
    let message = match until {
        Some(until) => format!(
            "you are banned from this tenant until {}",
            until.to_rfc3339()
        ),
        None => "you are banned from this tenant".to_owned(),
    };
    Rejection::new(ErrorCode::Banned, message)
}

/// The bearer token of the `Authorization` header, if any. More than one `Authorization`
/// header is `bad_request`: which one a proxy or a library would pick is anyone's guess, so no
/// token is taken from an ambiguous request. Shared by REST and the WebSocket upgrade.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::new(
            ErrorCode::BadRequest,
            "more than one Authorization header",
        ));
    }
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    Ok(token)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?.ok_or_else(|| unauthorized("missing bearer token"))?;
        let verified = authenticate(state, token).await?;
        let id = &verified.identity;
        tracing::Span::current().record("user_id", tracing::field::display(&id.user));
        if let Some(t) = &id.tenant {
            tracing::Span::current().record("tenant_id", tracing::field::display(t));
        }
        state.take_http_token(&id.tenant, &id.user)?;
        Ok(Self(verified.identity))
    }
}

/// A JSON body; malformed input is `bad_request` naming the field and the problem in plain words
/// ([`crate::json_error`], never Rust type names), oversize is `too_large`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::TooLarge, "body is larger than 64 KiB")
            } else {
                ApiError::new(ErrorCode::BadRequest, "body could not be read")
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, crate::json_error::describe(&e)))?;
        // What follows the value (`{..} x`) is not JSON either.
        de.end().map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                crate::json_error::describe_at(".", &e),
            )
        })?;
        Ok(Self(value))
    }
}

/// A path parameter; one that cannot be decoded is `bad_request` in the contract's error shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
    }
}
