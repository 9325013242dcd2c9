//! Tokens and request errors at the edge, over real HTTP: the expiry second, `nbf`, ambiguous
//! `Authorization` headers (REST and the WebSocket upgrade), several keys at once
//! (`LIVESHOP_JWT_SECRETS`: a `kid` selects its key, a token without one is tried against each),
//! and JSON body errors that name the field in plain words without the engine's Rust internals.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Backend, TestApp, expect_error, expect_json, mint, operator};
use liveshop_engine::auth::Role;
use liveshop_http::auth::{Keys, claims_for, unix_now};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sleeps until just after the next whole second, so a check made now runs within that second.
async fn start_of_a_second() {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = Duration::from_secs(1) - Duration::from_nanos(u64::from(since.subsec_nanos()));
    tokio::time::sleep(left + Duration::from_millis(5)).await;
}

#[tokio::test]
async fn a_token_is_refused_from_the_second_equal_to_its_exp() {
    let app = TestApp::default(Backend::Sqlite).await;
    start_of_a_second().await;
    let mut claims = claims_for(Role::Operator, None, "ops", None, 60);
    claims.exp = unix_now();
    let message = expect_error(
        app.get("/v1/tenants/none", Some(&mint(&claims))).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(message, "token expired");
}

#[tokio::test]
async fn a_token_is_refused_before_its_nbf_and_accepted_from_it() {
    let app = TestApp::default(Backend::Sqlite).await;
    let mut claims = claims_for(Role::Operator, None, "ops", None, 600);
    claims.nbf = Some(unix_now() + 120);
    let message = expect_error(
        app.get("/v1/tenants/none", Some(&mint(&claims))).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(message.contains("not valid yet"), "{message}");
    claims.nbf = Some(unix_now());
    expect_error(
        app.get("/v1/tenants/none", Some(&mint(&claims))).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request_on_rest() {
    let app = TestApp::default(Backend::Sqlite).await;
    let valid = format!("Bearer {}", operator());
    let other = format!(
        "Bearer {}",
        common::token(Role::Operator, None, "someone-else")
    );
    let response = app
        .http
        .get(app.url("/v1/tenants/none"))
        .header("authorization", &valid)
        .header("authorization", &other)
        .send()
        .await
        .unwrap();
    let message = expect_error(response, 400, "bad_request").await;
    assert!(message.contains("Authorization"), "{message}");
}

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request_on_the_websocket_upgrade() {
    let app = TestApp::default(Backend::Sqlite).await;
    let (a, b) = (
        operator(),
        common::token(Role::Operator, None, "someone-else"),
    );
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {a}\r\nAuthorization: Bearer {b}\r\n\r\n",
        app.addr
    );
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(common::WAIT, async {
        while !String::from_utf8_lossy(&answer).contains("bad_request")
            && !String::from_utf8_lossy(&answer).contains("\r\n\r\n")
        {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        // The body follows the head; read it if it came apart.
        if !String::from_utf8_lossy(&answer).contains("bad_request")
            && let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the upgrade is answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("bad_request"), "{answer}");
}

const NEW: &str = "new-secret-0123456789-abcdefghijklmnop";
const OLD: &str = "old-secret-9876543210-zyxwvutsrqponmlk";

/// A server verifying with two named keys, `new` (which signs) and `old`.
async fn two_key_server() -> TestApp {
    TestApp::spawn(Backend::Sqlite, |c| {
        c.jwt_secret = None;
        c.jwt_secrets = Some(format!("new={NEW},old={OLD}").as_str().into());
    })
    .await
}

/// An operator token signed with `secret`, naming `kid` in its header when given.
fn operator_signed(secret: &str, kid: Option<&str>) -> String {
    let claims = claims_for(Role::Operator, None, "ops", None, 600);
    match kid {
        Some(kid) => Keys::named([(kid, secret.as_bytes())])
            .unwrap()
            .mint(&claims)
            .unwrap(),
        None => Keys::new(secret.as_bytes()).mint(&claims).unwrap(),
    }
}

#[tokio::test]
async fn a_server_with_two_keys_accepts_tokens_of_both_with_and_without_kid() {
    let app = two_key_server().await;
    for (secret, kid) in [
        (NEW, Some("new")),
        (OLD, Some("old")),
        (NEW, None),
        (OLD, None),
    ] {
        let token = operator_signed(secret, kid);
        // Past authentication: the tenant is looked up, and does not exist.
        expect_error(
            app.get("/v1/tenants/none", Some(&token)).await,
            404,
            "not_found",
        )
        .await;
    }
    // The WebSocket upgrade verifies the same way.
    let body = json!({ "slug": "two-keys", "name": "Two keys" });
    let operator = operator_signed(NEW, Some("new"));
    let tenant = expect_json(app.post("/v1/tenants", &operator, &body).await, 201).await;
    let tenant = tenant["id"].as_str().expect("tenant id");
    let viewer = claims_for(Role::Viewer, Some(tenant), "v-old", None, 600);
    let old = Keys::named([("old", OLD.as_bytes())]).unwrap();
    let mut client = app.ws(&old.mint(&viewer).unwrap()).await;
    client.ping("after-upgrade").await;
}

#[tokio::test]
async fn a_server_with_two_keys_refuses_an_unknown_kid_and_a_kid_whose_key_does_not_match() {
    let app = two_key_server().await;
    let cases = [
        // A kid no key has, though signed with a key the server knows.
        (
            operator_signed(OLD, Some("retired")),
            "token kid is unknown",
        ),
        // Signed with the old secret, naming the new key: only the new key is tried.
        (
            operator_signed(OLD, Some("new")),
            "token signature is invalid",
        ),
        (
            operator_signed(NEW, Some("old")),
            "token signature is invalid",
        ),
        // Without kid, signed with neither key.
        (
            operator_signed("some-other-secret-0123456789-abcdef", None),
            "token signature is invalid",
        ),
    ];
    for (token, expected) in cases {
        let message = expect_error(
            app.get("/v1/tenants/none", Some(&token)).await,
            401,
            "unauthorized",
        )
        .await;
        assert_eq!(message, expected);
        let refused = app.ws_raw(&token, None).await.err();
        assert_eq!(refused.map(|s| s.as_u16()), Some(401), "{expected}");
    }
}

/// Words that betray Rust internals in a message meant for API clients.
const INTERNALS: [&str; 12] = [
    "struct",
    "enum",
    "::",
    "NewProduct",
    "NewTenant",
    "NewStream",
    "i64",
    "u64",
    "u32",
    "String",
    "Option",
    "serde",
];

#[tokio::test]
async fn json_body_errors_name_the_field_in_plain_words() {
    let app = TestApp::default(Backend::Sqlite).await;
    let shop = app.shop("plain-errors").await;
    let cases: [(&str, &str, &str); 8] = [
        ("/v1/products", r#""a string""#, "body must be an object"),
        (
            "/v1/products",
            r#"{"title":"t","price_cents":1,"currency":"EUR"}"#,
            "sku: is required",
        ),
        (
            "/v1/products",
            r#"{"sku":"a","title":"t","price_cents":"12","currency":"EUR"}"#,
            "price_cents: must be a whole number, not a string",
        ),
        (
            "/v1/products",
            r#"{"sku":7,"title":"t","price_cents":1,"currency":"EUR"}"#,
            "sku: must be a string, not a number",
        ),
        (
            "/v1/products",
            r#"{"sku":"a","title":"t","price_cents":1.5,"currency":"EUR"}"#,
            "price_cents: must be a whole number",
        ),
        (
            "/v1/products",
            r#"{"sku":"a","title":"t","price_cents":99999999999999999999,"currency":"EUR"}"#,
            "price_cents: must be a whole number",
        ),
        ("/v1/products", r#"{"sku":"a","#, "body is not valid JSON"),
        (
            "/v1/products",
            r#"{"sku":"a","title":"t","price_cents":1,"currency":"EUR"} trailing"#,
            "body is not valid JSON",
        ),
    ];
    for (path, body, expected) in cases {
        let response = app
            .http
            .post(app.url(path))
            .bearer_auth(&shop.seller)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let message = expect_error(response, 400, "bad_request").await;
        assert!(message.contains(expected), "{body}: {message}");
        for word in INTERNALS {
            assert!(!message.contains(word), "{body}: {message} leaks {word}");
        }
    }
    let response = app
        .http
        .post(app.url("/v1/tenants"))
        .bearer_auth(operator())
        .json(&json!({ "slug": ["x"], "name": "N" }))
        .send()
        .await
        .unwrap();
    let message = expect_error(response, 400, "bad_request").await;
    assert_eq!(message, "slug: must be a string, not an array");
}
