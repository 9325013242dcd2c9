//! Replays without deleted messages.
//!
//! A hub hands a joiner or a resuming viewer the events it missed, encoded as they were sent. When
//! a moderator deleted a chat message whose event is among them, the `chat_deleted` event that
//! followed is among them too (it was numbered later). [`redact`] replaces each such chat event
//! by a `chat_deleted` event of the same seq, so the replay stays gapless and in order while the
//! deleted text never reaches anyone who had not already received it.
//!
//! Replays are short (at most the resume ring) and deletions rare: a replay without
//! `chat_deleted` is only scanned, never decoded.

use bytes::Bytes;

use crate::frames::{EventBody, EventFrame, ServerFrame, encode_event};
use crate::ids::StreamId;

const DELETED_KIND: &[u8] = br#""kind":"chat_deleted""#;
const CHAT_KIND: &[u8] = br#""kind":"chat","#;

/// Replaces, in `events` (encoded events of `stream`, in order), every chat event deleted by a
/// `chat_deleted` event of the same slice with that deletion at the chat's seq.
pub fn redact(stream: &StreamId, events: &mut [Bytes]) {
    let deleted: Vec<String> = events
        .iter()
        .filter(|bytes| contains(bytes, DELETED_KIND))
        .filter_map(|bytes| match decode(bytes)?.body {
            EventBody::ChatDeleted { id } => Some(id),
            _ => None,
        })
        .collect();
    if deleted.is_empty() {
        return;
    }
    for bytes in events.iter_mut() {
        if !contains(bytes, CHAT_KIND) {
            continue;
        }
        let Some(EventFrame {
            seq,
            body: EventBody::Chat(data),
            ..
        }) = decode(bytes)
        else {
            continue;
        };
        let Some(id) = data.get("id").and_then(|id| id.as_str()) else {
            continue;
        };
        if deleted.iter().any(|d| d == id) {
            let id = id.to_owned();
            *bytes = encode_event(stream, seq, EventBody::ChatDeleted { id });
        }
    }
}

fn decode(bytes: &[u8]) -> Option<EventFrame> {
    let text = std::str::from_utf8(bytes).ok()?;
    match ServerFrame::decode(text).ok()? {
        ServerFrame::Event(frame) => Some(frame),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stream() -> StreamId {
        StreamId::from_trusted("s")
    }

    fn chat(seq: u64, id: &str, text: &str) -> Bytes {
        let data = json!({"id": id, "user": {"id": "u", "name": "U"}, "text": text, "at": "2026-12-07T00:00:00Z"});
        encode_event(&stream(), Some(seq), EventBody::Chat(data))
    }

    fn deleted(seq: u64, id: &str) -> Bytes {
        encode_event(
            &stream(),
            Some(seq),
            EventBody::ChatDeleted { id: id.to_owned() },
        )
    }

    #[test]
    fn a_deleted_message_becomes_its_deletion_at_the_same_seq() {
        let mut events = vec![
            chat(1, "m1", "keep me"),
            chat(2, "m2", "buy fake goods"),
            deleted(3, "m2"),
        ];
        redact(&stream(), &mut events);
        assert_eq!(events[0], chat(1, "m1", "keep me"));
        assert_eq!(events[1], deleted(2, "m2"));
        assert_eq!(events[2], deleted(3, "m2"));
    }

    #[test]
    fn a_replay_without_deletions_is_left_as_sent() {
        let sent = vec![chat(1, "m1", "a"), chat(2, "m2", "b")];
        let mut events = sent.clone();
        redact(&stream(), &mut events);
        assert_eq!(events, sent);
    }

    #[test]
    fn a_deletion_of_a_message_outside_the_replay_changes_nothing_else() {
        let mut events = vec![chat(5, "m5", "hello"), deleted(6, "m1")];
        redact(&stream(), &mut events);
        assert_eq!(events[0], chat(5, "m5", "hello"));
    }

    #[test]
    fn a_text_quoting_the_deletion_kind_is_not_taken_for_one() {
        let sneaky = r#""kind":"chat_deleted","data":{"id":"m1"}"#;
        let mut events = vec![chat(1, "m1", "first"), chat(2, "m2", sneaky)];
        redact(&stream(), &mut events);
        assert_eq!(events[0], chat(1, "m1", "first"));
    }
}
