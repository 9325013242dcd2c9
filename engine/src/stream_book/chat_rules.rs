//! The moderation rules a stream's chat obeys: mutes, slow mode, blocked words, and which recent
//! messages exist to be deleted.

use std::collections::{HashMap, VecDeque};

use crate::auth::Role;
use crate::ids::{ChatId, UserId};
use crate::moderation::{BlockedWords, ChatSettings, Mute};
use crate::rejection::{ErrorCode, Rejection};
use crate::timestamp::Timestamp;

/// Ids of messages accepted or restored that a moderator may delete without asking storage.
pub const KNOWN_MESSAGES: usize = 1_024;

/// What the book knows of a chat message a moderator wants deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Accepted recently (or restored) and not deleted.
    Live,
    /// Deleted already.
    Deleted,
    /// Not among the recent ones: storage must say.
    Unknown,
}

/// One stream's chat moderation state.
#[derive(Debug, Clone, Default)]
pub(super) struct ChatRules {
    settings: ChatSettings,
    blocked: BlockedWords,
    /// Muted users and when each mute lapses.
    mutes: HashMap<UserId, Timestamp>,
    /// When each author last had a message accepted, while slow mode is on.
    last_message: HashMap<UserId, Timestamp>,
    /// Recent message ids, oldest first.
    recent: VecDeque<ChatId>,
    /// Recently deleted message ids, oldest first.
    deleted: VecDeque<ChatId>,
}

impl ChatRules {
    /// The rules of these stored settings and mutes.
    pub(super) fn new(settings: ChatSettings, mutes: Vec<Mute>) -> Self {
        Self {
            blocked: BlockedWords::new(&settings.blocked_words),
            settings,
            mutes: mutes.into_iter().map(|m| (m.user, m.until)).collect(),
            ..Self::default()
        }
    }

    pub(super) fn settings(&self) -> &ChatSettings {
        &self.settings
    }

    pub(super) fn set_settings(&mut self, settings: ChatSettings) {
        self.blocked = BlockedWords::new(&settings.blocked_words);
        if settings.slow_mode_seconds == 0 {
            self.last_message.clear();
        }
        self.settings = settings;
    }

    pub(super) fn mute(&mut self, user: UserId, until: Timestamp) {
        self.mutes.insert(user, until);
    }

    /// Checks a message of `author` (with `role`) and checked `text` at `now`: `muted` while a
    /// mute holds, `blocked` for a blocked word, `rate_limited` inside the slow mode interval
    /// (never for staff). Both waits say when to retry.
    pub(super) fn check(
        &self,
        author: &UserId,
        role: Role,
        text: &str,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        if let Some(until) = self.mutes.get(author)
            && now < *until
        {
            return Err(muted(wait_ms(now, *until)));
        }
        if self.blocked.matches(text) {
            return Err(Rejection::new(
                ErrorCode::Blocked,
                "the message contains a word that is not allowed in this chat",
            ));
        }
        if self.settings.slow_mode_seconds > 0
            && !is_staff(role)
            && let Some(last) = self.last_message.get(author)
        {
            let next = last.plus_millis(i64::from(self.settings.slow_mode_seconds) * 1_000);
            if now < next {
                let mut refusal = Rejection::rate_limited(wait_ms(now, next));
                refusal.message = format!(
                    "slow mode: one message every {} s",
                    self.settings.slow_mode_seconds
                );
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// Records an accepted message.
    pub(super) fn accepted(&mut self, author: &UserId, id: &ChatId, now: Timestamp) {
        if self.settings.slow_mode_seconds > 0 {
            self.last_message.insert(author.clone(), now);
        }
        self.remember(id.clone());
    }

    /// Records a message restored from storage.
    pub(super) fn remember(&mut self, id: ChatId) {
        push_bounded(&mut self.recent, id);
    }

    pub(super) fn known(&self, id: &ChatId) -> Known {
        if self.deleted.contains(id) {
            Known::Deleted
        } else if self.recent.contains(id) {
            Known::Live
        } else {
            Known::Unknown
        }
    }

    pub(super) fn deleted(&mut self, id: &ChatId) {
        self.recent.retain(|r| r != id);
        push_bounded(&mut self.deleted, id.clone());
    }

    /// Forgets lapsed mutes and slow-mode times that no longer slow anyone.
    pub(super) fn forget_lapsed(&mut self, now: Timestamp) {
        self.mutes.retain(|_, until| now < *until);
        let interval = i64::from(self.settings.slow_mode_seconds) * 1_000;
        self.last_message
            .retain(|_, last| now < last.plus_millis(interval));
    }

    /// Users muted now, for tests and operators.
    pub(super) fn muted_count(&self) -> usize {
        self.mutes.len()
    }
}

/// Moderators, sellers and admins are never slowed by slow mode.
pub fn is_staff(role: Role) -> bool {
    matches!(role, Role::Moderator | Role::Seller | Role::Admin)
}

/// The `muted` refusal, saying when the mute lapses.
pub fn muted(retry_after_ms: u64) -> Rejection {
    Rejection {
        code: ErrorCode::Muted,
        message: "you are muted in this chat".to_owned(),
        retry_after_ms: Some(retry_after_ms),
    }
}

fn wait_ms(now: Timestamp, until: Timestamp) -> u64 {
    u64::try_from(until.millis() - now.millis())
        .unwrap_or(0)
        .max(1)
}

fn push_bounded(ids: &mut VecDeque<ChatId>, id: ChatId) {
    if ids.len() == KNOWN_MESSAGES {
        ids.pop_front();
    }
    ids.push_back(id);
}
