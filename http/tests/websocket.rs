//! The WebSocket protocol of contract v1, section 4, over a real socket, on SQLite and Postgres.

#[macro_use]
mod common;

use common::{Backend, Shop, TestApp, WsClient, expect_json};
use liveshop_engine::auth::Role;
use liveshop_engine::wire::client_frame;
use serde_json::{Value, json};

both! {
    the_welcome_frame_names_session_user_tenant_and_protocol,
    joining_answers_with_a_snapshot,
    chat_seq_is_gapless_across_two_clients,
    a_reconnecting_client_resumes_exactly_the_missed_events,
    a_resume_from_another_epoch_falls_back_to_a_snapshot,
    a_resume_from_beyond_the_last_seq_falls_back_to_a_snapshot,
    a_resume_from_before_the_buffer_falls_back_to_a_snapshot,
    bad_frames_are_answered_without_closing_the_connection,
    a_missing_field_is_a_bad_request_naming_it,
    chat_before_join_is_not_joined,
    the_streams_seller_may_publish_without_joining,
    chat_needs_a_live_stream_and_valid_text,
    a_frame_over_16_kib_closes_with_1009,
    a_megabyte_frame_also_closes_with_1009,
    a_binary_frame_is_a_bad_frame,
    chat_is_rate_limited_per_user_with_retry_after,
    the_upgrade_is_refused_without_a_valid_token,
    the_upgrade_checks_the_origin_allowlist,
    joining_another_tenants_stream_is_not_found,
    a_plain_get_of_the_socket_route_is_refused_in_the_error_shape,
    a_connection_closes_with_1008_when_its_token_expires,
    frames_are_rate_limited_per_connection_without_closing,
    a_connection_may_join_a_limited_number_of_streams,
    reactions_are_tallied_and_unknown_emoji_refused,
    chat_shows_the_display_name_of_the_token,
    ending_a_stream_tells_joined_clients_and_stops_chat,
    a_silent_connection_is_closed_after_the_idle_timeout,
    a_client_that_stops_reading_is_closed_as_a_slow_consumer,
    a_client_close_gets_a_complete_closing_handshake,
    an_unmasked_frame_closes_with_1002,
    text_that_is_not_utf8_closes_with_1007,
    the_close_frame_survives_what_the_client_sends_after_it,
    a_websocket_ping_is_answered_with_its_payload,
    a_message_split_into_fragments_and_reads_is_understood,
}

/// Sends a chat frame with a ref.
async fn send_chat(client: &mut WsClient, stream: &str, text: &str, r#ref: &str) {
    client
        .send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": r#ref }))
        .await;
}

/// Reads until `events` chat events and `oks` ok replies arrived; returns both, in arrival order.
async fn collect(client: &mut WsClient, events: usize, oks: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut got_events, mut got_oks) = (Vec::new(), Vec::new());
    while got_events.len() < events || got_oks.len() < oks {
        let frame = client.next_json().await;
        match frame["type"].as_str() {
            Some("event") => got_events.push(frame),
            Some("ok") => got_oks.push(frame),
            _ => panic!("unexpected frame: {frame}"),
        }
    }
    (got_events, got_oks)
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("ordered event has seq"))
        .collect()
}

fn texts(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["data"]["text"].as_str().expect("chat text"))
        .collect()
}

async fn setup(app: &TestApp, slug: &str) -> (Shop, String) {
    let shop = app.shop(slug).await;
    let stream = app.live_stream(&shop).await;
    (shop, stream)
}

async fn the_welcome_frame_names_session_user_tenant_and_protocol(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("welcome").await;
    let mut client = app.ws_raw(&shop.viewer, None).await.expect("upgrade");
    let welcome = client.next_json().await;
    assert_eq!(welcome["type"], "welcome");
    assert!(
        welcome["session"].as_str().is_some_and(|s| !s.is_empty()),
        "{welcome}"
    );
    assert_eq!(welcome["user"], "viewer-1");
    assert_eq!(welcome["tenant"], shop.tenant.as_str());
    assert_eq!(welcome["protocol"], 1);
    let mut other = app.ws(&shop.viewer).await;
    other.ping("p").await;
    client.ping("p").await;

    // A bearer header works as well as the query parameter.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            app.ws_url(),
        )
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", shop.seller).parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    use futures_util::StreamExt;
    let first = tokio::time::timeout(common::WAIT, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let welcome: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(welcome["user"], "seller-1");
}

async fn joining_answers_with_a_snapshot(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "snapshot").await;
    let mut first = app.ws(&shop.viewer).await;
    let joined = first.join(&stream, None).await;
    assert_eq!(joined["resumed"], false);
    assert!(joined["epoch"].as_u64().is_some(), "{joined}");
    let seq = joined["seq"].as_u64().expect("seq");
    let snapshot = &joined["snapshot"];
    assert_eq!(snapshot["stream"]["id"], stream.as_str(), "{joined}");
    assert_eq!(snapshot["stream"]["status"], "live", "{joined}");
    assert!(
        snapshot["viewers"].as_u64().is_some_and(|v| v >= 1),
        "{joined}"
    );
    assert_eq!(snapshot["pinned"], Value::Null, "{joined}");
    assert_eq!(snapshot["drops"], json!([]), "{joined}");
    assert_eq!(snapshot["chat"], json!([]), "{joined}");

    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        send_chat(&mut first, &stream, text, &format!("c{i}")).await;
    }
    let (events, _) = collect(&mut first, 3, 3).await;
    assert_eq!(seqs(&events), [seq + 1, seq + 2, seq + 3]);

    let mut second = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    let joined = second.join(&stream, None).await;
    assert_eq!(joined["seq"], seq + 3, "{joined}");
    let chat = joined["snapshot"]["chat"].as_array().expect("chat");
    let chat_texts: Vec<&str> = chat.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(chat_texts, ["one", "two", "three"]);
    let message = &chat[0];
    assert!(message["id"].is_string(), "{message}");
    assert_eq!(message["user"]["id"], "viewer-1", "{message}");
    assert_eq!(message["user"]["name"], "viewer-1", "{message}");
    assert!(message["at"].is_string(), "{message}");
    assert_eq!(joined["snapshot"]["viewers"], 2, "{joined}");
}

async fn chat_seq_is_gapless_across_two_clients(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "gapless").await;
    let mut a = app.ws(&shop.viewer).await;
    let mut b = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    let seq_a = a.join(&stream, None).await["seq"].as_u64().unwrap();
    let seq_b = b.join(&stream, None).await["seq"].as_u64().unwrap();
    assert_eq!(seq_a, seq_b);

    for i in 0..6 {
        send_chat(&mut a, &stream, &format!("a{i}"), &format!("a{i}")).await;
        send_chat(&mut b, &stream, &format!("b{i}"), &format!("b{i}")).await;
    }
    let (events_a, oks_a) = collect(&mut a, 12, 6).await;
    let (events_b, oks_b) = collect(&mut b, 12, 6).await;

    let expected: Vec<u64> = (seq_a + 1..=seq_a + 12).collect();
    assert_eq!(seqs(&events_a), expected);
    assert_eq!(seqs(&events_b), expected);
    assert_eq!(events_a, events_b, "both clients see identical events");
    for event in &events_a {
        assert_eq!(event["kind"], "chat");
        assert_eq!(event["stream"], stream.as_str());
    }

    // Every ok carries the seq its message was published under, in the order sent.
    for (oks, prefix, user) in [(&oks_a, "a", "viewer-1"), (&oks_b, "b", "viewer-2")] {
        for (i, ok) in oks.iter().enumerate() {
            let r#ref = format!("{prefix}{i}");
            assert_eq!(ok["ref"], r#ref.as_str(), "{ok}");
            let seq = ok["seq"].as_u64().expect("ok carries seq");
            let event = events_a
                .iter()
                .find(|e| e["seq"] == seq)
                .expect("event of the ok");
            assert_eq!(event["data"]["text"], r#ref.as_str());
            assert_eq!(event["data"]["user"]["id"], user);
        }
    }
}

async fn a_reconnecting_client_resumes_exactly_the_missed_events(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "resume").await;
    let mut a = app.ws(&shop.viewer).await;
    let mut b = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    let joined = a.join(&stream, None).await;
    let epoch = joined["epoch"].as_u64().unwrap();
    b.join(&stream, None).await;

    send_chat(&mut b, &stream, "seen", "s").await;
    let (seen, _) = collect(&mut a, 1, 0).await;
    let since = seen[0]["seq"].as_u64().unwrap();
    collect(&mut b, 1, 1).await;
    a.close().await;

    let missed_texts: Vec<String> = (1..=5).map(|i| format!("missed {i}")).collect();
    for (i, text) in missed_texts.iter().enumerate() {
        send_chat(&mut b, &stream, text, &format!("m{i}")).await;
    }
    let (missed, _) = collect(&mut b, 5, 5).await;

    let mut a = app.ws(&shop.viewer).await;
    let joined = a.join(&stream, Some((epoch, since))).await;
    assert_eq!(joined["resumed"], true, "{joined}");
    assert_eq!(joined["epoch"], epoch);
    assert_eq!(joined["seq"], since + 5, "{joined}");
    assert!(joined.get("snapshot").is_none(), "{joined}");

    // B writes again right away: A must still get the 5 missed events first, then this one.
    send_chat(&mut b, &stream, "newer", "n").await;
    let (replayed, _) = collect(&mut a, 6, 0).await;
    assert_eq!(seqs(&replayed), (since + 1..=since + 6).collect::<Vec<_>>());
    assert_eq!(&replayed[..5], &missed[..]);
    assert_eq!(texts(&replayed[..5]), missed_texts);
    assert_eq!(replayed[5]["data"]["text"], "newer");

    // Resuming at the current seq replays nothing and keeps the connection live.
    let mut c = app.ws(&shop.token(Role::Viewer, "viewer-3")).await;
    let joined = c.join(&stream, Some((epoch, since + 6))).await;
    assert_eq!(joined["resumed"], true, "{joined}");
    send_chat(&mut b, &stream, "latest", "l").await;
    let (latest, _) = collect(&mut c, 1, 0).await;
    assert_eq!(latest[0]["seq"], since + 7);
}

async fn a_resume_from_another_epoch_falls_back_to_a_snapshot(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "wrong-epoch").await;
    let mut a = app.ws(&shop.viewer).await;
    let joined = a.join(&stream, None).await;
    let (epoch, seq) = (
        joined["epoch"].as_u64().unwrap(),
        joined["seq"].as_u64().unwrap(),
    );
    send_chat(&mut a, &stream, "hello", "h").await;
    collect(&mut a, 1, 1).await;

    let mut b = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    let joined = b.join(&stream, Some((epoch + 100, seq))).await;
    assert_eq!(joined["resumed"], false, "{joined}");
    assert_eq!(joined["epoch"], epoch);
    assert_eq!(joined["seq"], seq + 1);
    assert_eq!(joined["snapshot"]["chat"][0]["text"], "hello", "{joined}");
    // Live events follow the snapshot.
    send_chat(&mut a, &stream, "after", "a").await;
    let (events, _) = collect(&mut b, 1, 0).await;
    assert_eq!(events[0]["seq"], seq + 2);
}

async fn a_resume_from_beyond_the_last_seq_falls_back_to_a_snapshot(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "future-seq").await;
    let mut a = app.ws(&shop.viewer).await;
    let joined = a.join(&stream, None).await;
    let (epoch, seq) = (
        joined["epoch"].as_u64().unwrap(),
        joined["seq"].as_u64().unwrap(),
    );
    let mut b = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    let joined = b.join(&stream, Some((epoch, seq + 50))).await;
    assert_eq!(joined["resumed"], false, "{joined}");
    assert_eq!(joined["seq"], seq);
    assert!(joined["snapshot"]["stream"].is_object(), "{joined}");
}

async fn a_resume_from_before_the_buffer_falls_back_to_a_snapshot(backend: Backend) {
    // More events than the resume buffer holds (at least 1,000): lift the limits to get there.
    let app = TestApp::spawn(backend, |c| {
        c.chat_burst = 5_000;
        c.chat_per_sec = 1_000.0;
        c.frame_burst = 5_000;
        c.frames_per_sec = 1_000.0;
    })
    .await;
    let (shop, stream) = setup(&app, "overrun").await;
    let mut a = app.ws(&shop.viewer).await;
    let joined = a.join(&stream, None).await;
    let (epoch, since) = (
        joined["epoch"].as_u64().unwrap(),
        joined["seq"].as_u64().unwrap(),
    );
    const SENT: usize = 1_200;
    let mut got_events = 0;
    let mut got_oks = 0;
    for batch in 0..SENT / 100 {
        for i in 0..100 {
            send_chat(&mut a, &stream, &format!("flood {batch}-{i}"), "f").await;
        }
        let (events, oks) = collect(&mut a, 100, 100).await;
        got_events += events.len();
        got_oks += oks.len();
    }
    assert_eq!((got_events, got_oks), (SENT, SENT));

    let mut b = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    let joined = b.join(&stream, Some((epoch, since))).await;
    assert_eq!(joined["resumed"], false, "{joined}");
    assert_eq!(joined["seq"], since + SENT as u64);
    assert_eq!(joined["snapshot"]["chat"].as_array().unwrap().len(), 50);

    // A resume from within the buffer still replays.
    let recent = since + SENT as u64 - 10;
    let mut c = app.ws(&shop.token(Role::Viewer, "viewer-3")).await;
    let joined = c.join(&stream, Some((epoch, recent))).await;
    assert_eq!(joined["resumed"], true, "{joined}");
    let (replayed, _) = collect(&mut c, 10, 0).await;
    assert_eq!(
        seqs(&replayed),
        (recent + 1..=recent + 10).collect::<Vec<_>>()
    );
}

async fn bad_frames_are_answered_without_closing_the_connection(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "bad-frames").await;
    let mut client = app.ws(&shop.viewer).await;
    let mut bystander = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    bystander.join(&stream, None).await;

    client.send_text("this is not json").await;
    client.expect_error("bad_frame", None).await;
    client.send_text("[1,2,3]").await;
    client.expect_error("bad_frame", None).await;
    client.send_json(&json!({ "ref": "no-op" })).await;
    client.expect_error("bad_frame", Some("no-op")).await;
    client
        .send_json(&json!({ "op": "dance", "ref": "unknown" }))
        .await;
    client.expect_error("bad_frame", Some("unknown")).await;
    client.send_json(&json!({ "op": 7, "ref": "typed" })).await;
    client.expect_error("bad_frame", Some("typed")).await;

    // Still open and in order, and the bystander is unaffected.
    client.ping("still-here").await;
    client.join(&stream, None).await;
    bystander.ping("fine").await;
}

async fn a_missing_field_is_a_bad_request_naming_it(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "missing-field").await;
    let mut client = app.ws(&shop.viewer).await;
    client
        .send_json(&json!({ "op": "chat", "stream": stream, "ref": "r1" }))
        .await;
    let error = client.expect_error("bad_request", Some("r1")).await;
    assert!(
        error["message"].as_str().unwrap().contains("text"),
        "{error}"
    );
    client
        .send_json(&json!({ "op": "join", "ref": "r2" }))
        .await;
    let error = client.expect_error("bad_request", Some("r2")).await;
    assert!(
        error["message"].as_str().unwrap().contains("stream"),
        "{error}"
    );
    // An epoch without since names no resume point: a snapshot, not an error (contract
    // section 4, clarification).
    client
        .send_json(&json!({ "op": "join", "stream": stream, "epoch": 1, "ref": "r3" }))
        .await;
    let joined = client.expect_type("joined").await;
    assert_eq!(joined["resumed"], false, "{joined}");
    client.ping("alive").await;
}

async fn the_streams_seller_may_publish_without_joining(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "publisher").await;
    let mut viewer = app.ws(&shop.viewer).await;
    viewer.join(&stream, None).await;
    let mut seller = app.ws(&shop.seller).await;
    send_chat(&mut seller, &stream, "on air", "pub").await;
    let ok = seller.expect_type("ok").await;
    assert_eq!(ok["ref"], "pub");
    let (events, _) = collect(&mut viewer, 1, 0).await;
    assert_eq!(events[0]["data"]["text"], "on air");
    assert_eq!(events[0]["seq"], ok["seq"]);
    // Another seller of the tenant is not this stream's broadcaster.
    let mut other = app.ws(&shop.token(Role::Seller, "seller-2")).await;
    send_chat(&mut other, &stream, "hijack", "no").await;
    other.expect_error("not_joined", Some("no")).await;
    app.stop().await;
}

async fn chat_before_join_is_not_joined(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "not-joined").await;
    let mut client = app.ws(&shop.viewer).await;
    send_chat(&mut client, &stream, "hi", "early").await;
    client.expect_error("not_joined", Some("early")).await;
    client
        .send_json(&json!({ "op": "leave", "stream": stream, "ref": "lv" }))
        .await;
    client.expect_error("not_joined", Some("lv")).await;
    client.join(&stream, None).await;
    send_chat(&mut client, &stream, "hi", "now").await;
    let (events, oks) = collect(&mut client, 1, 1).await;
    assert_eq!(oks[0]["ref"], "now");
    assert_eq!(oks[0]["seq"], events[0]["seq"]);
    // After leaving, chat is refused again.
    client
        .send_json(&json!({ "op": "leave", "stream": stream, "ref": "bye" }))
        .await;
    assert_eq!(client.expect_type("ok").await["ref"], "bye");
    send_chat(&mut client, &stream, "hi", "late").await;
    client.expect_error("not_joined", Some("late")).await;
}

async fn chat_needs_a_live_stream_and_valid_text(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("chat-rules").await;
    let stream = app.create_stream(&shop.seller, "Not yet").await;
    let mut client = app.ws(&shop.viewer).await;
    client.join(&stream, None).await;
    send_chat(&mut client, &stream, "too early", "early").await;
    client.expect_error("invalid_state", Some("early")).await;

    app.start_stream(&shop.seller, &stream).await;
    let status = client.expect_type("event").await;
    assert_eq!(status["kind"], "status");
    assert_eq!(status["data"]["status"], "live");
    send_chat(&mut client, &stream, "   ", "blank").await;
    client.expect_error("bad_request", Some("blank")).await;
    send_chat(&mut client, &stream, &"x".repeat(501), "long").await;
    client.expect_error("bad_request", Some("long")).await;
    send_chat(&mut client, &stream, &"é".repeat(500), "max").await;
    let (_, oks) = collect(&mut client, 1, 1).await;
    assert_eq!(oks[0]["ref"], "max");
}

async fn a_frame_over_16_kib_closes_with_1009(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "too-large").await;
    let mut client = app.ws(&shop.viewer).await;
    client.join(&stream, None).await;
    // A frame of exactly 16 KiB is still read (and refused as a chat that is too long).
    let empty = json!({ "op": "chat", "stream": stream, "text": "", "ref": "big-ok" }).to_string();
    let text = "x".repeat(16 * 1024 - empty.len());
    let frame =
        json!({ "op": "chat", "stream": stream, "text": text, "ref": "big-ok" }).to_string();
    assert_eq!(frame.len(), 16 * 1024);
    client.send_text(&frame).await;
    client.expect_error("bad_request", Some("big-ok")).await;
    client.ping("alive").await;
    let text = "x".repeat(17 * 1024);
    send_chat(&mut client, &stream, &text, "too-big").await;
    assert_eq!(client.expect_close_code().await, 1009);
}

async fn a_megabyte_frame_also_closes_with_1009(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "huge").await;
    let mut client = app.ws(&shop.viewer).await;
    client.join(&stream, None).await;
    send_chat(&mut client, &stream, &"x".repeat(2 * 1024 * 1024), "huge").await;
    assert_eq!(client.expect_close_code().await, 1009);
}

async fn a_binary_frame_is_a_bad_frame(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("binary").await;
    let mut client = app.ws(&shop.viewer).await;
    client.send_binary(b"{\"op\":\"ping\"}").await;
    client.expect_error("bad_frame", None).await;
    client.ping("alive").await;
}

async fn chat_is_rate_limited_per_user_with_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend, |c| {
        c.chat_burst = 3;
        c.chat_per_sec = 0.1;
    })
    .await;
    let (shop, stream) = setup(&app, "chat-limit").await;
    let mut client = app.ws(&shop.viewer).await;
    client.join(&stream, None).await;
    for i in 0..3 {
        send_chat(&mut client, &stream, &format!("m{i}"), &format!("m{i}")).await;
    }
    collect(&mut client, 3, 3).await;
    send_chat(&mut client, &stream, "one too many", "over").await;
    let error = client.expect_error("rate_limited", Some("over")).await;
    assert!(
        error["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{error}"
    );

    // Another user of the same stream has an allowance of their own.
    let mut other = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    other.join(&stream, None).await;
    send_chat(&mut other, &stream, "mine", "o").await;
    let (_, oks) = collect(&mut other, 1, 1).await;
    assert_eq!(oks[0]["ref"], "o");
    let (events, _) = collect(&mut client, 1, 0).await;
    assert_eq!(events[0]["data"]["text"], "mine");
    client.ping("alive").await;
}

async fn the_upgrade_is_refused_without_a_valid_token(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("ws-auth").await;
    assert_eq!(
        app.ws_raw("", None).await.err(),
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        app.ws_raw("garbage", None).await.err(),
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
    let forged = liveshop_http::auth::Keys::new(b"wrong-secret-wrong-secret-wrong-secret")
        .mint(&liveshop_http::auth::claims_for(
            Role::Viewer,
            Some(&shop.tenant),
            "v",
            None,
            60,
        ))
        .unwrap();
    assert_eq!(
        app.ws_raw(&forged, None).await.err(),
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
    let ghost = common::token(Role::Viewer, Some("no-such-tenant"), "v");
    assert_eq!(
        app.ws_raw(&ghost, None).await.err(),
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
    let response = app
        .http
        .get(app.ws_url().replace("ws://", "http://"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    common::expect_error(response, 401, "unauthorized").await;
}

async fn the_upgrade_checks_the_origin_allowlist(backend: Backend) {
    let app = TestApp::spawn(backend, |c| {
        c.allowed_origins = Some(vec!["https://ok.example".to_owned()]);
    })
    .await;
    let shop = app.shop("origins").await;
    let refused = app.ws_raw(&shop.viewer, Some("https://evil.example")).await;
    assert_eq!(refused.err(), Some(reqwest::StatusCode::FORBIDDEN));
    let no_origin = app.ws_raw(&shop.viewer, None).await;
    assert_eq!(no_origin.err(), Some(reqwest::StatusCode::FORBIDDEN));
    let mut allowed = app
        .ws_raw(&shop.viewer, Some("https://ok.example"))
        .await
        .expect("allowed origin upgrades");
    assert_eq!(allowed.next_json().await["type"], "welcome");
    allowed.ping("p").await;
}

async fn joining_another_tenants_stream_is_not_found(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (_, theirs) = setup(&app, "ws-theirs").await;
    let mine = app.shop("ws-mine").await;
    let mut client = app.ws(&mine.viewer).await;
    client
        .send_json(&json!({ "op": "join", "stream": theirs, "ref": "x" }))
        .await;
    client.expect_error("not_found", Some("x")).await;
    client
        .send_json(&json!({ "op": "join", "stream": "no-such-stream", "ref": "y" }))
        .await;
    client.expect_error("not_found", Some("y")).await;
    client.ping("alive").await;
    let stream = expect_json(
        app.get(&format!("/v1/streams/{theirs}"), Some(&mine.viewer))
            .await,
        404,
    )
    .await;
    assert_eq!(stream["error"]["code"], "not_found");
}

async fn a_plain_get_of_the_socket_route_is_refused_in_the_error_shape(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("plain-get").await;
    let url = app.url("/v1/ws");
    let response = app.http.get(&url).send().await.unwrap();
    common::expect_error(response, 401, "unauthorized").await;
    let response = app
        .http
        .get(&url)
        .bearer_auth(&shop.viewer)
        .send()
        .await
        .unwrap();
    common::expect_error(response, 400, "bad_request").await;
}

async fn a_connection_closes_with_1008_when_its_token_expires(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "expiring").await;
    let short = common::mint(&liveshop_http::auth::claims_for(
        Role::Viewer,
        Some(&shop.tenant),
        "brief",
        None,
        2,
    ));
    let mut client = app.ws(&short).await;
    client.join(&stream, None).await;
    assert_eq!(client.expect_close_code().await, 1008);
}

async fn frames_are_rate_limited_per_connection_without_closing(backend: Backend) {
    let app = TestApp::spawn(backend, |c| {
        c.frame_burst = 3;
        c.frames_per_sec = 0.1;
    })
    .await;
    let shop = app.shop("frame-limit").await;
    let mut client = app.ws(&shop.viewer).await;
    for i in 0..3 {
        client.ping(&format!("p{i}")).await;
    }
    client
        .send_json(&json!({ "op": "ping", "ref": "over" }))
        .await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "rate_limited", "{error}");
    assert!(
        error["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{error}"
    );
    // The connection stays open, and other connections have their own allowance.
    let mut other = app.ws(&shop.viewer).await;
    other.ping("fresh").await;
}

async fn a_connection_may_join_a_limited_number_of_streams(backend: Backend) {
    let app = TestApp::spawn(backend, |c| c.max_joins = 2).await;
    let shop = app.shop("max-joins").await;
    let mut streams = Vec::new();
    for i in 0..3 {
        streams.push(app.create_stream(&shop.seller, &format!("show {i}")).await);
    }
    let mut client = app.ws(&shop.viewer).await;
    client.join(&streams[0], None).await;
    client.join(&streams[1], None).await;
    // Joining one of them again is not a new join.
    client.join(&streams[1], None).await;
    client
        .send_json(&json!({ "op": "join", "stream": streams[2], "ref": "third" }))
        .await;
    client.expect_error("limit_exceeded", Some("third")).await;
    client
        .send_json(&json!({ "op": "leave", "stream": streams[0], "ref": "bye" }))
        .await;
    assert_eq!(client.expect_type("ok").await["ref"], "bye");
    client.join(&streams[2], None).await;
}

async fn reactions_are_tallied_and_unknown_emoji_refused(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "reactions").await;
    let mut client = app.ws(&shop.viewer).await;
    client.join(&stream, None).await;
    client
        .send_json(&json!({ "op": "react", "stream": stream, "emoji": "nope", "ref": "bad" }))
        .await;
    client.expect_error("bad_request", Some("bad")).await;
    for _ in 0..3 {
        client
            .send_json(&json!({ "op": "react", "stream": stream, "emoji": "heart" }))
            .await;
    }
    // No reply to a valid reaction: a ping right after is answered first.
    client.ping("after-react").await;
    let mut hearts = 0;
    while hearts < 3 {
        let frame = client.next_any().await;
        if frame["kind"] == "reactions" {
            assert!(frame.get("seq").is_none(), "{frame}");
            hearts += frame["data"]["counts"]["heart"].as_u64().unwrap_or(0);
        }
    }
    assert_eq!(hearts, 3);
}

async fn chat_shows_the_display_name_of_the_token(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "names").await;
    let named = common::mint(&liveshop_http::auth::claims_for(
        Role::Viewer,
        Some(&shop.tenant),
        "u-ann",
        Some("Ann"),
        3600,
    ));
    let mut client = app.ws(&named).await;
    client.join(&stream, None).await;
    send_chat(&mut client, &stream, "hi", "h").await;
    let (events, _) = collect(&mut client, 1, 1).await;
    assert_eq!(
        events[0]["data"]["user"],
        json!({ "id": "u-ann", "name": "Ann" })
    );
    assert_eq!(events[0]["data"]["text"], "hi");
}

async fn ending_a_stream_tells_joined_clients_and_stops_chat(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "ending").await;
    let mut client = app.ws(&shop.viewer).await;
    let seq = client.join(&stream, None).await["seq"].as_u64().unwrap();
    let end = format!("/v1/streams/{stream}/end");
    expect_json(app.post(&end, &shop.seller, &json!({})).await, 200).await;
    let status = client.expect_type("event").await;
    assert_eq!(status["kind"], "status", "{status}");
    assert_eq!(status["data"]["status"], "ended");
    assert_eq!(status["seq"], seq + 1);
    send_chat(&mut client, &stream, "too late", "late").await;
    client.expect_error("invalid_state", Some("late")).await;
}

async fn a_silent_connection_is_closed_after_the_idle_timeout(backend: Backend) {
    let app = TestApp::spawn(backend, |c| c.idle_secs = 1).await;
    let shop = app.shop("idle").await;
    let mut client = app.ws(&shop.viewer).await;
    // Send nothing and read nothing (so not even pongs) for longer than the idle timeout.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let code = client.expect_close_code().await;
    assert_eq!(code, 1000, "idle connections close normally");
}

async fn a_client_that_stops_reading_is_closed_as_a_slow_consumer(backend: Backend) {
    let app = TestApp::spawn(backend, |c| {
        c.broadcast_capacity = 16;
        // The slow client reads through its backlog only once it was given up on; on a loaded
        // machine that can take longer than the default 2 s grace.
        c.close_grace_ms = 15_000;
        c.chat_burst = 1_000_000;
        c.chat_per_sec = 1_000_000.0;
        c.frame_burst = 1_000_000;
        c.frames_per_sec = 1_000_000.0;
    })
    .await;
    let (shop, stream) = setup(&app, "slow").await;
    let url = format!(
        "{}?token={}",
        app.ws_url(),
        shop.token(Role::Viewer, "sloth")
    );
    let mut slow = WsClient::with_small_buffer(&url, 4096).await;
    assert_eq!(slow.next_json().await["type"], "welcome");
    slow.join(&stream, None).await;
    let mut fast = app.ws(&shop.viewer).await;
    fast.join(&stream, None).await;
    const SENT: usize = 10_000;
    // A client that keeps reading gets everything, in order.
    let fast_reader = tokio::spawn(async move { collect(&mut fast, SENT, 0).await.0.len() });
    // The seller floods the stream while the slow client reads nothing.
    let mut seller = app.ws(&shop.seller).await;
    let flood_stream = stream.clone();
    let flood = tokio::spawn(async move {
        let text = "x".repeat(500);
        for sent in 0..SENT {
            send_chat(&mut seller, &flood_stream, &text, &format!("c{sent}")).await;
        }
        seller
    });
    // The slow one is closed with 4008 once its buffer is full. The server keeps a closing
    // connection for a short grace only, so the test reads as soon as the server gave up on it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = app.get("/metrics", None).await.text().await.expect("text");
        let gave_up = metrics
            .lines()
            .find_map(|l| l.strip_prefix("liveshop_slow_consumers_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|n| n >= 1.0);
        if gave_up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow client was never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(slow.expect_close_code().await, 4008);
    let _seller = flood.await.expect("flood");
    assert_eq!(fast_reader.await.expect("fast reader"), SENT);
    // Counted once the connection is gone (after its lingering close).
    drop(slow);
    common::eventually("the slow consumer's disconnect is counted", || async {
        let metrics = app.get("/metrics", None).await.text().await.expect("text");
        metrics.contains("websocket_disconnects_total{reason=\"slow_consumer\"}")
    })
    .await;
    app.stop().await;
}

async fn a_client_close_gets_a_complete_closing_handshake(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "close-handshake").await;
    let mut client = app.ws(&shop.viewer).await;
    client.join(&stream, None).await;
    let answer = client.close_and_read_answer().await;
    assert_eq!(
        answer,
        Ok(Some(1000)),
        "the server answers a close with a close frame"
    );
    app.stop().await;
}

const KEY: [u8; 4] = [1, 2, 3, 4];

async fn an_unmasked_frame_closes_with_1002(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("unmasked").await;
    let mut raw = app.ws_bytes(&shop.viewer).await;
    let welcome = raw.expect_opcode(0x1).await;
    assert!(String::from_utf8_lossy(&welcome).contains("welcome"));
    raw.write(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(raw.expect_close_code().await, 1002);
}

async fn text_that_is_not_utf8_closes_with_1007(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("not-utf8").await;
    let mut raw = app.ws_bytes(&shop.viewer).await;
    raw.expect_opcode(0x1).await;
    raw.write(&client_frame(true, 0x1, &[0xc3, 0x28], KEY))
        .await;
    assert_eq!(raw.expect_close_code().await, 1007);
}

/// Bytes the client sends after the server closed (a late pong, its own close) do not cost it
/// the close frame.
async fn the_close_frame_survives_what_the_client_sends_after_it(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("linger").await;
    let mut raw = app.ws_bytes(&shop.viewer).await;
    raw.expect_opcode(0x1).await;
    raw.write(&client_frame(true, 0x1, &[0xc3, 0x28], KEY))
        .await;
    // The server has closed with 1007 by now; these bytes reach it afterwards.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    raw.write(&client_frame(true, 0xA, b"late pong", KEY)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(raw.expect_close_code().await, 1007);
}

async fn a_websocket_ping_is_answered_with_its_payload(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("ws-ping").await;
    let mut raw = app.ws_bytes(&shop.viewer).await;
    raw.expect_opcode(0x1).await;
    raw.write(&client_frame(true, 0x9, b"are you there", KEY))
        .await;
    assert_eq!(raw.expect_opcode(0xA).await, b"are you there");
}

async fn a_message_split_into_fragments_and_reads_is_understood(backend: Backend) {
    let app = TestApp::default(backend).await;
    let (shop, stream) = setup(&app, "fragments").await;
    let mut raw = app.ws_bytes(&shop.viewer).await;
    raw.expect_opcode(0x1).await;
    let join = json!({ "op": "join", "stream": stream, "ref": "in-pieces" }).to_string();
    let (a, rest) = join.as_bytes().split_at(7);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut bytes = client_frame(false, 0x1, a, KEY);
    bytes.extend(client_frame(false, 0x0, b, KEY));
    bytes.extend(client_frame(true, 0x9, b"between", KEY));
    bytes.extend(client_frame(true, 0x0, c, KEY));
    // Byte by byte: every frame arrives over many reads.
    for byte in bytes {
        raw.write(&[byte]).await;
    }
    assert_eq!(raw.expect_opcode(0xA).await, b"between");
    let joined = loop {
        let text = raw.expect_opcode(0x1).await;
        let frame: Value = serde_json::from_slice(&text).expect("JSON frame");
        if frame["type"] == "joined" {
            break frame;
        }
    };
    assert_eq!(joined["ref"], "in-pieces", "{joined}");
}
