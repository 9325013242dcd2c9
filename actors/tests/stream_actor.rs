//! The stream actor alone, against an in-memory store, the in-process fan-out and a recording
//! connection, on paused time: coalescing windows and rate refills in milliseconds.

use std::sync::Arc;

use liveshop_actors::clock::{Counter, TimeAndIds, TokioClock};
use liveshop_actors::fanout::Fanout;
use liveshop_actors::mailbox::Depth;
use liveshop_actors::metrics::kind;
use liveshop_actors::persister::PersisterPort;
use liveshop_actors::stream::{StreamActor, StreamArgs, StreamCaps, StreamMsg, StreamStores};
use liveshop_actors::testing::{MemoryStore, RecordingConnection, advance_ms, settle};
use liveshop_actors::tree::ActorTree;
use liveshop_engine::auth::Role;
use liveshop_engine::limits::Limits;
use liveshop_engine::records::ChatAuthor;
use liveshop_engine::stream_book::ChatAccess;
use liveshop_engine::{ErrorCode, Rejection, StreamId, TenantId, Timestamp, UserId};
use ractor::{Actor, ActorRef};

/// A live stream's actor, started alone with `limits`.
async fn live_stream(limits: Limits) -> ActorRef<StreamMsg> {
    let store = MemoryStore::with_live_stream().await;
    let args = StreamArgs {
        caps: StreamCaps {
            store: StreamStores {
                streams: store.clone(),
                chat: store.clone(),
                drops: store.clone(),
                moderation: store,
            },
            fanout: Fanout::in_process(limits.resume_buffer),
            persister: PersisterPort::new(),
            time: TimeAndIds {
                clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(1_000_000))),
                ids: Arc::new(Counter::default()),
            },
            limits,
            tree: Arc::new(ActorTree::default()),
        },
        tenant: TenantId::from_trusted("ten_1"),
        stream: StreamId::from_trusted("str_1"),
        fence: liveshop_engine::storage::Fence::Unfenced,
        continue_from: None,
        restarted: false,
        depth: Depth::new(kind::STREAM),
    };
    let (actor, _) = Actor::spawn(None, StreamActor, args).await.unwrap();
    actor
}

/// Joins a recording connection (fresh snapshot) and waits until its `joined` frame is written.
async fn join(actor: &ActorRef<StreamMsg>, id: u64) -> Arc<RecordingConnection> {
    let conn = RecordingConnection::new(id);
    let subscriber = conn.clone();
    actor
        .call(
            |reply| StreamMsg::Join {
                resume: None,
                r#ref: None,
                conn: subscriber,
                reply,
            },
            None,
        )
        .await
        .unwrap()
        .unwrap()
        .expect("joined");
    settle().await;
    assert_eq!(conn.frames()[0]["type"], "joined");
    conn
}

async fn chat(actor: &ActorRef<StreamMsg>, user: &str, text: &str) -> Result<u64, Rejection> {
    let author = ChatAuthor {
        id: UserId::from_trusted(user),
        name: user.to_owned(),
    };
    let text = text.to_owned();
    actor
        .call(
            |reply| StreamMsg::Chat {
                author,
                text,
                access: ChatAccess::Joined,
                role: Role::Viewer,
                reply,
            },
            None,
        )
        .await
        .unwrap()
        .unwrap()
}

/// Lets `ms` of paused time pass in steps of 50 ms, so every timer tick on the way is handled.
async fn run_for(ms: u64) {
    for _ in 0..ms / 50 {
        advance_ms(50).await;
    }
}

#[tokio::test(start_paused = true)]
async fn reactions_are_sent_coalesced_at_most_once_per_tick() {
    let actor = live_stream(Limits::default()).await;
    let conn = join(&actor, 1).await;
    for emoji in ["🔥", "🔥", "🔥", "👏"] {
        actor.cast(StreamMsg::React(emoji)).unwrap();
    }
    settle().await;
    assert!(
        conn.events("reactions").is_empty(),
        "nothing before the tick"
    );

    run_for(250).await;
    assert_eq!(
        conn.events("reactions"),
        [serde_json::json!({"counts": {"🔥": 3, "👏": 1}})]
    );

    // One reaction every 50 ms for a second: four ticks, so four tallies that add up.
    for _ in 0..20 {
        actor.cast(StreamMsg::React("🔥")).unwrap();
        advance_ms(50).await;
    }
    let tallies = conn.events("reactions");
    assert_eq!(tallies.len(), 1 + 4, "{tallies:?}");
    let total: u64 = tallies[1..]
        .iter()
        .map(|t| t["counts"]["🔥"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 20, "no reaction lost or counted twice");
}

#[tokio::test(start_paused = true)]
async fn viewer_counts_are_sent_at_most_once_a_second() {
    let actor = live_stream(Limits::default()).await;
    let first = join(&actor, 1).await;
    run_for(250).await;
    assert_eq!(first.events("viewers"), [serde_json::json!({"count": 1})]);

    let _second = join(&actor, 2).await;
    run_for(500).await;
    assert_eq!(first.events("viewers").len(), 1, "not within the second");

    run_for(750).await;
    assert_eq!(
        first.events("viewers").last(),
        Some(&serde_json::json!({"count": 2})),
        "the new count once the second is over"
    );
    assert_eq!(first.events("viewers").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_chat_allowance_refills_with_time() {
    let limits = Limits {
        chat_burst: 2,
        chat_per_sec: 1.0,
        ..Limits::default()
    };
    let actor = live_stream(limits).await;
    chat(&actor, "alice", "one")
        .await
        .expect("within the burst");
    chat(&actor, "alice", "two")
        .await
        .expect("within the burst");
    let refused = chat(&actor, "alice", "three").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert!(refused.retry_after_ms.is_some_and(|ms| ms <= 1_000));
    chat(&actor, "bob", "hi")
        .await
        .expect("another user has his own");

    run_for(500).await;
    let still = chat(&actor, "alice", "three").await.unwrap_err();
    assert_eq!(
        still.code,
        ErrorCode::RateLimited,
        "half a message refilled"
    );

    run_for(500).await;
    chat(&actor, "alice", "three").await.expect("one refilled");
    let again = chat(&actor, "alice", "four").await.unwrap_err();
    assert_eq!(again.code, ErrorCode::RateLimited);
}

#[tokio::test(start_paused = true)]
async fn chat_is_published_in_order_with_growing_seqs() {
    let actor = live_stream(Limits::default()).await;
    let conn = join(&actor, 1).await;
    let a = chat(&actor, "alice", "first").await.unwrap();
    let b = chat(&actor, "bob", "second").await.unwrap();
    settle().await;
    assert!(b > a);
    let texts: Vec<_> = conn
        .events("chat")
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["first", "second"]);
}
