//! Cross-cutting request handling: request ids, the request span, HTTP metrics, security headers.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Header carrying the request id, in and out.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn incoming_id(req: &Request) -> Option<String> {
    let v = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| v.to_owned())
}

/// Gives every request an id (kept from `x-request-id` when sane), a span carrying it, and records
/// `http_requests_total` and `http_request_duration_seconds` by method and route template (never
/// the raw path, so ids do not become labels, and never the query, which may hold a token).
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = incoming_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        tenant_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        stream_id = tracing::field::Empty,
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, elapsed_ms = elapsed * 1000.0, "request failed");
        } else {
            tracing::debug!(status, elapsed_ms = elapsed * 1000.0, "request served");
        }
    });
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    response
}
