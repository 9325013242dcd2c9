//! Chat and reaction rules.

use crate::rejection::Rejection;

/// Longest chat message, in characters after trimming.
pub const MAX_CHAT_CHARS: usize = 500;

/// Reactions a viewer may send. A fixed set keeps tallies small and labels bounded.
pub const EMOJIS: &[&str] = &["heart", "fire", "clap", "laugh", "wow", "cart"];

/// Trims a chat text and checks its length: 1..=500 characters.
pub fn validate_chat_text(text: &str) -> Result<String, Rejection> {
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(Rejection::field("text", "must not be empty"));
    }
    if chars > MAX_CHAT_CHARS {
        return Err(Rejection::field("text", "must be at most 500 characters"));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Rejection::field(
            "text",
            "must not contain control characters",
        ));
    }
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
    fn heart_is_a_known_reaction_and_others_are_refused() {
        assert_eq!(validate_emoji("heart").unwrap(), "heart");
        assert!(validate_emoji("poop").is_err());
    }
}
