//! Cross-cutting request handling: request ids, the request span, HTTP metrics, security headers.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
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

/// The `method` label of a request: one of the standard methods, or `other` for any name a client
/// made up, so a client cannot add label values (and series) at will.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The `route` label of a request: its route template, or `unmatched` (never the raw path).
fn route_label(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// Gives every request an id (kept from `x-request-id` when sane), a span carrying it, and records
/// `http_requests_total` and `http_request_duration_seconds` by method, route template and status.
/// Every label comes from a fixed set: [`method_label`], the route template (never the raw path,
/// so ids do not become labels, and never the query, which may hold a token), and the status code
/// the engine chose.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = incoming_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = method_label(req.method());
    let route = route_label(&req);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method,
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
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    response
}

/// How long a browser may cache a preflight's answer (Chromium caps it at 2 hours).
pub const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// CORS for the REST API, so a seller console served from another origin can call it.
///
/// Allowed origins are `LIVESHOP_ALLOWED_ORIGINS` when set (`*` in the list allows any). When it
/// is unset, development allows any origin and production none (only same-origin pages). No
/// origin is ever allowed credentials: the API authenticates with bearer tokens, never cookies,
/// so a cross-origin page can only act with a token it already holds. An origin that is not
/// allowed gets no `Access-Control-Allow-Origin`, and the browser withholds the answer.
pub fn cors(config: &crate::config::Config) -> Result<tower_http::cors::CorsLayer, String> {
    use axum::http::header;
    use tower_http::cors::{AllowOrigin, CorsLayer};

    let production = config.mode == crate::config::Mode::Production;
    let origins = match &config.allowed_origins {
        Some(list) => {
            let list: Vec<&str> = list
                .iter()
                .map(|o| o.trim())
                .filter(|o| !o.is_empty())
                .collect();
            if list.contains(&"*") {
                AllowOrigin::any()
            } else {
                let values = list
                    .iter()
                    .map(|o| {
                        HeaderValue::from_str(o).map_err(|_| {
                            format!("LIVESHOP_ALLOWED_ORIGINS: {o:?} is not a valid origin")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                AllowOrigin::list(values)
            }
        }
        None if production => AllowOrigin::list(Vec::<HeaderValue>::new()),
        None => AllowOrigin::any(),
    };
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            REQUEST_ID.clone(),
        ])
        .expose_headers([header::RETRY_AFTER, REQUEST_ID.clone()])
        .max_age(CORS_MAX_AGE))
}
