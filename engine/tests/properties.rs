//! Property tests of the engine's invariants: frames round-trip, seq is gapless across joins,
//! leaves, chats and resumes.

use liveshop_engine::frames::{ClientFrame, ClientOp, EventBody, ServerFrame};
use liveshop_engine::ids::{DropId, StreamId};
use std::collections::VecDeque;

use liveshop_engine::stream::{EventLog, Kept, Resume, resume};
use proptest::prelude::*;

fn id_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\-]{1,40}"
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    prop_oneof![
        (
            id_text(),
            proptest::option::of((any::<u64>(), any::<u64>()))
        )
            .prop_map(|(s, resume)| {
                ClientOp::Join {
                    stream: StreamId::from_trusted(s),
                    resume,
                }
            }),
        id_text().prop_map(|s| ClientOp::Leave {
            stream: StreamId::from_trusted(s)
        }),
        (id_text(), ".{0,200}").prop_map(|(s, text)| ClientOp::Chat {
            stream: StreamId::from_trusted(s),
            text
        }),
        (id_text(), "[a-z]{1,10}").prop_map(|(s, emoji)| ClientOp::React {
            stream: StreamId::from_trusted(s),
            emoji
        }),
        (id_text(), any::<i64>(), "[a-zA-Z0-9_\\-]{1,64}").prop_map(|(d, quantity, key)| {
            ClientOp::Claim {
                drop: DropId::from_trusted(d),
                quantity,
                key,
            }
        }),
        Just(ClientOp::Ping),
    ]
}

fn event_body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        ".{0,100}".prop_map(|t| EventBody::Chat(serde_json::json!({ "text": t }))),
        "[a-z]{1,10}".prop_map(|status| EventBody::Status { status }),
        proptest::option::of(id_text()).prop_map(|product| EventBody::Pinned { product }),
        (id_text(), ".{0,20}").prop_map(|(drop, reason)| EventBody::DropClosed { drop, reason }),
        id_text().prop_map(|drop| EventBody::SoldOut { drop }),
        any::<u64>().prop_map(|count| EventBody::Viewers { count }),
        (id_text(), any::<i64>())
            .prop_map(|(drop, remaining)| EventBody::Inventory { drop, remaining }),
    ]
}

proptest! {
    #[test]
    fn client_frames_round_trip(op in client_op(), r in proptest::option::of(".{0,20}")) {
        let frame = ClientFrame { r#ref: r, op };
        prop_assert_eq!(ClientFrame::decode(&frame.encode()).unwrap(), frame);
    }

    #[test]
    fn server_event_frames_round_trip(stream in id_text(), seq in proptest::option::of(1u64..u64::MAX), body in event_body()) {
        let frame = ServerFrame::Event(liveshop_engine::frames::EventFrame { stream, seq, body });
        let bytes = frame.encode();
        let back = ServerFrame::decode(std::str::from_utf8(&bytes).unwrap()).unwrap();
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn arbitrary_text_never_panics_the_decoder(text in ".{0,300}") {
        let _ = ClientFrame::decode(&text);
    }
}

/// One simulated subscriber: what it received, and where it stands.
#[derive(Default, Clone)]
struct Viewer {
    joined: bool,
    last_seen: u64,
    received: Vec<u64>,
}

#[derive(Debug, Clone)]
enum Step {
    Publish,
    Join(usize),
    Leave(usize),
    Resume(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Publish),
        1 => (0usize..4).prop_map(Step::Join),
        1 => (0usize..4).prop_map(Step::Leave),
        1 => (0usize..4).prop_map(Step::Resume),
    ]
}

fn seq_of(bytes: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v["seq"].as_u64().unwrap()
}

proptest! {
    /// Every viewer sees seqs strictly consecutive from its (re)join point: nothing missed, nothing
    /// twice, whatever the interleaving of publishes, joins, leaves and resumes.
    #[test]
    fn seq_is_gapless_and_monotonic_for_every_subscriber(
        steps in proptest::collection::vec(step(), 1..300),
        capacity in 1usize..40,
    ) {
        let mut log = EventLog::new(StreamId::from_trusted("s"), 1);
        // The resume buffer a hub keeps: the last `capacity` events.
        let mut ring: VecDeque<(u64, bytes::Bytes)> = VecDeque::new();
        let mut viewers = vec![Viewer::default(); 4];
        let mut last_seq = 0;
        for step in steps {
            match step {
                Step::Publish => {
                    let (seq, bytes) = log.append(EventBody::Status { status: "live".into() });
                    prop_assert_eq!(seq, last_seq + 1);
                    last_seq = seq;
                    if ring.len() == capacity {
                        ring.pop_front();
                    }
                    ring.push_back((seq, bytes.clone()));
                    for v in viewers.iter_mut().filter(|v| v.joined) {
                        let s = seq_of(&bytes);
                        prop_assert_eq!(s, v.last_seen + 1);
                        v.last_seen = s;
                        v.received.push(s);
                    }
                }
                Step::Join(i) => {
                    // A fresh join starts from the snapshot point: the log's current seq.
                    let v = &mut viewers[i];
                    v.joined = true;
                    v.last_seen = log.seq();
                }
                Step::Leave(i) => viewers[i].joined = false,
                Step::Resume(i) => {
                    let v = &mut viewers[i];
                    if v.joined {
                        continue;
                    }
                    let kept = Kept {
                        epoch: 1,
                        head: log.seq(),
                        oldest: ring.front().map_or(log.seq() + 1, |(s, _)| *s),
                    };
                    match resume(kept, 1, v.last_seen) {
                        Resume::Replay { from } => {
                            for (_, e) in ring.iter().filter(|(s, _)| *s >= from) {
                                let s = seq_of(e);
                                prop_assert_eq!(s, v.last_seen + 1);
                                v.last_seen = s;
                                v.received.push(s);
                            }
                            prop_assert_eq!(v.last_seen, log.seq());
                        }
                        Resume::Snapshot => {
                            // Only when the missed events are really gone from the buffer.
                            prop_assert!(log.seq() - v.last_seen > capacity as u64);
                            v.last_seen = log.seq();
                        }
                    }
                    v.joined = true;
                }
            }
        }
        for v in &viewers {
            prop_assert!(v.received.windows(2).all(|w| w[1] > w[0]));
        }
    }
}
