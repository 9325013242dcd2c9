//! Chat and reaction rules.

use crate::rejection::Rejection;
use crate::text;

/// Longest chat message, in characters after trimming.
pub const MAX_CHAT_CHARS: usize = 500;

/// Reactions a viewer may send. A fixed set keeps tallies small and labels bounded.
pub const EMOJIS: &[&str] = &["heart", "fire", "clap", "laugh", "wow", "cart"];

/// Trims a chat text and checks it: 1..=500 characters under the rules of [`crate::text`], where
/// a chat alone may hold line breaks (`\n`).
pub fn validate_chat_text(text: &str) -> Result<String, Rejection> {
    let trimmed = text.trim();
    text::check(
        "text",
        trimmed,
        text::Rules {
            max_chars: MAX_CHAT_CHARS,
            newlines: true,
        },
    )?;
    Ok(trimmed.to_owned())
}

/// Checks that a reaction is one of [`EMOJIS`], returning its canonical static name.
pub fn validate_emoji(emoji: &str) -> Result<&'static str, Rejection> {
    EMOJIS
        .iter()
        .find(|e| **e == emoji)
        .copied()
        .ok_or_else(|| {
            Rejection::field(
                "emoji",
                "must be one of heart, fire, clap, laugh, wow, cart",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_text_is_trimmed() {
        assert_eq!(validate_chat_text("  hi  ").unwrap(), "hi");
    }

    #[test]
    fn blank_chat_is_refused() {
        assert!(validate_chat_text("   ").is_err());
    }

    #[test]
    fn chat_counts_characters_not_bytes() {
        assert!(validate_chat_text(&"é".repeat(500)).is_ok());
        assert!(validate_chat_text(&"é".repeat(501)).is_err());
    }

    #[test]
    fn chat_may_break_lines_but_not_hide_or_reverse_text() {
        assert_eq!(validate_chat_text("a\nb").unwrap(), "a\nb");
        assert!(validate_chat_text("a\0b").is_err());
        assert!(validate_chat_text("\u{200B}\u{200B}").is_err());
        assert!(validate_chat_text("price \u{202E}0001").is_err());
    }

    #[test]
    fn heart_is_a_known_reaction_and_others_are_refused() {
        assert_eq!(validate_emoji("heart").unwrap(), "heart");
        assert!(validate_emoji("poop").is_err());
    }
}
