//! Tests of the hub (joins, resume, ring, feed order), the notifier and the in-process fan-out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use liveshop_engine::frames::{encode_joined, ws_text_frame};
use liveshop_engine::{StreamId, TenantId, UserId};
use serde_json::value::RawValue;

use super::Fanout;
use super::bus::{BusMessage, BusSink, Control, StreamEvent};
use super::hub::{Hub, Join, Snapshot, Subscribers, WRITES_PER_TURN};
use super::notifier::{LocalNotifier, Notifier};
use crate::connection::Connection;

/// A connection that records what reaches it.
#[derive(Default)]
struct Recorder {
    id: u64,
    got: Mutex<Vec<u8>>,
    rejoined: Mutex<Vec<String>>,
    closed: AtomicBool,
}

impl Connection for Recorder {
    fn id(&self) -> u64 {
        self.id
    }
    fn deliver(&self, frame: &Bytes) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        self.got.lock().unwrap().extend_from_slice(frame);
        true
    }
    fn rejoin(&self, stream: &StreamId) {
        self.rejoined.lock().unwrap().push(stream.to_string());
    }
    fn close_banned(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl Recorder {
    fn payloads(&self) -> Vec<String> {
        payloads(&self.got.lock().unwrap())
    }

    fn rejoined(&self) -> Vec<String> {
        self.rejoined.lock().unwrap().clone()
    }
}

fn recorder(id: u64) -> Arc<Recorder> {
    Arc::new(Recorder {
        id,
        ..Recorder::default()
    })
}

/// Decodes the payloads of unmasked text frames.
fn payloads(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (len, header) = match bytes[i + 1] {
            126 => (
                usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]])),
                4,
            ),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&bytes[i + 2..i + 10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            short => (usize::from(short), 2),
        };
        let start = i + header;
        out.push(String::from_utf8(bytes[start..start + len].to_vec()).unwrap());
        i = start + len;
    }
    out
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn stream() -> StreamId {
    StreamId::from_trusted("s")
}

/// An ordered event; its JSON is `e<seq>` in epoch 1 and `e<epoch>.<seq>` in later ones.
fn ev(epoch: u64, seq: u64) -> BusMessage {
    BusMessage::Event(StreamEvent {
        epoch,
        seq: Some(seq),
        bytes: Bytes::from(text_of(epoch, seq)),
    })
}

fn text_of(epoch: u64, seq: u64) -> String {
    if epoch == 1 {
        format!("e{seq}")
    } else {
        format!("e{epoch}.{seq}")
    }
}

fn state(seq: u64) -> Arc<RawValue> {
    Arc::from(RawValue::from_string(format!("{{\"at\":{seq}}}")).unwrap())
}

fn snapshot(epoch: u64, seq: u64) -> Snapshot {
    Snapshot {
        epoch,
        seq,
        state: state(seq),
    }
}

fn join(conn: &Arc<Recorder>, resume: Option<(u64, u64)>, snap: Snapshot) -> Join {
    Join {
        subscriber: conn.clone(),
        r#ref: Some("r".into()),
        resume,
        snapshot: snap,
        backlog: None,
    }
}

/// The snapshot `joined` frame a joiner at `(epoch, seq)` gets.
fn joined_snapshot(epoch: u64, seq: u64) -> String {
    let bytes = encode_joined(Some("r"), "s", epoch, seq, false, Some(&state(seq)));
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The `joined` frame of a resume that the ring covered, at the feed's head.
fn joined_resumed(epoch: u64, head: u64) -> String {
    let bytes = encode_joined(Some("r"), "s", epoch, head, true, None);
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A hub with one subscriber joined at the start of epoch 1 (so the stream has a feed) and
/// events 1..=`events` published.
fn hub_with(capacity: usize, events: u64) -> (Arc<Hub>, Arc<Recorder>) {
    let hub = Arc::new(Hub::new(capacity));
    let first = recorder(0);
    hub.join(&stream(), join(&first, None, snapshot(1, 0)));
    for seq in 1..=events {
        hub.receive(&stream(), ev(1, seq));
    }
    (hub, first)
}

fn events(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|seq| text_of(1, seq)).collect()
}

#[tokio::test]
async fn subscribers_get_their_joined_frame_then_only_later_events() {
    let hub = Hub::new(16);
    let (a, b) = (recorder(1), recorder(2));
    hub.join(&stream(), join(&a, None, snapshot(1, 0)));
    hub.receive(&stream(), ev(1, 1));
    hub.join(&stream(), join(&b, None, snapshot(1, 1)));
    hub.receive(&stream(), ev(1, 2));
    settle().await;
    assert_eq!(
        a.payloads(),
        [joined_snapshot(1, 0), "e1".into(), "e2".into()]
    );
    assert_eq!(b.payloads(), [joined_snapshot(1, 1), "e2".into()]);
    assert_eq!(hub.subscribers(&stream()), 2);
}

#[tokio::test]
async fn leaving_takes_effect_after_earlier_events_and_sends_the_reply_last() {
    let (hub, a) = hub_with(16, 1);
    hub.leave(&stream(), a.clone(), Some(Bytes::from_static(b"ok")));
    hub.receive(&stream(), ev(1, 2));
    settle().await;
    assert_eq!(
        a.payloads(),
        [joined_snapshot(1, 0), "e1".into(), "ok".into()]
    );
    assert_eq!(hub.subscribers(&stream()), 0);
}

#[tokio::test]
async fn leaving_a_stream_without_a_feed_still_gets_the_reply() {
    let hub = Hub::new(16);
    let a = recorder(1);
    hub.leave(&stream(), a.clone(), Some(Bytes::from_static(b"ok")));
    assert_eq!(a.payloads(), ["ok"]);
}

#[tokio::test]
async fn closed_connections_are_dropped_and_a_new_epoch_asks_the_rest_to_rejoin() {
    let (hub, a) = hub_with(16, 0);
    let b = recorder(2);
    hub.join(&stream(), join(&b, None, snapshot(1, 0)));
    b.closed.store(true, Ordering::Relaxed);
    hub.receive(&stream(), ev(1, 1));
    hub.receive(&stream(), BusMessage::Control(Control::Epoch(2)));
    settle().await;
    assert_eq!(a.payloads(), [joined_snapshot(1, 0), "e1".into()]);
    assert_eq!(a.rejoined(), ["s"]);
    assert!(b.rejoined().is_empty());
    assert_eq!(hub.subscribers(&stream()), 0);
}

#[tokio::test]
async fn a_forced_rejoin_asks_every_viewer_and_removal_forgets_the_stream() {
    let (hub, a) = hub_with(16, 1);
    hub.receive(&stream(), BusMessage::Control(Control::Rejoin));
    hub.receive(&stream(), BusMessage::Control(Control::Remove));
    settle().await;
    assert_eq!(a.rejoined(), ["s"]);
    assert_eq!(hub.subscribers(&stream()), 0);
    // Without a feed, events of the stream go nowhere.
    hub.receive(&stream(), ev(1, 2));
    assert_eq!(hub.subscribers(&stream()), 0);
}

#[test]
fn delivery_in_parts_reaches_every_live_subscriber_once() {
    let mut subscribers = Subscribers::default();
    let subs: Vec<Arc<Recorder>> = (0..7).map(recorder).collect();
    for s in &subs {
        subscribers.subscribe(s.clone(), &[]);
    }
    // Gone: the first, one in the middle and the last (swapped into an earlier place).
    for gone in [0, 3, 6] {
        subs[gone].closed.store(true, Ordering::Relaxed);
    }
    let frame = ws_text_frame(b"e1");
    let mut from = 0;
    let mut parts = 1;
    while let Some(next) = subscribers.deliver_part(&frame, from, 2) {
        from = next;
        parts += 1;
    }
    assert_eq!(parts, 4, "seven subscribers, two writes per part");
    for (i, s) in subs.iter().enumerate() {
        let want: &[&str] = if [0, 3, 6].contains(&i) { &[] } else { &["e1"] };
        assert_eq!(s.payloads(), want, "subscriber {i}");
    }
    assert_eq!(subscribers.len(), 4);
}

#[tokio::test]
async fn a_broadcast_larger_than_a_turn_keeps_order_and_membership() {
    let hub = Hub::new(16);
    let many: Vec<Arc<Recorder>> = (0..(3 * WRITES_PER_TURN as u64 + 5))
        .map(recorder)
        .collect();
    for r in &many {
        hub.join(&stream(), join(r, None, snapshot(1, 0)));
    }
    hub.receive(&stream(), ev(1, 1));
    hub.receive(&stream(), ev(1, 2));
    let late = recorder(u64::MAX);
    hub.join(&stream(), join(&late, None, snapshot(1, 2)));
    hub.receive(&stream(), ev(1, 3));
    settle().await;
    for r in &many {
        assert_eq!(r.payloads()[1..], events(1..=3));
    }
    assert_eq!(late.payloads(), [joined_snapshot(1, 2), "e3".into()]);
    assert_eq!(hub.subscribers(&stream()), many.len() + 1);
}

#[tokio::test]
async fn a_resume_the_ring_covers_gets_resumed_joined_and_exactly_the_missed_events() {
    let (hub, _) = hub_with(16, 5);
    let b = recorder(2);
    hub.join(&stream(), join(&b, Some((1, 2)), snapshot(1, 5)));
    hub.receive(&stream(), ev(1, 6));
    settle().await;
    let mut want = vec![joined_resumed(1, 5)];
    want.extend(events(3..=6));
    assert_eq!(b.payloads(), want);
}

#[tokio::test]
async fn a_resume_at_the_head_gets_resumed_joined_alone() {
    let (hub, _) = hub_with(16, 4);
    let b = recorder(2);
    hub.join(&stream(), join(&b, Some((1, 4)), snapshot(1, 4)));
    settle().await;
    assert_eq!(b.payloads(), [joined_resumed(1, 4)]);
}

#[tokio::test]
async fn a_resume_from_another_epoch_or_the_future_gets_the_snapshot() {
    let (hub, _) = hub_with(16, 6);
    let (b, c) = (recorder(2), recorder(3));
    hub.join(&stream(), join(&b, Some((0, 6)), snapshot(1, 6)));
    hub.join(&stream(), join(&c, Some((1, 9)), snapshot(1, 6)));
    settle().await;
    assert_eq!(b.payloads(), [joined_snapshot(1, 6)]);
    assert_eq!(c.payloads(), [joined_snapshot(1, 6)]);
}

#[tokio::test]
async fn the_ring_keeps_only_the_last_resume_buffer_events() {
    let (hub, _) = hub_with(3, 6);
    let (kept, lost) = (recorder(2), recorder(3));
    hub.join(&stream(), join(&kept, Some((1, 3)), snapshot(1, 6)));
    hub.join(&stream(), join(&lost, Some((1, 2)), snapshot(1, 6)));
    settle().await;
    let mut want = vec![joined_resumed(1, 6)];
    want.extend(events(4..=6));
    assert_eq!(kept.payloads(), want);
    assert_eq!(lost.payloads(), [joined_snapshot(1, 6)]);
}

#[tokio::test]
async fn a_new_epoch_resets_the_ring() {
    let (hub, _) = hub_with(16, 3);
    hub.receive(&stream(), BusMessage::Control(Control::Epoch(2)));
    hub.receive(&stream(), ev(2, 1));
    let (old, new) = (recorder(2), recorder(3));
    hub.join(&stream(), join(&old, Some((1, 3)), snapshot(2, 1)));
    hub.join(&stream(), join(&new, Some((2, 0)), snapshot(2, 1)));
    settle().await;
    assert_eq!(old.payloads(), [joined_snapshot(2, 1)]);
    assert_eq!(new.payloads(), [joined_resumed(2, 1), text_of(2, 1)]);
}

#[tokio::test]
async fn a_snapshot_older_than_the_feed_is_completed_from_the_ring() {
    let (hub, _) = hub_with(16, 5);
    let b = recorder(2);
    hub.join(&stream(), join(&b, None, snapshot(1, 2)));
    hub.receive(&stream(), ev(1, 6));
    settle().await;
    let mut want = vec![joined_snapshot(1, 2)];
    want.extend(events(3..=6));
    assert_eq!(b.payloads(), want);
}

#[tokio::test]
async fn a_snapshot_ahead_of_the_feed_waits_for_the_events_it_includes() {
    let (hub, _) = hub_with(16, 1);
    let b = recorder(2);
    hub.join(&stream(), join(&b, None, snapshot(1, 3)));
    settle().await;
    assert!(b.payloads().is_empty());
    assert_eq!(hub.subscribers(&stream()), 2, "a held-back joiner counts");
    for seq in 2..=5 {
        hub.receive(&stream(), ev(1, seq));
    }
    settle().await;
    let mut want = vec![joined_snapshot(1, 3)];
    want.extend(events(4..=5));
    assert_eq!(b.payloads(), want);
}

#[tokio::test]
async fn a_snapshot_of_the_next_epoch_waits_for_its_announcement() {
    let (hub, a) = hub_with(16, 2);
    let b = recorder(2);
    hub.join(&stream(), join(&b, None, snapshot(2, 1)));
    hub.receive(&stream(), BusMessage::Control(Control::Epoch(2)));
    hub.receive(&stream(), ev(2, 1));
    hub.receive(&stream(), ev(2, 2));
    settle().await;
    assert_eq!(a.rejoined(), ["s"]);
    assert_eq!(b.payloads(), [joined_snapshot(2, 1), text_of(2, 2)]);
}

#[tokio::test]
async fn a_snapshot_the_ring_cannot_complete_asks_the_viewer_to_rejoin() {
    let (hub, _) = hub_with(2, 5);
    let b = recorder(2);
    hub.join(&stream(), join(&b, None, snapshot(1, 1)));
    settle().await;
    assert!(b.payloads().is_empty());
    assert_eq!(b.rejoined(), ["s"]);
    assert_eq!(hub.subscribers(&stream()), 1);
}

#[tokio::test]
async fn repeated_and_stale_events_are_not_delivered_again() {
    let (hub, a) = hub_with(16, 2);
    hub.receive(&stream(), ev(1, 2));
    hub.receive(&stream(), ev(1, 1));
    hub.receive(&stream(), BusMessage::Control(Control::Epoch(2)));
    let b = recorder(2);
    hub.join(&stream(), join(&b, None, snapshot(2, 0)));
    hub.receive(&stream(), ev(1, 3));
    hub.receive(&stream(), ev(2, 1));
    settle().await;
    assert_eq!(
        a.payloads(),
        [joined_snapshot(1, 0), "e1".into(), "e2".into()]
    );
    assert_eq!(b.payloads(), [joined_snapshot(2, 0), text_of(2, 1)]);
}

#[tokio::test]
async fn a_gap_in_the_feed_asks_viewers_to_rejoin() {
    let (hub, a) = hub_with(16, 1);
    hub.receive(&stream(), ev(1, 3));
    settle().await;
    assert_eq!(a.payloads(), [joined_snapshot(1, 0), "e1".into()]);
    assert_eq!(a.rejoined(), ["s"]);
    let (before, after) = (recorder(2), recorder(3));
    hub.join(&stream(), join(&before, Some((1, 1)), snapshot(1, 3)));
    hub.join(&stream(), join(&after, Some((1, 2)), snapshot(1, 3)));
    settle().await;
    assert_eq!(before.payloads(), [joined_snapshot(1, 3)]);
    assert_eq!(after.payloads(), [joined_resumed(1, 3), "e3".into()]);
}

#[tokio::test]
async fn ephemeral_events_reach_subscribers_but_are_never_replayed() {
    let (hub, a) = hub_with(16, 1);
    hub.receive(
        &stream(),
        BusMessage::Event(StreamEvent {
            epoch: 1,
            seq: None,
            bytes: Bytes::from_static(b"viewers"),
        }),
    );
    hub.receive(&stream(), ev(1, 2));
    let b = recorder(2);
    hub.join(&stream(), join(&b, Some((1, 0)), snapshot(1, 2)));
    settle().await;
    assert_eq!(
        a.payloads(),
        [
            joined_snapshot(1, 0),
            "e1".into(),
            "viewers".into(),
            "e2".into()
        ]
    );
    let mut want = vec![joined_resumed(1, 2)];
    want.extend(events(1..=2));
    assert_eq!(b.payloads(), want);
}

/// The seqs of the events after a joiner's `joined` frame, and the seq `joined` stood at.
fn feed_of(conn: &Recorder) -> (u64, Vec<u64>) {
    let frames = conn.payloads();
    if frames.is_empty() {
        return (0, Vec::new());
    }
    let joined: serde_json::Value = serde_json::from_str(&frames[0]).unwrap();
    let at = joined["seq"].as_u64().unwrap();
    let seqs = frames[1..]
        .iter()
        .map(|f| f.trim_start_matches('e').parse().unwrap())
        .collect();
    (at, seqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_missed_or_repeated_between_snapshot_and_live_feed_under_concurrent_publishing()
{
    const EVENTS: u64 = 3000;
    const JOINERS: u64 = 60;
    let (hub, _) = hub_with(4096, 0);
    // As the stream actor does before its first snapshot: the node's feed exists before any
    // snapshot is taken, so no event can fall between a snapshot and the feed. (A node that
    // learns of a stream from another node must watch it on the bus before asking for a
    // snapshot, for the same reason.)
    hub.joining(&stream());
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (hub, published) = (hub.clone(), published.clone());
        tokio::spawn(async move {
            for seq in 1..=EVENTS {
                hub.receive(&stream(), ev(1, seq));
                published.store(seq, Ordering::SeqCst);
                if seq % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut joiners = Vec::new();
    for id in 1..=JOINERS {
        let (hub, published) = (hub.clone(), published.clone());
        joiners.push(tokio::spawn(async move {
            for _ in 0..id {
                tokio::task::yield_now().await;
            }
            let conn = recorder(id);
            let at = published.load(Ordering::SeqCst);
            // Half resume from a point a little behind, half take the snapshot taken now.
            let resume = (id % 2 == 0).then(|| (1, at.saturating_sub(id % 7)));
            // The join may reach the hub well after events that followed its snapshot.
            for _ in 0..(id % 5) * 20 {
                tokio::task::yield_now().await;
            }
            hub.join(&stream(), join(&conn, resume, snapshot(1, at)));
            let after = resume.map_or(at, |(_, since)| since);
            (conn, at, after)
        }));
    }
    publisher.await.unwrap();
    let mut conns = Vec::new();
    for j in joiners {
        conns.push(j.await.unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (conn, snapshot_at, after) in &conns {
        loop {
            let (_, seqs) = feed_of(conn);
            // A joiner whose snapshot already holds every event gets only its `joined` frame.
            let complete = if *after == EVENTS {
                !conn.payloads().is_empty()
            } else {
                seqs.last() == Some(&EVENTS)
            };
            if complete {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "joiner {} (snapshot at {snapshot_at}, wants after {after}) still misses events: \
                 joined at {}, {} events, last {:?}, first {:?}, asked to rejoin {:?}",
                conn.id,
                feed_of(conn).0,
                seqs.len(),
                seqs.last(),
                seqs.first(),
                conn.rejoined()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (joined_at, seqs) = feed_of(conn);
        if conn.id % 2 == 0 {
            // A resumed joiner's `joined` stands at the feed's head, which includes its snapshot.
            assert!(joined_at >= *snapshot_at, "joiner {}", conn.id);
        } else {
            assert_eq!(joined_at, *snapshot_at, "joiner {}", conn.id);
        }
        let want: Vec<u64> = (after + 1..=EVENTS).collect();
        assert_eq!(seqs, want, "joiner {}", conn.id);
        assert!(conn.rejoined().is_empty());
    }
}

#[tokio::test]
async fn private_frames_reach_every_connection_of_the_user_and_no_one_else() {
    let notifier = LocalNotifier::new();
    let tenant = TenantId::from_trusted("t");
    let (ann, bob) = (UserId::from_trusted("ann"), UserId::from_trusted("bob"));
    let (phone, laptop, other) = (recorder(1), recorder(2), recorder(3));
    notifier.register(&tenant, &ann, phone.clone());
    notifier.register(&tenant, &ann, laptop.clone());
    notifier.register(&tenant, &bob, other.clone());
    notifier.notify(&tenant, &ann, Bytes::from_static(b"claim_update"));
    assert_eq!(phone.payloads(), ["claim_update"]);
    assert_eq!(laptop.payloads(), ["claim_update"]);
    assert!(other.payloads().is_empty());
    let elsewhere = TenantId::from_trusted("u");
    notifier.notify(&elsewhere, &ann, Bytes::from_static(b"x"));
    assert_eq!(phone.payloads(), ["claim_update"]);
}

#[tokio::test]
async fn an_unregistered_connection_gets_no_more_private_frames() {
    let notifier = LocalNotifier::new();
    let tenant = TenantId::from_trusted("t");
    let ann = UserId::from_trusted("ann");
    let (phone, laptop) = (recorder(1), recorder(2));
    notifier.register(&tenant, &ann, phone.clone());
    notifier.register(&tenant, &ann, laptop.clone());
    notifier.unregister(&tenant, &ann, 1);
    notifier.notify(&tenant, &ann, Bytes::from_static(b"claim_update"));
    assert!(phone.payloads().is_empty());
    assert_eq!(laptop.payloads(), ["claim_update"]);
    notifier.unregister(&tenant, &ann, 2);
    notifier.notify(&tenant, &ann, Bytes::from_static(b"again"));
    assert_eq!(laptop.payloads(), ["claim_update"]);
}

#[tokio::test]
async fn in_process_fanout_publishes_to_its_hub_and_counts_viewers_there() {
    let fanout = Fanout::in_process(16);
    let a = recorder(1);
    fanout.hub().joining(&stream());
    assert_eq!(fanout.viewers(&stream()), 1);
    fanout.hub().join(&stream(), join(&a, None, snapshot(1, 0)));
    fanout.publish(
        &stream(),
        StreamEvent {
            epoch: 1,
            seq: Some(1),
            bytes: Bytes::from_static(b"e1"),
        },
    );
    fanout.control(&stream(), Control::Epoch(2));
    settle().await;
    assert_eq!(a.payloads(), [joined_snapshot(1, 0), "e1".into()]);
    assert_eq!(a.rejoined(), ["s"]);
    assert_eq!(fanout.viewers(&stream()), 0);
}

/// Ordered events `range` of epoch 1, as a history would give them.
fn history(range: std::ops::RangeInclusive<u64>) -> Vec<StreamEvent> {
    range
        .map(|seq| StreamEvent {
            epoch: 1,
            seq: Some(seq),
            bytes: Bytes::from(text_of(1, seq)),
        })
        .collect()
}

fn join_with_backlog(
    conn: &Arc<Recorder>,
    resume: (u64, u64),
    snap: Snapshot,
    backlog: Vec<StreamEvent>,
) -> Join {
    Join {
        backlog: Some(backlog),
        ..join(conn, Some(resume), snap)
    }
}

#[tokio::test]
async fn a_resume_older_than_the_ring_is_served_from_the_backlog_then_live_without_duplicates() {
    let (hub, _) = hub_with(3, 6);
    let b = recorder(2);
    hub.join(
        &stream(),
        join_with_backlog(&b, (1, 1), snapshot(1, 6), history(2..=6)),
    );
    hub.receive(&stream(), ev(1, 7));
    settle().await;
    let mut want = vec![joined_resumed(1, 6)];
    want.extend(events(2..=7));
    assert_eq!(b.payloads(), want);
}

#[tokio::test]
async fn a_backlog_ahead_of_the_feed_advances_every_subscriber_once() {
    let (hub, a) = hub_with(2, 4);
    let b = recorder(2);
    hub.join(
        &stream(),
        join_with_backlog(&b, (1, 1), snapshot(1, 6), history(2..=6)),
    );
    // The bus brings 5 and 6 later: already sent, so ignored; 7 is new.
    for seq in 5..=7 {
        hub.receive(&stream(), ev(1, seq));
    }
    settle().await;
    let mut want_a = vec![joined_snapshot(1, 0)];
    want_a.extend(events(1..=7));
    assert_eq!(a.payloads(), want_a);
    let mut want_b = vec![joined_resumed(1, 6)];
    want_b.extend(events(2..=7));
    assert_eq!(b.payloads(), want_b);
}

#[tokio::test]
async fn a_backlog_that_does_not_reach_the_ring_or_is_of_another_epoch_gives_the_snapshot() {
    let (hub, _) = hub_with(2, 6);
    let (short, stale) = (recorder(2), recorder(3));
    hub.join(
        &stream(),
        join_with_backlog(&short, (1, 1), snapshot(1, 6), history(2..=3)),
    );
    hub.join(
        &stream(),
        join_with_backlog(&stale, (1, 1), snapshot(2, 0), history(2..=6)),
    );
    settle().await;
    assert_eq!(short.payloads(), [joined_snapshot(1, 6)]);
    assert!(
        stale
            .payloads()
            .iter()
            .all(|p| !p.contains("\"resumed\":true"))
    );
}

#[tokio::test]
async fn a_first_join_on_a_node_without_a_feed_resumes_from_the_backlog() {
    let hub = Hub::new(16);
    let b = recorder(2);
    hub.join(
        &stream(),
        join_with_backlog(&b, (1, 2), snapshot(1, 5), history(3..=5)),
    );
    hub.receive(&stream(), ev(1, 5));
    hub.receive(&stream(), ev(1, 6));
    settle().await;
    let mut want = vec![joined_resumed(1, 5)];
    want.extend(events(3..=6));
    assert_eq!(b.payloads(), want);
}

#[tokio::test]
async fn the_hub_lists_its_streams_with_their_connections_and_tells_its_local_viewers() {
    let (hub, _) = hub_with(4, 0);
    settle().await;
    assert_eq!(hub.streams(), [(stream(), 1)]);
    assert_eq!(hub.local_viewers(&stream()), Some(1));
    assert_eq!(hub.local_viewers(&StreamId::from_trusted("other")), Some(0));
}
