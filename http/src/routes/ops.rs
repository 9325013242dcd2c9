//! `/health`, `/ready` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

/// 200 while the process runs.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 when storage (and Redis, when configured) answer, else 503; the body lists each check.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let storage_ok = state.store.ping().await.is_ok();
    let mut checks = serde_json::Map::new();
    checks.insert(
        "storage".into(),
        json!(if storage_ok { "ok" } else { "down" }),
    );
    let mut all_ok = storage_ok;
    if let Some(client) = &state.redis {
        let redis_ok = redis_ping(client).await;
        checks.insert("redis".into(), json!(if redis_ok { "ok" } else { "down" }));
        all_ok &= redis_ok;
    }
    metrics::gauge!("liveshop_ready").set(if all_ok { 1.0 } else { 0.0 });
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if all_ok { "ready" } else { "unavailable" }, "checks": checks });
    (status, Json(body))
}

async fn redis_ping(client: &redis::Client) -> bool {
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), attempt).await,
        Ok(Ok(ref pong)) if pong == "PONG"
    )
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    liveshop_actors::mailbox::publish_gauges();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
