//! Drops and claims over real HTTP and WebSocket, on SQLite and on Postgres: a rush never
//! oversells, reservations survive a kill -9, holds expire back into inventory, viewers get a
//! coalesced inventory and the sell-out once, limits and closed drops are refused.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Backend, EngineProcess, TestApp, WsClient, expect_error, expect_json, operator};
use liveshop_engine::auth::Role;
use liveshop_storage::testing::fresh;
use serde_json::{Value, json};

async fn claim(app: &TestApp, drop: &str, token: &str, key: &str) -> reqwest::Response {
    let body = json!({ "quantity": 1, "idempotency_key": key });
    app.post(&format!("/v1/drops/{drop}/claims"), token, &body)
        .await
}

async fn drop_counts(app: &TestApp, drop: &str, token: &str) -> Value {
    expect_json(
        app.get(&format!("/v1/drops/{drop}"), Some(token)).await,
        200,
    )
    .await
}

async fn drops_open_only_in_live_streams(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("drops-live").await;
    let stream = app.create_stream(&shop.seller, "not yet").await;
    let product = app.create_product(&shop.seller, "p").await;
    let body = json!({ "product": product["id"], "quantity": 5 });
    let r = app
        .post(&format!("/v1/streams/{stream}/drops"), &shop.seller, &body)
        .await;
    expect_error(r, 409, "invalid_state").await;
    let r = app
        .post(&format!("/v1/streams/{stream}/drops"), &shop.viewer, &body)
        .await;
    expect_error(r, 403, "forbidden").await;
    app.start_stream(&shop.seller, &stream).await;
    let bad = json!({ "product": product["id"], "quantity": 0 });
    let r = app
        .post(&format!("/v1/streams/{stream}/drops"), &shop.seller, &bad)
        .await;
    let message = expect_error(r, 400, "bad_request").await;
    assert!(message.starts_with("quantity"), "{message}");
    app.stop().await;
}

async fn rush_of_500_buyers_on_100_units_reserves_exactly_100(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("rush").await;
    let (_, drop) = app.open_drop(&shop, 100, json!({})).await;
    let answers = futures_util::future::join_all((0..500).map(|i| {
        let token = shop.token(Role::Viewer, &format!("buyer-{i}"));
        let app = &app;
        let drop = drop.clone();
        async move {
            let r = claim(app, &drop, &token, "k").await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("json");
            (status, body)
        }
    }))
    .await;
    let reserved = answers.iter().filter(|(s, _)| *s == 201).count();
    let sold_out = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["error"]["code"] == "sold_out")
        .count();
    assert_eq!((reserved, sold_out), (100, 400));
    let counts = drop_counts(&app, &drop, &shop.viewer).await;
    assert_eq!(counts["reserved"], 100);
    assert_eq!(counts["remaining"], 0);
    app.stop().await;
}

async fn the_same_key_returns_the_same_claim_and_limits_hold(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("idem").await;
    let (_, drop) = app.open_drop(&shop, 10, json!({})).await;
    let first = expect_json(claim(&app, &drop, &shop.viewer, "k1").await, 201).await;
    assert_eq!(first["status"], "reserved");
    let again = expect_json(claim(&app, &drop, &shop.viewer, "k1").await, 200).await;
    assert_eq!(again["id"], first["id"]);
    expect_error(
        claim(&app, &drop, &shop.viewer, "k2").await,
        409,
        "limit_exceeded",
    )
    .await;
    let mine = expect_json(app.get("/v1/claims", Some(&shop.viewer)).await, 200).await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(drop_counts(&app, &drop, &shop.viewer).await["reserved"], 1);
    app.stop().await;
}

async fn claims_after_the_stream_ends_get_drop_closed(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("ended").await;
    let (stream, drop) = app.open_drop(&shop, 10, json!({})).await;
    let mut watcher = app.ws(&shop.token(Role::Viewer, "watcher")).await;
    watcher.join(&stream, None).await;
    expect_json(
        app.post(
            &format!("/v1/streams/{stream}/end"),
            &shop.seller,
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    expect_error(
        claim(&app, &drop, &shop.viewer, "late").await,
        409,
        "drop_closed",
    )
    .await;
    let counts = drop_counts(&app, &drop, &shop.viewer).await;
    assert_eq!(counts["status"], "closed");
    assert_eq!(counts["closed_reason"], "stream_ended");
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let e = watcher.next_json().await;
        if e["type"] == "event" {
            kinds.push((e["kind"].clone(), e["data"].clone()));
        }
    }
    assert_eq!(kinds[0].0, "status");
    assert_eq!(kinds[1].0, "drop_closed");
    assert_eq!(kinds[1].1["reason"], "stream_ended");
    app.stop().await;
}

async fn expired_holds_return_to_inventory_and_tell_the_buyer(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("expiry").await;
    let (stream, drop) = app.open_drop(&shop, 1, json!({ "hold_seconds": 1 })).await;
    let mut buyer = app.ws(&shop.viewer).await;
    buyer.join(&stream, None).await;
    buyer
        .send_json(&json!({ "op": "claim", "drop": drop, "quantity": 1, "key": "k", "ref": "c1" }))
        .await;
    // The reply and the stream's `sold_out` event travel separate paths: accept either order.
    let (mut ok, mut sold_out) = (None, None);
    while ok.is_none() || sold_out.is_none() {
        let frame = buyer.next_json().await;
        if frame["type"] == "ok" {
            ok = Some(frame);
        } else if frame["type"] == "event" && frame["kind"] == "sold_out" {
            sold_out = Some(frame);
        }
    }
    let (ok, sold_out) = (ok.unwrap_or_default(), sold_out.unwrap_or_default());
    assert_eq!(ok["ref"], "c1");
    assert_eq!(ok["claim"]["status"], "reserved");
    assert_eq!(sold_out["data"]["drop"], drop.as_str());
    let update = buyer.expect_type("claim_update").await;
    assert_eq!(update["claim"]["status"], "expired");
    common::eventually("units return after the hold", || async {
        drop_counts(&app, &drop, &shop.viewer).await["remaining"] == 1
    })
    .await;
    let other = shop.token(Role::Viewer, "second-buyer");
    expect_json(claim(&app, &drop, &other, "k").await, 201).await;
    app.stop().await;
}

/// Frames that arrive within `window`, each with when it arrived.
async fn frames_within(ws: &mut WsClient, window: Duration) -> Vec<(Instant, Value)> {
    let end = Instant::now() + window;
    let mut frames = Vec::new();
    while let Ok(frame) = tokio::time::timeout_at(end.into(), ws.next_any()).await {
        frames.push((Instant::now(), frame));
    }
    frames
}

fn drop_events<'a>(frames: &'a [(Instant, Value)], kind: &str) -> Vec<&'a (Instant, Value)> {
    frames
        .iter()
        .filter(|(_, f)| f["type"] == "event" && f["kind"] == kind)
        .collect()
}

async fn viewers_get_one_coalesced_inventory_and_the_final_count_with_the_sell_out(
    backend: Backend,
) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("inventory").await;
    let (stream, drop) = app.open_drop(&shop, 4, json!({})).await;
    let mut viewer = app.ws(&shop.token(Role::Viewer, "watcher")).await;
    viewer.join(&stream, None).await;

    // One claim: its count reaches viewers once, no sooner than a coalescing period (100 ms)
    // after the change, which came after the request was sent.
    let buyer = shop.token(Role::Viewer, "first");
    let sent = Instant::now();
    expect_json(claim(&app, &drop, &buyer, "k").await, 201).await;
    let frames = frames_within(&mut viewer, Duration::from_millis(1000)).await;
    let inventory = drop_events(&frames, "inventory");
    assert_eq!(inventory.len(), 1, "{frames:?}");
    let (at, event) = inventory[0];
    assert_eq!(event["data"], json!({ "drop": drop, "remaining": 3 }));
    assert!(
        at.duration_since(sent) >= Duration::from_millis(100),
        "held back to coalesce: came {:?} after the claim was sent",
        at.duration_since(sent)
    );

    // Three claims at once sell it out: viewers get sold_out once and end with 0 remaining,
    // in at most two inventory events.
    let rush = ["a", "b", "c"].map(|who| {
        let token = shop.token(Role::Viewer, who);
        let (app, drop) = (&app, drop.as_str());
        async move { claim(app, drop, &token, "k").await.status().as_u16() }
    });
    assert_eq!(futures_util::future::join_all(rush).await, [201, 201, 201]);
    let frames = frames_within(&mut viewer, Duration::from_millis(1000)).await;
    assert_eq!(drop_events(&frames, "sold_out").len(), 1, "{frames:?}");
    let inventory = drop_events(&frames, "inventory");
    assert!((1..=2).contains(&inventory.len()), "{frames:?}");
    assert_eq!(
        inventory
            .last()
            .map(|(_, f)| f["data"]["remaining"].clone()),
        Some(json!(0))
    );
    for pair in inventory.windows(2) {
        assert!(
            pair[1].0.duration_since(pair[0].0) >= Duration::from_millis(50),
            "{frames:?}"
        );
    }
    app.stop().await;
}

async fn reservations_survive_a_kill_without_warning(backend: Backend) {
    let db = fresh(backend).await;
    let (engine, addr) = EngineProcess::start(db.url(), &[]);
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let post = |path: String, token: String, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("answered")
        }
    };
    let tenant = expect_json(
        post(
            "/v1/tenants".into(),
            operator(),
            json!({"slug":"kill","name":"K"}),
        )
        .await,
        201,
    )
    .await;
    let tenant = tenant["id"].as_str().expect("id").to_owned();
    let seller = common::token(Role::Seller, Some(&tenant), "seller");
    let stream = expect_json(
        post("/v1/streams".into(), seller.clone(), json!({"title":"t"})).await,
        201,
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    expect_json(
        post(
            format!("/v1/streams/{stream}/start"),
            seller.clone(),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let product = expect_json(
        post(
            "/v1/products".into(),
            seller.clone(),
            json!({"sku":"s","title":"t","price_cents":1,"currency":"EUR"}),
        )
        .await,
        201,
    )
    .await;
    let drop = expect_json(
        post(
            format!("/v1/streams/{stream}/drops"),
            seller.clone(),
            json!({"product": product["id"], "quantity": 100}),
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let answers = futures_util::future::join_all((0..300).map(|i| {
        let token = common::token(Role::Viewer, Some(&tenant), &format!("b{i}"));
        let fut = post(
            format!("/v1/drops/{drop}/claims"),
            token.clone(),
            json!({"quantity":1,"idempotency_key":"k"}),
        );
        async move {
            let r = fut.await;
            (
                token,
                r.status().as_u16(),
                r.json::<Value>().await.expect("json"),
            )
        }
    }))
    .await;
    let winners: Vec<(String, String)> = answers
        .iter()
        .filter(|(_, s, _)| *s == 201)
        .map(|(t, _, b)| (t.clone(), b["id"].as_str().expect("id").to_owned()))
        .collect();
    assert_eq!(winners.len(), 100);
    std::mem::drop(engine); // SIGKILL (the helper's Drop): no drain, no flush.

    let (_engine, addr) = EngineProcess::start(db.url(), &[]);
    let base = format!("http://{addr}");
    let viewer = common::token(Role::Viewer, Some(&tenant), "b0");
    let counts: Value = http
        .get(format!("{base}/v1/drops/{drop}"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(counts["reserved"], 100);
    assert_eq!(counts["remaining"], 0);
    let mut found = HashSet::new();
    for (token, id) in &winners {
        let mine: Value = http
            .get(format!("{base}/v1/claims"))
            .bearer_auth(token)
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("json");
        if mine["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|c| c["id"] == id.as_str())
        {
            found.insert(id.clone());
        }
    }
    assert_eq!(
        found.len(),
        100,
        "every answered reservation is still stored"
    );
    let late = common::token(Role::Viewer, Some(&tenant), "late");
    let r = http
        .post(format!("{base}/v1/drops/{drop}/claims"))
        .bearer_auth(&late)
        .json(&json!({"quantity":1,"idempotency_key":"k"}))
        .send()
        .await
        .expect("answered");
    expect_error(r, 409, "sold_out").await;
}

both! {
    drops_open_only_in_live_streams,
    rush_of_500_buyers_on_100_units_reserves_exactly_100,
    the_same_key_returns_the_same_claim_and_limits_hold,
    claims_after_the_stream_ends_get_drop_closed,
    expired_holds_return_to_inventory_and_tell_the_buyer,
    viewers_get_one_coalesced_inventory_and_the_final_count_with_the_sell_out,
    reservations_survive_a_kill_without_warning,
}
