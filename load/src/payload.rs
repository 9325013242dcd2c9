//! Chat text that carries its own send time, so a viewer in the same process can compute
//! end-to-end latency with a monotonic clock, and the publish index, so a report can name
//! which message went missing.

use std::sync::OnceLock;
use std::time::Instant;

/// Prefix that marks chat messages published by this tool.
const MARK: &str = "lt:";
/// Largest chat text the contract accepts.
pub const MAX_TEXT: usize = 500;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Microseconds on the process-wide monotonic clock (origin: first call).
pub fn now_us() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Builds the chat text for publish number `index` sent at `sent_us`, padded with `x` to
/// `size` bytes (clamped to what the contract allows; never shorter than the header).
pub fn encode(index: u64, sent_us: u64, size: usize) -> String {
    let mut text = format!("{MARK}{index}:{sent_us}:");
    let target = size.min(MAX_TEXT);
    if text.len() < target {
        text.extend(std::iter::repeat_n('x', target - text.len()));
    }
    text
}

/// Reads `(index, sent_us)` back from a chat text produced by [`encode`]; `None` for any
/// other chat.
pub fn decode(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix(MARK)?;
    let mut parts = rest.splitn(3, ':');
    let index = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((index, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let text = encode(42, 123_456_789, 200);
        assert_eq!(text.len(), 200);
        assert_eq!(decode(&text), Some((42, 123_456_789)));
    }

    #[test]
    fn short_size_keeps_header() {
        let text = encode(7, 99, 1);
        assert_eq!(text, "lt:7:99:");
        assert_eq!(decode(&text), Some((7, 99)));
    }

    #[test]
    fn clamps_to_contract_limit() {
        assert_eq!(encode(1, 1, 10_000).len(), MAX_TEXT);
    }

    #[test]
    fn foreign_text_is_ignored() {
        assert_eq!(decode("hello"), None);
        assert_eq!(decode("lt:abc:1:"), None);
        assert_eq!(decode("lt:1:2"), None);
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_us();
        let b = now_us();
        assert!(b >= a);
    }
}
