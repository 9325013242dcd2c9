//! `/health`, `/ready` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::readiness::Report;
use crate::state::AppState;

/// 200 while the process runs.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = crate::openapi::Health)),
)]
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// How long one check may take before it counts as down.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// 200 when storage (and Redis, when configured) answer, else 503; the body lists each check.
/// The answer comes from [`crate::readiness::ReadinessCache`]: at most one probe a second,
/// shared by every caller, so polling `/ready` cannot load the database.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Every check passed", body = crate::openapi::Readiness),
        (status = 503, description = "A check failed; the body names it", body = crate::openapi::Readiness),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let report = state.readiness.get(|| probe(&state)).await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if report.ready { "ready" } else { "unavailable" },
        "checks": report.checks,
    });
    (status, Json(body))
}

/// Pings storage (and Redis, when configured), each within [`CHECK_TIMEOUT`].
async fn probe(state: &AppState) -> Report {
    metrics::counter!(crate::telemetry::READINESS_PROBES).increment(1);
    let storage_ok = matches!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await,
        Ok(Ok(_))
    );
    let mut checks = serde_json::Map::new();
    checks.insert(
        "storage".into(),
        json!(if storage_ok { "ok" } else { "down" }),
    );
    let mut ready = storage_ok;
    if let Some(cluster) = &state.cluster {
        let redis_ok = redis_ping(&cluster.link).await;
        checks.insert("redis".into(), json!(if redis_ok { "ok" } else { "down" }));
        ready &= redis_ok;
    }
    metrics::gauge!("liveshop_ready").set(if ready { 1.0 } else { 0.0 });
    Report { ready, checks }
}

async fn redis_ping(link: &liveshop_cluster::link::Link) -> bool {
    let ping = redis::cmd("PING");
    let attempt = link.query::<String>("ping", &ping);
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, attempt).await,
        Ok(Ok(ref pong)) if pong == "PONG"
    )
}

/// Prometheus text exposition; on the serving port, or only on `LIVESHOP_METRICS_LISTEN` when
/// that is set.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition, version 0.0.4", body = String, content_type = "text/plain"),
        (status = 404, description = "`not_found`: served on `LIVESHOP_METRICS_LISTEN` only, when that is set"),
    ),
)]
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
