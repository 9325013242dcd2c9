//! The moderation rules of the stream book: deletes, mutes, slow mode, blocked words.

use super::*;
use crate::auth::Role;
use crate::ids::UserId;
use crate::moderation::SettingsPatch;
use crate::records::ChatAuthor;
use crate::storage::StreamModeration;

const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);

fn at(ms: i64) -> Timestamp {
    T0.plus_millis(ms)
}

fn live() -> StreamBook {
    let record = Stream {
        id: StreamId::from_trusted("str_1"),
        tenant: crate::ids::TenantId::from_trusted("ten_1"),
        seller: UserId::from_trusted("seller"),
        title: "show".into(),
        status: StreamStatus::Live,
        scheduled_at: None,
        started_at: Some(at(-60_000)),
        ended_at: None,
        pinned: None,
        viewers: 0,
    };
    let limits = Limits {
        chat_burst: 100,
        chat_per_sec: 100.0,
        snapshot_chat: 50,
        ..Limits::default()
    };
    StreamBook::restore(record, [], [], limits)
}

fn user(id: &str) -> UserId {
    UserId::from_trusted(id)
}

fn say(
    book: &mut StreamBook,
    who: &str,
    role: Role,
    id: &str,
    text: &str,
    now: Timestamp,
) -> Result<Effects, Rejection> {
    book.apply(
        Command::Chat(ChatCommand {
            id: ChatId::from_trusted(id),
            author: ChatAuthor {
                id: user(who),
                name: who.to_owned(),
            },
            text: text.to_owned(),
            access: ChatAccess::Joined,
            role,
        }),
        now,
    )
}

fn durable(
    book: &mut StreamBook,
    command: DurableCommand,
    now: Timestamp,
) -> Result<Effects, Rejection> {
    let change = book.plan(command, now)?;
    Ok(book.commit(change))
}

fn settings(
    book: &mut StreamBook,
    patch: SettingsPatch,
    now: Timestamp,
) -> Result<Effects, Rejection> {
    durable(
        book,
        DurableCommand::ChatSettings {
            patch,
            actor: user("mod"),
        },
        now,
    )
}

fn mute(
    book: &mut StreamBook,
    who: &str,
    seconds: i64,
    now: Timestamp,
) -> Result<Effects, Rejection> {
    durable(
        book,
        DurableCommand::Mute {
            user: user(who),
            duration_seconds: seconds,
            actor: user("mod"),
            reason: Some("spam".into()),
        },
        now,
    )
}

fn delete(
    book: &mut StreamBook,
    id: &str,
    stored: bool,
    now: Timestamp,
) -> Result<Effects, Rejection> {
    durable(
        book,
        DurableCommand::DeleteChat {
            id: ChatId::from_trusted(id),
            actor: user("mod"),
            stored,
        },
        now,
    )
}

fn snapshot(book: &StreamBook) -> String {
    serde_json::to_string(&book.snapshot(0)).unwrap()
}

fn code(result: Result<Effects, Rejection>) -> (ErrorCode, Option<u64>) {
    let refusal = result.unwrap_err();
    (refusal.code, refusal.retry_after_ms)
}

#[test]
fn a_deleted_message_is_announced_in_order_and_leaves_the_snapshot() {
    let mut book = live();
    say(
        &mut book,
        "v1",
        Role::Viewer,
        "msg_1",
        "buy fake watches",
        at(0),
    )
    .unwrap();
    say(&mut book, "v2", Role::Viewer, "msg_2", "hello", at(1)).unwrap();
    let plan = book
        .plan(
            DurableCommand::DeleteChat {
                id: ChatId::from_trusted("msg_1"),
                actor: user("mod"),
                stored: false,
            },
            at(2),
        )
        .unwrap();
    match plan.write() {
        Write::DeleteChat { message, entry, .. } => {
            assert_eq!(message.as_str(), "msg_1");
            assert_eq!(entry.action, ModerationAction::DeleteMessage);
            assert_eq!(entry.target, "msg_1");
            assert_eq!(entry.actor, user("mod"));
            assert_eq!(entry.at, at(2));
        }
        other => panic!("unexpected write {other:?}"),
    }
    let effects = book.commit(plan);
    assert_eq!(
        effects.as_slice(),
        &[Effect::PublishOrdered(EventBody::ChatDeleted {
            id: "msg_1".into()
        })]
    );
    let json = snapshot(&book);
    assert!(!json.contains("msg_1") && !json.contains("fake"), "{json}");
    assert!(json.contains("msg_2"));
    assert_eq!(
        book.known_message(&ChatId::from_trusted("msg_1")),
        Known::Deleted
    );
}

#[test]
fn a_message_the_book_does_not_know_is_deleted_only_when_storage_has_it() {
    let mut book = live();
    assert_eq!(
        book.known_message(&ChatId::from_trusted("msg_old")),
        Known::Unknown
    );
    assert_eq!(
        code(delete(&mut book, "msg_old", false, at(0))).0,
        ErrorCode::NotFound
    );
    let effects = delete(&mut book, "msg_old", true, at(0)).unwrap();
    assert_eq!(effects.as_slice().len(), 1);
}

#[test]
fn a_muted_user_is_refused_with_the_time_left_until_the_mute_lapses() {
    let mut book = live();
    let effects = mute(&mut book, "v1", 60, at(0)).unwrap();
    assert!(effects.is_empty(), "a mute is not announced to viewers");
    assert_eq!(
        code(say(&mut book, "v1", Role::Viewer, "m1", "hi", at(10_000))),
        (ErrorCode::Muted, Some(50_000))
    );
    // Others still chat.
    say(&mut book, "v2", Role::Viewer, "m2", "hi", at(10_000)).unwrap();
    // The tick before the end keeps it, the lapse ends it.
    book.apply(Command::Tick { viewers: 1 }, at(59_999))
        .unwrap();
    assert_eq!(book.muted_users(), 1);
    say(&mut book, "v1", Role::Viewer, "m3", "back", at(60_000)).unwrap();
    book.apply(Command::Tick { viewers: 1 }, at(60_000))
        .unwrap();
    assert_eq!(book.muted_users(), 0);
}

#[test]
fn a_new_mute_replaces_the_old_one() {
    let mut book = live();
    mute(&mut book, "v1", 600, at(0)).unwrap();
    mute(&mut book, "v1", 10, at(0)).unwrap();
    say(&mut book, "v1", Role::Viewer, "m1", "hi", at(10_000)).unwrap();
}

#[test]
fn the_seller_and_the_moderator_themselves_cannot_be_muted() {
    let mut book = live();
    assert_eq!(
        code(mute(&mut book, "seller", 60, at(0))).0,
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(mute(&mut book, "mod", 60, at(0))).0,
        ErrorCode::BadRequest
    );
}

#[test]
fn slow_mode_allows_one_message_per_interval_and_never_slows_staff() {
    let mut book = live();
    settings(
        &mut book,
        SettingsPatch {
            slow_mode_seconds: Some(10),
            blocked_words: None,
        },
        at(0),
    )
    .unwrap();
    say(&mut book, "v1", Role::Viewer, "m1", "one", at(0)).unwrap();
    assert_eq!(
        code(say(&mut book, "v1", Role::Viewer, "m2", "two", at(4_000))),
        (ErrorCode::RateLimited, Some(6_000))
    );
    // A refused message does not restart the interval.
    say(&mut book, "v1", Role::Viewer, "m3", "three", at(10_000)).unwrap();
    for (i, role) in [Role::Moderator, Role::Seller, Role::Admin]
        .into_iter()
        .enumerate()
    {
        for n in 0..5 {
            say(
                &mut book,
                &format!("staff{i}"),
                role,
                &format!("s{i}_{n}"),
                "staff",
                at(10_000 + n),
            )
            .unwrap();
        }
    }
    // Turning it off lets the viewer go on at once.
    settings(
        &mut book,
        SettingsPatch {
            slow_mode_seconds: Some(0),
            blocked_words: None,
        },
        at(10_001),
    )
    .unwrap();
    say(&mut book, "v1", Role::Viewer, "m4", "four", at(10_002)).unwrap();
}

#[test]
fn a_message_with_a_blocked_word_is_refused_and_never_published_or_kept() {
    let mut book = live();
    settings(
        &mut book,
        SettingsPatch {
            slow_mode_seconds: None,
            blocked_words: Some(vec!["scam".into(), "ложь".into()]),
        },
        at(0),
    )
    .unwrap();
    assert_eq!(
        code(say(
            &mut book,
            "v1",
            Role::Viewer,
            "m1",
            "total SCAM!",
            at(1)
        ))
        .0,
        ErrorCode::Blocked
    );
    assert_eq!(
        code(say(&mut book, "v1", Role::Viewer, "m2", "это ЛОЖЬ", at(2))).0,
        ErrorCode::Blocked
    );
    // Staff are not above the word list: it keeps the chat clean for everyone.
    assert_eq!(
        code(say(&mut book, "seller", Role::Seller, "m3", "scam", at(3))).0,
        ErrorCode::Blocked
    );
    say(&mut book, "v1", Role::Viewer, "m4", "scampi tonight", at(4)).unwrap();
    let json = snapshot(&book);
    assert!(!json.contains("m1") && !json.contains("m2") && !json.contains("m3"));
    assert!(json.contains("scampi"));
}

#[test]
fn a_settings_patch_changes_only_what_it_names_and_is_logged() {
    let mut book = live();
    settings(
        &mut book,
        SettingsPatch {
            slow_mode_seconds: Some(30),
            blocked_words: Some(vec!["a1".into()]),
        },
        at(0),
    )
    .unwrap();
    let plan = book
        .plan(
            DurableCommand::ChatSettings {
                patch: SettingsPatch {
                    slow_mode_seconds: None,
                    blocked_words: Some(vec!["b2".into(), "B2".into(), " c3 ".into()]),
                },
                actor: user("mod"),
            },
            at(1),
        )
        .unwrap();
    match plan.write() {
        Write::ChatSettings {
            settings, entry, ..
        } => {
            assert_eq!(settings.slow_mode_seconds, 30);
            assert_eq!(
                settings.blocked_words,
                vec!["b2".to_owned(), "c3".to_owned()]
            );
            assert_eq!(entry.action, ModerationAction::ChatSettings);
            assert_eq!(
                entry.reason.as_deref(),
                Some("slow_mode_seconds=30, blocked_words=2")
            );
        }
        other => panic!("unexpected write {other:?}"),
    }
    book.commit(plan);
    assert_eq!(book.chat_settings().blocked_words.len(), 2);
}

#[test]
fn bad_settings_are_refused_naming_the_field_and_change_nothing() {
    let book = live();
    let refused = |patch: SettingsPatch| {
        book.clone()
            .plan(
                DurableCommand::ChatSettings {
                    patch,
                    actor: user("mod"),
                },
                at(0),
            )
            .unwrap_err()
            .message
    };
    let too_slow = refused(SettingsPatch {
        slow_mode_seconds: Some(3_601),
        blocked_words: None,
    });
    assert!(too_slow.starts_with("slow_mode_seconds"), "{too_slow}");
    let blank = refused(SettingsPatch {
        slow_mode_seconds: None,
        blocked_words: Some(vec!["ok".into(), "  ".into()]),
    });
    assert!(blank.starts_with("blocked_words[1]"), "{blank}");
    let punctuation = refused(SettingsPatch {
        slow_mode_seconds: None,
        blocked_words: Some(vec!["!!!".into()]),
    });
    assert!(punctuation.contains("letter or a digit"), "{punctuation}");
    let many = refused(SettingsPatch {
        slow_mode_seconds: None,
        blocked_words: Some((0..2_001).map(|i| format!("w{i}")).collect()),
    });
    assert!(many.starts_with("blocked_words"), "{many}");
    assert_eq!(book.chat_settings(), &ChatSettings::default());
}

#[test]
fn stored_moderation_is_restored_with_the_book() {
    let book = live().moderated(StreamModeration {
        settings: ChatSettings {
            slow_mode_seconds: 5,
            blocked_words: vec!["spoiler".into()],
        },
        mutes: vec![Mute {
            stream: StreamId::from_trusted("str_1"),
            user: user("v9"),
            until: at(30_000),
        }],
    });
    let mut book = book;
    assert_eq!(
        code(say(&mut book, "v9", Role::Viewer, "m1", "hi", at(0))).0,
        ErrorCode::Muted
    );
    assert_eq!(
        code(say(
            &mut book,
            "v1",
            Role::Viewer,
            "m2",
            "no SPOILER",
            at(0)
        ))
        .0,
        ErrorCode::Blocked
    );
    say(&mut book, "v1", Role::Viewer, "m3", "ok", at(0)).unwrap();
    assert_eq!(
        code(say(&mut book, "v1", Role::Viewer, "m4", "again", at(1_000))).0,
        ErrorCode::RateLimited
    );
}
