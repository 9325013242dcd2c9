//! Fixtures shared by the criterion benches in `benches/`.
//!
//! The benches measure the hot paths of the engine without sockets or a database:
//! encoding an ordered event once (`EventLog::append`), keeping it in the hub's resume ring, and
//! handing it to every subscriber of a stream from the hub's write loop. Run them with
//! `cargo bench -p liveshop-benches --bench fanout`; figures are recorded in `docs/BENCHMARKS.md`.

pub mod chat_rules;

use liveshop_engine::frames::EventBody;
use liveshop_engine::ids::ChatId;
use liveshop_engine::records::{ChatAuthor, ChatMessage};
use liveshop_engine::{StreamId, TenantId, Timestamp, UserId};

/// Size of the chat text in the benches, in bytes (the `S` of the load and peer benchmarks).
pub const TEXT_BYTES: usize = 200;

/// The stream every bench publishes to.
pub fn stream_id() -> StreamId {
    StreamId::from_trusted("str_0190b2c4d5e6f708a9b0c1d2e3f40516")
}

/// A chat event body exactly as the stream actor builds it: a serialized [`ChatMessage`]
/// (`{"id","user":{"id","name"},"text","at"}`) whose text is `text_bytes` ASCII bytes.
pub fn chat_body(text_bytes: usize) -> EventBody {
    let text: String = "liveshop ".chars().cycle().take(text_bytes).collect();
    let message = ChatMessage {
        id: ChatId::from_trusted("msg_0190b2c4d5e6f708a9b0c1d2e3f40517"),
        stream: stream_id(),
        tenant: TenantId::from_trusted("ten_0190b2c4d5e6f708a9b0c1d2e3f40518"),
        user: ChatAuthor {
            id: UserId::from_trusted("viewer-0042"),
            name: "Viewer 42".to_owned(),
        },
        text,
        at: Timestamp::from_millis(1_795_000_000_000),
    };
    EventBody::Chat(serde_json::to_value(&message).unwrap_or(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveshop_engine::stream::EventLog;

    #[test]
    fn the_bench_event_has_the_wire_shape_of_a_chat_event() {
        let mut log = EventLog::new(stream_id(), 1);
        let (seq, bytes) = log.append(chat_body(TEXT_BYTES));
        assert_eq!(seq, 1);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["kind"], "chat");
        assert_eq!(v["data"]["text"].as_str().unwrap().len(), TEXT_BYTES);
        assert_eq!(v["data"]["user"]["name"], "Viewer 42");
    }
}
