//! The binary form of what crosses Redis pub/sub: compact, and the event's bytes untouched.
//!
//! A bus message is `kind (1 byte) | origin length (1 byte) | origin | epoch (u64 BE) |
//! seq (u64 BE) | body`. The header and the body are kept apart so the history script can store
//! the body alone and publish `header .. body` without the bytes crossing the network twice.
//!
//! A notification is `origin length (1 byte) | origin | tenant length (u16 BE) | tenant |
//! user length (u16 BE) | user | frame`.

use bytes::Bytes;
use liveshop_actors::fanout::bus::{BusMessage, Control, StreamEvent};

/// Kind byte of an ordered event (it has a seq and goes to the history).
pub const ORDERED: u8 = b'o';
/// Kind byte of an ephemeral event.
pub const EPHEMERAL: u8 = b'p';
/// Kind byte of [`Control::Epoch`].
pub const EPOCH: u8 = b'e';
/// Kind byte of [`Control::Rejoin`].
pub const REJOIN: u8 = b'r';
/// Kind byte of [`Control::Remove`].
pub const REMOVE: u8 = b'x';

/// Longest node id the wire carries (its length is one byte).
const MAX_ORIGIN: usize = u8::MAX as usize;

/// The kind byte, epoch and seq of a message (controls carry their epoch, or 0, and seq 0).
pub fn parts(message: &BusMessage) -> (u8, u64, u64) {
    match message {
        BusMessage::Event(StreamEvent {
            epoch,
            seq: Some(seq),
            ..
        }) => (ORDERED, *epoch, *seq),
        BusMessage::Event(StreamEvent { epoch, .. }) => (EPHEMERAL, *epoch, 0),
        BusMessage::Control(Control::Epoch(epoch)) => (EPOCH, *epoch, 0),
        BusMessage::Control(Control::Rejoin) => (REJOIN, 0, 0),
        BusMessage::Control(Control::Remove) => (REMOVE, 0, 0),
    }
}

/// The header of `message` sent by `origin`.
pub fn header(origin: &str, message: &BusMessage) -> Vec<u8> {
    let (kind, epoch, seq) = parts(message);
    let origin = &origin.as_bytes()[..origin.len().min(MAX_ORIGIN)];
    let mut out = Vec::with_capacity(2 + origin.len() + 16);
    out.push(kind);
    out.push(origin.len() as u8);
    out.extend_from_slice(origin);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The body of `message`: the event's bytes, empty for controls.
pub fn body(message: &BusMessage) -> Bytes {
    match message {
        BusMessage::Event(event) => event.bytes.clone(),
        BusMessage::Control(_) => Bytes::new(),
    }
}

/// A message as received, with the node that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Node id of the publisher.
    pub origin: String,
    /// The message.
    pub message: BusMessage,
}

/// Why a payload is not a bus message (another version, or not ours).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed cluster message")]
pub struct Malformed;

/// Decodes a published payload.
pub fn decode(payload: &[u8]) -> Result<Received, Malformed> {
    let (&kind, rest) = payload.split_first().ok_or(Malformed)?;
    let (origin, rest) = short_string(rest)?;
    let (epoch, rest) = u64_be(rest)?;
    let (seq, rest) = u64_be(rest)?;
    let bytes = || Bytes::copy_from_slice(rest);
    let message = match kind {
        ORDERED => BusMessage::Event(StreamEvent {
            epoch,
            seq: Some(seq),
            bytes: bytes(),
        }),
        EPHEMERAL => BusMessage::Event(StreamEvent {
            epoch,
            seq: None,
            bytes: bytes(),
        }),
        EPOCH => BusMessage::Control(Control::Epoch(epoch)),
        REJOIN => BusMessage::Control(Control::Rejoin),
        REMOVE => BusMessage::Control(Control::Remove),
        _ => return Err(Malformed),
    };
    Ok(Received { origin, message })
}

/// A private frame for a user, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Node id of the publisher.
    pub origin: String,
    /// The user's tenant.
    pub tenant: String,
    /// The user.
    pub user: String,
    /// The frame (JSON).
    pub frame: Bytes,
}

/// Encodes a notification.
pub fn encode_notification(origin: &str, tenant: &str, user: &str, frame: &[u8]) -> Vec<u8> {
    let origin = &origin.as_bytes()[..origin.len().min(MAX_ORIGIN)];
    let mut out = Vec::with_capacity(5 + origin.len() + tenant.len() + user.len() + frame.len());
    out.push(origin.len() as u8);
    out.extend_from_slice(origin);
    for text in [tenant, user] {
        let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text);
    }
    out.extend_from_slice(frame);
    out
}

/// Decodes a notification.
pub fn decode_notification(payload: &[u8]) -> Result<Notification, Malformed> {
    let (origin, rest) = short_string(payload)?;
    let (tenant, rest) = long_string(rest)?;
    let (user, rest) = long_string(rest)?;
    Ok(Notification {
        origin,
        tenant,
        user,
        frame: Bytes::copy_from_slice(rest),
    })
}

fn short_string(bytes: &[u8]) -> Result<(String, &[u8]), Malformed> {
    let (&len, rest) = bytes.split_first().ok_or(Malformed)?;
    take_string(rest, usize::from(len))
}

fn long_string(bytes: &[u8]) -> Result<(String, &[u8]), Malformed> {
    let len = bytes.get(..2).ok_or(Malformed)?;
    take_string(
        &bytes[2..],
        usize::from(u16::from_be_bytes([len[0], len[1]])),
    )
}

fn take_string(bytes: &[u8], len: usize) -> Result<(String, &[u8]), Malformed> {
    let text = bytes.get(..len).ok_or(Malformed)?;
    let text = std::str::from_utf8(text).map_err(|_| Malformed)?;
    Ok((text.to_owned(), &bytes[len..]))
}

fn u64_be(bytes: &[u8]) -> Result<(u64, &[u8]), Malformed> {
    let head = bytes.get(..8).ok_or(Malformed)?;
    let mut n = [0u8; 8];
    n.copy_from_slice(head);
    Ok((u64::from_be_bytes(n), &bytes[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: BusMessage) {
        let mut payload = header("node-a", &message);
        payload.extend_from_slice(&body(&message));
        assert_eq!(
            decode(&payload),
            Ok(Received {
                origin: "node-a".into(),
                message
            })
        );
    }

    #[test]
    fn every_bus_message_survives_the_wire_intact() {
        round_trip(BusMessage::Event(StreamEvent {
            epoch: u64::MAX,
            seq: Some(u64::MAX - 1),
            bytes: Bytes::from_static(b"{\"k\":\"\xc3\xa9\"}"),
        }));
        round_trip(BusMessage::Event(StreamEvent {
            epoch: 3,
            seq: None,
            bytes: Bytes::new(),
        }));
        round_trip(BusMessage::Control(Control::Epoch(9)));
        round_trip(BusMessage::Control(Control::Rejoin));
        round_trip(BusMessage::Control(Control::Remove));
    }

    #[test]
    fn truncated_or_foreign_payloads_are_refused() {
        let mut payload = header("n", &BusMessage::Control(Control::Epoch(1)));
        payload.truncate(payload.len() - 1);
        assert_eq!(decode(&payload), Err(Malformed));
        assert_eq!(decode(b""), Err(Malformed));
        assert_eq!(decode(b"{\"json\":1}"), Err(Malformed));
    }

    #[test]
    fn a_notification_survives_the_wire_intact() {
        let payload = encode_notification("n1", "ten_a", "usr_b", b"{\"type\":\"x\"}");
        assert_eq!(
            decode_notification(&payload),
            Ok(Notification {
                origin: "n1".into(),
                tenant: "ten_a".into(),
                user: "usr_b".into(),
                frame: Bytes::from_static(b"{\"type\":\"x\"}"),
            })
        );
        assert_eq!(decode_notification(&payload[..4]), Err(Malformed));
    }
}
