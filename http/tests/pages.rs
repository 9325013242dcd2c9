//! The pages, the SDK and the dev token endpoint (contract section 7) over a real server: every
//! page is served with its policy, `ETag` and cache headers, revalidation answers 304, what the
//! pages reference is served, unknown assets are 404, and `/dev/token` exists in dev mode only.

mod common;

use common::{Backend, TestApp, expect_error, expect_json, operator};
use liveshop_engine::auth::Role;
use liveshop_http::config::Mode;
use serde_json::json;

const PAGES: [&str; 4] = ["/", "/watch/str_anything", "/studio", "/ops"];

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The `src="/…"` and `href="/…"` paths a page references on this origin.
fn referenced_paths(html: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for attr in ["src=\"/", "href=\"/"] {
        for (at, _) in html.match_indices(attr) {
            let rest = &html[at + attr.len() - 1..];
            if let Some(end) = rest.find('"') {
                paths.push(rest[..end].to_owned());
            }
        }
    }
    paths
}

#[tokio::test]
async fn every_page_is_html_with_a_strict_policy_an_etag_and_revalidation() {
    let app = TestApp::default(Backend::Sqlite).await;
    for path in PAGES {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let csp = header(&response, "content-security-policy")
            .expect("a policy")
            .to_owned();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            csp.contains(&format!("connect-src 'self' ws://{0} wss://{0};", app.addr)),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(
            header(&response, "cache-control"),
            Some("no-cache"),
            "{path}"
        );
        assert!(
            header(&response, "etag").is_some_and(|t| t.starts_with('"')),
            "{path}"
        );
        assert_eq!(
            header(&response, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_matching_if_none_match_is_answered_304_without_a_body() {
    let app = TestApp::default(Backend::Sqlite).await;
    for path in [
        "/",
        "/watch/str_x",
        "/studio",
        "/ops",
        "/assets/style.css",
        "/sdk/liveshop.js",
        "/favicon.ico",
    ] {
        let first = app.get(path, None).await;
        assert_eq!(first.status(), 200, "{path}");
        let etag = header(&first, "etag").expect("an etag").to_owned();
        let again = app
            .http
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(header(&again, "etag"), Some(etag.as_str()), "{path}");
        assert!(again.bytes().await.unwrap().is_empty(), "{path}");
        let stale = app
            .http
            .get(app.url(path))
            .header("if-none-match", "\"not-this-one\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn everything_a_page_references_is_served_from_this_origin() {
    let app = TestApp::default(Backend::Sqlite).await;
    let mut checked = 0;
    for page in PAGES {
        let html = app.get(page, None).await.text().await.unwrap();
        assert!(
            !html.contains("https://") && !html.contains("http://"),
            "{page} names another origin"
        );
        for path in referenced_paths(&html) {
            if path == "/" || path == "/studio" || path == "/ops" {
                continue;
            }
            let response = app.get(&path, None).await;
            assert_eq!(response.status(), 200, "{page} references {path}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} references checked");
    for (path, kind) in [
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/watch.js", "text/javascript; charset=utf-8"),
        ("/favicon.ico", "image/x-icon"),
    ] {
        let response = app.get(path, None).await;
        assert_eq!(header(&response, "content-type"), Some(kind), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_sdk_is_served_as_a_javascript_module() {
    let app = TestApp::default(Backend::Sqlite).await;
    let response = app.get("/sdk/liveshop.js", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(header(&response, "etag").is_some());
    let text = response.text().await.unwrap();
    assert!(
        text.contains("export") && text.contains("connect"),
        "the SDK exports connect"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_viewer_and_studio_pages_carry_every_test_id_of_the_contract() {
    let app = TestApp::default(Backend::Sqlite).await;
    let watch = app.get("/watch/str_x", None).await.text().await.unwrap();
    for id in [
        "connection-state",
        "viewer-count",
        "chat-list",
        "chat-input",
        "chat-send",
        "react-heart",
        "pinned-product",
        "drop-card",
        "drop-remaining",
        "claim-button",
        "claim-status",
        "auction-card",
        "auction-high-bid",
        "bid-amount",
        "bid-button",
        "error-banner",
    ] {
        assert!(
            watch.contains(&format!("data-testid=\"{id}\"")),
            "viewer lacks {id}"
        );
    }
    assert!(
        watch.contains(">connecting<"),
        "the viewer starts as connecting"
    );
    let studio = app.get("/studio", None).await.text().await.unwrap();
    for id in [
        "product-sku",
        "product-title",
        "product-price",
        "product-currency",
        "product-create",
        "stream-title",
        "stream-create",
        "stream-go-live",
        "stream-end",
        "pin-product",
        "pin-button",
        "drop-product",
        "drop-quantity",
        "drop-open",
        "auction-start-bid",
        "auction-duration",
        "auction-start",
        "stat-viewers",
        "stat-remaining",
        "moderation-list",
        "mute-seconds",
    ] {
        assert!(
            studio.contains(&format!("data-testid=\"{id}\"")),
            "studio lacks {id}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_assets_and_paths_outside_the_assets_are_404() {
    let app = TestApp::default(Backend::Sqlite).await;
    for path in [
        "/assets/nope.js",
        "/assets/",
        "/assets/..%2f..%2fCargo.toml",
        "/assets/%2e%2e/index.html",
        "/sdk/other.js",
        "/watch",
        "/pages/index.html",
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_dev_token_mints_working_tokens_for_an_operator_and_a_seller() {
    let app = TestApp::default(Backend::Sqlite).await;
    assert_eq!(app.get("/dev", None).await.status(), 200);
    let minted = app
        .http
        .post(app.url("/dev/token"))
        .json(&json!({ "role": "operator", "sub": "demo-operator" }))
        .send()
        .await
        .unwrap();
    let minted = expect_json(minted, 200).await;
    let op = minted["token"].as_str().expect("a token").to_owned();
    assert_eq!(minted["sub"], "demo-operator");
    let tenant = expect_json(
        app.post(
            "/v1/tenants",
            &op,
            &json!({ "slug": "demo-shop", "name": "Demo" }),
        )
        .await,
        201,
    )
    .await;
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let seller = app
        .http
        .post(app.url("/dev/token"))
        .json(&json!({ "role": "seller", "tenant": tenant, "name": "Ann" }))
        .send()
        .await
        .unwrap();
    let seller = expect_json(seller, 200).await;
    assert!(seller["sub"].as_str().unwrap().starts_with("seller-"));
    let seller = seller["token"].as_str().unwrap().to_owned();
    let product = app
        .post(
            "/v1/products",
            &seller,
            &json!({ "sku": "D-1", "title": "Demo", "price_cents": 100, "currency": "EUR" }),
        )
        .await;
    assert_eq!(product.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn a_dev_token_refuses_an_unknown_role_a_missing_tenant_and_a_tenant_that_does_not_exist() {
    let app = TestApp::default(Backend::Sqlite).await;
    let mint = |body: serde_json::Value| app.http.post(app.url("/dev/token")).json(&body).send();
    let bad_role = mint(json!({ "role": "king" })).await.unwrap();
    assert!(
        expect_error(bad_role, 400, "bad_request")
            .await
            .contains("role")
    );
    let no_tenant = mint(json!({ "role": "viewer" })).await.unwrap();
    assert!(
        expect_error(no_tenant, 400, "bad_request")
            .await
            .contains("tenant")
    );
    let ghost = mint(json!({ "role": "viewer", "tenant": "ten_00000000000000000000000000" }))
        .await
        .unwrap();
    expect_error(ghost, 404, "not_found").await;
    app.stop().await;
}

#[tokio::test]
async fn production_serves_the_pages_but_not_the_dev_endpoints() {
    let app = TestApp::spawn(Backend::Sqlite, |c| c.mode = Mode::Production).await;
    for path in PAGES {
        assert_eq!(app.get(path, None).await.status(), 200, "{path}");
    }
    assert_eq!(app.get("/dev", None).await.status(), 404);
    let minted = app
        .http
        .post(app.url("/dev/token"))
        .json(&json!({ "role": "operator" }))
        .send()
        .await
        .unwrap();
    expect_error(minted, 404, "not_found").await;
    app.stop().await;
}

#[tokio::test]
async fn the_ops_stats_are_for_operators_and_count_connections() {
    let app = TestApp::default(Backend::Sqlite).await;
    let shop = app.shop("stats-shop").await;
    let viewer = app.ws(&shop.token(Role::Viewer, "v-1")).await;
    common::eventually("the stats count the connection", || async {
        let stats = expect_json(app.get("/v1/admin/stats", Some(&operator())).await, 200).await;
        stats["connections"].as_u64() == Some(1)
            && stats["events_delivered"].is_u64()
            && stats["claims"].is_u64()
            && stats["restarts"].is_u64()
            && stats["actors_by_kind"].is_object()
    })
    .await;
    let refused = app.get("/v1/admin/stats", Some(&shop.viewer)).await;
    expect_error(refused, 403, "forbidden").await;
    viewer.close().await;
    app.stop().await;
}
