//! Wire frames of the WebSocket protocol (contract v1, section 4) and their codec.
//!
//! Client frames are decoded leniently enough to answer every mistake with a precise error frame
//! that echoes the client's `ref`; server frames are encoded once into [`Bytes`] so fan-out can
//! write the same bytes to every subscriber.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{DropId, ProductId, StreamId};
use crate::rejection::{ErrorCode, Rejection};

/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame the server accepts, in bytes; larger ones close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

/// A frame sent by a client, with the `ref` it wants echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// Opaque client correlation string, echoed in the reply.
    pub r#ref: Option<String>,
    /// What the client asks for.
    pub op: ClientOp,
}

/// The operations a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Join a stream, optionally resuming after `since` in `epoch`.
    Join {
        /// Stream to join.
        stream: StreamId,
        /// Epoch and last seq seen, to resume without a snapshot.
        resume: Option<(u64, u64)>,
    },
    /// Leave a joined stream.
    Leave {
        /// Stream to leave.
        stream: StreamId,
    },
    /// Send a chat message to a joined stream.
    Chat {
        /// Target stream.
        stream: StreamId,
        /// Raw text (trimmed and checked by the chat rules).
        text: String,
    },
    /// Send a reaction to a joined stream.
    React {
        /// Target stream.
        stream: StreamId,
        /// One of [`crate::chat::EMOJIS`].
        emoji: String,
    },
    /// Claim units of a drop.
    Claim {
        /// Target drop.
        drop: DropId,
        /// Units wanted.
        quantity: i64,
        /// Idempotency key.
        key: String,
    },
    /// Liveness check.
    Ping,
}

/// Why a client frame could not be decoded, with the `ref` to echo when one was readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The client's `ref`, when the frame was an object carrying a string `ref`.
    pub r#ref: Option<String>,
    /// The refusal to send back.
    pub rejection: Rejection,
}

fn bad_frame(r#ref: Option<String>, message: &str) -> DecodeError {
    DecodeError {
        r#ref,
        rejection: Rejection::new(ErrorCode::BadFrame, message),
    }
}

fn bad_field(r#ref: &Option<String>, rejection: Rejection) -> DecodeError {
    DecodeError {
        r#ref: r#ref.clone(),
        rejection,
    }
}

fn string_field(
    obj: &serde_json::Map<String, Value>,
    name: &str,
    r#ref: &Option<String>,
) -> Result<String, DecodeError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad_field(r#ref, Rejection::field(name, "must be a string"))),
        None => Err(bad_field(r#ref, Rejection::field(name, "is required"))),
    }
}

/// Where a `join` asks to resume: its `epoch` and `since` when both are integers this server
/// could have issued. Anything else (a string, an object, a float, a negative or too large
/// number, one of the two without the other) cannot name a point in a current epoch, so the
/// join gets a fresh snapshot, never an error (contract section 4, clarification).
fn resume_point(obj: &serde_json::Map<String, Value>) -> Option<(u64, u64)> {
    let epoch = obj.get("epoch")?.as_u64()?;
    let since = obj.get("since")?.as_u64()?;
    Some((epoch, since))
}

impl ClientFrame {
    /// Decodes one text frame. Not JSON, not an object, or no `op`: `bad_frame`. Unknown `op`:
    /// `bad_frame`. Missing or mistyped fields of a known op: `bad_request` naming the field.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let value: Value =
            serde_json::from_str(text).map_err(|_| bad_frame(None, "frame is not valid JSON"))?;
        let Value::Object(obj) = value else {
            return Err(bad_frame(None, "frame must be a JSON object"));
        };
        let r#ref = match obj.get("ref") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad_frame(None, "ref must be a string")),
        };
        let op = match obj.get("op") {
            Some(Value::String(op)) => op.as_str(),
            Some(_) => return Err(bad_frame(r#ref, "op must be a string")),
            None => return Err(bad_frame(r#ref, "frame has no op")),
        };
        let stream = |r: &Option<String>| -> Result<StreamId, DecodeError> {
            StreamId::parse(&string_field(&obj, "stream", r)?).map_err(|e| bad_field(r, e))
        };
        let op = match op {
            "join" => ClientOp::Join {
                stream: stream(&r#ref)?,
                resume: resume_point(&obj),
            },
            "leave" => ClientOp::Leave {
                stream: stream(&r#ref)?,
            },
            "chat" => ClientOp::Chat {
                stream: stream(&r#ref)?,
                text: string_field(&obj, "text", &r#ref)?,
            },
            "react" => ClientOp::React {
                stream: stream(&r#ref)?,
                emoji: string_field(&obj, "emoji", &r#ref)?,
            },
            "claim" => {
                let drop = DropId::parse(&string_field(&obj, "drop", &r#ref)?)
                    .map_err(|e| bad_field(&r#ref, e))?;
                let quantity = match obj.get("quantity") {
                    Some(v) => v.as_i64().ok_or_else(|| {
                        bad_field(&r#ref, Rejection::field("quantity", "must be an integer"))
                    })?,
                    None => {
                        return Err(bad_field(
                            &r#ref,
                            Rejection::field("quantity", "is required"),
                        ));
                    }
                };
                let key = string_field(&obj, "key", &r#ref)?;
                crate::text::idempotency_key("key", &key).map_err(|e| bad_field(&r#ref, e))?;
                ClientOp::Claim {
                    drop,
                    quantity,
                    key,
                }
            }
            "ping" => ClientOp::Ping,
            _ => return Err(bad_frame(r#ref, "unknown op")),
        };
        Ok(Self { r#ref, op })
    }

    /// Encodes the frame as a client would send it (used by the load tool and tests).
    pub fn encode(&self) -> String {
        let mut obj = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            obj.insert(k.to_owned(), v);
        };
        match &self.op {
            ClientOp::Join { stream, resume } => {
                put("op", "join".into());
                put("stream", stream.as_str().into());
                if let Some((epoch, since)) = resume {
                    put("epoch", (*epoch).into());
                    put("since", (*since).into());
                }
            }
            ClientOp::Leave { stream } => {
                put("op", "leave".into());
                put("stream", stream.as_str().into());
            }
            ClientOp::Chat { stream, text } => {
                put("op", "chat".into());
                put("stream", stream.as_str().into());
                put("text", text.as_str().into());
            }
            ClientOp::React { stream, emoji } => {
                put("op", "react".into());
                put("stream", stream.as_str().into());
                put("emoji", emoji.as_str().into());
            }
            ClientOp::Claim {
                drop,
                quantity,
                key,
            } => {
                put("op", "claim".into());
                put("drop", drop.as_str().into());
                put("quantity", (*quantity).into());
                put("key", key.as_str().into());
            }
            ClientOp::Ping => put("op", "ping".into()),
        }
        if let Some(r) = &self.r#ref {
            put("ref", r.as_str().into());
        }
        Value::Object(obj).to_string()
    }
}

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of every connection.
    Welcome {
        /// Session id of this connection.
        session: String,
        /// The authenticated user.
        user: String,
        /// The user's tenant (empty for operators).
        tenant: String,
        /// Protocol version.
        protocol: u32,
    },
    /// Reply to `join`.
    Joined {
        /// Echoed correlation string.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: Option<String>,
        /// The stream joined.
        stream: String,
        /// Current epoch of the stream.
        epoch: u64,
        /// Last seq of the epoch at the time of joining; live events follow with larger seqs.
        seq: u64,
        /// True when the missed events follow instead of a snapshot.
        resumed: bool,
        /// State of the stream, when not resumed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Value>,
    },
    /// Success reply to `leave`, `chat` and `claim`.
    Ok {
        /// Echoed correlation string.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: Option<String>,
        /// Seq assigned to an accepted chat message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The claim, for `claim`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claim: Option<Value>,
    },
    /// Reply to `ping`.
    Pong {
        /// Echoed correlation string.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: Option<String>,
    },
    /// A refusal.
    Error {
        /// Echoed correlation string.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: Option<String>,
        /// Stable code.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
        /// For `rate_limited`: when to retry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// An event of a joined stream.
    Event(EventFrame),
    /// A change to one of the receiver's own claims.
    ClaimUpdate {
        /// The claim after the change.
        claim: Value,
    },
}

impl ServerFrame {
    /// An error frame for a refusal, echoing `ref`.
    pub fn error(r#ref: Option<String>, rejection: &Rejection) -> Self {
        Self::Error {
            r#ref,
            code: rejection.code,
            message: rejection.message.clone(),
            retry_after_ms: rejection.retry_after_ms,
        }
    }

    /// Encodes the frame to JSON bytes, once, for every receiver.
    pub fn encode(&self) -> Bytes {
        // serde_json fails only on a map with non-string keys or a failing `Serialize` impl; a
        // server frame has neither (its data are `Value`s and derived structs).
        Bytes::from(serde_json::to_vec(self).expect("a server frame is always JSON"))
    }

    /// Decodes a server frame (used by clients: the load tool and tests).
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Encodes a `joined` reply around a snapshot that was serialized once and is shared by every
/// joiner until the stream changes (a reconnect storm then costs no re-encoding of the state).
pub fn encode_joined(
    r#ref: Option<&str>,
    stream: &str,
    epoch: u64,
    seq: u64,
    resumed: bool,
    snapshot: Option<&serde_json::value::RawValue>,
) -> Bytes {
    #[derive(Serialize)]
    struct Joined<'a> {
        r#type: &'static str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        stream: &'a str,
        epoch: u64,
        seq: u64,
        resumed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        snapshot: Option<&'a serde_json::value::RawValue>,
    }
    let frame = Joined {
        r#type: "joined",
        r#ref,
        stream,
        epoch,
        seq,
        resumed,
        snapshot,
    };
    // Strings, numbers and an already serialized snapshot: nothing here can fail to serialize.
    Bytes::from(serde_json::to_vec(&frame).expect("a joined frame is always JSON"))
}

/// `{"type":"event","stream","seq"?,"kind","data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    /// Stream the event belongs to.
    pub stream: String,
    /// Position in the stream's epoch; absent for ephemeral kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// Kinds of stream events and their data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum EventBody {
    /// Ordered: a chat message `{"id","user":{"id","name"},"text","at"}`.
    Chat(Value),
    /// Ordered: the stream's status changed.
    Status {
        /// New status.
        status: String,
    },
    /// Ordered: a product was pinned (or unpinned with `null`).
    Pinned {
        /// Pinned product id.
        product: Option<String>,
    },
    /// Ordered: a drop opened; data is the drop.
    DropOpened(Value),
    /// Ordered: a drop closed.
    DropClosed {
        /// The drop.
        drop: String,
        /// `time`, `seller`, `stream_ended`.
        reason: String,
    },
    /// Ordered: a moderator deleted a chat message; clients remove it, and later snapshots and
    /// replays leave it out.
    ChatDeleted {
        /// The deleted message's id.
        id: String,
    },
    /// Ordered: a drop sold out.
    SoldOut {
        /// The drop.
        drop: String,
    },
    /// Ephemeral: viewers joined now.
    Viewers {
        /// Count.
        count: u64,
    },
    /// Ephemeral: reaction tallies since the last tally.
    Reactions {
        /// Emoji to count.
        counts: std::collections::BTreeMap<String, u64>,
    },
    /// Ephemeral: units left in a drop (latest value).
    Inventory {
        /// The drop.
        drop: String,
        /// Units left.
        remaining: i64,
    },
}

impl EventBody {
    /// Ordered kinds carry a seq and are replayed on resume; ephemeral kinds are neither.
    pub fn is_ordered(&self) -> bool {
        !matches!(
            self,
            Self::Viewers { .. } | Self::Reactions { .. } | Self::Inventory { .. }
        )
    }

    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Chat(_) => "chat",
            Self::Status { .. } => "status",
            Self::Pinned { .. } => "pinned",
            Self::DropOpened(_) => "drop_opened",
            Self::DropClosed { .. } => "drop_closed",
            Self::SoldOut { .. } => "sold_out",
            Self::ChatDeleted { .. } => "chat_deleted",
            Self::Viewers { .. } => "viewers",
            Self::Reactions { .. } => "reactions",
            Self::Inventory { .. } => "inventory",
        }
    }
}

/// Encodes a stream event once, for every subscriber.
pub fn encode_event(stream: &StreamId, seq: Option<u64>, body: EventBody) -> Bytes {
    ServerFrame::Event(EventFrame {
        stream: stream.as_str().to_owned(),
        seq,
        body,
    })
    .encode()
}

/// Convenience for the `pinned` event of a product.
pub fn pinned_body(product: Option<&ProductId>) -> EventBody {
    EventBody::Pinned {
        product: product.map(|p| p.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_err(text: &str) -> DecodeError {
        ClientFrame::decode(text).unwrap_err()
    }

    #[test]
    fn join_with_resume_is_decoded() {
        let f =
            ClientFrame::decode(r#"{"op":"join","stream":"s1","epoch":3,"since":41,"ref":"a"}"#)
                .unwrap();
        assert_eq!(f.r#ref.as_deref(), Some("a"));
        assert_eq!(
            f.op,
            ClientOp::Join {
                stream: StreamId::from_trusted("s1"),
                resume: Some((3, 41))
            }
        );
    }

    #[test]
    fn text_that_is_not_json_is_a_bad_frame() {
        assert_eq!(decode_err("hello").rejection.code, ErrorCode::BadFrame);
    }

    #[test]
    fn a_frame_without_op_is_a_bad_frame_that_keeps_its_ref() {
        let e = decode_err(r#"{"ref":"x"}"#);
        assert_eq!(e.rejection.code, ErrorCode::BadFrame);
        assert_eq!(e.r#ref.as_deref(), Some("x"));
    }

    #[test]
    fn unknown_op_is_a_bad_frame() {
        assert_eq!(
            decode_err(r#"{"op":"dance"}"#).rejection.code,
            ErrorCode::BadFrame
        );
    }

    #[test]
    fn a_missing_field_is_a_bad_request_naming_it() {
        let e = decode_err(r#"{"op":"chat","stream":"s","ref":"r"}"#);
        assert_eq!(e.rejection.code, ErrorCode::BadRequest);
        assert!(e.rejection.message.starts_with("text"));
        assert_eq!(e.r#ref.as_deref(), Some("r"));
    }

    #[test]
    fn a_resume_point_that_cannot_be_current_asks_for_a_snapshot() {
        let odd = [
            r#""epoch":"3","since":41"#,
            r#""epoch":{"n":3},"since":41"#,
            r#""epoch":[3],"since":41"#,
            r#""epoch":true,"since":41"#,
            r#""epoch":3.5,"since":41"#,
            r#""epoch":-3,"since":41"#,
            r#""epoch":1e30,"since":41"#,
            r#""epoch":18446744073709551616,"since":41"#,
            r#""epoch":3,"since":"41""#,
            r#""epoch":3,"since":-1"#,
            r#""epoch":3,"since":1e300"#,
            r#""epoch":3,"since":null"#,
            r#""epoch":null,"since":41"#,
            r#""epoch":3"#,
            r#""since":41"#,
        ];
        for fields in odd {
            let text = format!(r#"{{"op":"join","stream":"s1","ref":"r",{fields}}}"#);
            let frame = ClientFrame::decode(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(frame.r#ref.as_deref(), Some("r"));
            assert_eq!(
                frame.op,
                ClientOp::Join {
                    stream: StreamId::from_trusted("s1"),
                    resume: None
                },
                "{text}"
            );
        }
        // The largest numbers a server could have issued still name a resume point.
        let max = ClientFrame::decode(&format!(
            r#"{{"op":"join","stream":"s1","epoch":{m},"since":{m}}}"#,
            m = u64::MAX
        ))
        .unwrap();
        assert!(matches!(
            max.op,
            ClientOp::Join {
                resume: Some((u64::MAX, u64::MAX)),
                ..
            }
        ));
    }

    #[test]
    fn ordered_events_carry_seq_and_kind_and_data() {
        let bytes = encode_event(
            &StreamId::from_trusted("s1"),
            Some(7),
            EventBody::Status {
                status: "live".into(),
            },
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"event","stream":"s1","seq":7,"kind":"status","data":{"status":"live"}})
        );
    }

    #[test]
    fn joined_frames_embed_the_shared_snapshot_and_decode_as_joined() {
        let raw = serde_json::value::to_raw_value(&serde_json::json!({"viewers": 2})).unwrap();
        let bytes = encode_joined(Some("j"), "s1", 3, 9, false, Some(&raw));
        let frame = ServerFrame::decode(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Joined {
                r#ref: Some("j".into()),
                stream: "s1".into(),
                epoch: 3,
                seq: 9,
                resumed: false,
                snapshot: Some(serde_json::json!({"viewers": 2})),
            }
        );
        let resumed = encode_joined(None, "s1", 3, 9, true, None);
        let v: Value = serde_json::from_slice(&resumed).unwrap();
        assert!(v.get("snapshot").is_none() && v.get("ref").is_none());
    }

    #[test]
    fn ephemeral_events_have_no_seq() {
        let bytes = encode_event(
            &StreamId::from_trusted("s1"),
            None,
            EventBody::Viewers { count: 3 },
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v.get("seq").is_none());
        assert_eq!(v["data"]["count"], 3);
    }

    #[test]
    fn error_frames_carry_code_ref_and_retry() {
        let f = ServerFrame::error(Some("r".into()), &Rejection::rate_limited(250));
        let v: Value = serde_json::from_slice(&f.encode()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","ref":"r","code":"rate_limited","message":"rate limit reached","retry_after_ms":250})
        );
    }
}

/// Wraps a server message in an unmasked WebSocket text frame (RFC 6455 §5.2), once, so fan-out
/// can write the same bytes to every subscriber socket without per-connection framing.
pub fn ws_text_frame(payload: &[u8]) -> Bytes {
    ws_frame(0x1, payload)
}

/// An unmasked WebSocket frame with FIN set and the given opcode (text 0x1, close 0x8, ping 0x9).
pub fn ws_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(0x80 | (opcode & 0x0f));
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A close frame with a status code and a short reason.
pub fn ws_close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(120)]);
    ws_frame(0x8, &payload)
}

#[cfg(test)]
mod ws_frame_tests {
    use super::*;

    #[test]
    fn short_frames_carry_the_length_in_the_second_byte() {
        assert_eq!(&ws_text_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
    }

    #[test]
    fn medium_frames_use_a_16_bit_length() {
        let f = ws_text_frame(&[b'x'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(f.len(), 304);
    }

    #[test]
    fn large_frames_use_a_64_bit_length() {
        let f = ws_text_frame(&vec![b'x'; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn close_frames_start_with_the_status_code() {
        assert_eq!(
            &ws_close_frame(4008, "slow")[..],
            &[0x88, 6, 0x0f, 0xa8, b's', b'l', b'o', b'w']
        );
    }
}
