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
#[derive(Deserialize)]
pub struct NewProduct {
    sku: String,
    title: String,
    price_cents: i64,
    currency: String,
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
pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<Value>> {
    let tenant = permitted_in(&caller, Action::ListProducts)?;
    let items = state.store.products(tenant).await?;
    Ok(Json(json!({ "items": items })))
}
