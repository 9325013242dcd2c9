//! Chat moderation of contract section 8 over real HTTP and WebSocket, on SQLite and Postgres:
//! deletes with `chat_deleted`, mutes and their lapse, bans with 1008 and the refusals, slow mode
//! that spares staff, blocked words refused and never broadcast, the log, 403 for viewers, and a
//! ban that holds across a restart.

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Backend, EngineProcess, Shop, TestApp, WsClient, connect, eventually, expect_error,
    expect_json, operator, token,
};
use liveshop_engine::auth::Role;
use liveshop_storage::testing::fresh;
use serde_json::{Value, json};

both! {
    a_deleted_message_is_announced_and_later_snapshots_and_replays_leave_it_out,
    a_muted_viewer_is_refused_until_the_mute_lapses,
    a_ban_closes_the_users_connections_with_1008_and_refuses_them_until_it_lapses,
    slow_mode_slows_viewers_and_never_staff,
    a_message_with_a_blocked_word_is_refused_and_never_broadcast,
    viewers_get_403_and_other_tenants_404_on_every_moderation_endpoint,
    a_seller_bans_only_viewers_of_its_own_streams,
    the_moderation_log_lists_every_action_newest_first,
    a_ban_and_a_mute_hold_across_a_restart,
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("the request is answered")
}

async fn delete(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    send(app, reqwest::Method::DELETE, path, token, None).await
}

async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    send(app, reqwest::Method::PATCH, path, token, Some(body)).await
}

/// A live stream and a joined viewer connection of `sub`.
async fn joined(app: &TestApp, shop: &Shop, stream: &str, sub: &str) -> WsClient {
    let mut ws = app.ws(&shop.token(Role::Viewer, sub)).await;
    ws.join(stream, None).await;
    ws
}

/// Sends a chat and returns its answer frame (`ok` or `error`).
async fn say(ws: &mut WsClient, stream: &str, text: &str, r#ref: &str) -> Value {
    ws.send_json(&json!({"op": "chat", "stream": stream, "text": text, "ref": r#ref}))
        .await;
    loop {
        let frame = ws.next_json().await;
        if frame["ref"] == r#ref {
            return frame;
        }
    }
}

/// The next ordered event of `kind`, skipping others.
async fn next_event(ws: &mut WsClient, kind: &str) -> Value {
    loop {
        let frame = ws.next_json().await;
        if frame["type"] == "event" && frame["kind"] == kind {
            return frame;
        }
    }
}

fn moderator(shop: &Shop) -> String {
    shop.token(Role::Moderator, "mod-1")
}

async fn a_deleted_message_is_announced_and_later_snapshots_and_replays_leave_it_out(
    backend: Backend,
) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("del").await;
    let stream = app.live_stream(&shop).await;
    let mut watcher = joined(&app, &shop, &stream, "watcher").await;
    let mut resumer = app.ws(&shop.token(Role::Viewer, "resumer")).await;
    let epoch = resumer.join(&stream, None).await["epoch"].as_u64().unwrap();
    let mut author = joined(&app, &shop, &stream, "author").await;
    let first = say(&mut author, &stream, "first words", "c1").await;
    assert_eq!(first["type"], "ok", "{first}");
    let seen = next_event(&mut resumer, "chat").await;
    let since = seen["seq"].as_u64().unwrap();
    resumer.close().await;

    let bad = say(
        &mut author,
        &stream,
        "buy fake watches at example dot com",
        "c2",
    )
    .await;
    assert_eq!(bad["type"], "ok", "{bad}");
    let good = say(&mut author, &stream, "nice show", "c3").await;
    next_event(&mut watcher, "chat").await;
    let bad_event = next_event(&mut watcher, "chat").await;
    assert_eq!(bad_event["seq"], bad["seq"], "{bad_event}");
    let bad_id = bad_event["data"]["id"].as_str().unwrap().to_owned();
    next_event(&mut watcher, "chat").await;

    let path = format!("/v1/streams/{stream}/chat/{bad_id}");
    assert_eq!(delete(&app, &path, &moderator(&shop)).await.status(), 204);
    let deleted = next_event(&mut watcher, "chat_deleted").await;
    assert_eq!(deleted["data"], json!({"id": bad_id}), "{deleted}");
    assert_eq!(
        deleted["seq"].as_u64().unwrap(),
        good["seq"].as_u64().unwrap() + 1,
        "chat_deleted is ordered after what came before: {deleted}"
    );

    // A new joiner's snapshot leaves it out; the rest of the chat is there.
    let mut late = app.ws(&shop.token(Role::Viewer, "late")).await;
    let snapshot = late.join(&stream, None).await;
    let chat = snapshot["snapshot"]["chat"].as_array().unwrap();
    assert!(
        chat.iter().all(|m| m["id"] != bad_id.as_str()),
        "{snapshot}"
    );
    assert!(chat.iter().any(|m| m["text"] == "nice show"), "{snapshot}");
    assert!(!snapshot.to_string().contains("fake watches"), "{snapshot}");

    // A viewer who missed all of it resumes: gapless, and the deleted text is not replayed.
    let mut back = app.ws(&shop.token(Role::Viewer, "resumer")).await;
    let resumed = back.join(&stream, Some((epoch, since))).await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    let mut replay = Vec::new();
    let head = resumed["seq"].as_u64().unwrap();
    while replay.len() < (head - since) as usize {
        let frame = back.next_json().await;
        if frame["type"] == "event" {
            replay.push(frame);
        }
    }
    let seqs: Vec<u64> = replay.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, ((since + 1)..=head).collect::<Vec<_>>());
    assert!(
        !Value::from(replay.clone())
            .to_string()
            .contains("fake watches"),
        "{replay:?}"
    );
    assert_eq!(
        replay[0]["kind"], "chat_deleted",
        "the deleted chat's seq: {replay:?}"
    );
    assert_eq!(replay.last().unwrap()["kind"], "chat_deleted");

    // Deleting again is done; a message nobody has is not found.
    assert_eq!(delete(&app, &path, &shop.admin).await.status(), 204);
    let unknown = format!("/v1/streams/{stream}/chat/msg_nope");
    expect_error(delete(&app, &unknown, &shop.seller).await, 404, "not_found").await;
    app.stop().await;
}

async fn a_muted_viewer_is_refused_until_the_mute_lapses(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("mute").await;
    let stream = app.live_stream(&shop).await;
    let mut noisy = joined(&app, &shop, &stream, "noisy").await;
    let mut calm = joined(&app, &shop, &stream, "calm").await;
    let body = json!({"user": "noisy", "duration_seconds": 2, "reason": "spam"});
    let mute = expect_json(
        app.post(
            &format!("/v1/streams/{stream}/mutes"),
            &moderator(&shop),
            &body,
        )
        .await,
        201,
    )
    .await;
    assert_eq!(mute["user"], "noisy", "{mute}");
    assert_eq!(mute["stream"], stream.as_str(), "{mute}");
    assert!(mute["until"].is_string(), "{mute}");

    let refused = say(&mut noisy, &stream, "hello?", "m1").await;
    assert_eq!(refused["code"], "muted", "{refused}");
    let wait = refused["retry_after_ms"].as_u64().unwrap();
    assert!((1..=2_000).contains(&wait), "{refused}");
    let other = say(&mut calm, &stream, "still here", "m2").await;
    assert_eq!(other["type"], "ok", "{other}");

    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    let back = say(&mut noisy, &stream, "I am back", "m3").await;
    assert_eq!(back["type"], "ok", "{back}");

    // Bad mutes name the field; the stream's seller cannot be muted.
    for (body, field) in [
        (
            json!({"user": "noisy", "duration_seconds": 0}),
            "duration_seconds",
        ),
        (json!({"user": "", "duration_seconds": 5}), "user"),
        (json!({"user": "seller-1", "duration_seconds": 5}), "user"),
    ] {
        let message = expect_error(
            app.post(
                &format!("/v1/streams/{stream}/mutes"),
                &moderator(&shop),
                &body,
            )
            .await,
            400,
            "bad_request",
        )
        .await;
        assert!(message.starts_with(field), "{message}");
    }
    app.stop().await;
}

async fn a_ban_closes_the_users_connections_with_1008_and_refuses_them_until_it_lapses(
    backend: Backend,
) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("ban").await;
    let stream = app.live_stream(&shop).await;
    let troll = shop.token(Role::Viewer, "troll");
    let mut first = joined(&app, &shop, &stream, "troll").await;
    let mut second = app.ws(&troll).await;
    let mut bystander = joined(&app, &shop, &stream, "bystander").await;
    let body = json!({"user": "troll", "reason": "abuse", "duration_seconds": 3});
    let ban = expect_json(
        app.post(
            &format!("/v1/tenants/{}/bans", shop.tenant),
            &moderator(&shop),
            &body,
        )
        .await,
        201,
    )
    .await;
    assert_eq!(ban["user"], "troll", "{ban}");
    assert_eq!(ban["reason"], "abuse", "{ban}");
    assert_eq!(ban["by"], "mod-1", "{ban}");

    // Every connection of the user closes with 1008, joined or not.
    assert_eq!(first.expect_close_code().await, 1008);
    assert_eq!(second.expect_close_code().await, 1008);
    // New upgrades and REST calls are refused before any work.
    assert_eq!(
        app.ws_raw(&troll, None).await.err().map(|s| s.as_u16()),
        Some(403)
    );
    let message = expect_error(app.get("/v1/streams", Some(&troll)).await, 403, "banned").await;
    assert!(message.contains("until"), "{message}");
    // Nobody else is touched.
    let ok = say(&mut bystander, &stream, "what happened", "b1").await;
    assert_eq!(ok["type"], "ok", "{ok}");
    let bans = expect_json(
        app.get(
            &format!("/v1/tenants/{}/bans", shop.tenant),
            Some(&shop.admin),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(bans["items"][0]["user"], "troll", "{bans}");

    // Once it lapses, the user is back.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    expect_json(app.get("/v1/streams", Some(&troll)).await, 200).await;
    let mut again = joined(&app, &shop, &stream, "troll").await;
    assert_eq!(say(&mut again, &stream, "sorry", "t1").await["type"], "ok");

    // A ban for good, lifted by an admin.
    let forever = json!({"user": "troll"});
    let ban = expect_json(
        app.post(
            &format!("/v1/tenants/{}/bans", shop.tenant),
            &shop.admin,
            &forever,
        )
        .await,
        201,
    )
    .await;
    assert!(ban["until"].is_null(), "{ban}");
    assert_eq!(again.expect_close_code().await, 1008);
    expect_error(app.get("/v1/streams", Some(&troll)).await, 403, "banned").await;
    let lift = format!("/v1/tenants/{}/bans/troll", shop.tenant);
    assert_eq!(delete(&app, &lift, &shop.admin).await.status(), 204);
    expect_json(app.get("/v1/streams", Some(&troll)).await, 200).await;
    expect_error(delete(&app, &lift, &shop.admin).await, 404, "not_found").await;
    // The same user in another tenant was never banned.
    let other = app.shop("ban-other").await;
    expect_json(
        app.get("/v1/streams", Some(&other.token(Role::Viewer, "troll")))
            .await,
        200,
    )
    .await;
    app.stop().await;
}

async fn slow_mode_slows_viewers_and_never_staff(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("slow").await;
    let stream = app.live_stream(&shop).await;
    let settings = expect_json(
        patch(
            &app,
            &format!("/v1/streams/{stream}/chat-settings"),
            &moderator(&shop),
            json!({"slow_mode_seconds": 30}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        settings,
        json!({"slow_mode_seconds": 30, "blocked_words": []})
    );
    let mut viewer = joined(&app, &shop, &stream, "fan").await;
    assert_eq!(say(&mut viewer, &stream, "one", "s1").await["type"], "ok");
    let slowed = say(&mut viewer, &stream, "two", "s2").await;
    assert_eq!(slowed["code"], "rate_limited", "{slowed}");
    let wait = slowed["retry_after_ms"].as_u64().unwrap();
    assert!((25_000..=30_000).contains(&wait), "{slowed}");
    for (role, sub) in [
        (Role::Moderator, "mod-1"),
        (Role::Seller, "seller-1"),
        (Role::Admin, "admin-1"),
    ] {
        let mut staff = app.ws(&shop.token(role, sub)).await;
        staff.join(&stream, None).await;
        for n in 0..3 {
            let answer = say(&mut staff, &stream, "staff speaking", &format!("{sub}-{n}")).await;
            assert_eq!(answer["type"], "ok", "{sub}: {answer}");
        }
    }
    // Off again: the viewer may speak at once.
    patch(
        &app,
        &format!("/v1/streams/{stream}/chat-settings"),
        &shop.seller,
        json!({"slow_mode_seconds": 0}),
    )
    .await;
    assert_eq!(say(&mut viewer, &stream, "three", "s3").await["type"], "ok");
    app.stop().await;
}

async fn a_message_with_a_blocked_word_is_refused_and_never_broadcast(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("words").await;
    let stream = app.live_stream(&shop).await;
    let path = format!("/v1/streams/{stream}/chat-settings");
    let words = json!({"blocked_words": ["scam", "詐欺", "ｆｒｅｅ money"]});
    let settings = expect_json(patch(&app, &path, &moderator(&shop), words).await, 200).await;
    assert_eq!(
        settings["blocked_words"],
        json!(["scam", "詐欺", "ｆｒｅｅ money"])
    );
    assert_eq!(
        expect_json(app.get(&path, Some(&shop.seller)).await, 200).await,
        settings
    );

    let mut listener = joined(&app, &shop, &stream, "listener").await;
    let mut writer = joined(&app, &shop, &stream, "writer").await;
    for (n, text) in ["total SCAM!", "これは詐欺です", "get FREE money now"]
        .iter()
        .enumerate()
    {
        let answer = say(&mut writer, &stream, text, &format!("w{n}")).await;
        assert_eq!(answer["code"], "blocked", "{text}: {answer}");
    }
    let fine = say(&mut writer, &stream, "scampi for dinner", "w9").await;
    assert_eq!(fine["type"], "ok", "{fine}");
    let heard = next_event(&mut listener, "chat").await;
    assert_eq!(
        heard["data"]["text"], "scampi for dinner",
        "only the clean message: {heard}"
    );
    assert_eq!(heard["seq"], fine["seq"]);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("liveshop_chat_moderated_total{reason=\"blocked\"} 3"),
        "{metrics}"
    );

    // Bad settings are refused naming the field, and change nothing.
    let message = expect_error(
        patch(
            &app,
            &path,
            &moderator(&shop),
            json!({"blocked_words": ["ok", "   "]}),
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.starts_with("blocked_words[1]"), "{message}");
    expect_error(
        patch(
            &app,
            &path,
            &moderator(&shop),
            json!({"slow_mode_seconds": 99_999}),
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    expect_error(
        patch(&app, &path, &moderator(&shop), json!({"slow_mode": 5})).await,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(
        expect_json(app.get(&path, Some(&shop.admin)).await, 200).await,
        settings
    );
    app.stop().await;
}

async fn viewers_get_403_and_other_tenants_404_on_every_moderation_endpoint(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("guard").await;
    let other = app.shop("guard-other").await;
    let stream = app.live_stream(&shop).await;
    let tenant = &shop.tenant;
    let calls = |token: &str| {
        let token = token.to_owned();
        vec![
            (
                reqwest::Method::DELETE,
                format!("/v1/streams/{stream}/chat/msg_x"),
                None,
                token.clone(),
            ),
            (
                reqwest::Method::POST,
                format!("/v1/streams/{stream}/mutes"),
                Some(json!({"user": "u", "duration_seconds": 5})),
                token.clone(),
            ),
            (
                reqwest::Method::PATCH,
                format!("/v1/streams/{stream}/chat-settings"),
                Some(json!({"slow_mode_seconds": 5})),
                token.clone(),
            ),
            (
                reqwest::Method::GET,
                format!("/v1/streams/{stream}/chat-settings"),
                None,
                token.clone(),
            ),
            (
                reqwest::Method::GET,
                format!("/v1/streams/{stream}/moderation-log"),
                None,
                token.clone(),
            ),
            (
                reqwest::Method::POST,
                format!("/v1/tenants/{tenant}/bans"),
                Some(json!({"user": "u"})),
                token.clone(),
            ),
            (
                reqwest::Method::GET,
                format!("/v1/tenants/{tenant}/bans"),
                None,
                token.clone(),
            ),
            (
                reqwest::Method::DELETE,
                format!("/v1/tenants/{tenant}/bans/u"),
                None,
                token,
            ),
        ]
    };
    for (method, path, body, token) in calls(&shop.viewer) {
        let answer = send(&app, method.clone(), &path, &token, body).await;
        expect_error(answer, 403, "forbidden").await;
    }
    for (method, path, body, token) in calls(&other.admin) {
        let answer = send(&app, method.clone(), &path, &token, body).await;
        expect_error(answer, 404, "not_found").await;
    }
    // Another seller of the same tenant may not moderate this seller's stream.
    let rival = shop.token(Role::Seller, "seller-2");
    expect_error(
        patch(
            &app,
            &format!("/v1/streams/{stream}/chat-settings"),
            &rival,
            json!({"slow_mode_seconds": 5}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    app.stop().await;
}

async fn a_seller_bans_only_viewers_of_its_own_streams(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("sellerban").await;
    let stream = app.live_stream(&shop).await;
    let mut chatter = joined(&app, &shop, &stream, "chatter").await;
    say(&mut chatter, &stream, "hi seller", "h1").await;
    let bans = format!("/v1/tenants/{}/bans", shop.tenant);
    // Chat is written behind; the seller's right to ban follows once it is stored.
    eventually("the chatter's message is stored", || async {
        app.post(
            &bans,
            &shop.seller,
            &json!({"user": "chatter", "duration_seconds": 60}),
        )
        .await
        .status()
            == 201
    })
    .await;
    assert_eq!(chatter.expect_close_code().await, 1008);
    expect_error(
        app.post(&bans, &shop.seller, &json!({"user": "stranger"}))
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_error(
        app.post(&bans, &shop.admin, &json!({"user": "admin-1"}))
            .await,
        400,
        "bad_request",
    )
    .await;
    app.stop().await;
}

async fn the_moderation_log_lists_every_action_newest_first(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("log").await;
    let stream = app.live_stream(&shop).await;
    let quiet = app.live_stream(&shop).await;
    let mut watcher = joined(&app, &shop, &stream, "watcher").await;
    let mut viewer = joined(&app, &shop, &stream, "v").await;
    say(&mut viewer, &stream, "to be deleted", "l1").await;
    let event = next_event(&mut watcher, "chat").await;
    let id = event["data"]["id"].as_str().unwrap().to_owned();
    let moderator = moderator(&shop);
    assert_eq!(
        delete(&app, &format!("/v1/streams/{stream}/chat/{id}"), &moderator)
            .await
            .status(),
        204
    );
    expect_json(
        app.post(
            &format!("/v1/streams/{stream}/mutes"),
            &moderator,
            &json!({"user": "v", "duration_seconds": 60, "reason": "flood"}),
        )
        .await,
        201,
    )
    .await;
    expect_json(
        patch(
            &app,
            &format!("/v1/streams/{stream}/chat-settings"),
            &moderator,
            json!({"slow_mode_seconds": 10, "blocked_words": ["a1", "b2"]}),
        )
        .await,
        200,
    )
    .await;
    expect_json(
        app.post(
            &format!("/v1/tenants/{}/bans", shop.tenant),
            &moderator,
            &json!({"user": "v", "reason": "again"}),
        )
        .await,
        201,
    )
    .await;

    let log = expect_json(
        app.get(
            &format!("/v1/streams/{stream}/moderation-log"),
            Some(&shop.seller),
        )
        .await,
        200,
    )
    .await;
    let items = log["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["ban", "chat_settings", "mute", "delete_message"],
        "{log}"
    );
    assert!(
        items
            .iter()
            .all(|i| i["actor"] == "mod-1" && i["at"].is_string()),
        "{log}"
    );
    assert_eq!(items[0]["target"], "v");
    assert_eq!(items[0]["reason"], "again");
    assert_eq!(items[1]["target"], stream.as_str());
    assert_eq!(items[2]["reason"], "flood");
    assert_eq!(items[3]["target"], id.as_str());
    assert!(
        items[3].get("reason").is_none(),
        "no reason given, none shown: {log}"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    for action in ["delete_message", "mute", "chat_settings", "ban"] {
        let line = format!("liveshop_moderation_actions_total{{action=\"{action}\"}} 1");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    // A ban is in the log of every stream of the tenant live at the time.
    let other = expect_json(
        app.get(
            &format!("/v1/streams/{quiet}/moderation-log"),
            Some(&shop.admin),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(other["items"].as_array().unwrap().len(), 1, "{other}");
    assert_eq!(other["items"][0]["action"], "ban", "{other}");
    app.stop().await;
}

async fn a_ban_and_a_mute_hold_across_a_restart(backend: Backend) {
    let db = fresh(backend).await;
    let http = reqwest::Client::new();
    let (server, addr) = EngineProcess::start(db.url(), &[]);
    let base = format!("http://{addr}");
    let tenant = http
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(operator())
        .json(&json!({"slug": "restart", "name": "Restart"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seller = token(Role::Seller, Some(&tenant), "seller-1");
    let stream = http
        .post(format!("{base}/v1/streams"))
        .bearer_auth(&seller)
        .json(&json!({"title": "show"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    http.post(format!("{base}/v1/streams/{stream}/start"))
        .bearer_auth(&seller)
        .send()
        .await
        .unwrap();
    let banned = http
        .post(format!("{base}/v1/tenants/{tenant}/bans"))
        .bearer_auth(token(Role::Admin, Some(&tenant), "admin-1"))
        .json(&json!({"user": "troll"}))
        .send()
        .await
        .unwrap();
    assert_eq!(banned.status(), 201);
    let muted = http
        .post(format!("{base}/v1/streams/{stream}/mutes"))
        .bearer_auth(token(Role::Admin, Some(&tenant), "admin-1"))
        .json(&json!({"user": "loud", "duration_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(muted.status(), 201);
    server.terminate();
    drop(server);

    let (_server, addr) = EngineProcess::start(db.url(), &[]);
    let base = format!("http://{addr}");
    let troll = token(Role::Viewer, Some(&tenant), "troll");
    let refused = http
        .get(format!("{base}/v1/streams"))
        .bearer_auth(&troll)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "banned"
    );
    let upgrade = connect(&format!("ws://{addr}/v1/ws?token={troll}"), None).await;
    assert_eq!(upgrade.err().map(|s| s.as_u16()), Some(403));
    let mut loud = connect(
        &format!(
            "ws://{addr}/v1/ws?token={}",
            token(Role::Viewer, Some(&tenant), "loud")
        ),
        None,
    )
    .await
    .expect("the muted user may connect");
    loud.expect_type("welcome").await;
    loud.join(&stream, None).await;
    let refused = say(&mut loud, &stream, "let me talk", "r1").await;
    assert_eq!(refused["code"], "muted", "{refused}");
}
