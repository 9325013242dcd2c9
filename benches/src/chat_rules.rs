//! A stream's chat rules with and without moderation configured, shared by the `chat_rules`
//! bench and the `chat_rules_count` example (instruction counts under callgrind).

use liveshop_engine::auth::Role;
use liveshop_engine::ids::ChatId;
use liveshop_engine::limits::Limits;
use liveshop_engine::moderation::SettingsPatch;
use liveshop_engine::records::{ChatAuthor, Stream, StreamStatus};
use liveshop_engine::stream_book::{ChatAccess, ChatCommand, Command, DurableCommand, StreamBook};
use liveshop_engine::{TenantId, Timestamp, UserId};

use crate::{TEXT_BYTES, stream_id};

/// Authors the messages rotate through: each speaks once per this many messages, 1 s apart, so
/// slow mode (10 s) never refuses one.
pub const AUTHORS: usize = 4_096;

/// The moderation a stream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// No blocked word, no slow mode.
    None,
    /// 1,000 blocked words in Latin, Cyrillic, Greek and Han script.
    Words,
    /// The same words and a 10 s slow mode.
    WordsAndSlowMode,
}

/// 1,000 words in four scripts, none of which [`Messages`] ever send.
pub fn blocked_words() -> Vec<String> {
    (0..1_000)
        .map(|i| match i % 4 {
            0 => format!("forbidden{i}"),
            1 => format!("запрет{i}"),
            2 => format!("απαγόρευση{i}"),
            _ => format!("禁止{i}"),
        })
        .collect()
}

/// A live stream's book with `setup`, with allowances that never refuse.
pub fn book(setup: Setup) -> StreamBook {
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
    let mut book = StreamBook::restore(record, [], [], limits);
    let slow_mode_seconds = match setup {
        Setup::None => return book,
        Setup::Words => 0,
        Setup::WordsAndSlowMode => 10,
    };
    let patch = SettingsPatch {
        slow_mode_seconds: Some(slow_mode_seconds),
        blocked_words: Some(blocked_words()),
    };
    let actor = UserId::from_trusted("mod");
    let change = book
        .plan(
            DurableCommand::ChatSettings { patch, actor },
            Timestamp::from_millis(0),
        )
        .expect("the bench's settings are valid");
    book.commit(change);
    book
}

/// The chat messages of a show: a 200-byte ASCII text that holds no blocked word, from
/// [`AUTHORS`] viewers in turn, spaced so that no author is ever slowed.
pub struct Messages {
    text: String,
    authors: Vec<ChatAuthor>,
    sent: usize,
}

impl Default for Messages {
    fn default() -> Self {
        Self::new()
    }
}

impl Messages {
    /// The first message next.
    pub fn new() -> Self {
        Self {
            text: "Great drop, is the blue one still there? "
                .chars()
                .cycle()
                .take(TEXT_BYTES)
                .collect(),
            authors: (0..AUTHORS)
                .map(|i| ChatAuthor {
                    id: UserId::from_trusted(format!("viewer-{i}")),
                    name: format!("Viewer {i}"),
                })
                .collect(),
            sent: 0,
        }
    }

    /// The next message and when it is sent.
    pub fn next_message(&mut self) -> (Command, Timestamp) {
        self.sent += 1;
        let n = self.sent;
        let command = Command::Chat(ChatCommand {
            id: ChatId::from_trusted(format!("msg_{n}")),
            author: self.authors[n % AUTHORS].clone(),
            text: self.text.clone(),
            access: ChatAccess::Joined,
            role: Role::Viewer,
        });
        // An author speaks every AUTHORS messages, AUTHORS seconds apart.
        (
            command,
            Timestamp::from_millis(1_000_000 + n as i64 * 1_000),
        )
    }
}

/// Applies `count` messages to a book with `setup`; returns how many were accepted (all of them).
pub fn run_messages(setup: Setup, count: usize) -> usize {
    let mut book = book(setup);
    let mut messages = Messages::new();
    (0..count)
        .filter(|_| {
            let (command, now) = messages.next_message();
            book.apply(command, now).is_ok()
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_passes_whatever_the_setup() {
        for setup in [Setup::None, Setup::Words, Setup::WordsAndSlowMode] {
            assert_eq!(run_messages(setup, 10_000), 10_000, "{setup:?}");
        }
    }
}
