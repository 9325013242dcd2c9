//! The chat persister, alone and under the engine's supervisor, against an in-memory store on
//! paused time.

use std::sync::Arc;

use liveshop_actors::clock::{Counter, TimeAndIds, TokioClock};
use liveshop_actors::fanout::Fanout;
use liveshop_actors::mailbox::{Addr, Depth};
use liveshop_actors::metrics::kind;
use liveshop_actors::persister::{
    FLUSH_EVERY, MAX_BATCH, Persister, PersisterPort, PersisterStores,
};
use liveshop_actors::testing::{MemoryStore, advance_ms, settle};
use liveshop_actors::{Engine, EngineConfig, FaultTarget};
use liveshop_engine::ids::ChatId;
use liveshop_engine::records::{ChatAuthor, ChatMessage};
use liveshop_engine::{StreamId, TenantId, Timestamp, UserId};
use ractor::Actor;

fn message(n: usize, text: &str) -> ChatMessage {
    ChatMessage {
        id: ChatId::from_trusted(format!("cht_{n:06}")),
        stream: StreamId::from_trusted("str_1"),
        tenant: TenantId::from_trusted("ten_1"),
        user: ChatAuthor {
            id: UserId::from_trusted("alice"),
            name: "alice".to_owned(),
        },
        text: text.to_owned(),
        at: Timestamp::from_millis(0),
    }
}

/// A persister started alone behind a port.
async fn persister(store: &Arc<MemoryStore>) -> PersisterPort {
    let port = PersisterPort::new();
    let depth = Depth::new(kind::PERSISTER);
    let (actor, _) = Actor::spawn(
        None,
        Persister,
        (
            PersisterStores {
                chat: store.clone(),
                users: store.clone(),
            },
            port.queue(),
            depth.clone(),
        ),
    )
    .await
    .unwrap();
    port.slot().attach(Addr::new(actor, depth));
    // Its flush timer starts counting when its task first runs.
    settle().await;
    port
}

fn stored(store: &MemoryStore) -> usize {
    store.chat_of(&StreamId::from_trusted("str_1")).len()
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_written_on_the_next_flush_tick() {
    let store = MemoryStore::new();
    let port = persister(&store).await;
    for n in 0..3 {
        port.chat(message(n, "hi"));
    }
    settle().await;
    assert_eq!(store.calls("insert_chat"), 0, "not before the tick");

    advance_ms(FLUSH_EVERY.as_millis() as u64).await;
    assert_eq!(store.calls("insert_chat"), 1, "one transaction");
    assert_eq!(stored(&store), 3);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_written_at_once() {
    let store = MemoryStore::new();
    let port = persister(&store).await;
    for n in 0..MAX_BATCH {
        port.chat(message(n, "hi"));
    }
    settle().await;
    assert_eq!(
        store.calls("insert_chat"),
        1,
        "without waiting for the tick"
    );
    assert_eq!(stored(&store), MAX_BATCH);
}

#[tokio::test(start_paused = true)]
async fn chat_the_database_fails_is_written_on_a_later_tick() {
    let store = MemoryStore::new();
    let port = persister(&store).await;
    store.fail_next_writes(1);
    port.chat(message(0, "hi"));
    advance_ms(FLUSH_EVERY.as_millis() as u64).await;
    assert_eq!(stored(&store), 0);
    advance_ms(FLUSH_EVERY.as_millis() as u64).await;
    assert_eq!(stored(&store), 1, "kept and retried");
}

#[tokio::test(start_paused = true)]
async fn a_message_storage_refuses_is_set_aside_and_the_others_stored() {
    let store = MemoryStore::new();
    let port = persister(&store).await;
    port.chat(message(0, "a"));
    port.chat(message(1, "bad\0"));
    port.chat(message(2, "c"));
    advance_ms(FLUSH_EVERY.as_millis() as u64).await;
    let texts: Vec<_> = store
        .chat_of(&StreamId::from_trusted("str_1"))
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["a", "c"]);
    advance_ms(FLUSH_EVERY.as_millis() as u64).await;
    assert_eq!(stored(&store), 2, "the refused one is not retried");
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_the_restarted_persister_writes_what_was_queued() {
    let store = MemoryStore::new();
    let time = TimeAndIds {
        clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(1_000_000))),
        ids: Arc::new(Counter::default()),
    };
    let engine = Engine::start_with_time(
        store.clone(),
        Fanout::in_process(EngineConfig::default().limits.resume_buffer),
        EngineConfig::default(),
        time,
    )
    .await
    .unwrap();
    for n in 0..3 {
        engine.persist_chat(message(n, "before"));
    }
    engine.crash(FaultTarget::Persister).await.unwrap();
    settle().await;
    for n in 3..5 {
        engine.persist_chat(message(n, "after"));
    }
    assert_eq!(stored(&store), 0, "the crash came before any tick");

    advance_ms(2 * FLUSH_EVERY.as_millis() as u64).await;
    let texts: Vec<_> = store
        .chat_of(&StreamId::from_trusted("str_1"))
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["before", "before", "before", "after", "after"]);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_persister_given_up_after_too_many_failures_is_started_again_and_loses_nothing() {
    let store = MemoryStore::new();
    let time = TimeAndIds {
        clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(1_000_000))),
        ids: Arc::new(Counter::default()),
    };
    let config = EngineConfig::default();
    let engine = Engine::start_with_time(
        store.clone(),
        Fanout::in_process(config.limits.resume_buffer),
        config.clone(),
        time,
    )
    .await
    .unwrap();
    // Six failures in a moment: more than the budget of five in ten seconds.
    for _ in 0..6 {
        engine.crash(FaultTarget::Persister).await.unwrap();
        settle().await;
    }
    engine.persist_chat(message(0, "while it was down"));
    advance_ms(2 * FLUSH_EVERY.as_millis() as u64).await;
    assert_eq!(stored(&store), 0, "nobody writes while it is given up");

    // The recovery task starts it again; it writes what waited.
    advance_ms(config.recovery_every.as_millis() as u64).await;
    advance_ms(2 * FLUSH_EVERY.as_millis() as u64).await;
    let texts: Vec<_> = store
        .chat_of(&StreamId::from_trusted("str_1"))
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["while it was down"]);
    engine.shutdown().await;
}
