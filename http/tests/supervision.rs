//! Supervision you can watch: crashed stream and drop actors come back from storage while their
//! viewers stay connected, fault injection is off by default, `/metrics` lists every contract
//! metric, and operators see the live actor tree.

#[macro_use]
mod common;

use common::{Backend, TestApp, WsClient, expect_error, expect_json, operator};
use liveshop_engine::auth::Role;
use serde_json::{Value, json};

async fn fault_app(backend: Backend) -> TestApp {
    TestApp::spawn(backend, |c| c.fault_injection = true).await
}

/// The value of a metric line `name{labels} value` in the exposition, or 0 when absent.
fn metric(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_text(app: &TestApp) -> String {
    app.get("/metrics", None).await.text().await.expect("text")
}

/// Reads frames until the next `chat` event; returns it.
async fn next_chat(ws: &mut WsClient) -> Value {
    loop {
        let f = ws.next_json().await;
        if f["type"] == "event" && f["kind"] == "chat" {
            return f;
        }
    }
}

async fn chat(ws: &mut WsClient, stream: &str, text: &str) {
    ws.send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": text }))
        .await;
}

async fn a_crashed_stream_actor_comes_back_and_viewers_stay_connected(backend: Backend) {
    let app = fault_app(backend).await;
    let shop = app.shop("crash-stream").await;
    let stream = app.live_stream(&shop).await;
    let mut a = app.ws(&shop.token(Role::Viewer, "a")).await;
    let mut b = app.ws(&shop.token(Role::Viewer, "b")).await;
    let joined_a = a.join(&stream, None).await;
    b.join(&stream, None).await;
    let before = metric(
        &metrics_text(&app).await,
        "liveshop_actor_restarts_total{kind=\"stream\"}",
    );

    let r = app
        .post(
            &format!("/v1/admin/streams/{stream}/crash"),
            &operator(),
            &json!({}),
        )
        .await;
    expect_json(r, 200).await;

    // Both viewers get a fresh snapshot under a new epoch, unasked.
    for ws in [&mut a, &mut b] {
        let rejoined = ws.expect_type("joined").await;
        assert_eq!(rejoined["resumed"], false);
        assert!(rejoined["snapshot"].is_object());
        assert_ne!(rejoined["epoch"], joined_a["epoch"]);
        assert!(rejoined.get("ref").is_none());
    }
    // Chat keeps flowing, in order, from seq 1 of the new epoch.
    chat(&mut a, &stream, "after-crash").await;
    for ws in [&mut a, &mut b] {
        let e = next_chat(ws).await;
        assert_eq!(e["data"]["text"], "after-crash");
        assert_eq!(e["seq"], 1);
    }
    let status = expect_json(
        app.get(&format!("/v1/streams/{stream}"), Some(&shop.viewer))
            .await,
        200,
    )
    .await;
    assert_eq!(status["status"], "live");
    assert_eq!(status["viewers"], 2);
    let after = metric(
        &metrics_text(&app).await,
        "liveshop_actor_restarts_total{kind=\"stream\"}",
    );
    assert!(
        after >= before + 1.0,
        "restarts went from {before} to {after}"
    );
    app.stop().await;
}

async fn a_drop_actor_crash_mid_rush_loses_and_oversells_nothing(backend: Backend) {
    let app = fault_app(backend).await;
    let shop = app.shop("crash-drop").await;
    let (_, drop) = app.open_drop(&shop, 100, json!({})).await;
    let claim = |i: usize| {
        let token = shop.token(Role::Viewer, &format!("buyer-{i}"));
        let (app, drop) = (&app, drop.clone());
        async move {
            let body = json!({ "quantity": 1, "idempotency_key": "k" });
            let r = app
                .post(&format!("/v1/drops/{drop}/claims"), &token, &body)
                .await;
            let status = r.status().as_u16();
            (i, status, r.json::<Value>().await.expect("json"))
        }
    };
    let rush = futures_util::future::join_all((0..300).map(claim));
    let crash = async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let r = app
            .post(
                &format!("/v1/admin/drops/{drop}/crash"),
                &operator(),
                &json!({}),
            )
            .await;
        expect_json(r, 200).await;
    };
    let (answers, ()) = tokio::join!(rush, crash);
    let mut reserved: Vec<(usize, String)> = Vec::new();
    let mut retry = Vec::new();
    for (i, status, body) in answers {
        match status {
            201 => reserved.push((i, body["id"].as_str().expect("id").to_owned())),
            409 => assert_eq!(body["error"]["code"], "sold_out", "{body}"),
            503 => retry.push(i),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    // Whoever was cut off by the crash retries with the same key.
    for (i, status, body) in futures_util::future::join_all(retry.into_iter().map(claim)).await {
        match status {
            200 | 201 => reserved.push((i, body["id"].as_str().expect("id").to_owned())),
            409 => assert_eq!(body["error"]["code"], "sold_out", "{body}"),
            other => panic!("unexpected answer on retry {other}: {body}"),
        }
    }
    reserved.sort();
    reserved.dedup();
    assert_eq!(reserved.len(), 100, "every unit reserved exactly once");
    let counts = expect_json(
        app.get(&format!("/v1/drops/{drop}"), Some(&shop.viewer))
            .await,
        200,
    )
    .await;
    assert_eq!(counts["reserved"], 100);
    assert_eq!(counts["remaining"], 0);
    for (i, id) in &reserved {
        let token = shop.token(Role::Viewer, &format!("buyer-{i}"));
        let mine = expect_json(app.get("/v1/claims", Some(&token)).await, 200).await;
        let ids: Vec<&str> = mine["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        assert_eq!(
            ids,
            vec![id.as_str()],
            "buyer-{i} holds exactly the claim they were told"
        );
    }
    let restarts = metric(
        &metrics_text(&app).await,
        "liveshop_actor_restarts_total{kind=\"drop\"}",
    );
    assert!(restarts >= 1.0);
    app.stop().await;
}

async fn a_crashed_session_actor_closes_only_its_connection_with_1011(backend: Backend) {
    let app = fault_app(backend).await;
    let shop = app.shop("crash-session").await;
    let stream = app.live_stream(&shop).await;
    let mut victim = app
        .ws_raw(&shop.token(Role::Viewer, "victim"), None)
        .await
        .expect("upgrade succeeds");
    let welcome = victim.expect_type("welcome").await;
    let mut bystander = app.ws(&shop.token(Role::Viewer, "bystander")).await;
    victim.join(&stream, None).await;
    bystander.join(&stream, None).await;
    let session = welcome["session"].as_str().expect("session id").to_owned();
    let r = app
        .post(
            &format!("/v1/admin/sessions/{session}/crash"),
            &operator(),
            &json!({}),
        )
        .await;
    expect_json(r, 200).await;
    assert_eq!(victim.expect_close_code().await, 1011);
    bystander.ping("still-here").await;
    chat(&mut bystander, &stream, "unharmed").await;
    assert_eq!(next_chat(&mut bystander).await["data"]["text"], "unharmed");
    app.stop().await;
}

async fn fault_injection_is_not_found_unless_enabled(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("no-faults").await;
    let stream = app.live_stream(&shop).await;
    let r = app
        .post(
            &format!("/v1/admin/streams/{stream}/crash"),
            &operator(),
            &json!({}),
        )
        .await;
    expect_error(r, 404, "not_found").await;
    app.stop().await;
}

async fn metrics_list_every_contract_name(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("metrics").await;
    let stream = app.live_stream(&shop).await;
    let mut ws = app.ws(&shop.viewer).await;
    ws.join(&stream, None).await;
    chat(&mut ws, &stream, "hello").await;
    next_chat(&mut ws).await;
    let text = metrics_text(&app).await;
    for name in [
        "http_requests_total{",
        "http_request_duration_seconds_bucket{",
        "websocket_connections_total",
        "websocket_connections_active",
        "liveshop_actors{kind=\"stream\"}",
        "liveshop_actor_restarts_total{kind=\"stream\"}",
        "liveshop_actor_mailbox_depth{kind=\"stream\"}",
        "liveshop_events_delivered_total",
        "liveshop_claims_total{result=\"reserved\"}",
        "liveshop_actor_message_duration_seconds_bucket{kind=\"stream\"",
        "liveshop_fanout_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    assert!(metric(&text, "websocket_connections_total") >= 1.0);
    assert!(metric(&text, "websocket_connections_active") >= 1.0);
    assert!(metric(&text, "liveshop_actors{kind=\"stream\"}") >= 1.0);
    assert!(metric(&text, "liveshop_actors{kind=\"session\"}") >= 1.0);
    assert!(metric(&text, "liveshop_events_delivered_total") >= 1.0);
    assert!(metric(&text, "liveshop_actor_mailbox_depth{kind=\"stream\"}") >= 0.0);
    ws.close().await;
    common::eventually("the closed connection is counted", || async {
        metric(
            &metrics_text(&app).await,
            "websocket_disconnects_total{reason=\"client_closed\"}",
        ) >= 1.0
    })
    .await;
    app.stop().await;
}

async fn operators_see_the_live_actor_tree(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("tree").await;
    let stream = app.live_stream(&shop).await;
    let mut ws = app.ws(&shop.viewer).await;
    ws.join(&stream, None).await;
    let tree = expect_json(app.get("/v1/admin/actors", Some(&operator())).await, 200).await;
    let items = tree["items"].as_array().expect("items");
    let row = items
        .iter()
        .find(|r| r["kind"] == "stream" && r["id"] == stream.as_str())
        .expect("the stream actor is listed");
    assert_eq!(row["parent"], format!("tenant:{}", shop.tenant));
    assert_eq!(row["restarts"], 0);
    assert!(row["mailbox_depth"].as_i64().is_some());
    assert!(row["uptime_seconds"].as_f64().is_some());
    assert!(items.iter().any(|r| r["kind"] == "session"));
    assert!(
        items
            .iter()
            .any(|r| r["kind"] == "tenant" && r["id"] == shop.tenant.as_str())
    );
    expect_error(
        app.get("/v1/admin/actors", Some(&shop.admin)).await,
        403,
        "forbidden",
    )
    .await;
    app.stop().await;
}

both! {
    a_crashed_stream_actor_comes_back_and_viewers_stay_connected,
    a_drop_actor_crash_mid_rush_loses_and_oversells_nothing,
    a_crashed_session_actor_closes_only_its_connection_with_1011,
    fault_injection_is_not_found_unless_enabled,
    metrics_list_every_contract_name,
    operators_see_the_live_actor_tree,
}
