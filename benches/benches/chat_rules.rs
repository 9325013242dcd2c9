//! The cost of moderation on the chat path: one chat message through the stream's rules
//! (`StreamBook::apply`: text checks, mute, blocked words, slow mode, the burst allowance, the
//! event's data), with no moderation configured and with 1,000 blocked words in four scripts.
//!
//! * `chat_rules/none`: no blocked word, no slow mode.
//! * `chat_rules/1000_words`: 1,000 blocked words (Latin, Cyrillic, Greek, Han), and a 200-byte
//!   message that holds none of them, so every word of it is looked up (the slowest case of a
//!   message that passes).
//! * `chat_rules/1000_words_slow_mode`: the same, with slow mode on (authors rotate, so none is
//!   slowed).
//!
//! Run with `cargo bench -p liveshop-benches --bench chat_rules`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use liveshop_benches::{TEXT_BYTES, stream_id};
use liveshop_engine::auth::Role;
use liveshop_engine::ids::ChatId;
use liveshop_engine::limits::Limits;
use liveshop_engine::moderation::SettingsPatch;
use liveshop_engine::records::{ChatAuthor, Stream, StreamStatus};
use liveshop_engine::stream_book::{ChatAccess, ChatCommand, Command, DurableCommand, StreamBook};
use liveshop_engine::{TenantId, Timestamp, UserId};

/// Authors the messages rotate through (more than the slow-mode interval allows to repeat).
const AUTHORS: usize = 4_096;

fn book() -> StreamBook {
    let record = Stream {
        id: stream_id(),
        tenant: TenantId::from_trusted("ten_bench"),
        seller: UserId::from_trusted("seller"),
        title: "bench".into(),
        status: StreamStatus::Live,
        scheduled_at: None,
        started_at: Some(Timestamp::from_millis(0)),
        ended_at: None,
        pinned: None,
        viewers: 0,
    };
    let limits = Limits {
        chat_burst: u32::MAX,
        chat_per_sec: 1e9,
        ..Limits::default()
    };
    StreamBook::restore(record, [], [], limits)
}

/// 1,000 words in Latin, Cyrillic, Greek and Han script, none of which the message holds.
fn blocked_words() -> Vec<String> {
    (0..1_000)
        .map(|i| match i % 4 {
            0 => format!("forbidden{i}"),
            1 => format!("запрет{i}"),
            2 => format!("απαγόρευση{i}"),
            _ => format!("禁止{i}"),
        })
        .collect()
}

fn configured(slow_mode_seconds: u32) -> StreamBook {
    let mut book = book();
    let patch = SettingsPatch {
        slow_mode_seconds: Some(slow_mode_seconds),
        blocked_words: Some(blocked_words()),
    };
    let change = book
        .plan(
            DurableCommand::ChatSettings {
                patch,
                actor: UserId::from_trusted("mod"),
            },
            Timestamp::from_millis(0),
        )
        .expect("the settings are valid");
    book.commit(change);
    book
}

fn run(c: &mut Criterion, name: &str, mut book: StreamBook) {
    let text: String = "Great drop, is the blue one still there? "
        .chars()
        .cycle()
        .take(TEXT_BYTES)
        .collect();
    let authors: Vec<ChatAuthor> = (0..AUTHORS)
        .map(|i| ChatAuthor {
            id: UserId::from_trusted(format!("viewer-{i}")),
            name: format!("Viewer {i}"),
        })
        .collect();
    let mut n: usize = 0;
    let mut group = c.benchmark_group("chat_rules");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            n += 1;
            let command = Command::Chat(ChatCommand {
                id: ChatId::from_trusted(format!("msg_{n}")),
                author: authors[n % AUTHORS].clone(),
                text: text.clone(),
                access: ChatAccess::Joined(Role::Viewer),
            });
            // Each author speaks once per 4,096 messages, 1 s apart at least.
            let now = Timestamp::from_millis(1_000_000 + n as i64 * 1_000);
            black_box(book.apply(command, now).expect("the message passes"))
        })
    });
    group.finish();
}

fn chat_rules(c: &mut Criterion) {
    run(c, "none", book());
    run(c, "1000_words", configured(0));
    run(c, "1000_words_slow_mode", configured(10));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = chat_rules
}
criterion_main!(benches);
