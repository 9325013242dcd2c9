//! The engine's own pages (contract section 7): `/`, `/watch/{stream}`, `/studio`, `/ops`, the
//! SDK at `/sdk/liveshop.js`, `/favicon.ico` and `/assets/…`, served from files embedded in the
//! binary, so an engine needs no web server, no CDN and no files beside it.
//!
//! Every answer carries an `ETag` (a digest of the file) and answers `If-None-Match` with 304;
//! pages, scripts and styles are `Cache-Control: no-cache` (always revalidated, so a new engine's
//! files are picked up at once), the favicon is cached for a day. Each carries a strict
//! `Content-Security-Policy`: only this origin's scripts, styles, images and connections (and the
//! WebSocket of this host), no inline script or style, no framing.

pub mod dev;
pub mod stats;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::Mode;
use crate::error::ApiError;
use crate::state::AppState;

/// The files under `web/` that the engine serves: the pages with their assets, and the SDK.
/// Tests, tools and `node_modules` beside them are left out.
#[derive(rust_embed::RustEmbed)]
#[folder = "../web/"]
#[include = "pages/*.html"]
#[include = "pages/favicon.ico"]
#[include = "pages/assets/**"]
#[include = "sdk/liveshop.js"]
struct Web;

/// `Cache-Control` of pages, scripts and styles: revalidate every time (a 304 is cheap).
pub const REVALIDATE: &str = "no-cache";

/// `Cache-Control` of the favicon.
pub const FAVICON_CACHE: &str = "public, max-age=86400";

/// The routes of the pages, the SDK and the assets; in dev mode also `GET /dev` and
/// `POST /dev/token` (absent in production, so they answer 404 there).
pub fn routes(mode: Mode) -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { page("index.html", &h) }),
        )
        .route(
            "/studio",
            get(|h: HeaderMap| async move { page("studio.html", &h) }),
        )
        .route(
            "/ops",
            get(|h: HeaderMap| async move { page("ops.html", &h) }),
        )
        .route(
            "/watch/{stream}",
            get(|_: Path<String>, h: HeaderMap| async move { page("watch.html", &h) }),
        )
        .route("/favicon.ico", get(favicon))
        .route("/sdk/liveshop.js", get(sdk))
        .route("/assets/{*path}", get(asset))
        .route("/v1/admin/stats", get(stats::stats));
    if mode == Mode::Dev {
        router = router
            .route("/dev", get(dev::info))
            .route("/dev/token", axum::routing::post(dev::token));
    }
    router
}

fn page(name: &str, headers: &HeaderMap) -> Response {
    serve(&format!("pages/{name}"), headers, REVALIDATE)
}

async fn favicon(headers: HeaderMap) -> Response {
    serve("pages/favicon.ico", &headers, FAVICON_CACHE)
}

async fn sdk(headers: HeaderMap) -> Response {
    serve("sdk/liveshop.js", &headers, REVALIDATE)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if !safe_path(&path) {
        return ApiError::not_found("asset").into_response();
    }
    serve(&format!("pages/assets/{path}"), &headers, REVALIDATE)
}

/// Whether an asset path stays inside the assets folder: no empty, `.` or `..` segment, no
/// backslash, no leading slash.
fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Answers with the embedded file at `path` (404 when there is none), or 304 when the request's
/// `If-None-Match` names its current `ETag`.
fn serve(path: &str, headers: &HeaderMap, cache_control: &'static str) -> Response {
    let Some(file) = Web::get(path) else {
        return ApiError::not_found("asset").into_response();
    };
    let etag = etag_of(&file.metadata.sha256_hash());
    let csp = content_security_policy(headers.get(header::HOST));
    let common = [
        (header::ETAG, HeaderValue::from_str(&etag).ok()),
        (
            header::CACHE_CONTROL,
            Some(HeaderValue::from_static(cache_control)),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).ok(),
        ),
    ];
    let mut response = if none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match file.data {
            std::borrow::Cow::Borrowed(bytes) => bytes::Bytes::from_static(bytes),
            std::borrow::Cow::Owned(bytes) => bytes::Bytes::from(bytes),
        };
        let mut ok = body.into_response();
        ok.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        ok
    };
    for (name, value) in common {
        if let Some(value) = value {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A strong `ETag`: the first 16 bytes of the file's SHA-256, in hex and quotes.
fn etag_of(digest: &[u8; 32]) -> String {
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether `If-None-Match` lists `etag` (weak or strong) or is `*`.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// The `Content-Type` of a served file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The pages' policy: everything from this origin only, no inline script or style, no plugins,
/// no framing, forms post here only. `connect-src` names the WebSocket of the request's host
/// too, for browsers whose `'self'` does not cover `ws:`/`wss:`; a `Host` that is not a plain
/// host name (with an optional port) is left out.
pub fn content_security_policy(host: Option<&HeaderValue>) -> String {
    let sockets = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| plain_host(h))
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; \
         connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// A host name or address with an optional port: letters, digits, `.`, `-`, `:` and brackets.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `html` has an attribute like ` onclick=`.
    fn has_event_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn an_asset_path_that_climbs_out_of_the_folder_is_refused() {
        assert!(safe_path("style.css"));
        assert!(safe_path("img/logo.svg"));
        for bad in [
            "",
            "../Cargo.toml",
            "a/../../x",
            "./x",
            "a//b",
            "a\\b",
            "/etc/passwd",
        ] {
            assert!(!safe_path(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn the_policy_names_the_websocket_of_a_plain_host_only() {
        let host = HeaderValue::from_static("shop.example:8080");
        let csp = content_security_policy(Some(&host));
        assert!(csp.contains("connect-src 'self' ws://shop.example:8080 wss://shop.example:8080;"));
        let odd = HeaderValue::from_static("evil.example; script-src *");
        let csp = content_security_policy(Some(&odd));
        assert!(csp.contains("connect-src 'self';"), "{csp}");
        assert!(!csp.contains("evil"));
    }

    #[test]
    fn if_none_match_matches_weak_strong_lists_and_star() {
        let tag = "\"abc\"";
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(none_match(&h, tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!none_match(&h, tag));
        assert!(!none_match(&HeaderMap::new(), tag));
    }

    #[test]
    fn every_embedded_file_has_a_known_content_type() {
        let mut seen = 0;
        for path in Web::iter() {
            seen += 1;
            assert_ne!(
                content_type(&path),
                "application/octet-stream",
                "{path} has no content type"
            );
        }
        assert!(seen >= 10, "only {seen} files embedded");
    }

    #[test]
    fn the_pages_load_nothing_from_another_origin_and_run_no_inline_script() {
        for path in Web::iter().filter(|p| p.ends_with(".html")) {
            let file = Web::get(&path).expect("listed file exists");
            let text = String::from_utf8_lossy(&file.data);
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{path} names another origin"
            );
            assert!(!text.contains(" style=\""), "{path} has an inline style");
            for script in text.split("<script").skip(1) {
                let head = script.split('>').next().unwrap_or_default();
                assert!(head.contains("src=\""), "{path} has an inline script");
            }
            assert!(
                !has_event_handler(&text),
                "{path} has an inline event handler"
            );
        }
    }
}
