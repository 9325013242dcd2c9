//! `GET /v1/openapi.json` over a real server (contract section 10): served without a token as
//! the document the code builds, and every operation it lists is routed: asked without a token,
//! each answers one of its documented statuses (401 for those that need a token), never the
//! router's `route not found` or 405.

mod common;

use common::{Backend, TestApp};
use serde_json::{Value, json};

#[tokio::test]
async fn the_document_is_served_without_a_token_and_every_operation_in_it_is_routed() {
    let app = TestApp::spawn(Backend::Sqlite, |c| c.fault_injection = true).await;
    let response = app.get("/v1/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let doc: Value = response.json().await.expect("the document is JSON");
    assert_eq!(doc, liveshop_http::openapi::build());
    assert_eq!(doc["openapi"], "3.1.0");

    let mut asked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let Ok(verb) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let concrete: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let mut request = app.http.request(verb, app.url(&concrete));
            if op.get("requestBody").is_some() {
                request = request.json(&json!({}));
            }
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let what = format!("{method} {path}: {status} {body}");
            assert!(
                !body.contains("route not found") && status != 405,
                "not routed: {what}"
            );
            if op["security"].is_array() {
                assert_eq!(status, 401, "needs a token: {what}");
            } else {
                assert!(
                    op["responses"].get(status.to_string()).is_some(),
                    "an undocumented status: {what}"
                );
            }
            asked += 1;
        }
    }
    assert!(asked >= 38, "{asked} operations");
    app.stop().await;
}
