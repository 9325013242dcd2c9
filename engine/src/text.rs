//! The one validation layer for text that reaches storage or other viewers.
//!
//! Every id, idempotency key, display name, title, SKU, chat text, URL and currency that comes in
//! from a REST body, a WebSocket frame or a token claim passes through a function of this module
//! before it is kept. The rules are the same whatever the edge and whatever the database, so SQLite
//! and Postgres store (and refuse) exactly the same texts:
//!
//! - no NUL or other control character (category Cc); chat text alone may contain `\n`;
//! - no bidirectional override or isolate control (U+202A–U+202E, U+2066–U+2069), which would make
//!   a name or a title display as something else to other viewers;
//! - not made only of invisible characters (whitespace, zero-width and other default-ignorable
//!   characters, blank fillers): such a text looks empty to everyone else;
//! - a length limit counted in characters (Unicode scalar values), not bytes.
//!
//! Accepted text is kept as sent (display texts are trimmed of surrounding whitespace): it is not
//! NFC-normalised, so what a client sends is what storage returns, byte for byte, and two spellings
//! of the same name stay distinguishable to whoever reads the audit trail.

use crate::rejection::Rejection;

/// Longest id, idempotency key or display name, in characters (contract: `sub` is 1..=128).
pub const MAX_ID_CHARS: usize = 128;
/// Longest URL (e.g. a product's `image_url`), in characters.
pub const MAX_URL_CHARS: usize = 2048;

/// Whether a character is a bidirectional embedding, override or isolate control.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether a character shows nothing by itself: whitespace, zero-width and other default-ignorable
/// characters (Unicode's `Default_Ignorable_Code_Point`), and the blank filler letters.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// What a text field may hold, beyond the rules every text follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Most characters.
    pub max_chars: usize,
    /// Whether `\n` is allowed (chat text); every other control character is always refused.
    pub newlines: bool,
}

impl Rules {
    /// One line of at most `max_chars` characters.
    pub const fn line(max_chars: usize) -> Self {
        Self {
            max_chars,
            newlines: false,
        }
    }
}

/// Checks `text` against the rules shared by every text field, naming `field` in the error.
pub fn check(field: &str, text: &str, rules: Rules) -> Result<(), Rejection> {
    let mut chars = 0_usize;
    let mut visible = false;
    for c in text.chars() {
        chars += 1;
        if c.is_ascii() {
            // Fast path for the common case (keys, ids, most names): same rules, fewer tests.
            if c.is_ascii_control() && !(rules.newlines && c == '\n') {
                return Err(Rejection::field(
                    field,
                    "must not contain control characters",
                ));
            }
            visible |= !c.is_ascii_whitespace();
            continue;
        }
        if c.is_control() && !(rules.newlines && c == '\n') {
            return Err(Rejection::field(
                field,
                "must not contain control characters",
            ));
        }
        if is_bidi_control(c) {
            return Err(Rejection::field(
                field,
                "must not contain bidirectional override or isolate characters",
            ));
        }
        visible |= !is_invisible(c);
    }
    if chars == 0 {
        return Err(Rejection::field(field, "must not be empty"));
    }
    if chars > rules.max_chars {
        return Err(Rejection::field(
            field,
            &format!("must be at most {} characters", rules.max_chars),
        ));
    }
    if !visible {
        return Err(Rejection::field(field, "must contain a visible character"));
    }
    Ok(())
}

/// A display text (name, title, SKU): trimmed of surrounding whitespace, then one line of
/// 1..=`max_chars` characters under the shared rules.
pub fn display(field: &str, text: &str, max_chars: usize) -> Result<String, Rejection> {
    let trimmed = text.trim();
    check(field, trimmed, Rules::line(max_chars))?;
    Ok(trimmed.to_owned())
}

/// An opaque token (id, idempotency key): kept exactly as sent, 1..=`max_chars` characters under
/// the shared rules.
pub fn opaque(field: &str, text: &str, max_chars: usize) -> Result<(), Rejection> {
    check(field, text, Rules::line(max_chars))
}

/// An idempotency key: 1..=128 characters, kept exactly as sent.
pub fn idempotency_key(field: &str, key: &str) -> Result<(), Rejection> {
    opaque(field, key, MAX_ID_CHARS)
}

/// A display name from a token's `name` claim: trimmed, 1..=128 characters.
pub fn user_name(name: &str) -> Result<String, Rejection> {
    display("name", name, MAX_ID_CHARS)
}

/// A URL that other viewers' clients will load (a product image): an absolute `https` URL with a
/// host, at most [`MAX_URL_CHARS`] characters, with no whitespace, quotes, angle brackets, back
/// slashes or control characters anywhere (so it can be put in an HTML attribute or a CSS `url()`
/// as is). Plain `http` is refused: the pages are served over https and browsers block mixed
/// content. The text is kept as sent, not re-serialised.
pub fn https_url(field: &str, text: &str) -> Result<String, Rejection> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(Rejection::field(
            field,
            &format!("must be at most {MAX_URL_CHARS} characters"),
        ));
    }
    if let Some(bad) = text.chars().find(|&c| {
        c.is_control()
            || is_invisible(c)
            || matches!(
                c,
                '"' | '\'' | '<' | '>' | '\\' | '`' | '{' | '}' | '|' | '^'
            )
    }) {
        let what = if bad.is_whitespace() {
            "whitespace".to_owned()
        } else if bad.is_control() || is_invisible(bad) {
            format!("the character U+{:04X}", u32::from(bad))
        } else {
            format!("the character {bad}")
        };
        return Err(Rejection::field(field, &format!("must not contain {what}")));
    }
    let parsed = url::Url::parse(text)
        .map_err(|e| Rejection::field(field, &format!("is not a URL: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(Rejection::field(field, "must be an https URL"));
    }
    match parsed.host_str() {
        Some(host) if !host.is_empty() => {}
        _ => return Err(Rejection::field(field, "must name a host")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Rejection::field(field, "must not carry credentials"));
    }
    Ok(text.to_owned())
}

/// An ISO 4217 currency code that prices can be in, upper case (`EUR`), checked against the
/// `iso_currency` crate's table (generated from the ISO 4217 list published by SIX, the
/// maintenance agency). Fund codes (`BOV`, `CLF`, …) and the special codes (precious metals, units
/// of account, `XTS` for testing, `XXX` for no currency) are refused: nothing is sold in them.
pub fn currency(field: &str, text: &str) -> Result<String, Rejection> {
    use iso_currency::{Currency, Flag};
    let code = text.trim();
    let known = code.len() == 3
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && Currency::from_code(code).is_some_and(|c| {
            c.flags()
                .iter()
                .all(|f| !matches!(f, Flag::Fund | Flag::Special))
        });
    if known {
        Ok(code.to_owned())
    } else {
        Err(Rejection::field(
            field,
            "must be an ISO 4217 currency code such as EUR or USD",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Result<(), Rejection> {
        check("title", text, Rules::line(10))
    }

    #[test]
    fn printable_text_of_any_script_is_accepted() {
        assert!(line("Tee").is_ok());
        assert!(line("Café ☕").is_ok());
        assert!(line("שלום").is_ok());
        assert!(
            line("a\u{200D}b").is_ok(),
            "a joiner inside visible text is fine"
        );
    }

    #[test]
    fn nul_and_other_control_characters_are_refused() {
        for text in ["a\0b", "a\nb", "a\u{7}", "a\u{7F}", "a\u{85}"] {
            let err = line(text).unwrap_err();
            assert!(err.message.contains("control"), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn chat_may_hold_newlines_but_nothing_else_of_the_kind() {
        let chat = Rules {
            max_chars: 10,
            newlines: true,
        };
        assert!(check("text", "a\nb", chat).is_ok());
        assert!(check("text", "a\rb", chat).is_err());
        assert!(check("text", "a\0b", chat).is_err());
    }

    #[test]
    fn bidi_overrides_and_isolates_are_refused() {
        for c in ['\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}'] {
            let err = line(&format!("ab{c}cd")).unwrap_err();
            assert!(err.message.contains("bidirectional"), "{}", err.message);
        }
    }

    #[test]
    fn text_of_only_invisible_characters_is_refused() {
        for text in [
            "\u{200B}\u{200B}",
            "\u{FEFF}",
            "\u{2060}\u{3164}",
            "\u{2800}",
        ] {
            let err = line(text).unwrap_err();
            assert!(err.message.contains("visible"), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn length_is_counted_in_characters_and_named_with_the_field() {
        assert!(line(&"é".repeat(10)).is_ok());
        let err = line(&"é".repeat(11)).unwrap_err();
        assert_eq!(err.message, "title: must be at most 10 characters");
        assert_eq!(line("").unwrap_err().message, "title: must not be empty");
    }

    #[test]
    fn display_texts_are_trimmed_and_keys_are_kept_as_sent() {
        assert_eq!(display("title", "  Tee ", 10).unwrap(), "Tee");
        assert!(display("title", "   ", 10).is_err());
        assert!(idempotency_key("key", " k ").is_ok());
        assert!(idempotency_key("key", "k\0").is_err());
    }

    #[test]
    fn image_urls_must_be_https_with_a_host_and_no_markup_characters() {
        assert!(https_url("image_url", "https://cdn.example/tee.png?w=2&h=3#x").is_ok());
        for bad in [
            "https://",
            "http://cdn.example/a.png",
            "javascript:alert(1)",
            "https://cdn.example/a b.png",
            "https://cdn.example/a\".png",
            "https://cdn.example/<script>",
            "https://cdn.example/a\n.png",
            "https://cdn.example/a\0.png",
            "https://user:pw@cdn.example/a.png",
            "/relative.png",
            "",
        ] {
            let err = https_url("image_url", bad).unwrap_err();
            assert!(
                err.message.starts_with("image_url:"),
                "{bad:?}: {}",
                err.message
            );
        }
        let long = format!("https://cdn.example/{}", "a".repeat(MAX_URL_CHARS));
        assert!(https_url("image_url", &long).is_err());
    }

    #[test]
    fn currencies_come_from_the_iso_4217_list() {
        assert_eq!(currency("currency", "EUR").unwrap(), "EUR");
        assert!(currency("currency", "JPY").is_ok());
        assert!(currency("currency", "XOF").is_ok());
        for bad in ["ABC", "XYZ", "eur", "EURO", "", "XXX", "XTS", "XAU", "BOV"] {
            let err = currency("currency", bad).unwrap_err();
            assert!(err.message.starts_with("currency:"), "{bad:?}");
        }
    }
}
