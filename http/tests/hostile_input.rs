//! Hostile and careless input, over real HTTP and WebSocket on SQLite and Postgres: text that one
//! database would refuse or that would mislead other viewers is refused at the edge with a 400
//! naming the field, identically on both databases, and never costs another user anything.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, TestApp, WsClient, expect_error, expect_json, mint, operator};
use liveshop_engine::auth::Role;
use liveshop_http::auth::claims_for;
use serde_json::{Value, json};

both! {
    a_nul_idempotency_key_is_refused_and_honest_buyers_of_the_batch_are_served,
    a_token_with_a_nul_name_is_refused_and_chat_of_every_tenant_is_stored,
    bad_product_fields_are_refused_naming_the_field,
    bad_stream_fields_are_refused_naming_the_field,
    accepted_text_comes_back_byte_for_byte,
    chat_that_would_mislead_other_viewers_is_refused_over_the_websocket,
}

async fn claim(app: &TestApp, token: &str, drop: &str, key: &str) -> reqwest::Response {
    let body = json!({ "quantity": 1, "idempotency_key": key });
    app.post(&format!("/v1/drops/{drop}/claims"), token, &body)
        .await
}

async fn a_nul_idempotency_key_is_refused_and_honest_buyers_of_the_batch_are_served(
    backend: Backend,
) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("nul-key").await;
    let (_, drop) = app.open_drop(&shop, 100, json!({})).await;

    // Honest buyers and an attacker with keys holding NUL race for the same group commits.
    let honest = (0..30).map(|i| {
        let token = shop.token(Role::Viewer, &format!("buyer-{i}"));
        let (app, drop) = (&app, drop.clone());
        async move {
            claim(app, &token, &drop, &format!("key-{i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let hostile = (0..30).map(|i| {
        let token = shop.token(Role::Viewer, &format!("mallory-{i}"));
        let (app, drop) = (&app, drop.clone());
        async move {
            expect_error(
                claim(app, &token, &drop, &format!("k\0{i}")).await,
                400,
                "bad_request",
            )
            .await
        }
    });
    let (honest, hostile) = tokio::join!(
        futures_util::future::join_all(honest),
        futures_util::future::join_all(hostile)
    );
    assert!(honest.iter().all(|s| *s == 201), "{honest:?}");
    for message in hostile {
        assert!(message.starts_with("idempotency_key:"), "{message}");
    }

    // The same over the WebSocket: an error frame naming the field, the connection stays usable.
    let mut ws = app.ws(&shop.token(Role::Viewer, "mallory-ws")).await;
    ws.send_json(
        &json!({ "op": "claim", "drop": drop, "quantity": 1, "key": "a\u{0}b", "ref": "c1" }),
    )
    .await;
    let frame = ws.expect_error("bad_request", Some("c1")).await;
    assert!(
        frame["message"].as_str().unwrap().starts_with("key:"),
        "{frame}"
    );
    ws.ping("still-here").await;

    let stored = expect_json(
        app.get(&format!("/v1/drops/{drop}"), Some(&shop.viewer))
            .await,
        200,
    )
    .await;
    assert_eq!(stored["reserved"], 30, "{stored}");
    assert_eq!(stored["remaining"], 70, "{stored}");
    app.stop().await;
}

/// Reads frames until the `joined` without `ref` that a restart sends.
async fn rejoined(ws: &mut WsClient) -> Value {
    loop {
        let f = ws.next_json().await;
        if f["type"] == "joined" && f.get("ref").is_none() {
            return f;
        }
    }
}

fn chat_texts(joined: &Value) -> Vec<String> {
    joined["snapshot"]["chat"]
        .as_array()
        .expect("snapshot chat")
        .iter()
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn a_token_with_a_nul_name_is_refused_and_chat_of_every_tenant_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend, |c| c.fault_injection = true).await;
    let shops = [app.shop("nul-name-a").await, app.shop("nul-name-b").await];

    for name in ["Eve\0", "\u{202E}evE", "\u{200B}\u{200B}", "Eve\u{7}"] {
        let token = mint(&claims_for(
            Role::Viewer,
            Some(&shops[0].tenant),
            "eve",
            Some(name),
            600,
        ));
        let message = expect_error(
            app.get("/v1/claims", Some(&token)).await,
            401,
            "unauthorized",
        )
        .await;
        assert!(message.contains("name"), "{name:?}: {message}");
        let refused = app.ws_raw(&token, None).await.err();
        assert_eq!(refused.map(|s| s.as_u16()), Some(401), "{name:?}");
    }

    for sub in ["eve\0", "\u{202E}eve", "\u{200B}"] {
        let token = mint(&claims_for(
            Role::Viewer,
            Some(&shops[0].tenant),
            sub,
            None,
            600,
        ));
        let message = expect_error(
            app.get("/v1/claims", Some(&token)).await,
            401,
            "unauthorized",
        )
        .await;
        assert!(message.contains("sub"), "{sub:?}: {message}");
    }

    // Every tenant's chat is still written: after a stream restart, the snapshot (read back from
    // storage) holds it.
    for (i, shop) in shops.iter().enumerate() {
        let stream = app.live_stream(shop).await;
        let mut ws = app
            .ws(&shop.token(Role::Viewer, &format!("honest-{i}")))
            .await;
        ws.join(&stream, None).await;
        let text = format!("hello from shop {i}");
        ws.send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": "chat" }))
            .await;
        let ok = loop {
            let f = ws.next_json().await;
            if f["ref"] == "chat" {
                break f;
            }
        };
        assert_eq!(ok["type"], "ok", "{ok}");
        let mut stored = Vec::new();
        for _ in 0..20 {
            // The persister writes every 100 ms; a restart reads the stream's chat from storage.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = app
                .post(
                    &format!("/v1/admin/streams/{stream}/crash"),
                    &operator(),
                    &json!({}),
                )
                .await;
            expect_json(r, 200).await;
            stored = chat_texts(&rejoined(&mut ws).await);
            if stored.contains(&text) {
                break;
            }
        }
        assert_eq!(stored, [text], "shop {i}");
    }
    app.stop().await;
}

async fn bad_product_fields_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("bad-products").await;
    let good = json!({ "sku": "TEE-1", "title": "Tee", "price_cents": 100, "currency": "EUR" });
    let cases: Vec<(&str, Value)> = vec![
        ("image_url", json!("https://")),
        ("image_url", json!("https://cdn.example/a\".png")),
        ("image_url", json!("https://cdn.example/<img>")),
        ("image_url", json!("https://cdn.example/a b.png")),
        ("image_url", json!("https://cdn.example/a\n.png")),
        ("image_url", json!("https://cdn.example/a\u{0}.png")),
        ("image_url", json!("javascript:alert(1)")),
        ("image_url", json!("http://cdn.example/a.png")),
        ("title", json!("\u{200B}\u{200C}\u{2060}")),
        ("title", json!("Tee \u{202E}gnp.exe")),
        ("title", json!("Tee\u{0}")),
        ("sku", json!("A\u{2067}B")),
        ("currency", json!("ABC")),
        ("currency", json!("QQQ")),
        ("currency", json!("XXX")),
    ];
    for (field, value) in cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let message = expect_error(
            app.post("/v1/products", &shop.seller, &body).await,
            400,
            "bad_request",
        )
        .await;
        assert!(
            message.starts_with(&format!("{field}:")),
            "{field}={value}: {message}"
        );
    }
    let listed = expect_json(app.get("/v1/products", Some(&shop.seller)).await, 200).await;
    assert_eq!(listed["items"], json!([]), "nothing refused was stored");
    app.stop().await;
}

async fn bad_stream_fields_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("bad-streams").await;
    for (field, value) in [
        ("scheduled_at", json!("9999-12-31T23:30:00-01:00")),
        ("scheduled_at", json!("+10000-01-01T00:00:00Z")),
        ("scheduled_at", json!("0000-01-01T00:30:00+01:00")),
        ("title", json!("\u{FEFF}")),
        ("title", json!("Show \u{2066}x")),
    ] {
        let mut body = json!({ "title": "Show", "scheduled_at": "2027-01-01T10:00:00Z" });
        body[field] = value.clone();
        let message = expect_error(
            app.post("/v1/streams", &shop.seller, &body).await,
            400,
            "bad_request",
        )
        .await;
        assert!(
            message.starts_with(&format!("{field}:")),
            "{field}={value}: {message}"
        );
    }
    let last = json!({ "title": "Last", "scheduled_at": "9999-12-31T23:59:59.999Z" });
    let stream = expect_json(app.post("/v1/streams", &shop.seller, &last).await, 201).await;
    assert_eq!(stream["scheduled_at"], "9999-12-31T23:59:59.999Z");
    app.stop().await;
}

async fn accepted_text_comes_back_byte_for_byte(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("round-trip").await;
    let title = "Café ☕ שלום 👩‍👩‍👧 e\u{301}";
    let body = json!({ "sku": "ÉTÉ-1", "title": title, "price_cents": 100, "currency": "JPY",
        "image_url": "https://cdn.example/p/tee%20blue.png?w=2&h=3#top" });
    let created = expect_json(app.post("/v1/products", &shop.seller, &body).await, 201).await;
    let listed = expect_json(app.get("/v1/products", Some(&shop.seller)).await, 200).await;
    assert_eq!(listed["items"][0], created);
    for field in ["sku", "title", "currency", "image_url"] {
        assert_eq!(created[field], body[field], "{field}");
    }
    app.stop().await;
}

async fn chat_that_would_mislead_other_viewers_is_refused_over_the_websocket(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("bad-chat").await;
    let stream = app.live_stream(&shop).await;
    let mut ws = app.ws(&shop.token(Role::Viewer, "mallory")).await;
    ws.join(&stream, None).await;
    for (i, text) in [
        "hi\u{0}",
        "price \u{202E}0001",
        "\u{200B}\u{2060}\u{FEFF}",
        "a\rb",
    ]
    .into_iter()
    .enumerate()
    {
        let r#ref = format!("bad-{i}");
        ws.send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": r#ref }))
            .await;
        let frame = ws.expect_error("bad_request", Some(&r#ref)).await;
        assert!(
            frame["message"].as_str().unwrap().starts_with("text:"),
            "{text:?}: {frame}"
        );
    }
    // A line break is allowed, and the message goes out as sent.
    ws.send_json(&json!({ "op": "chat", "stream": stream, "text": "two\nlines", "ref": "ok" }))
        .await;
    let event = loop {
        let f = ws.next_json().await;
        if f["type"] == "event" && f["kind"] == "chat" {
            break f;
        }
    };
    assert_eq!(event["data"]["text"], "two\nlines");
    app.stop().await;
}
