//! Chat moderation: the records moderators create and the rules a stream's chat obeys because of
//! them (contract section 8).
//!
//! - [`ChatSettings`]: slow mode and blocked words of one stream, changed by a [`SettingsPatch`].
//! - [`BlockedWords`]: whole-word matching after Unicode normalisation, compiled once per change.
//! - [`Mute`]: one user may not chat in one stream until a time.
//! - [`Ban`]: one user may not use a tenant at all until a time (or for good).
//! - [`ModerationEntry`]: the audit log, one row per action with actor, target, reason and time.
//! - [`redact`]: replays never hand a deleted chat message to a resuming viewer.
//!
//! The stream's rules apply them in [`crate::stream_book::StreamBook`]; who may moderate is
//! [`crate::auth::Action::Moderate`] and [`crate::auth::Action::Ban`].

use serde::{Deserialize, Serialize};

use crate::ids::{StreamId, TenantId, UserId};
use crate::rejection::Rejection;
use crate::text;
use crate::timestamp::Timestamp;

pub mod redact;
mod words;

pub use words::{BlockedWords, normalize};

/// Longest slow mode: one message per user per hour.
pub const MAX_SLOW_MODE_SECONDS: u32 = 3_600;
/// Most blocked words (or phrases) one stream may have.
pub const MAX_BLOCKED_WORDS: usize = 2_000;
/// Longest blocked word or phrase, in characters.
pub const MAX_BLOCKED_WORD_CHARS: usize = 100;
/// Longest mute or ban given by duration: one year.
pub const MAX_DURATION_SECONDS: i64 = 366 * 24 * 3_600;
/// Longest reason of a ban or mute, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// The chat rules of one stream that its moderators choose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatSettings {
    /// One message per user per this many seconds; 0 is off. Staff are never slowed.
    pub slow_mode_seconds: u32,
    /// Words or phrases a message may not contain (whole words, case-insensitive), as the
    /// moderator wrote them (trimmed).
    pub blocked_words: Vec<String>,
}

/// A change of [`ChatSettings`]: the fields given replace the current ones, the others stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsPatch {
    /// New slow mode in seconds (0 turns it off).
    pub slow_mode_seconds: Option<u32>,
    /// New blocked words (an empty list clears them).
    pub blocked_words: Option<Vec<String>>,
}

impl SettingsPatch {
    /// Checks the patch and returns the settings it makes of `current`: slow mode within
    /// 0..=[`MAX_SLOW_MODE_SECONDS`]; at most [`MAX_BLOCKED_WORDS`] words, each 1..=
    /// [`MAX_BLOCKED_WORD_CHARS`] characters of text with at least one letter or digit, without
    /// duplicates after normalisation (later duplicates are dropped).
    pub fn apply_to(&self, current: &ChatSettings) -> Result<ChatSettings, Rejection> {
        let mut next = current.clone();
        if let Some(seconds) = self.slow_mode_seconds {
            if seconds > MAX_SLOW_MODE_SECONDS {
                return Err(Rejection::field(
                    "slow_mode_seconds",
                    &format!("must be between 0 and {MAX_SLOW_MODE_SECONDS}"),
                ));
            }
            next.slow_mode_seconds = seconds;
        }
        if let Some(words) = &self.blocked_words {
            if words.len() > MAX_BLOCKED_WORDS {
                return Err(Rejection::field(
                    "blocked_words",
                    &format!("at most {MAX_BLOCKED_WORDS} entries"),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            let mut kept = Vec::with_capacity(words.len());
            for (i, word) in words.iter().enumerate() {
                let word = word.trim();
                let field = format!("blocked_words[{i}]");
                text::check(
                    &field,
                    word,
                    text::Rules {
                        max_chars: MAX_BLOCKED_WORD_CHARS,
                        newlines: false,
                    },
                )?;
                let tokens = words::tokens(word);
                if tokens.is_empty() {
                    return Err(Rejection::field(&field, "must hold a letter or a digit"));
                }
                if seen.insert(tokens) {
                    kept.push(word.to_owned());
                }
            }
            next.blocked_words = kept;
        }
        Ok(next)
    }
}

/// A user who may not chat in a stream until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mute {
    /// The stream.
    pub stream: StreamId,
    /// The muted user.
    pub user: UserId,
    /// When the mute lapses.
    pub until: Timestamp,
}

/// A user shut out of a tenant: connections closed, upgrades and REST calls refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ban {
    /// The tenant.
    pub tenant: TenantId,
    /// The banned user.
    pub user: UserId,
    /// When the ban lapses; `None` is for good.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub until: Option<Timestamp>,
    /// Why, as the moderator wrote it.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reason: Option<String>,
    /// Who banned.
    pub by: UserId,
    /// When.
    pub at: Timestamp,
}

impl Ban {
    /// Whether the ban holds at `now`.
    pub fn holds_at(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// What a moderator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    /// A chat message was deleted; the target is the message id.
    DeleteMessage,
    /// A user was muted in the stream; the target is the user.
    Mute,
    /// A user was banned from the tenant; the target is the user.
    Ban,
    /// A ban was lifted before it lapsed; the target is the user.
    Unban,
    /// The stream's chat settings changed; the target is the stream.
    ChatSettings,
}

impl ModerationAction {
    /// The wire and storage spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DeleteMessage => "delete_message",
            Self::Mute => "mute",
            Self::Ban => "ban",
            Self::Unban => "unban",
            Self::ChatSettings => "chat_settings",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::DeleteMessage,
            Self::Mute,
            Self::Ban,
            Self::Unban,
            Self::ChatSettings,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One row of a stream's moderation log: `{"at","actor","action","target","reason"?}` on the
/// wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModerationEntry {
    /// The stream whose log holds it; not on the wire.
    #[serde(skip)]
    pub stream: StreamId,
    /// When.
    pub at: Timestamp,
    /// Who acted.
    pub actor: UserId,
    /// What they did.
    pub action: ModerationAction,
    /// What it was done to (a message id, a user id, the stream id).
    pub target: String,
    /// Why, when the moderator said; for settings, what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub reason: Option<String>,
}

/// Checks an optional reason: 1..=[`MAX_REASON_CHARS`] characters after trimming, or absent.
pub fn validate_reason(reason: Option<&str>) -> Result<Option<String>, Rejection> {
    let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    text::check(
        "reason",
        reason,
        text::Rules {
            max_chars: MAX_REASON_CHARS,
            newlines: false,
        },
    )?;
    Ok(Some(reason.to_owned()))
}

/// Checks a mute or ban duration: 1..=[`MAX_DURATION_SECONDS`].
pub fn validate_duration(field: &str, seconds: i64) -> Result<i64, Rejection> {
    if (1..=MAX_DURATION_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(Rejection::field(
            field,
            &format!("must be between 1 and {MAX_DURATION_SECONDS}"),
        ))
    }
}
