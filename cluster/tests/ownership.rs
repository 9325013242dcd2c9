//! Leases and the relay against a real `redis-server` of the test's own: one owner per stream,
//! fencing tokens from storage, a lease that vanishes with Redis set again only when nobody took
//! the stream meanwhile, a hand-over that lets the next owner continue, and relayed calls.

use std::sync::Arc;
use std::time::Duration;

use liveshop_actors::placement::{Placed, Placement};
use liveshop_actors::remote::{Call, Remote};
use liveshop_actors::testing::MemoryStore;
use liveshop_cluster::keys;
use liveshop_cluster::lease::Leases;
use liveshop_cluster::link::Link;
use liveshop_cluster::relay::Relay;
use liveshop_cluster::testing::RedisServer;
use liveshop_engine::storage::{Fence, StreamStore};
use liveshop_engine::{ErrorCode, StreamId, TenantId};
use tokio::sync::mpsc;

const LEASE: Duration = Duration::from_millis(600);

fn stream() -> StreamId {
    StreamId::from_trusted("str_1")
}

fn node(redis: &RedisServer, id: &str, store: &Arc<MemoryStore>) -> Arc<Leases> {
    let fences: Arc<dyn StreamStore> = store.clone();
    Leases::start(
        Link::open(&redis.url()).expect("redis url"),
        id.into(),
        LEASE,
        fences,
    )
}

async fn redis_get(redis: &RedisServer, key: &str) -> Option<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_node_owns_a_stream_with_a_token_and_the_other_is_told_where_it_runs() {
    let redis = RedisServer::start();
    let store = MemoryStore::new();
    let (a, b) = (node(&redis, "a", &store), node(&redis, "b", &store));
    assert_eq!(
        a.place(&stream()).await.unwrap(),
        Placed::Here(Fence::owner("str_1", 1))
    );
    assert_eq!(
        b.place(&stream()).await.unwrap(),
        Placed::Elsewhere("a".into())
    );
    assert_eq!(a.held(), [stream()]);
    // Renewed: still a's well after one lease.
    tokio::time::sleep(LEASE * 3).await;
    assert_eq!(
        redis_get(&redis, &keys::lease(&stream())).await.as_deref(),
        Some("a")
    );
    assert_eq!(
        a.place(&stream()).await.unwrap(),
        Placed::Here(Fence::owner("str_1", 1))
    );
}

#[tokio::test]
async fn a_lease_that_lapses_goes_to_another_node_with_a_higher_token_and_the_old_owner_learns_it_lost()
 {
    let redis = RedisServer::start();
    let store = MemoryStore::new();
    let a = node(&redis, "a", &store);
    let (lost_tx, mut lost_rx) = mpsc::unbounded_channel();
    a.on_lost(lost_tx);
    a.place(&stream()).await.unwrap();
    // Someone else holds the key now (as after a's lease lapsed while it was paused).
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(keys::lease(&stream()))
        .arg("b")
        .query_async(&mut conn)
        .await
        .unwrap();
    let lost = tokio::time::timeout(LEASE * 2, lost_rx.recv()).await;
    assert_eq!(lost.expect("reported in time"), Some(stream()));
    assert!(a.held().is_empty());

    let _: () = redis::cmd("DEL")
        .arg(keys::lease(&stream()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let b = node(&redis, "b", &store);
    assert_eq!(
        b.place(&stream()).await.unwrap(),
        Placed::Here(Fence::owner("str_1", 2)),
        "the next owner's token is above every earlier one"
    );
}

#[tokio::test]
async fn after_redis_restarts_empty_the_owner_sets_its_lease_again_unless_the_stream_was_taken() {
    let mut redis = RedisServer::start();
    let store = MemoryStore::new();
    let a = node(&redis, "a", &store);
    let (lost_tx, mut lost_rx) = mpsc::unbounded_channel();
    a.on_lost(lost_tx);
    a.place(&stream()).await.unwrap();
    redis.restart();
    tokio::time::sleep(LEASE).await;
    assert_eq!(
        redis_get(&redis, &keys::lease(&stream())).await.as_deref(),
        Some("a"),
        "nobody took a token meanwhile: the owner keeps it"
    );
    assert!(lost_rx.try_recv().is_err());

    // Now another node took a token while the lease was gone: the owner must give up.
    redis.restart();
    store.take_fence("str_1").await.unwrap();
    let lost = tokio::time::timeout(LEASE * 3, lost_rx.recv()).await;
    assert_eq!(lost.expect("reported in time"), Some(stream()));
    tokio::time::sleep(LEASE / 2).await;
    assert_eq!(
        redis_get(&redis, &keys::lease(&stream())).await,
        None,
        "the lease it set again is released"
    );
}

#[tokio::test]
async fn a_stream_handed_over_in_order_continues_its_epoch_on_the_next_owner() {
    let redis = RedisServer::start();
    let store = MemoryStore::new();
    let (a, b) = (node(&redis, "a", &store), node(&redis, "b", &store));
    a.place(&stream()).await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keys::meta(&stream()))
        .arg("epoch")
        .arg(7)
        .arg("seq")
        .arg(42)
        .query_async(&mut conn)
        .await
        .unwrap();
    a.stop_taking();
    a.hand_over(&stream(), true).await;
    assert_eq!(
        b.place(&stream()).await.unwrap(),
        Placed::Here(Fence::owner("str_1", 2))
    );
    assert_eq!(b.take_continuation(&stream()), Some((7, 42)));
    assert_eq!(b.take_continuation(&stream()), None, "taken once");
    // A draining node takes nothing back.
    assert_eq!(
        a.place(&stream()).await.unwrap(),
        Placed::Elsewhere("b".into())
    );

    // Handed over without its whole history: the next owner begins a new epoch.
    b.stop_taking();
    b.hand_over(&stream(), false).await;
    let c = node(&redis, "c", &store);
    c.place(&stream()).await.unwrap();
    assert_eq!(c.take_continuation(&stream()), None);
}

#[tokio::test]
async fn a_call_to_a_node_nobody_listens_for_is_refused_at_once() {
    let redis = RedisServer::start();
    let relay = Relay::start(Link::open(&redis.url()).unwrap(), "a".into());
    let started = std::time::Instant::now();
    let call = Call::Snapshot {
        tenant: TenantId::from_trusted("ten_1"),
        stream: stream(),
    };
    let refused = relay.call("gone", call).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not after the relay timeout: {:?}",
        started.elapsed()
    );
}
