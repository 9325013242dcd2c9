//! Property: once a chat message is deleted, no later snapshot and no later replay hands it to
//! anyone, whatever the interleaving of chat, deletes, mutes and resume points; and the replay
//! stays gapless.

use bytes::Bytes;
use liveshop_engine::Timestamp;
use liveshop_engine::auth::Role;
use liveshop_engine::frames::{EventBody, EventFrame, ServerFrame};
use liveshop_engine::ids::{ChatId, StreamId, TenantId, UserId};
use liveshop_engine::limits::Limits;
use liveshop_engine::moderation::redact::redact;
use liveshop_engine::records::{ChatAuthor, Stream, StreamStatus};
use liveshop_engine::stream::EventLog;
use liveshop_engine::stream_book::{
    ChatAccess, ChatCommand, Command, DurableCommand, Effect, Effects, StreamBook,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A viewer (0..4) says something.
    Chat(u8),
    /// A moderator deletes the n-th message sent so far (modulo), deleted or not.
    Delete(usize),
    /// A moderator mutes a viewer for a few seconds.
    Mute(u8),
    /// Time passes.
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..4).prop_map(Op::Chat),
        3 => any::<usize>().prop_map(Op::Delete),
        1 => (0u8..4).prop_map(Op::Mute),
        1 => (0u16..5_000).prop_map(Op::Wait),
    ]
}

fn book(snapshot_chat: usize) -> StreamBook {
    let record = Stream {
        id: StreamId::from_trusted("str_p"),
        tenant: TenantId::from_trusted("ten_p"),
        seller: UserId::from_trusted("seller"),
        title: "property".into(),
        status: StreamStatus::Live,
        scheduled_at: None,
        started_at: Some(Timestamp::from_millis(0)),
        ended_at: None,
        pinned: None,
        viewers: 0,
    };
    let limits = Limits {
        chat_burst: 1_000,
        chat_per_sec: 1_000.0,
        snapshot_chat,
        ..Limits::default()
    };
    StreamBook::restore(record, [], [], limits)
}

/// Numbers and encodes what the book asked to publish, keeping the ordered events like a ring.
fn publish(log: &mut EventLog, ring: &mut Vec<Bytes>, effects: Effects) {
    for effect in effects {
        if let Effect::PublishOrdered(body) = effect {
            let (_, bytes) = log.append(body);
            ring.push(bytes);
        }
    }
}

fn event(bytes: &Bytes) -> EventFrame {
    match ServerFrame::decode(std::str::from_utf8(bytes).unwrap()).unwrap() {
        ServerFrame::Event(frame) => frame,
        other => panic!("not an event: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn no_deleted_message_reaches_a_later_snapshot_or_replay(
        ops in proptest::collection::vec(op(), 1..120),
        snapshot_chat in 1usize..20,
    ) {
        let stream = StreamId::from_trusted("str_p");
        let mut book = book(snapshot_chat);
        let mut log = EventLog::new(stream.clone(), 1);
        let mut ring: Vec<Bytes> = Vec::new();
        let mut sent: Vec<String> = Vec::new();
        let mut deleted: Vec<String> = Vec::new();
        let mut now = 1_000_i64;
        for (n, op) in ops.into_iter().enumerate() {
            now += 1;
            match op {
                Op::Chat(who) => {
                    let id = format!("msg_{n}");
                    let command = Command::Chat(ChatCommand {
                        id: ChatId::from_trusted(id.as_str()),
                        author: ChatAuthor { id: UserId::from_trusted(format!("v{who}")), name: format!("v{who}") },
                        text: format!("secret text of {id}"),
                        access: ChatAccess::Joined,
                role: Role::Viewer,
                    });
                    if let Ok(effects) = book.apply(command, Timestamp::from_millis(now)) {
                        sent.push(id);
                        publish(&mut log, &mut ring, effects);
                    }
                }
                Op::Delete(pick) if !sent.is_empty() => {
                    let id = sent[pick % sent.len()].clone();
                    let command = DurableCommand::DeleteChat {
                        id: ChatId::from_trusted(id.as_str()),
                        actor: UserId::from_trusted("mod"),
                        // Storage has every message this test sent that was not deleted.
                        stored: !deleted.contains(&id),
                    };
                    if deleted.contains(&id) {
                        continue;
                    }
                    let change = book.plan(command, Timestamp::from_millis(now)).unwrap();
                    publish(&mut log, &mut ring, book.commit(change));
                    deleted.push(id);
                }
                Op::Delete(_) => {}
                Op::Mute(who) => {
                    let command = DurableCommand::Mute {
                        user: UserId::from_trusted(format!("v{who}")),
                        duration_seconds: 2,
                        actor: UserId::from_trusted("mod"),
                        reason: None,
                    };
                    let change = book.plan(command, Timestamp::from_millis(now)).unwrap();
                    publish(&mut log, &mut ring, book.commit(change));
                }
                Op::Wait(ms) => {
                    now += i64::from(ms);
                    let effects = book.apply(Command::Tick { viewers: 1 }, Timestamp::from_millis(now)).unwrap();
                    publish(&mut log, &mut ring, effects);
                }
            }
            // A joiner now gets the snapshot: no deleted message in it.
            let snapshot = serde_json::to_string(&book.snapshot(1)).unwrap();
            for id in &deleted {
                prop_assert!(!snapshot.contains(&format!("\"{id}\"")), "{id} in snapshot {snapshot}");
            }
        }
        // A viewer resuming from any point gets every event after it, gapless, and no deleted
        // message among them.
        for since in 0..=ring.len() {
            let mut replay = ring[since..].to_vec();
            redact(&stream, &mut replay);
            for (i, bytes) in replay.iter().enumerate() {
                let frame = event(bytes);
                prop_assert_eq!(frame.seq, Some((since + i + 1) as u64));
                if let EventBody::Chat(data) = &frame.body {
                    let id = data["id"].as_str().unwrap();
                    prop_assert!(!deleted.iter().any(|d| d == id), "{} replayed from {}", id, since);
                }
            }
        }
    }
}
