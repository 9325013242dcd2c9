//! Tests of the Redis bus against a `redis-server` of their own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use liveshop_actors::fanout::bus::{Bus, BusMessage, BusSink, Control, StreamEvent};
use liveshop_actors::fanout::contract::Recorder;
use liveshop_engine::StreamId;

use super::{BusOptions, RedisBus};
use crate::history::History;
use crate::keys;
use crate::link::Link;
use crate::testing::RedisServer;
use crate::wire;

/// A bus that keeps its server alive as long as it lives (the contract suite only keeps buses).
struct Served {
    bus: Arc<RedisBus>,
    _server: Arc<RedisServer>,
}

#[async_trait::async_trait]
impl Bus for Served {
    fn publish(&self, stream: &StreamId, message: BusMessage) {
        self.bus.publish(stream, message);
    }
    async fn watch(&self, stream: &StreamId) -> Result<(), liveshop_actors::fanout::bus::BusError> {
        self.bus.watch(stream).await
    }
    async fn unwatch(
        &self,
        stream: &StreamId,
    ) -> Result<(), liveshop_actors::fanout::bus::BusError> {
        self.bus.unwatch(stream).await
    }
}

async fn connect(sinks: Vec<Arc<dyn BusSink>>) -> Vec<Arc<dyn Bus>> {
    let server = Arc::new(RedisServer::start());
    sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| {
            Arc::new(Served {
                bus: bus_on(&server, &format!("node-{i}"), sink, BusOptions::new(1000)),
                _server: server.clone(),
            }) as Arc<dyn Bus>
        })
        .collect()
}

liveshop_actors::bus_contract_tests!(redis_bus, connect);

fn bus_on(
    server: &RedisServer,
    node: &str,
    sink: Arc<dyn BusSink>,
    options: BusOptions,
) -> Arc<RedisBus> {
    RedisBus::start_with(Link::open(&server.url()).unwrap(), node, sink, options)
}

fn stream() -> StreamId {
    StreamId::from_trusted(format!("str_{}", uuid::Uuid::new_v4().simple()))
}

fn ordered(epoch: u64, seq: u64) -> BusMessage {
    BusMessage::Event(StreamEvent {
        epoch,
        seq: Some(seq),
        bytes: Bytes::from(format!("{{\"e\":{epoch},\"s\":{seq}}}")),
    })
}

fn rejoin() -> BusMessage {
    BusMessage::Control(Control::Rejoin)
}

/// Two nodes on one server, both watching `stream`, with what reaches each.
async fn two_nodes(
    server: &RedisServer,
    stream: &StreamId,
    options: BusOptions,
) -> ([Arc<RedisBus>; 2], [Arc<Recorder>; 2]) {
    let recorders = [Arc::new(Recorder::default()), Arc::new(Recorder::default())];
    let buses = [
        bus_on(server, "a", recorders[0].clone(), options.clone()),
        bus_on(server, "b", recorders[1].clone(), options),
    ];
    for bus in &buses {
        bus.watch(stream).await.expect("watch");
    }
    (buses, recorders)
}

/// What a sink got contains no repeat and no silent gap: each ordered event follows the one
/// before it in its epoch, unless a re-join or a new epoch came between.
fn assert_no_repeat_and_no_silent_gap(got: &[BusMessage]) {
    let mut last: Option<(u64, u64)> = None;
    for message in got {
        match message {
            BusMessage::Event(StreamEvent {
                epoch,
                seq: Some(seq),
                ..
            }) => {
                if let Some((last_epoch, last_seq)) = last
                    && last_epoch == *epoch
                {
                    assert_eq!(*seq, last_seq + 1, "after {last:?} in {got:?}");
                }
                last = Some((*epoch, *seq));
            }
            BusMessage::Control(Control::Rejoin | Control::Epoch(_)) => last = None,
            _ => {}
        }
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes a raw wire message on the stream's channel, bypassing the history script.
async fn publish_raw(link: &Link, stream: &StreamId, message: &BusMessage) {
    let mut payload = wire::header("elsewhere", message);
    payload.extend_from_slice(&wire::body(message));
    let _: i64 = link
        .query(
            "test_publish",
            redis::cmd("PUBLISH").arg(keys::events(stream)).arg(payload),
        )
        .await
        .unwrap();
}

/// Appends events to the history as the publish script would, without publishing them.
async fn append_history(
    link: &Link,
    stream: &StreamId,
    epoch: u64,
    seqs: std::ops::RangeInclusive<u64>,
) {
    for seq in seqs {
        let BusMessage::Event(event) = ordered(epoch, seq) else {
            unreachable!()
        };
        let _: String = link
            .query(
                "test_xadd",
                redis::cmd("XADD")
                    .arg(keys::history(stream))
                    .arg(format!("{seq}-0"))
                    .arg("e")
                    .arg(epoch)
                    .arg("s")
                    .arg(seq)
                    .arg("b")
                    .arg(event.bytes.as_ref()),
            )
            .await
            .unwrap();
        let _: i64 = link
            .query(
                "test_meta",
                redis::cmd("HSET")
                    .arg(keys::meta(stream))
                    .arg("epoch")
                    .arg(epoch)
                    .arg("seq")
                    .arg(seq),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn two_nodes_get_the_same_ordered_events_and_the_history_holds_them() {
    let server = RedisServer::start();
    let s = stream();
    let (buses, recorders) = two_nodes(&server, &s, BusOptions::new(1000)).await;
    let sent: Vec<BusMessage> = (1..=50).map(|seq| ordered(3, seq)).collect();
    for message in &sent {
        buses[0].publish(&s, message.clone());
    }
    for recorder in &recorders {
        assert_eq!(recorder.wait_for(&s, sent.len()).await, sent);
    }
    let history = History::new(Link::open(&server.url()).unwrap());
    assert_eq!(history.head(&s).await.unwrap(), Some((3, 50)));
    let replay: Vec<BusMessage> = history
        .since(&s, 3, 0)
        .await
        .unwrap()
        .expect("covered")
        .into_iter()
        .map(BusMessage::Event)
        .collect();
    assert_eq!(replay, sent);
}

#[tokio::test]
async fn a_new_epoch_resets_the_history_and_the_same_epoch_again_keeps_it() {
    let server = RedisServer::start();
    let s = stream();
    let (buses, recorders) = two_nodes(&server, &s, BusOptions::new(1000)).await;
    let history = History::new(Link::open(&server.url()).unwrap());
    for seq in 1..=3 {
        buses[0].publish(&s, ordered(1, seq));
    }
    // The old owner's events are in before the new owner speaks (two publishers are not ordered
    // with each other).
    recorders[0].wait_for(&s, 3).await;
    // A new owner continuing epoch 1 announces it again: the history stays.
    buses[1].publish(&s, BusMessage::Control(Control::Epoch(1)));
    buses[1].publish(&s, ordered(1, 4));
    recorders[0].wait_for(&s, 5).await;
    assert_eq!(history.head(&s).await.unwrap(), Some((1, 4)));
    assert_eq!(
        history.since(&s, 1, 0).await.unwrap().map(|e| e.len()),
        Some(4)
    );
    // Epoch 2: the history starts over.
    buses[1].publish(&s, BusMessage::Control(Control::Epoch(2)));
    recorders[0].wait_for(&s, 6).await;
    assert_eq!(history.head(&s).await.unwrap(), Some((2, 0)));
    assert_eq!(history.since(&s, 1, 0).await.unwrap(), None);
    assert_eq!(history.since(&s, 2, 0).await.unwrap(), Some(vec![]));
    buses[1].publish(&s, ordered(2, 1));
    recorders[0].wait_for(&s, 7).await;
    assert_eq!(
        history.since(&s, 2, 0).await.unwrap().map(|e| e.len()),
        Some(1)
    );
}

#[tokio::test]
async fn repeated_events_reach_each_node_once() {
    let server = RedisServer::start();
    let s = stream();
    let (buses, recorders) = two_nodes(&server, &s, BusOptions::new(1000)).await;
    let raw = Link::open(&server.url()).unwrap();
    for seq in [1, 2, 2, 1, 3] {
        buses[0].publish(&s, ordered(1, seq));
    }
    recorders[1].wait_for(&s, 3).await;
    // Repeats that skip the history script (an echo of a re-send) are dropped by the receiver.
    for seq in [3, 2] {
        publish_raw(&raw, &s, &ordered(1, seq)).await;
    }
    buses[0].publish(&s, ordered(1, 4));
    let want: Vec<BusMessage> = (1..=4).map(|seq| ordered(1, seq)).collect();
    for recorder in &recorders {
        assert_eq!(recorder.wait_for(&s, 4).await, want);
    }
}

#[tokio::test]
async fn a_gap_is_filled_from_the_history_before_the_event() {
    let server = RedisServer::start();
    let s = stream();
    let (buses, recorders) = two_nodes(&server, &s, BusOptions::new(1000)).await;
    let raw = Link::open(&server.url()).unwrap();
    for seq in 1..=3 {
        buses[0].publish(&s, ordered(1, seq));
    }
    recorders[1].wait_for(&s, 3).await;
    // 4 and 5 reached the history but their messages were lost on the way.
    append_history(&raw, &s, 1, 4..=5).await;
    buses[0].publish(&s, ordered(1, 6));
    let want: Vec<BusMessage> = (1..=6).map(|seq| ordered(1, seq)).collect();
    for recorder in &recorders {
        assert_eq!(recorder.wait_for(&s, 6).await, want);
    }
}

#[tokio::test]
async fn a_gap_the_history_cannot_fill_makes_the_viewers_rejoin() {
    let server = RedisServer::start();
    let s = stream();
    let (buses, recorders) = two_nodes(&server, &s, BusOptions::new(1000)).await;
    let raw = Link::open(&server.url()).unwrap();
    for seq in 1..=3 {
        buses[0].publish(&s, ordered(1, seq));
    }
    recorders[1].wait_for(&s, 3).await;
    publish_raw(&raw, &s, &ordered(1, 9)).await;
    let got = recorders[1].wait_for(&s, 5).await;
    assert_eq!(got[3..], [rejoin(), ordered(1, 9)]);
}

#[tokio::test]
async fn a_node_whose_subscription_dropped_catches_up_from_the_history() {
    let server = RedisServer::start();
    let s = stream();
    let (buses, recorders) = two_nodes(&server, &s, BusOptions::new(1000)).await;
    let raw = Link::open(&server.url()).unwrap();
    for seq in 1..=3 {
        buses[0].publish(&s, ordered(1, seq));
    }
    recorders[1].wait_for(&s, 3).await;
    let _: i64 = raw
        .query(
            "test_kill",
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"),
        )
        .await
        .unwrap();
    for seq in 4..=8 {
        buses[0].publish(&s, ordered(1, seq));
    }
    let want: Vec<BusMessage> = (1..=8).map(|seq| ordered(1, seq)).collect();
    for recorder in &recorders {
        assert_eq!(recorder.wait_for(&s, 8).await, want);
    }
    eventually("resubscribed", || buses[1].is_connected()).await;
    buses[0].publish(&s, ordered(1, 9));
    for recorder in &recorders {
        assert_eq!(recorder.wait_for(&s, 9).await.last(), Some(&ordered(1, 9)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_stream_falls_back_locally_then_delivery_resumes_without_a_silent_gap()
 {
    let mut server = RedisServer::start();
    let s = stream();
    let (buses, recorders) = two_nodes(&server, &s, BusOptions::new(1000)).await;
    for seq in 1..=3 {
        buses[0].publish(&s, ordered(1, seq));
    }
    recorders[1].wait_for(&s, 3).await;

    server.stop();
    for seq in 4..=6 {
        buses[0].publish(&s, ordered(1, seq));
    }
    // The publishing node's own viewers get them without Redis.
    let local = recorders[0].wait_for(&s, 6).await;
    assert_eq!(
        local,
        (1..=6).map(|seq| ordered(1, seq)).collect::<Vec<_>>()
    );

    server.restart();
    let back = tokio::time::Instant::now();
    buses[0].publish(&s, ordered(1, 7));
    eventually(
        "the other node gets the event after the outage, or re-joins",
        || {
            let other = recorders[1].of(&s);
            other.contains(&ordered(1, 7)) || other.contains(&rejoin())
        },
    )
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "cross-node delivery resumed after {:?}",
        back.elapsed()
    );
    let other = recorders[1].of(&s);
    assert_no_repeat_and_no_silent_gap(&other);
    let replayed = (4..=6).all(|seq| other.contains(&ordered(1, seq)));
    assert!(replayed || other.contains(&rejoin()), "got {other:?}");
    // The echo of what the fallback delivered does not reach the publishing node twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let local = recorders[0].of(&s);
    assert_eq!(
        local,
        (1..=7).map(|seq| ordered(1, seq)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_past_its_bound_is_dropped_and_the_other_nodes_rejoin() {
    let mut server = RedisServer::start();
    let s = stream();
    let options = BusOptions {
        max_pending: 2,
        ..BusOptions::new(1000)
    };
    let (buses, recorders) = two_nodes(&server, &s, options).await;
    buses[0].publish(&s, ordered(1, 1));
    recorders[1].wait_for(&s, 1).await;
    server.stop();
    for seq in 2..=6 {
        buses[0].publish(&s, ordered(1, seq));
    }
    recorders[0].wait_for(&s, 6).await;
    server.restart();
    buses[0].publish(&s, ordered(1, 7));
    eventually("the other node re-joins after the outage", || {
        recorders[1].of(&s).contains(&rejoin())
    })
    .await;
    eventually("resubscribed", || buses[1].is_connected()).await;
    buses[0].publish(&s, ordered(1, 8));
    eventually("the other node gets events again", || {
        recorders[1].of(&s).contains(&ordered(1, 8))
    })
    .await;
    let other = recorders[1].of(&s);
    assert_eq!(other[0], ordered(1, 1));
    assert_no_repeat_and_no_silent_gap(&other);
}

/// A sink that says nobody views any stream here.
#[derive(Default)]
struct NobodyHere;

impl BusSink for NobodyHere {
    fn receive(&self, _stream: &StreamId, _message: BusMessage) {}
    fn local_viewers(&self, _stream: &StreamId) -> Option<usize> {
        Some(0)
    }
}

#[tokio::test]
async fn a_stream_without_local_viewers_is_unwatched_after_the_grace() {
    let server = RedisServer::start();
    let s = stream();
    let options = BusOptions {
        unwatch_grace: Duration::from_millis(200),
        ..BusOptions::new(1000)
    };
    let bus = bus_on(&server, "a", Arc::new(NobodyHere), options);
    bus.watch(&s).await.unwrap();
    assert_eq!(bus.watched(), std::slice::from_ref(&s));
    eventually("the idle stream is unwatched", || bus.watched().is_empty()).await;
    let raw = Link::open(&server.url()).unwrap();
    let subscribers: Vec<(String, i64)> = raw
        .query(
            "test_numsub",
            redis::cmd("PUBSUB").arg("NUMSUB").arg(keys::events(&s)),
        )
        .await
        .unwrap();
    assert_eq!(subscribers, [(keys::events(&s), 0)]);
}

#[tokio::test]
async fn a_recorder_sink_that_cannot_tell_its_viewers_stays_watched() {
    let server = RedisServer::start();
    let s = stream();
    let options = BusOptions {
        unwatch_grace: Duration::from_millis(50),
        ..BusOptions::new(1000)
    };
    let bus = bus_on(&server, "a", Arc::new(Recorder::default()), options);
    bus.watch(&s).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(bus.watched(), [s]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_during_an_outage_fails_at_once_and_the_stream_is_subscribed_when_redis_is_back() {
    let mut server = RedisServer::start();
    let (old, new) = (stream(), stream());
    let (buses, recorders) = two_nodes(&server, &old, BusOptions::new(1000)).await;
    server.stop();
    eventually("the outage is noticed", || !buses[1].is_connected()).await;
    let started = tokio::time::Instant::now();
    assert!(buses[1].watch(&new).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(100));
    server.restart();
    eventually("resubscribed", || buses[1].is_connected()).await;
    buses[0].publish(&new, ordered(1, 1));
    assert_eq!(recorders[1].wait_for(&new, 1).await, [ordered(1, 1)]);
}

#[tokio::test]
async fn a_removed_streams_history_expires_within_the_hour_and_others_within_a_day() {
    let server = RedisServer::start();
    let (live, ended) = (stream(), stream());
    let recorder = Arc::new(Recorder::default());
    let bus = bus_on(&server, "a", recorder.clone(), BusOptions::new(1000));
    for s in [&live, &ended] {
        bus.watch(s).await.unwrap();
        bus.publish(s, ordered(1, 1));
    }
    bus.publish(&ended, BusMessage::Control(Control::Remove));
    recorder.wait_for(&ended, 2).await;
    recorder.wait_for(&live, 1).await;
    let raw = Link::open(&server.url()).unwrap();
    for (s, most) in [(&live, 24 * 3600), (&ended, 3600)] {
        for key in [keys::history(s), keys::meta(s)] {
            let ttl: i64 = raw
                .query("test_ttl", redis::cmd("TTL").arg(&key))
                .await
                .unwrap();
            assert!(ttl > 0 && ttl <= most, "{key} expires in {ttl} s");
        }
    }
}

#[tokio::test]
async fn the_fallback_hands_over_recently_published_events_whose_echo_never_came() {
    let server = RedisServer::start();
    let s = stream();
    let recorder = Arc::new(Recorder::default());
    let bus = bus_on(&server, "a", recorder.clone(), BusOptions::new(1000));
    bus.watch(&s).await.unwrap();
    let shared = &bus.shared;
    // 1 came back; 2 and 3 were published but their echo was lost with the connection.
    shared.offer(&s, ordered(1, 1));
    shared.remember(&s, &[ordered(1, 1), ordered(1, 2), ordered(1, 3)]);
    shared.deliver_locally(&s, ordered(1, 4));
    // Without a record of what came before, the viewers start over.
    shared.deliver_locally(&s, ordered(1, 9));
    assert_eq!(
        recorder.of(&s),
        [
            ordered(1, 1),
            ordered(1, 2),
            ordered(1, 3),
            ordered(1, 4),
            rejoin(),
            ordered(1, 9)
        ]
    );
}
