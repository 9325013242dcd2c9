//! Products (write: seller/admin; read: any member), contract 3.3.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use liveshop_engine::ProductId;
use liveshop_engine::records::Product;
use liveshop_engine::text;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{fresh, permitted_in, text_field};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;
use liveshop_engine::auth::Action;

/// Body of `POST /v1/products`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewProduct {
    /// Stock keeping unit, 1 to 64 characters after trimming, unique within the tenant.
    #[schema(min_length = 1, max_length = 64)]
    sku: String,
    /// Display title, 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    /// Price in minor units of `currency`, not negative.
    #[schema(minimum = 0)]
    price_cents: i64,
    /// ISO 4217 code, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    /// An `https://` URL of a picture.
    #[serde(default)]
    image_url: Option<String>,
}

fn validate(body: NewProduct, tenant: liveshop_engine::TenantId) -> Result<Product, ApiError> {
    let sku = text_field("sku", &body.sku, 64)?;
    let title = text_field("title", &body.title, 200)?;
    if body.price_cents < 0 {
        return Err(ApiError::field("price_cents", "must not be negative"));
    }
    let currency = text::currency("currency", &body.currency)?;
    let image_url = body
        .image_url
        .map(|url| text::https_url("image_url", &url))
        .transpose()?;
    Ok(Product {
        id: ProductId::generate(&fresh()),
        tenant,
        sku,
        title,
        price_cents: body.price_cents,
        currency,
        image_url,
    })
}

/// Creates a product; 409 `conflict` when the tenant already has the sku.
#[utoipa::path(
    post,
    path = "/v1/products",
    tag = "products",
    request_body = NewProduct,
    responses(
        (status = 201, description = "The product", body = Product),
        (status = 400, description = "`bad_request`: a field fails its rules"),
        (status = 403, description = "`forbidden`: seller or admin role required"),
        (status = 409, description = "`conflict`: the tenant already has the sku"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<NewProduct>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    let tenant = permitted_in(&caller, Action::CreateProduct)?.clone();
    let product = validate(body, tenant)?;
    state.store.create_product(&product).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// Lists the caller's tenant's products.
#[utoipa::path(
    get,
    path = "/v1/products",
    tag = "products",
    responses(
        (status = 200, description = "The tenant's products", body = crate::openapi::ProductList),
        (status = 403, description = "`forbidden`: a tenant role is required"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<Value>> {
    let tenant = permitted_in(&caller, Action::ListProducts)?;
    let items = state.store.products(tenant).await?;
    Ok(Json(json!({ "items": items })))
}
