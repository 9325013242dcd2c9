//! Tokens never reach a log line: not from the WebSocket `?token=` query, not from a header,
//! not from a refused token, even at debug level.

#[macro_use]
mod common;

use common::{Backend, EngineProcess, SECRET, expect_json, operator, token};
use liveshop_engine::auth::Role;
use liveshop_storage::testing::fresh;
use serde_json::json;

both! {
    tokens_in_queries_and_headers_never_reach_the_log,
}

async fn tokens_in_queries_and_headers_never_reach_the_log(backend: Backend) {
    let db = fresh(backend).await;
    let (mut engine, addr) = EngineProcess::start(db.url(), &[("RUST_LOG", Some("debug"))]);
    let http = reqwest::Client::new();
    let op = operator();
    let tenant = expect_json(
        http.post(format!("http://{addr}/v1/tenants"))
            .bearer_auth(&op)
            .json(&json!({ "slug": "logs", "name": "Logs" }))
            .send()
            .await
            .expect("answered"),
        201,
    )
    .await;
    let viewer = token(Role::Viewer, tenant["id"].as_str(), "log-viewer");
    // A WebSocket upgrade with the token in the query string, then a normal close.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?token={viewer}"))
        .await
        .expect("upgrade with a query token");
    use futures_util::StreamExt;
    let welcome = ws.next().await.expect("welcome").expect("frame");
    assert!(welcome.to_text().expect("text").contains("welcome"));
    ws.close(None).await.expect("close");
    // A refused token in the query, and a token in the query of a REST call.
    let forged = format!("{viewer}x");
    let refused = http
        .get(format!("http://{addr}/v1/ws?token={forged}"))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 401);
    let _ = http
        .get(format!("http://{addr}/v1/streams?token={viewer}"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("answered");
    engine.terminate();
    engine.wait_for_line("drained");
    assert_eq!(engine.wait_exit().await.code(), Some(0));
    let log = engine.seen.join("\n");
    assert!(log.contains("request"), "debug logs were written: {log}");
    for secret in [viewer.as_str(), forged.as_str(), op.as_str(), SECRET] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    // The signature alone must not appear either (a truncated token is still a credential).
    let signature = viewer.rsplit('.').next().expect("jwt has a signature");
    assert!(
        !log.contains(signature),
        "a token signature reached the log"
    );
}
