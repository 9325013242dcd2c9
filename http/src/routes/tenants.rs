//! Tenants (role `operator`), contract 3.2.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use liveshop_engine::auth::{Action, permit};
use liveshop_engine::records::Tenant;
use liveshop_engine::{Slug, TenantId};
use serde::Deserialize;

use super::{fresh, text_field};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::state::AppState;

/// Body of `POST /v1/tenants`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewTenant {
    /// Unique short name: 2 to 40 characters of `a-z`, `0-9` and `-`.
    #[schema(pattern = "^[a-z0-9-]{2,40}$")]
    slug: String,
    /// Display name, 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
}

/// Creates a tenant; 409 `conflict` on a taken slug.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = NewTenant,
    responses(
        (status = 201, description = "The tenant", body = Tenant),
        (status = 400, description = "`bad_request`: the slug or the name fails its rules"),
        (status = 403, description = "`forbidden`: operator role required"),
        (status = 409, description = "`conflict`: the slug is taken"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    permit(&caller, Action::CreateTenant)?;
    let tenant = Tenant {
        id: TenantId::generate(&fresh()),
        slug: Slug::parse(&body.slug)?,
        name: text_field("name", &body.name, 200)?,
        created_at: liveshop_actors::clock::now(),
    };
    state.store.create_tenant(&tenant).await?;
    state.known_tenants.insert(tenant.id.clone(), ());
    tracing::info!(tenant_id = %tenant.id, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Reads a tenant: operators, or members of that tenant; others get 404.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "`not_found`: no such tenant, or not the caller's"),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Tenant>> {
    let id = TenantId::parse(&id).map_err(|_| ApiError::not_found("tenant"))?;
    permit(&caller, Action::ReadTenant(&id))?;
    let tenant = state
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(tenant))
}
