//! The cost of moderation on the chat path: one chat message through the stream's rules
//! (`StreamBook::apply`: text checks, mute, blocked words, slow mode, the burst allowance, the
//! event's data), with no moderation configured and with 1,000 blocked words in four scripts.
//!
//! * `chat_rules/none`: no blocked word, no slow mode.
//! * `chat_rules/1000_words`: 1,000 blocked words (Latin, Cyrillic, Greek, Han), and a 200-byte
//!   message that holds none of them (what almost every message of a show is).
//! * `chat_rules/1000_words_slow_mode`: the same, with slow mode on (authors rotate, so none is
//!   slowed).
//!
//! Run with `cargo bench -p liveshop-benches --bench chat_rules`; for figures that do not depend
//! on how busy the machine is, count instructions with the `chat_rules_count` example.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use liveshop_benches::chat_rules::{Messages, Setup, book};

fn chat_rules(c: &mut Criterion) {
    let mut group = c.benchmark_group("chat_rules");
    group.throughput(Throughput::Elements(1));
    for (name, setup) in [
        ("none", Setup::None),
        ("1000_words", Setup::Words),
        ("1000_words_slow_mode", Setup::WordsAndSlowMode),
    ] {
        let mut book = book(setup);
        let mut messages = Messages::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let (command, now) = messages.next_message();
                black_box(book.apply(command, now).expect("the message passes"))
            })
        });
    }
    group.finish();
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
