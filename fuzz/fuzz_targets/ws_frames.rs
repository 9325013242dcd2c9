//! The WebSocket frame reader (`engine/src/wire.rs`) on arbitrary client bytes, cut into
//! arbitrary reads: it never panics, never holds more than a frame and a message, and reads the
//! same frames however the bytes are split.

#![no_main]

use libfuzzer_sys::fuzz_target;
use liveshop_engine::wire::{FrameReader, Inbound, WireError};

/// The message limit of the real server is 16 KiB; a small one reaches its edges more often.
const MAX: usize = 1024;

fn read(bytes: &[u8], cuts: &[u8]) -> (Vec<Inbound>, Option<WireError>, usize) {
    let mut reader = FrameReader::new(MAX);
    let mut got = Vec::new();
    let mut at = 0;
    let mut sizes = cuts.iter().map(|&c| usize::from(c).max(1)).cycle();
    while at < bytes.len() {
        let n = sizes.next().unwrap_or(bytes.len()).min(bytes.len() - at);
        if let Err(e) = reader.feed(&bytes[at..at + n], &mut |m| got.push(m)) {
            return (got, Some(e), reader.buffered());
        }
        at += n;
        // What is held is at most one frame's header and payload and one message.
        assert!(reader.buffered() <= 2 * MAX + 14, "{}", reader.buffered());
    }
    (got, None, reader.buffered())
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the following bytes give the read sizes.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (cuts, bytes) = rest.split_at(usize::from(n % 16).min(rest.len()));
    let whole = read(bytes, &[]);
    let split = read(bytes, if cuts.is_empty() { &[1] } else { cuts });
    assert_eq!(whole.0, split.0, "same frames whatever the reads");
    assert_eq!(whole.1, split.1, "same error whatever the reads");
    if let Some(e) = whole.1 {
        assert!(matches!(e.code(), 1002 | 1007 | 1009));
    }
});
