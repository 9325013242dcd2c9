//! Identity at the edge (contract v1, section 2) and the cross-cutting answers every request
//! gets: the error shape, security headers, request ids, the REST rate limit.

#[macro_use]
mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, SECRET, TestApp, expect_error, expect_json, mint, operator, token};
use liveshop_engine::auth::Role;
use liveshop_http::auth::{Keys, claims_for, unix_now};
use serde_json::json;

both! {
    a_request_without_a_token_is_unauthorized,
    a_token_with_a_bad_signature_is_unauthorized,
    an_unsigned_alg_none_token_is_unauthorized,
    an_expired_token_is_unauthorized,
    a_token_without_expiry_or_with_an_unknown_role_is_unauthorized,
    a_token_naming_no_tenant_is_unauthorized,
    a_valid_token_in_the_wrong_role_is_forbidden,
    operators_cannot_use_tenant_endpoints,
    responses_carry_security_headers,
    request_ids_are_echoed_or_generated,
    rest_callers_are_rate_limited_with_retry_after,
}

async fn a_request_without_a_token_is_unauthorized(backend: Backend) {
    let app = TestApp::default(backend).await;
    expect_error(app.get("/v1/products", None).await, 401, "unauthorized").await;
    let response = app
        .http
        .post(app.url("/v1/tenants"))
        .json(&json!({ "slug": "x1", "name": "X" }))
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthorized").await;
    let response = app
        .http
        .get(app.url("/v1/products"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthorized").await;
    expect_error(
        app.get("/v1/products", Some("not.a.jwt")).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn a_token_with_a_bad_signature_is_unauthorized(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("sig").await;
    let forged = Keys::new(b"some-other-secret-some-other-secret!")
        .mint(&claims_for(
            Role::Admin,
            Some(&shop.tenant),
            "mallory",
            None,
            3600,
        ))
        .unwrap();
    let message = expect_error(
        app.get("/v1/products", Some(&forged)).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(!message.contains(&forged), "the token is never echoed");
    // A valid token with its signature altered.
    let mut tampered = shop.viewer.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    expect_error(
        app.get("/v1/products", Some(&tampered)).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn an_unsigned_alg_none_token_is_unauthorized(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("none-alg").await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        json!({ "sub": "mallory", "role": "admin", "tid": shop.tenant, "exp": unix_now() + 3600 })
            .to_string(),
    );
    let token = format!("{header}.{payload}.");
    expect_error(
        app.get("/v1/products", Some(&token)).await,
        401,
        "unauthorized",
    )
    .await;
    let op_payload = URL_SAFE_NO_PAD
        .encode(json!({ "sub": "m", "role": "operator", "exp": unix_now() + 3600 }).to_string());
    let token = format!("{header}.{op_payload}.");
    let body = json!({ "slug": "pwned", "name": "X" });
    expect_error(
        app.post("/v1/tenants", &token, &body).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn an_expired_token_is_unauthorized(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("expired").await;
    let mut claims = claims_for(Role::Viewer, Some(&shop.tenant), "late", None, 0);
    claims.exp = unix_now() - 30;
    let expired = mint(&claims);
    let message = expect_error(
        app.get("/v1/products", Some(&expired)).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(message.contains("expired"), "{message}");
}

async fn a_token_without_expiry_or_with_an_unknown_role_is_unauthorized(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("claims").await;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let no_exp = sign(json!({ "sub": "u", "role": "viewer", "tid": shop.tenant }));
    expect_error(
        app.get("/v1/products", Some(&no_exp)).await,
        401,
        "unauthorized",
    )
    .await;
    let root =
        sign(json!({ "sub": "u", "role": "root", "tid": shop.tenant, "exp": unix_now() + 60 }));
    expect_error(
        app.get("/v1/products", Some(&root)).await,
        401,
        "unauthorized",
    )
    .await;
    let no_tid = sign(json!({ "sub": "u", "role": "viewer", "exp": unix_now() + 60 }));
    expect_error(
        app.get("/v1/products", Some(&no_tid)).await,
        401,
        "unauthorized",
    )
    .await;
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({ "sub": "u", "role": "viewer", "tid": shop.tenant, "exp": unix_now() + 60 }),
        &key,
    )
    .unwrap();
    expect_error(
        app.get("/v1/products", Some(&hs512)).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn a_token_naming_no_tenant_is_unauthorized(backend: Backend) {
    let app = TestApp::default(backend).await;
    let ghost = token(Role::Admin, Some("tenant-that-does-not-exist"), "ghost");
    expect_error(
        app.get("/v1/products", Some(&ghost)).await,
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        app.get("/v1/streams", Some(&ghost)).await,
        401,
        "unauthorized",
    )
    .await;
    // Once the tenant exists the same kind of token works.
    let shop = app.shop("real").await;
    expect_json(app.get("/v1/products", Some(&shop.viewer)).await, 200).await;
}

async fn a_valid_token_in_the_wrong_role_is_forbidden(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("roles").await;
    let body = json!({ "slug": "by-admin", "name": "X" });
    expect_error(
        app.post("/v1/tenants", &shop.admin, &body).await,
        403,
        "forbidden",
    )
    .await;
    let product = json!({ "sku": "A", "title": "A", "price_cents": 1, "currency": "EUR" });
    expect_error(
        app.post("/v1/products", &shop.viewer, &product).await,
        403,
        "forbidden",
    )
    .await;
    expect_error(
        app.post("/v1/streams", &shop.viewer, &json!({ "title": "t" }))
            .await,
        403,
        "forbidden",
    )
    .await;
}

async fn operators_cannot_use_tenant_endpoints(backend: Backend) {
    let app = TestApp::default(backend).await;
    let product = json!({ "sku": "A", "title": "A", "price_cents": 1, "currency": "EUR" });
    expect_error(
        app.post("/v1/products", &operator(), &product).await,
        403,
        "forbidden",
    )
    .await;
    expect_error(
        app.get("/v1/products", Some(&operator())).await,
        403,
        "forbidden",
    )
    .await;
}

async fn responses_carry_security_headers(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("headers").await;
    for response in [
        app.get("/health", None).await,
        app.get("/v1/products", None).await,
        app.get("/v1/products", Some(&shop.viewer)).await,
        app.get("/v1/unknown", None).await,
    ] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{headers:?}");
        assert_eq!(headers["x-frame-options"], "DENY", "{headers:?}");
        assert!(
            headers.get("strict-transport-security").is_none(),
            "no HSTS in dev"
        );
    }
}

async fn request_ids_are_echoed_or_generated(backend: Backend) {
    let app = TestApp::default(backend).await;
    let response = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");

    let a = app.get("/health", None).await;
    let b = app.get("/v1/products", None).await;
    let id_a = a.headers()["x-request-id"].to_str().unwrap().to_owned();
    let id_b = b.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!id_a.is_empty() && !id_b.is_empty());
    assert_ne!(id_a, id_b);

    // An unusable incoming id is replaced, not echoed.
    let response = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "has spaces and <angle>")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "has spaces and <angle>");
    assert!(!id.is_empty());
}

async fn rest_callers_are_rate_limited_with_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend, |c| {
        c.http_burst = 3;
        c.http_per_sec = 0.1;
    })
    .await;
    let shop = app.shop("limited").await;
    for _ in 0..3 {
        expect_json(app.get("/v1/products", Some(&shop.viewer)).await, 200).await;
    }
    let response = app.get("/v1/products", Some(&shop.viewer)).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry_after >= 1, "{retry_after}");
    expect_error(response, 429, "rate_limited").await;
    // The allowance is per caller: another user of the tenant is not affected.
    let other = shop.token(Role::Viewer, "someone-else");
    expect_json(app.get("/v1/products", Some(&other)).await, 200).await;
    // Unauthenticated operations endpoints are not limited per caller.
    for _ in 0..5 {
        expect_json(app.get("/health", None).await, 200).await;
    }
}
