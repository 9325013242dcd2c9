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
#[derive(Deserialize)]
pub struct NewTenant {
    slug: String,
    name: String,
}

/// Creates a tenant; 409 `conflict` on a taken slug.
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
