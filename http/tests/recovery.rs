//! State that must survive a restart of the process or of one actor: holds expire and drops close
//! on time after a `kill -9` although nobody touches them, chat keeps being stored after the
//! persister fails, and a sell-out announced while its stream's actor restarts reaches viewers.

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Backend, EngineProcess, ProcessRest, TestApp, WsClient, expect_json, operator, token,
};
use liveshop_engine::Timestamp;
use liveshop_engine::auth::Role;
use liveshop_storage::testing::fresh;
use serde_json::{Value, json};

both! {
    holds_expire_on_time_after_a_kill_9_although_nobody_touches_the_drop,
    a_drop_with_an_end_time_closes_on_time_across_a_kill_9,
    chat_is_still_stored_after_the_persister_fails,
    a_sell_out_while_the_stream_restarts_reaches_its_viewers,
}

/// A tenant with a live stream and a product, made over HTTP; returns the tenant, seller and
/// stream and product ids.
async fn live_show(rest: &ProcessRest, slug: &str) -> (String, String, String, String) {
    let tenant = rest
        .post(
            "/v1/tenants",
            &operator(),
            json!({ "slug": slug, "name": "Recovery" }),
        )
        .await;
    let tenant = expect_json(tenant, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seller = token(Role::Seller, Some(&tenant), "seller-1");
    let product = rest
        .post(
            "/v1/products",
            &seller,
            json!({ "sku": "SKU-1", "title": "Sneaker", "price_cents": 9900, "currency": "EUR" }),
        )
        .await;
    let product = expect_json(product, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream = rest
        .post("/v1/streams", &seller, json!({ "title": "Restarts" }))
        .await;
    let stream = expect_json(stream, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect_json(
        rest.post(&format!("/v1/streams/{stream}/start"), &seller, json!({}))
            .await,
        200,
    )
    .await;
    (tenant, seller, stream, product)
}

/// Sleeps until the wall clock is past `at`.
async fn sleep_until(at: Timestamp) {
    let now = liveshop_actors::clock::now();
    if at > now {
        tokio::time::sleep(Duration::from_millis((at.millis() - now.millis()) as u64)).await;
    }
}

fn instant(value: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(value.as_str().expect("an RFC 3339 instant")).expect("an instant")
}

async fn holds_expire_on_time_after_a_kill_9_although_nobody_touches_the_drop(backend: Backend) {
    let db = fresh(backend).await;
    let (mut server, addr) = EngineProcess::start(db.url(), &[]);
    let rest = ProcessRest::new(addr);
    let (tenant, seller, stream, product) = live_show(&rest, "kill-holds").await;
    let drop = rest
        .post(
            &format!("/v1/streams/{stream}/drops"),
            &seller,
            json!({ "product": product, "quantity": 5, "per_user_limit": 2, "hold_seconds": 3 }),
        )
        .await;
    let drop = expect_json(drop, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let buyer = token(Role::Viewer, Some(&tenant), "buyer-1");
    let claim = rest
        .post(
            &format!("/v1/drops/{drop}/claims"),
            &buyer,
            json!({ "quantity": 2, "idempotency_key": "k1" }),
        )
        .await;
    let claim = expect_json(claim, 201).await;
    let expires_at = instant(&claim["expires_at"]);

    server.kill();
    std::mem::drop(server);
    let (server, addr) = EngineProcess::start(db.url(), &[]);
    let rest = ProcessRest::new(addr);
    // Nobody claims, joins or reads the drop through its actor: only storage is read below.
    sleep_until(expires_at.plus_millis(1_000)).await;
    let mine = rest.get_json("/v1/claims", &buyer).await;
    assert_eq!(mine["items"][0]["id"], claim["id"]);
    assert_eq!(mine["items"][0]["status"], "expired", "{mine}");
    let counts = rest.get_json(&format!("/v1/drops/{drop}"), &buyer).await;
    assert_eq!(counts["reserved"], 0, "{counts}");
    assert_eq!(counts["remaining"], 5, "{counts}");
    std::mem::drop(server);
    std::mem::drop(db);
}

async fn a_drop_with_an_end_time_closes_on_time_across_a_kill_9(backend: Backend) {
    let db = fresh(backend).await;
    let (mut server, addr) = EngineProcess::start(db.url(), &[]);
    let rest = ProcessRest::new(addr);
    let (tenant, seller, stream, product) = live_show(&rest, "kill-ends").await;
    let drop = rest
        .post(
            &format!("/v1/streams/{stream}/drops"),
            &seller,
            json!({ "product": product, "quantity": 5, "duration_seconds": 3 }),
        )
        .await;
    let drop = expect_json(drop, 201).await;
    let ends_at = instant(&drop["ends_at"]);
    let id = drop["id"].as_str().unwrap().to_owned();

    server.kill();
    std::mem::drop(server);
    let (server, addr) = EngineProcess::start(db.url(), &[]);
    let rest = ProcessRest::new(addr);
    sleep_until(ends_at.plus_millis(1_000)).await;
    let viewer = token(Role::Viewer, Some(&tenant), "viewer-1");
    let stored = rest.get_json(&format!("/v1/drops/{id}"), &viewer).await;
    assert_eq!(stored["status"], "closed", "{stored}");
    assert_eq!(stored["closed_reason"], "time", "{stored}");
    std::mem::drop(server);
    std::mem::drop(db);
}

async fn chat_is_still_stored_after_the_persister_fails(backend: Backend) {
    let db = fresh(backend).await;
    let faults = [("LIVESHOP_ENABLE_FAULT_INJECTION", Some("1"))];
    let (mut server, addr) = EngineProcess::start(db.url(), &faults);
    let rest = ProcessRest::new(addr);
    let (tenant, _, stream, _) = live_show(&rest, "persister-crash").await;
    let viewer = token(Role::Viewer, Some(&tenant), "viewer-1");
    let mut writer = common::client_of(addr, &viewer).await;
    writer.join(&stream, None).await;
    say(&mut writer, &stream, "before the failure").await;
    let crashed = rest
        .post("/v1/admin/persister/crash", &operator(), json!({}))
        .await;
    expect_json(crashed, 200).await;
    for text in ["after the failure", "and once more"] {
        say(&mut writer, &stream, text).await;
    }
    // A graceful stop writes what is queued; the next process reads chat from storage only.
    server.terminate();
    assert!(server.wait_exit().await.success());
    std::mem::drop(server);
    let (server, addr) = EngineProcess::start(db.url(), &[]);
    let mut reader = common::client_of(addr, &viewer).await;
    let joined = reader.join(&stream, None).await;
    let chat: Vec<&str> = joined["snapshot"]["chat"]
        .as_array()
        .expect("chat")
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        chat,
        ["before the failure", "after the failure", "and once more"]
    );
    std::mem::drop(server);
    std::mem::drop(db);
}

async fn a_sell_out_while_the_stream_restarts_reaches_its_viewers(backend: Backend) {
    let app = TestApp::spawn(backend, |c| c.fault_injection = true).await;
    let shop = app.shop("sold-out-restart").await;
    let (stream, drop) = app.open_drop(&shop, 1, json!({})).await;
    let mut viewer = app.ws(&shop.viewer).await;
    viewer.join(&stream, None).await;
    // The stream's actor fails and the last unit goes while its supervisor restores it.
    let (crash_path, claim_path) = (
        format!("/v1/admin/streams/{stream}/crash"),
        format!("/v1/drops/{drop}/claims"),
    );
    let (operator, buyer) = (operator(), shop.token(Role::Viewer, "buyer-1"));
    let (nothing, one) = (
        json!({}),
        json!({ "quantity": 1, "idempotency_key": "last" }),
    );
    let crash = app.post(&crash_path, &operator, &nothing);
    let claim = app.post(&claim_path, &buyer, &one);
    let (crashed, claimed) = tokio::join!(crash, claim);
    expect_json(crashed, 200).await;
    expect_json(claimed, 201).await;
    // The viewer learns it either from the `sold_out` event or from the snapshot it is given
    // when it joins the restored stream; never does it keep seeing the drop open.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, viewer.next_json())
            .await
            .expect("the viewer learns of the sell-out");
        if frame["type"] == "event" && frame["kind"] == "sold_out" {
            assert_eq!(frame["data"]["drop"], drop.as_str());
            break;
        }
        if frame["type"] == "joined" {
            let drops = frame["snapshot"]["drops"].as_array().expect("drops");
            let shown = drops
                .iter()
                .find(|d| d["id"] == drop.as_str())
                .expect("the drop is in the snapshot");
            if shown["status"] == "sold_out" {
                break;
            }
        }
    }
    app.stop().await;
}

/// Sends a chat message and waits for its `ok`.
async fn say(ws: &mut WsClient, stream: &str, text: &str) {
    ws.send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": text }))
        .await;
    loop {
        let frame = ws.next_json().await;
        if frame["type"] == "ok" && frame["ref"] == text {
            return;
        }
        assert_ne!(frame["type"], "error", "{frame}");
    }
}
