//! Every rule of the stream book, with a clock passed in.

use serde_json::json;

use super::*;
use crate::ids::TenantId;
use crate::ids::UserId;

const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);

fn at(ms: i64) -> Timestamp {
    T0.plus_millis(ms)
}

fn record(status: StreamStatus) -> Stream {
    Stream {
        id: StreamId::from_trusted("str_1"),
        tenant: TenantId::from_trusted("ten_1"),
        seller: UserId::from_trusted("seller"),
        title: "Friday \"drops\" & more".into(),
        status,
        scheduled_at: Some(at(-3_600_000)),
        started_at: (status != StreamStatus::Scheduled).then_some(at(-60_000)),
        ended_at: (status == StreamStatus::Ended).then_some(at(-1_000)),
        pinned: None,
        viewers: 0,
    }
}

fn drop_of(id: &str, status: DropStatus) -> Drop {
    Drop {
        id: DropId::from_trusted(id),
        tenant: TenantId::from_trusted("ten_1"),
        stream: StreamId::from_trusted("str_1"),
        product: ProductId::from_trusted("prd_1"),
        quantity: 10,
        remaining: 10,
        reserved: 0,
        sold: 0,
        per_user_limit: 2,
        hold_seconds: 300,
        status,
        opened_at: at(-30_000),
        ends_at: None,
        closed_reason: None,
    }
}

fn limits() -> Limits {
    Limits {
        chat_burst: 3,
        chat_per_sec: 1.0,
        snapshot_chat: 3,
        ..Limits::default()
    }
}

fn book(status: StreamStatus) -> StreamBook {
    StreamBook::restore(record(status), [], [], limits())
}

fn author(id: &str) -> ChatAuthor {
    ChatAuthor {
        id: UserId::from_trusted(id),
        name: format!("{id} name"),
    }
}

fn chat_from(id: &str, n: u32, access: ChatAccess) -> Command {
    Command::Chat(ChatCommand {
        id: ChatId::from_trusted(format!("msg_{id}_{n}")),
        author: author(id),
        text: format!("  hello {n}  "),
        access,
        role: match access {
            ChatAccess::NotJoined(role) => role,
            ChatAccess::Joined => Role::Viewer,
        },
    })
}

fn chat(id: &str, n: u32) -> Command {
    chat_from(id, n, ChatAccess::Joined)
}

fn snapshot_json(book: &StreamBook, viewers: u64) -> String {
    serde_json::to_string(&book.snapshot(viewers)).unwrap()
}

fn refusal(result: Result<Effects, Rejection>) -> (ErrorCode, String) {
    let r = result.unwrap_err();
    (r.code, r.message)
}

#[test]
fn chat_is_published_in_order_then_persisted() {
    let mut b = book(StreamStatus::Live);
    let effects = b.apply(chat("u1", 1), at(0)).unwrap();
    let message = ChatMessage {
        id: ChatId::from_trusted("msg_u1_1"),
        stream: StreamId::from_trusted("str_1"),
        tenant: TenantId::from_trusted("ten_1"),
        user: author("u1"),
        text: "hello 1".into(),
        at: at(0),
    };
    assert_eq!(
        effects.as_slice(),
        &[
            Effect::PublishOrdered(EventBody::Chat(
                json!({"id": "msg_u1_1", "user": {"id": "u1", "name": "u1 name"}, "text": "hello 1", "at": at(0)})
            )),
            Effect::PersistChat(message.clone()),
        ]
    );
    assert_eq!(b.recent_chat().collect::<Vec<_>>(), vec![&message]);
}

#[test]
fn chat_is_refused_when_the_stream_is_not_live() {
    for status in [StreamStatus::Scheduled, StreamStatus::Ended] {
        let mut b = book(status);
        let before = (b.revision(), snapshot_json(&b, 0));
        assert_eq!(
            refusal(b.apply(chat("u1", 1), at(0))),
            (
                ErrorCode::InvalidState,
                format!("stream is {}", status.as_str())
            )
        );
        assert_eq!((b.revision(), snapshot_json(&b, 0)), before);
        assert!(
            b.allowances().is_empty(),
            "a refused chat uses no allowance"
        );
    }
}

#[test]
fn chat_text_is_trimmed_and_checked() {
    let mut b = book(StreamStatus::Live);
    let blank = Command::Chat(ChatCommand {
        id: ChatId::from_trusted("msg_x"),
        author: author("u1"),
        text: "   ".into(),
        access: ChatAccess::Joined,
        role: Role::Viewer,
    });
    assert_eq!(refusal(b.apply(blank, at(0))).0, ErrorCode::BadRequest);
    assert_eq!(b.recent_chat().len(), 0);
    assert!(
        b.allowances().is_empty(),
        "an invalid text uses no allowance"
    );
}

#[test]
fn an_author_is_rate_limited_after_the_burst_and_tokens_come_back_with_time() {
    let mut b = book(StreamStatus::Live);
    for n in 0..3 {
        b.apply(chat("u1", n), at(0)).unwrap();
    }
    let refused = b.apply(chat("u1", 3), at(0)).unwrap_err();
    assert_eq!(refused, Rejection::rate_limited(1000));
    assert!(
        b.apply(chat("u2", 0), at(0)).is_ok(),
        "each author has their own allowance"
    );
    assert!(b.apply(chat("u1", 4), at(999)).is_err());
    assert!(b.apply(chat("u1", 5), at(1000)).is_ok());
}

#[test]
fn the_snapshot_keeps_only_the_latest_chat() {
    let mut b = book(StreamStatus::Live);
    for (n, user) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        b.apply(chat(user, n as u32), at(0)).unwrap();
    }
    let ids: Vec<_> = b.recent_chat().map(|m| m.id.to_string()).collect();
    assert_eq!(ids, vec!["msg_c_2", "msg_d_3", "msg_e_4"]);

    let restored = StreamBook::restore(
        record(StreamStatus::Live),
        [],
        b.recent_chat().cloned().chain(b.recent_chat().cloned()),
        limits(),
    );
    assert_eq!(restored.recent_chat().len(), 3);

    let none = StreamBook::restore(
        record(StreamStatus::Live),
        [],
        b.recent_chat().cloned(),
        Limits {
            snapshot_chat: 0,
            ..limits()
        },
    );
    assert_eq!(none.recent_chat().len(), 0);
}

#[test]
fn only_the_streams_seller_or_an_admin_may_chat_without_joining() {
    let mut b = book(StreamStatus::Live);
    assert!(
        b.apply(
            chat_from("seller", 1, ChatAccess::NotJoined(Role::Seller)),
            at(0)
        )
        .is_ok()
    );
    assert!(
        b.apply(
            chat_from("someone", 1, ChatAccess::NotJoined(Role::Admin)),
            at(0)
        )
        .is_ok()
    );
    for (user, role) in [
        ("other-seller", Role::Seller),
        ("v", Role::Viewer),
        ("m", Role::Moderator),
        ("seller", Role::Viewer),
    ] {
        let got = refusal(b.apply(chat_from(user, 1, ChatAccess::NotJoined(role)), at(0)));
        assert_eq!(
            got,
            (ErrorCode::NotJoined, "join the stream first".into()),
            "{user} as {role:?}"
        );
    }
}

#[test]
fn not_joined_is_answered_before_the_stream_status() {
    let mut b = book(StreamStatus::Ended);
    let got = refusal(b.apply(
        chat_from("v", 1, ChatAccess::NotJoined(Role::Viewer)),
        at(0),
    ));
    assert_eq!(got.0, ErrorCode::NotJoined);
}

#[test]
fn reactions_are_tallied_while_live_and_sent_on_the_tick() {
    let mut b = book(StreamStatus::Live);
    for emoji in ["heart", "fire", "heart"] {
        assert!(b.apply(Command::React(emoji), at(0)).unwrap().is_empty());
    }
    let effects = b.apply(Command::Tick { viewers: 4 }, at(0)).unwrap();
    let counts = BTreeMap::from([("fire".to_owned(), 1), ("heart".to_owned(), 2)]);
    assert_eq!(
        effects.as_slice()[0],
        Effect::PublishEphemeral(EventBody::Reactions { counts })
    );
    let next = b.apply(Command::Tick { viewers: 4 }, at(250)).unwrap();
    assert!(next.is_empty(), "tallies are sent once, then start again");

    let mut scheduled = book(StreamStatus::Scheduled);
    scheduled.apply(Command::React("heart"), at(0)).unwrap();
    let effects = scheduled
        .apply(Command::Tick { viewers: 0 }, at(0))
        .unwrap();
    assert!(
        !effects
            .as_slice()
            .iter()
            .any(|e| matches!(e, Effect::PublishEphemeral(EventBody::Reactions { .. })))
    );
}

#[test]
fn the_viewer_count_is_sent_when_it_changed_at_most_once_a_second() {
    let mut b = book(StreamStatus::Live);
    let viewers = |effects: Effects| -> Vec<u64> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::PublishEphemeral(EventBody::Viewers { count }) => Some(count),
                _ => None,
            })
            .collect()
    };
    let mut tick = |n, ms| viewers(b.apply(Command::Tick { viewers: n }, at(ms)).unwrap());
    assert_eq!(tick(0, 0), vec![0], "the first tick sends the count");
    assert_eq!(tick(3, 250), Vec::<u64>::new(), "too soon");
    assert_eq!(tick(3, 1000), vec![3]);
    assert_eq!(tick(3, 5000), Vec::<u64>::new(), "unchanged");
    assert_eq!(tick(4, 5250), vec![4]);
}

#[test]
fn lifecycle_is_stored_before_the_stream_changes() {
    let mut b = book(StreamStatus::Scheduled);
    let change = b
        .plan(DurableCommand::Lifecycle(Lifecycle::Start), at(0))
        .unwrap();
    assert_eq!(
        change.write(),
        &Write::StreamStatus {
            stream: StreamId::from_trusted("str_1"),
            status: StreamStatus::Live,
            started_at: Some(at(0)),
            ended_at: None,
        }
    );
    assert_eq!(
        b.stream().status,
        StreamStatus::Scheduled,
        "not before commit"
    );
    let effects = b.commit(change);
    assert_eq!(
        effects.as_slice(),
        &[Effect::PublishOrdered(EventBody::Status {
            status: "live".into()
        })]
    );
    assert_eq!(b.stream().status, StreamStatus::Live);
    assert_eq!(b.stream().started_at, Some(at(0)));

    let end = b
        .plan(DurableCommand::Lifecycle(Lifecycle::End), at(5000))
        .unwrap();
    assert_eq!(
        end.write(),
        &Write::StreamStatus {
            stream: StreamId::from_trusted("str_1"),
            status: StreamStatus::Ended,
            started_at: Some(at(0)),
            ended_at: Some(at(5000)),
        }
    );
    b.commit(end);
    assert_eq!(b.stream().ended_at, Some(at(5000)));
}

#[test]
fn ending_a_stream_asks_to_close_its_open_and_sold_out_drops() {
    let mut b = StreamBook::restore(
        record(StreamStatus::Live),
        [
            drop_of("drp_a", DropStatus::Open),
            drop_of("drp_b", DropStatus::Closed),
            drop_of("drp_c", DropStatus::SoldOut),
        ],
        [],
        limits(),
    );
    let change = b
        .plan(DurableCommand::Lifecycle(Lifecycle::End), at(0))
        .unwrap();
    let effects = b.commit(change);
    assert_eq!(
        effects.as_slice()[1],
        Effect::CloseDrops(vec![
            DropId::from_trusted("drp_a"),
            DropId::from_trusted("drp_c")
        ])
    );
}

#[test]
fn a_failed_write_leaves_the_book_unchanged() {
    let mut b = StreamBook::restore(
        record(StreamStatus::Live),
        [drop_of("drp_a", DropStatus::Open)],
        [],
        limits(),
    );
    b.apply(chat("u1", 1), at(0)).unwrap();
    let before = (b.revision(), snapshot_json(&b, 2), b.stream().clone());
    for command in [
        DurableCommand::Lifecycle(Lifecycle::End),
        DurableCommand::Pin(ProductId::from_trusted("prd_9")),
        DurableCommand::OpenDrop(Box::new(drop_of("drp_new", DropStatus::Open))),
    ] {
        // The write fails: the actor drops the change instead of committing it.
        let change = b.plan(command, at(10)).unwrap();
        std::mem::drop(change);
        assert_eq!(
            (b.revision(), snapshot_json(&b, 2), b.stream().clone()),
            before
        );
    }
}

#[test]
fn lifecycle_refusals_keep_their_codes_and_messages() {
    let b = book(StreamStatus::Live);
    let e = b
        .plan(DurableCommand::Lifecycle(Lifecycle::Start), at(0))
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::InvalidState,
            "cannot start a stream that is live"
        )
    );
    let e = book(StreamStatus::Scheduled)
        .plan(DurableCommand::Lifecycle(Lifecycle::End), at(0))
        .unwrap_err();
    assert_eq!(e.message, "cannot end a stream that is scheduled");
}

#[test]
fn a_product_can_be_pinned_until_the_stream_ends() {
    let mut b = book(StreamStatus::Scheduled);
    let product = ProductId::from_trusted("prd_9");
    let change = b.plan(DurableCommand::Pin(product.clone()), at(0)).unwrap();
    assert_eq!(
        change.write(),
        &Write::Pinned {
            stream: StreamId::from_trusted("str_1"),
            product: product.clone()
        }
    );
    let effects = b.commit(change);
    assert_eq!(
        effects.as_slice(),
        &[Effect::PublishOrdered(pinned_body(Some(&product)))]
    );
    assert_eq!(b.stream().pinned, Some(product.clone()));

    let e = book(StreamStatus::Ended)
        .plan(DurableCommand::Pin(product), at(0))
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::InvalidState, "stream has ended")
    );
}

#[test]
fn a_drop_opens_only_while_live_and_joins_the_snapshot_once_stored() {
    let new = drop_of("drp_new", DropStatus::Open);
    let e = book(StreamStatus::Scheduled)
        .plan(DurableCommand::OpenDrop(Box::new(new.clone())), at(0))
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::InvalidState, "stream is scheduled")
    );

    let mut b = book(StreamStatus::Live);
    let change = b
        .plan(DurableCommand::OpenDrop(Box::new(new.clone())), at(0))
        .unwrap();
    assert_eq!(change.write(), &Write::NewDrop(Box::new(new.clone())));
    assert!(b.drops().is_empty(), "not before commit");
    let effects = b.commit(change);
    assert_eq!(
        effects.as_slice(),
        &[Effect::PublishOrdered(EventBody::DropOpened(
            serde_json::to_value(&new).unwrap()
        ))]
    );
    assert_eq!(b.drops(), &[new]);
}

#[test]
fn a_changed_drop_is_refreshed_and_a_closed_one_leaves_the_snapshot() {
    let mut b = StreamBook::restore(
        record(StreamStatus::Live),
        [
            drop_of("drp_a", DropStatus::Open),
            drop_of("drp_b", DropStatus::Open),
        ],
        [],
        limits(),
    );
    let mut a = drop_of("drp_a", DropStatus::SoldOut);
    a.remaining = 0;
    a.reserved = 10;
    b.apply(Command::DropChanged(Box::new(a.clone())), at(0))
        .unwrap();
    assert_eq!(
        b.drops(),
        &[drop_of("drp_b", DropStatus::Open), a.clone()],
        "refreshed, and last, as before"
    );
    let mut closed = drop_of("drp_b", DropStatus::Closed);
    closed.closed_reason = Some("seller".into());
    b.apply(Command::DropChanged(Box::new(closed)), at(0))
        .unwrap();
    assert_eq!(b.drops(), &[a]);
    let snapshot: serde_json::Value = serde_json::from_str(&snapshot_json(&b, 0)).unwrap();
    assert_eq!(snapshot["drops"].as_array().unwrap().len(), 1);
}

#[test]
fn the_tick_forgets_allowances_idle_for_a_minute() {
    let mut b = book(StreamStatus::Live);
    b.apply(chat("u1", 1), at(0)).unwrap();
    b.apply(chat("u2", 1), at(30_000)).unwrap();
    b.apply(Command::Tick { viewers: 1 }, at(59_999)).unwrap();
    assert_eq!(b.allowances().len(), 2);
    b.apply(Command::Tick { viewers: 1 }, at(60_000)).unwrap();
    assert_eq!(b.allowances().len(), 1);
    b.apply(Command::Tick { viewers: 1 }, at(90_000)).unwrap();
    assert!(b.allowances().is_empty());
}

#[test]
fn an_allowance_that_refills_slowly_is_kept_until_it_is_full_again() {
    let slow = Limits {
        chat_burst: 20,
        chat_per_sec: 0.1,
        ..limits()
    };
    assert_eq!(idle_after_ms(&slow), 200_000);
    let mut b = StreamBook::restore(record(StreamStatus::Live), [], [], slow);
    b.apply(chat("u1", 1), at(0)).unwrap();
    b.apply(Command::Tick { viewers: 1 }, at(199_999)).unwrap();
    assert_eq!(b.allowances().len(), 1);
    b.apply(Command::Tick { viewers: 1 }, at(200_000)).unwrap();
    assert!(b.allowances().is_empty());
}

#[test]
fn the_tick_stops_a_stream_that_ended_once_nobody_watches() {
    let stops = |status, viewers| {
        book(status)
            .apply(Command::Tick { viewers }, at(0))
            .unwrap()
            .as_slice()
            .contains(&Effect::Stop)
    };
    assert!(stops(StreamStatus::Ended, 0));
    assert!(!stops(StreamStatus::Ended, 1));
    assert!(!stops(StreamStatus::Live, 0));
    assert!(!stops(StreamStatus::Scheduled, 0));
}

#[test]
fn the_revision_moves_with_what_a_snapshot_shows_only() {
    let mut b = book(StreamStatus::Live);
    let r0 = b.revision();
    b.apply(Command::React("heart"), at(0)).unwrap();
    b.apply(Command::Tick { viewers: 3 }, at(0)).unwrap();
    assert_eq!(b.revision(), r0);
    b.apply(chat("u1", 1), at(0)).unwrap();
    let r1 = b.revision();
    assert!(r1 > r0);
    b.apply(
        Command::DropChanged(Box::new(drop_of("drp_a", DropStatus::Open))),
        at(0),
    )
    .unwrap();
    assert!(b.revision() > r1);
}

/// The snapshot as the stream actor built it before the book existed: a `json!` value of the
/// records, serialized.
fn old_snapshot(record: &Stream, viewers: u64, drops: &[Drop], chat: &[ChatMessage]) -> String {
    let mut stream = record.clone();
    stream.viewers = viewers;
    let drops: Vec<serde_json::Value> = drops
        .iter()
        .map(|d| serde_json::to_value(d).unwrap())
        .collect();
    let chat: std::collections::VecDeque<serde_json::Value> = chat
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let snapshot = json!({
        "stream": stream,
        "viewers": stream.viewers,
        "pinned": stream.pinned,
        "drops": drops,
        "chat": chat,
    });
    serde_json::value::to_raw_value(&snapshot)
        .unwrap()
        .get()
        .to_owned()
}

#[test]
fn the_snapshot_is_byte_for_byte_the_json_the_actor_built_before() {
    let mut sold_out = drop_of("drp_b", DropStatus::SoldOut);
    sold_out.ends_at = Some(at(600_000));
    sold_out.remaining = 0;
    sold_out.reserved = 8;
    sold_out.sold = 2;
    sold_out.closed_reason = Some("odd \"reason\"".into());
    let drops = vec![drop_of("drp_a", DropStatus::Open), sold_out];
    let mut rec = record(StreamStatus::Live);
    rec.viewers = 99; // as stored; the snapshot shows presence's count
    let mut b = StreamBook::restore(rec, drops.clone(), [], limits());
    let pin = b
        .plan(DurableCommand::Pin(ProductId::from_trusted("prd_1")), at(0))
        .unwrap();
    b.commit(pin);
    for (n, text) in ["héllo 👋", "two\nlines", "a \"quoted\" <b>"]
        .iter()
        .enumerate()
    {
        b.apply(
            Command::Chat(ChatCommand {
                id: ChatId::from_trusted(format!("msg_{n}")),
                author: author(&format!("u{n}")),
                text: (*text).to_owned(),
                access: ChatAccess::Joined,
                role: Role::Viewer,
            }),
            at(n as i64),
        )
        .unwrap();
    }
    let chat: Vec<ChatMessage> = b.recent_chat().cloned().collect();
    assert_eq!(chat.len(), 3);

    let typed = serde_json::value::to_raw_value(&b.snapshot(7)).unwrap();
    assert_eq!(typed.get(), old_snapshot(b.stream(), 7, &drops, &chat));

    let empty = book(StreamStatus::Scheduled);
    assert_eq!(
        snapshot_json(&empty, 0),
        old_snapshot(empty.stream(), 0, &[], &[])
    );
}
