//! The contract every [`Bus`] implementation passes.
//!
//! Each case takes a `connect` factory: given one [`BusSink`] per node, it returns that many
//! connected bus endpoints, one per node, in the same order (for Redis: one client per node on
//! one server). Run the whole suite for an implementation with [`crate::bus_contract_tests!`]:
//!
//! ```text
//! liveshop_actors::bus_contract_tests!(redis_bus, |sinks| async move { connect_redis(sinks).await });
//! ```
//!
//! Streams get fresh random names, so runs against a shared server do not see each other.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use liveshop_engine::StreamId;

use super::bus::{Bus, BusMessage, BusSink, Control, StreamEvent};

/// Nodes every case connects.
pub const NODES: usize = 3;

/// How long a case waits for messages to arrive before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// How long a case waits after the expected messages arrived, to catch extra ones.
const EXTRA_WAIT: Duration = Duration::from_millis(100);

/// A node's hub as the contract sees it: it records what reaches it.
#[derive(Default)]
pub struct Recorder {
    got: Mutex<Vec<(StreamId, BusMessage)>>,
}

impl BusSink for Recorder {
    fn receive(&self, stream: &StreamId, message: BusMessage) {
        self.got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((stream.clone(), message));
    }
}

impl Recorder {
    /// The messages of `stream` received so far, in arrival order.
    pub fn of(&self, stream: &StreamId) -> Vec<BusMessage> {
        self.got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Waits until `n` messages of `stream` arrived (panics after [`PATIENCE`]), then a little
    /// longer, and returns every message of `stream` received.
    pub async fn wait_for(&self, stream: &StreamId, n: usize) -> Vec<BusMessage> {
        let started = Instant::now();
        while self.of(stream).len() < n {
            assert!(
                started.elapsed() < PATIENCE,
                "only {} of {n} messages of {stream} arrived",
                self.of(stream).len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(EXTRA_WAIT).await;
        self.of(stream)
    }
}

/// A stream name no other run uses.
fn fresh_stream(label: &str) -> StreamId {
    StreamId::from_trusted(format!(
        "str_contract_{label}_{}",
        uuid::Uuid::new_v4().simple()
    ))
}

fn ordered(epoch: u64, seq: u64) -> BusMessage {
    BusMessage::Event(StreamEvent {
        epoch,
        seq: Some(seq),
        bytes: Bytes::from(format!("{{\"epoch\":{epoch},\"seq\":{seq}}}")),
    })
}

fn ephemeral(epoch: u64, n: u64) -> BusMessage {
    BusMessage::Event(StreamEvent {
        epoch,
        seq: None,
        bytes: Bytes::from(format!("{{\"viewers\":{n}}}")),
    })
}

/// Connects [`NODES`] recorders and makes every node watch `streams`.
async fn nodes<F, Fut>(connect: F, streams: &[&StreamId]) -> (Vec<Arc<Recorder>>, Vec<Arc<dyn Bus>>)
where
    F: FnOnce(Vec<Arc<dyn BusSink>>) -> Fut,
    Fut: Future<Output = Vec<Arc<dyn Bus>>>,
{
    let recorders: Vec<Arc<Recorder>> = (0..NODES).map(|_| Arc::default()).collect();
    let sinks = recorders
        .iter()
        .map(|r| r.clone() as Arc<dyn BusSink>)
        .collect();
    let buses = connect(sinks).await;
    assert_eq!(buses.len(), NODES, "one bus endpoint per node");
    for bus in &buses {
        for stream in streams {
            bus.watch(stream).await.expect("watch");
        }
    }
    (recorders, buses)
}

/// Events of a stream reach every node once each, in publish order, epoch, seq and bytes intact,
/// ephemeral ones in their place among the ordered ones.
pub async fn events_reach_every_node_in_publish_order_exactly_once<F, Fut>(connect: F)
where
    F: FnOnce(Vec<Arc<dyn BusSink>>) -> Fut,
    Fut: Future<Output = Vec<Arc<dyn Bus>>>,
{
    let stream = fresh_stream("order");
    let (recorders, buses) = nodes(connect, &[&stream]).await;
    let mut sent = Vec::new();
    for seq in 1..=300 {
        sent.push(ordered(7, seq));
        if seq % 10 == 0 {
            sent.push(ephemeral(7, seq));
        }
    }
    for message in &sent {
        buses[0].publish(&stream, message.clone());
    }
    for (node, recorder) in recorders.iter().enumerate() {
        assert_eq!(
            recorder.wait_for(&stream, sent.len()).await,
            sent,
            "node {node}"
        );
    }
}

/// Ephemeral events (no seq) cross between nodes too, from whichever node publishes them.
pub async fn ephemeral_events_reach_every_node<F, Fut>(connect: F)
where
    F: FnOnce(Vec<Arc<dyn BusSink>>) -> Fut,
    Fut: Future<Output = Vec<Arc<dyn Bus>>>,
{
    let stream = fresh_stream("ephemeral");
    let (recorders, buses) = nodes(connect, &[&stream]).await;
    let sent: Vec<BusMessage> = (0..50).map(|n| ephemeral(3, n)).collect();
    for message in &sent {
        buses[NODES - 1].publish(&stream, message.clone());
    }
    for (node, recorder) in recorders.iter().enumerate() {
        assert_eq!(
            recorder.wait_for(&stream, sent.len()).await,
            sent,
            "node {node}"
        );
    }
}

/// Messages published to one stream are received as that stream's only, and each stream keeps
/// its own order when publishes to both interleave.
pub async fn streams_do_not_leak_into_each_other<F, Fut>(connect: F)
where
    F: FnOnce(Vec<Arc<dyn BusSink>>) -> Fut,
    Fut: Future<Output = Vec<Arc<dyn Bus>>>,
{
    let a = fresh_stream("a");
    let b = fresh_stream("b");
    let (recorders, buses) = nodes(connect, &[&a, &b]).await;
    let sent_a: Vec<BusMessage> = (1..=100).map(|seq| ordered(1, seq)).collect();
    let sent_b: Vec<BusMessage> = (1..=100).map(|seq| ordered(2, seq)).collect();
    for (ma, mb) in sent_a.iter().zip(&sent_b) {
        buses[0].publish(&a, ma.clone());
        buses[1].publish(&b, mb.clone());
    }
    for (node, recorder) in recorders.iter().enumerate() {
        assert_eq!(
            recorder.wait_for(&a, 100).await,
            sent_a,
            "stream a, node {node}"
        );
        assert_eq!(
            recorder.wait_for(&b, 100).await,
            sent_b,
            "stream b, node {node}"
        );
    }
}

/// Control messages (a new epoch, a forced re-join, the end of a stream) reach every node, in
/// order with the stream's events.
pub async fn control_messages_reach_every_node_in_order<F, Fut>(connect: F)
where
    F: FnOnce(Vec<Arc<dyn BusSink>>) -> Fut,
    Fut: Future<Output = Vec<Arc<dyn Bus>>>,
{
    let stream = fresh_stream("control");
    let (recorders, buses) = nodes(connect, &[&stream]).await;
    let sent = vec![
        ordered(4, 1),
        ordered(4, 2),
        BusMessage::Control(Control::Epoch(5)),
        ordered(5, 1),
        BusMessage::Control(Control::Rejoin),
        BusMessage::Control(Control::Remove),
    ];
    for message in &sent {
        buses[0].publish(&stream, message.clone());
    }
    for (node, recorder) in recorders.iter().enumerate() {
        assert_eq!(
            recorder.wait_for(&stream, sent.len()).await,
            sent,
            "node {node}"
        );
    }
}

/// Publishing never waits for the network or the receivers: a burst from a task that never
/// yields returns quickly (on a single-threaded runtime, waiting would deadlock), and all of it
/// arrives afterwards.
pub async fn publish_never_waits<F, Fut>(connect: F)
where
    F: FnOnce(Vec<Arc<dyn BusSink>>) -> Fut,
    Fut: Future<Output = Vec<Arc<dyn Bus>>>,
{
    let stream = fresh_stream("burst");
    let (recorders, buses) = nodes(connect, &[&stream]).await;
    let burst = 10_000u64;
    let started = Instant::now();
    for seq in 1..=burst {
        buses[0].publish(&stream, ordered(1, seq));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "publishing {burst} events took {took:?}"
    );
    for (node, recorder) in recorders.iter().enumerate() {
        let got = recorder.wait_for(&stream, burst as usize).await;
        assert_eq!(got.len(), burst as usize, "node {node}");
        assert_eq!(got.last(), Some(&ordered(1, burst)), "node {node}");
    }
}

/// A node that starts watching a stream later receives everything published after its watch
/// returned, once each and in order.
pub async fn a_late_watcher_gets_everything_published_after_it_watched<F, Fut>(connect: F)
where
    F: FnOnce(Vec<Arc<dyn BusSink>>) -> Fut,
    Fut: Future<Output = Vec<Arc<dyn Bus>>>,
{
    let stream = fresh_stream("late");
    let recorders: Vec<Arc<Recorder>> = (0..NODES).map(|_| Arc::default()).collect();
    let sinks = recorders
        .iter()
        .map(|r| r.clone() as Arc<dyn BusSink>)
        .collect();
    let buses = connect(sinks).await;
    buses[0].watch(&stream).await.expect("watch");
    for seq in 1..=20 {
        buses[0].publish(&stream, ordered(1, seq));
    }
    buses[1].watch(&stream).await.expect("watch");
    let later: Vec<BusMessage> = (21..=40).map(|seq| ordered(1, seq)).collect();
    for message in &later {
        buses[0].publish(&stream, message.clone());
    }
    let all = recorders[0].wait_for(&stream, 40).await;
    assert_eq!(all.len(), 40);
    let got = recorders[1].wait_for(&stream, later.len()).await;
    // What came before the watch may or may not have arrived; what came after did, in order.
    assert!(got.ends_with(&later), "late watcher got {got:?}");
    assert!(got.len() <= 40);
}

/// Runs the bus contract as `#[tokio::test]`s in a module named `$name`, for the buses `$connect`
/// returns (an expression usable as `FnOnce(Vec<Arc<dyn BusSink>>) -> impl Future<Output =
/// Vec<Arc<dyn Bus>>>`).
#[macro_export]
macro_rules! bus_contract_tests {
    ($name:ident, $connect:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::fanout::contract;

            #[tokio::test]
            async fn events_reach_every_node_in_publish_order_exactly_once() {
                contract::events_reach_every_node_in_publish_order_exactly_once($connect).await;
            }

            #[tokio::test]
            async fn ephemeral_events_reach_every_node() {
                contract::ephemeral_events_reach_every_node($connect).await;
            }

            #[tokio::test]
            async fn streams_do_not_leak_into_each_other() {
                contract::streams_do_not_leak_into_each_other($connect).await;
            }

            #[tokio::test]
            async fn control_messages_reach_every_node_in_order() {
                contract::control_messages_reach_every_node_in_order($connect).await;
            }

            #[tokio::test]
            async fn publish_never_waits() {
                contract::publish_never_waits($connect).await;
            }

            #[tokio::test]
            async fn a_late_watcher_gets_everything_published_after_it_watched() {
                contract::a_late_watcher_gets_everything_published_after_it_watched($connect).await;
            }
        }
    };
}
