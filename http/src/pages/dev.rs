//! Development helpers for the pages (contract section 7): `GET /dev` says the engine runs in dev
//! mode, and `POST /dev/token` mints a token for any role, so the landing page's demo button can
//! create a demo tenant, seller, product and stream through the normal API. Both are routed only
//! with `LIVESHOP_ENV=dev`; in production they answer 404 like any unknown path.

use axum::Json;
use axum::extract::State;
use liveshop_engine::auth::Role;
use liveshop_engine::{TenantId, UserId};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::claims_for;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Lifetime of a minted token when the request names none: 8 hours, a working day of demos.
pub const DEFAULT_TTL_SECS: u64 = 8 * 3600;

/// Longest lifetime a minted token may ask for: a day.
pub const MAX_TTL_SECS: u64 = 24 * 3600;

/// Body of `POST /dev/token`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DevTokenRequest {
    /// `viewer`, `seller`, `moderator`, `admin` or `operator`.
    #[schema(pattern = "^(viewer|seller|moderator|admin|operator)$")]
    role: String,
    /// Tenant id; required for tenant roles, ignored for operators.
    #[serde(default)]
    tenant: Option<String>,
    /// User id; a random `<role>-xxxxxx` when absent.
    #[serde(default)]
    sub: Option<String>,
    /// Display name shown in chat.
    #[serde(default)]
    name: Option<String>,
    /// Lifetime in seconds (at most [`MAX_TTL_SECS`]).
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `GET /dev`: 200 in dev mode, so pages know to offer the demo; absent (404) in production.
#[utoipa::path(
    get,
    path = "/dev",
    tag = "development",
    responses(
        (status = 200, description = "The engine runs in dev mode", body = crate::openapi::DevInfo),
        (status = 404, description = "`not_found`: production mode (the route does not exist then)"),
    ),
)]
pub async fn info() -> Json<Value> {
    Json(json!({ "mode": "dev", "token": "POST /dev/token" }))
}

/// `POST /dev/token`: a token signed with the engine's secret for the asked role, tenant, user
/// and name. A tenant role needs an existing tenant (404 `not_found` otherwise), so the token
/// minted here is one the engine accepts.
#[utoipa::path(
    post,
    path = "/dev/token",
    tag = "development",
    request_body = DevTokenRequest,
    responses(
        (status = 200, description = "A signed token", body = crate::openapi::DevToken),
        (status = 400, description = "`bad_request`: a field fails its rules"),
        (status = 404, description = "`not_found`: no such tenant, or production mode (the route does not exist then)"),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DevTokenRequest>,
) -> ApiResult<Json<Value>> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::field(
            "role",
            "must be viewer, seller, moderator, admin or operator",
        )
    })?;
    let tenant = if role == Role::Operator {
        None
    } else {
        let tid = body
            .tenant
            .as_deref()
            .ok_or_else(|| ApiError::field("tenant", "is required for a tenant role"))?;
        let id =
            TenantId::parse(tid).map_err(|_| ApiError::field("tenant", "is not a tenant id"))?;
        if state.store.tenant(&id).await?.is_none() {
            return Err(ApiError::not_found("tenant"));
        }
        Some(id)
    };
    let sub = match body.sub {
        Some(sub) => sub,
        None => format!("{}-{}", role.as_str(), random_suffix()),
    };
    UserId::parse(&sub).map_err(|_| ApiError::field("sub", "is not a valid user id"))?;
    let name = match body.name.as_deref() {
        Some(name) => Some(liveshop_engine::text::user_name(name)?),
        None => None,
    };
    let ttl = body
        .ttl_seconds
        .unwrap_or(DEFAULT_TTL_SECS)
        .clamp(1, MAX_TTL_SECS);
    let tenant_text = tenant.as_ref().map(ToString::to_string);
    let claims = claims_for(role, tenant_text.as_deref(), &sub, name.as_deref(), ttl);
    let token = state.keys.mint(&claims).map_err(|err| {
        ApiError::Internal(anyhow::Error::new(err).context("a dev token could not be signed"))
    })?;
    tracing::info!(role = role.as_str(), sub = %sub, "dev token minted");
    Ok(Json(json!({
        "token": token,
        "role": role.as_str(),
        "tenant": tenant_text,
        "sub": sub,
        "exp": claims.exp,
    })))
}

/// Six random lowercase letters and digits.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
