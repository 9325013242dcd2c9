//! A session alone: client frames in, frames out on a recording connection, against the engine
//! facade over an in-memory store, on paused time.

use std::sync::Arc;

use liveshop_actors::clock::{Counter, TimeAndIds, TokioClock};
use liveshop_actors::fanout::Fanout;
use liveshop_actors::session::{Session, SessionArgs, SessionInbox, SessionMsg};
use liveshop_actors::testing::{MemoryStore, RecordingConnection, settle};
use liveshop_actors::{Engine, EngineConfig};
use liveshop_engine::auth::{Identity, Role};
use liveshop_engine::frames::ClientFrame;
use liveshop_engine::{SessionId, TenantId, Timestamp, UserId};
use serde_json::Value;

/// An engine over a store holding one tenant with one live stream, `str_1`.
async fn engine() -> Engine {
    let store = MemoryStore::with_live_stream().await;
    let config = EngineConfig::default();
    let time = TimeAndIds {
        clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(1_000_000))),
        ids: Arc::new(Counter::default()),
    };
    Engine::start_with_time(
        store,
        Fanout::in_process(config.limits.resume_buffer),
        config,
        time,
    )
    .await
    .unwrap()
}

fn session(engine: &Engine, role: Role, conn: &Arc<RecordingConnection>) -> Session {
    Session::start(SessionArgs {
        engine: engine.clone(),
        identity: Identity {
            user: UserId::from_trusted("viewer-1"),
            name: "Viewer".into(),
            role,
            tenant: Some(TenantId::from_trusted("ten_1")),
        },
        session: SessionId::from_trusted("ses_1"),
        conn: conn.clone(),
        inbox: SessionInbox::new(),
    })
}

/// Hands the session one client frame, as its connection's task does.
async fn send(session: Session, json: &str) -> Session {
    let frame = ClientFrame::decode(json).expect("a valid client frame");
    let (session, outcome) = session.dispatch(SessionMsg::Frame(frame)).await;
    outcome.expect("the handler does not panic");
    settle().await;
    session
}

fn last(conn: &RecordingConnection) -> Value {
    conn.frames().last().cloned().expect("a frame was written")
}

#[tokio::test(start_paused = true)]
async fn a_viewer_must_join_before_chatting_and_then_sees_their_message_with_its_seq() {
    let engine = engine().await;
    let conn = RecordingConnection::new(1);
    let s = session(&engine, Role::Viewer, &conn);

    let s = send(
        s,
        r#"{"op":"chat","stream":"str_1","text":"hi","ref":"c1"}"#,
    )
    .await;
    let refused = last(&conn);
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "not_joined");
    assert_eq!(refused["ref"], "c1");

    let s = send(s, r#"{"op":"join","stream":"str_1","ref":"j1"}"#).await;
    let joined = last(&conn);
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["ref"], "j1");
    assert_eq!(joined["resumed"], false);
    assert_eq!(joined["snapshot"]["stream"]["status"], "live");

    let s = send(
        s,
        r#"{"op":"chat","stream":"str_1","text":"hi","ref":"c2"}"#,
    )
    .await;
    let chat: Vec<Value> = conn
        .frames()
        .into_iter()
        .filter(|f| f["type"] == "event" && f["kind"] == "chat")
        .collect();
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0]["data"]["text"], "hi");
    let ok = conn
        .frames()
        .into_iter()
        .find(|f| f["type"] == "ok" && f["ref"] == "c2")
        .expect("the chat is answered");
    assert_eq!(ok["seq"], chat[0]["seq"]);
    drop(s);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn leaving_answers_ok_and_stops_the_stream_events() {
    let engine = engine().await;
    let (viewer, seller) = (RecordingConnection::new(1), RecordingConnection::new(2));
    let v = send(
        session(&engine, Role::Viewer, &viewer),
        r#"{"op":"join","stream":"str_1"}"#,
    )
    .await;
    let v = send(v, r#"{"op":"leave","stream":"str_1","ref":"l1"}"#).await;
    let left = last(&viewer);
    assert_eq!(left["type"], "ok");
    assert_eq!(left["ref"], "l1");

    // The seller broadcasts without joining; the viewer who left gets nothing of it.
    let s = session(&engine, Role::Seller, &seller);
    let s = send(
        s,
        r#"{"op":"chat","stream":"str_1","text":"after","ref":"c"}"#,
    )
    .await;
    assert!(viewer.events("chat").is_empty(), "{:?}", viewer.frames());
    drop((v, s));
    engine.shutdown().await;
}
