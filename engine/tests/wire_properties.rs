//! Property: whatever the fragmentation of messages into frames and of frames into reads, the
//! reader yields exactly the messages and control frames that were sent, in order, and one item
//! per frame (a fragment that does not end its message is reported as such, so it can be counted).

use liveshop_engine::wire::{FrameReader, Inbound, client_frame};
use proptest::prelude::*;

/// One thing a client sends: a text message cut into fragments, or a ping between them.
#[derive(Debug, Clone)]
enum Sent {
    Text { text: String, cuts: Vec<usize> },
    Ping(Vec<u8>),
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        3 => ("\\PC{0,300}", prop::collection::vec(0usize..300, 0..4))
            .prop_map(|(text, cuts)| Sent::Text { text, cuts }),
        1 => prop::collection::vec(any::<u8>(), 0..125).prop_map(Sent::Ping),
    ]
}

/// Encodes the sequence as masked client frames; fragments of a text message end up in order,
/// with nothing in between (pings come between messages).
fn encode(items: &[Sent], key: [u8; 4]) -> (Vec<u8>, Vec<Inbound>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for item in items {
        match item {
            Sent::Ping(p) => {
                bytes.extend(client_frame(true, 0x9, p, key));
                expected.push(Inbound::Ping(p.clone()));
            }
            Sent::Text { text, cuts } => {
                let raw = text.as_bytes();
                let mut points: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
                points.sort_unstable();
                points.dedup();
                let mut start = 0;
                let mut first = true;
                for p in points.into_iter().chain(std::iter::once(raw.len())) {
                    let last = p == raw.len();
                    if p < start || (!last && p == start) {
                        continue;
                    }
                    let op = if first { 0x1 } else { 0x0 };
                    bytes.extend(client_frame(last, op, &raw[start..p], key));
                    first = false;
                    start = p;
                    if last {
                        break;
                    }
                    expected.push(Inbound::Fragment);
                }
                expected.push(Inbound::Text(text.clone()));
            }
        }
    }
    (bytes, expected)
}

proptest! {
    #[test]
    fn frames_round_trip_through_any_split_of_reads(
        items in prop::collection::vec(sent(), 1..12),
        key in any::<[u8; 4]>(),
        reads in prop::collection::vec(1usize..200, 1..40),
    ) {
        let (bytes, expected) = encode(&items, key);
        let mut reader = FrameReader::new(64 * 1024);
        let mut got = Vec::new();
        let mut at = 0;
        let mut sizes = reads.iter().cycle();
        while at < bytes.len() {
            let n = (*sizes.next().unwrap()).min(bytes.len() - at);
            reader.feed(&bytes[at..at + n], &mut |m| got.push(m)).unwrap();
            at += n;
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(reader.buffered(), 0);
    }
}
