//! Graceful drain of the real `liveshop` binary: SIGTERM closes every WebSocket with 1012
//! (reconnect and resume) and the process exits with status 0.

#[macro_use]
mod common;

use std::net::SocketAddr;

use common::{Backend, EngineProcess, Shop, WsClient, expect_json, operator, token};
use liveshop_engine::auth::Role;
use liveshop_storage::testing::fresh;
use serde_json::json;

both! {
    sigterm_closes_websockets_with_1012_and_exits_cleanly,
    chat_sent_before_sigterm_is_in_the_snapshot_after_restart,
}

/// A tenant with a live stream on the server at `addr`, made over HTTP.
async fn live_stream(addr: SocketAddr, slug: &str) -> (Shop, String) {
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let tenant = http
        .post(url("/v1/tenants"))
        .bearer_auth(operator())
        .json(&json!({ "slug": slug, "name": "Drain" }))
        .send()
        .await
        .expect("tenant request");
    let tenant = expect_json(tenant, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shop = Shop {
        seller: token(Role::Seller, Some(&tenant), "seller-1"),
        viewer: token(Role::Viewer, Some(&tenant), "viewer-1"),
        admin: token(Role::Admin, Some(&tenant), "admin-1"),
        tenant,
    };
    let stream = http
        .post(url("/v1/streams"))
        .bearer_auth(&shop.seller)
        .json(&json!({ "title": "Until SIGTERM" }))
        .send()
        .await
        .expect("stream request");
    let stream = expect_json(stream, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = http
        .post(url(&format!("/v1/streams/{stream}/start")))
        .bearer_auth(&shop.seller)
        .send()
        .await
        .expect("start request");
    expect_json(started, 200).await;
    (shop, stream)
}

async fn sigterm_closes_websockets_with_1012_and_exits_cleanly(backend: Backend) {
    let db = fresh(backend).await;
    let (mut server, addr) = EngineProcess::start(db.url(), &[]);
    let (shop, stream) = live_stream(addr, "drain").await;

    let mut clients: Vec<WsClient> = Vec::new();
    for _ in 0..2 {
        let mut joined = common::client_of(addr, &shop.viewer).await;
        joined.join(&stream, None).await;
        clients.push(joined);
    }
    // A connection that never joined a stream is drained too.
    clients.push(common::client_of(addr, &shop.viewer).await);

    server.terminate();
    for client in &mut clients {
        assert_eq!(client.expect_close_code().await, 1012);
    }
    let status = server.wait_exit().await;
    assert!(status.success(), "exit status {status:?}");
    drop(server);
    drop(db);
}

async fn chat_sent_before_sigterm_is_in_the_snapshot_after_restart(backend: Backend) {
    let db = fresh(backend).await;
    let (mut server, addr) = EngineProcess::start(db.url(), &[]);
    let (shop, stream) = live_stream(addr, "restart").await;
    let mut writer = common::client_of(addr, &shop.viewer).await;
    let epoch = writer.join(&stream, None).await["epoch"].as_u64().unwrap();
    let texts = ["before one", "before two", "before three"];
    for (i, text) in texts.iter().enumerate() {
        writer
            .send_json(
                &json!({ "op": "chat", "stream": stream, "text": text, "ref": i.to_string() }),
            )
            .await;
    }
    let mut oks = 0;
    while oks < texts.len() {
        if writer.next_json().await["type"] == "ok" {
            oks += 1;
        }
    }
    server.terminate();
    assert_eq!(writer.expect_close_code().await, 1012);
    assert!(server.wait_exit().await.success());
    drop(server);

    let (server, addr) = EngineProcess::start(db.url(), &[]);
    let mut reader = common::client_of(addr, &shop.viewer).await;
    // The old position cannot be resumed on a new process: a fresh snapshot, a new epoch.
    let joined = reader.join(&stream, Some((epoch, 4))).await;
    assert_eq!(joined["resumed"], false, "{joined}");
    assert!(joined["epoch"].as_u64().unwrap() > epoch, "{joined}");
    let snapshot = &joined["snapshot"];
    assert_eq!(snapshot["stream"]["status"], "live", "{joined}");
    let chat: Vec<&str> = snapshot["chat"]
        .as_array()
        .expect("chat")
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(chat, texts, "{joined}");
    drop(server);
    drop(db);
}
