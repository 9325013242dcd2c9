//! Reading the WebSocket frames a client sends (RFC 6455, server side, no extensions).
//!
//! The server reads every socket into one scratch buffer per worker thread and feeds the bytes
//! here; a [`FrameReader`] keeps only what belongs to a frame that has not fully arrived. An idle
//! connection therefore holds no read buffer at all, where a general-purpose WebSocket library
//! keeps one per connection. Messages are limited to [`crate::frames::MAX_FRAME_BYTES`]: the
//! length in a frame's header is checked before its payload is waited for.

/// Opcodes of RFC 6455 section 5.2.
mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message; only its size matters to the protocol, which speaks text.
    Binary(usize),
    /// A ping; its payload goes back in the pong.
    Ping(Vec<u8>),
    /// A pong (an answer to the server's ping).
    Pong,
    /// The client's close frame, with its code if it sent one (a code the client may send, and a
    /// reason that is UTF-8: anything else is a [`WireError`]).
    Close(Option<u16>),
    /// A data frame that does not end its message (the first or a middle fragment). It carries
    /// nothing, but it is a frame the client sent, so it costs the sender like any other.
    Fragment,
}

/// Why the client's bytes cannot be read further; the connection closes with [`WireError::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A frame breaks RFC 6455 (unmasked, reserved bits, bad opcode, bad fragmentation).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A message over the size limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// A text message, or a close reason, that is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
}

impl WireError {
    /// The close code RFC 6455 assigns to the failure.
    pub const fn code(self) -> u16 {
        match self {
            Self::Protocol(_) => 1002,
            Self::TooLarge(_) => 1009,
            Self::InvalidUtf8 => 1007,
        }
    }
}

/// Incremental decoder of one connection's client frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Bytes of a frame that has not fully arrived (empty, without capacity, between frames).
    partial: Vec<u8>,
    /// The data message being assembled from fragments, with its opcode.
    message: Option<(u8, Vec<u8>)>,
    /// Largest message accepted.
    max_message: usize,
}

impl FrameReader {
    /// A reader that refuses messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            partial: Vec::new(),
            message: None,
            max_message,
        }
    }

    /// Bytes held for incomplete frames or messages.
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.message.as_ref().map_or(0, |(_, m)| m.len())
    }

    /// Decodes what `input` completes, handing each message or control frame to `on`, in order.
    /// After an error the connection must be closed: the rest of its bytes cannot be framed.
    pub fn feed(&mut self, input: &[u8], on: &mut impl FnMut(Inbound)) -> Result<(), WireError> {
        if self.partial.is_empty() {
            let used = self.decode_frames(input, on)?;
            if used < input.len() {
                self.partial.extend_from_slice(&input[used..]);
            }
        } else {
            let mut held = std::mem::take(&mut self.partial);
            held.extend_from_slice(input);
            let used = self.decode_frames(&held, on)?;
            if used < held.len() {
                held.drain(..used);
                self.partial = held;
            }
        }
        Ok(())
    }

    /// Decodes whole frames from the start of `bytes`; returns how many bytes they took.
    fn decode_frames(
        &mut self,
        bytes: &[u8],
        on: &mut impl FnMut(Inbound),
    ) -> Result<usize, WireError> {
        let mut at = 0;
        while let Some(header) = Header::parse(&bytes[at..])? {
            self.check(&header)?;
            let end = at.saturating_add(header.len).saturating_add(header.payload);
            if bytes.len() < end {
                break;
            }
            let mut payload = bytes[at + header.len..end].to_vec();
            unmask(&mut payload, header.mask);
            at = end;
            self.take(header, payload, on)?;
        }
        Ok(at)
    }

    /// Checks a header before its payload is awaited.
    fn check(&self, h: &Header) -> Result<(), WireError> {
        if h.rsv != 0 {
            return Err(WireError::Protocol(
                "reserved bits set without an extension",
            ));
        }
        if h.opcode >= opcode::CLOSE {
            if !h.fin || h.payload > 125 {
                return Err(WireError::Protocol(
                    "control frames must be whole and at most 125 bytes",
                ));
            }
            return Ok(());
        }
        let so_far = match (&self.message, h.opcode) {
            (None, opcode::CONTINUATION) => {
                return Err(WireError::Protocol("continuation without a message"));
            }
            (Some(_), opcode::TEXT | opcode::BINARY) => {
                return Err(WireError::Protocol("new message before the last one ended"));
            }
            (Some((_, m)), _) => m.len(),
            (None, _) => 0,
        };
        if so_far.saturating_add(h.payload) > self.max_message {
            return Err(WireError::TooLarge(self.max_message));
        }
        Ok(())
    }

    /// Handles one whole frame.
    fn take(
        &mut self,
        h: Header,
        payload: Vec<u8>,
        on: &mut impl FnMut(Inbound),
    ) -> Result<(), WireError> {
        match h.opcode {
            opcode::PING => on(Inbound::Ping(payload)),
            opcode::PONG => on(Inbound::Pong),
            opcode::CLOSE => on(Inbound::Close(close_code(&payload)?)),
            opcode::CONTINUATION => {
                if let Some((_, message)) = &mut self.message {
                    message.extend_from_slice(&payload);
                }
                if !h.fin {
                    on(Inbound::Fragment);
                } else if let Some((op, message)) = self.message.take() {
                    on(complete(op, message)?);
                }
            }
            op if h.fin => on(complete(op, payload)?),
            op => {
                self.message = Some((op, payload));
                on(Inbound::Fragment);
            }
        }
        Ok(())
    }
}

/// The code of a client's close frame (RFC 6455 sections 5.5.1 and 7.4): none, or two bytes of a
/// code an endpoint may send followed by a UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, WireError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(WireError::Protocol("close payload of one byte")),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    if !may_be_sent(code) {
        return Err(WireError::Protocol("close code that may not be sent"));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(WireError::InvalidUtf8);
    }
    Ok(Some(code))
}

/// Whether an endpoint may put `code` in a close frame: the codes RFC 6455 defines for use
/// (1000-1003, 1007-1011), those IANA registered since (1012-1014), and the ranges for
/// libraries and applications (3000-4999). 1004 is reserved; 1005, 1006 and 1015 only report
/// what happened locally and must never be sent.
pub const fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A finished data message.
fn complete(op: u8, payload: Vec<u8>) -> Result<Inbound, WireError> {
    if op == opcode::TEXT {
        String::from_utf8(payload)
            .map(Inbound::Text)
            .map_err(|_| WireError::InvalidUtf8)
    } else {
        Ok(Inbound::Binary(payload.len()))
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: [u8; 4],
    /// Bytes of the header itself.
    len: usize,
    /// Bytes of payload that follow.
    payload: usize,
}

impl Header {
    /// Parses a header, or `None` if it has not fully arrived.
    fn parse(b: &[u8]) -> Result<Option<Self>, WireError> {
        if b.len() < 2 {
            return Ok(None);
        }
        let opcode = b[0] & 0x0f;
        if !matches!(
            opcode,
            opcode::CONTINUATION
                | opcode::TEXT
                | opcode::BINARY
                | opcode::CLOSE
                | opcode::PING
                | opcode::PONG
        ) {
            return Err(WireError::Protocol("unknown opcode"));
        }
        if b[1] & 0x80 == 0 {
            return Err(WireError::Protocol("client frames must be masked"));
        }
        // Section 5.2: the length takes the fewest bytes that hold it, and a 64-bit length has
        // its most significant bit clear.
        let (payload, at) = match b[1] & 0x7f {
            126 => match b.get(2..4) {
                Some(n) => {
                    let len = u64::from(u16::from_be_bytes([n[0], n[1]]));
                    if len < 126 {
                        return Err(WireError::Protocol("16-bit length under 126"));
                    }
                    (len, 4)
                }
                None => return Ok(None),
            },
            127 => match b.get(2..10) {
                Some(n) => {
                    let mut len = [0u8; 8];
                    len.copy_from_slice(n);
                    let len = u64::from_be_bytes(len);
                    if len >> 63 != 0 {
                        return Err(WireError::Protocol("64-bit length with its top bit set"));
                    }
                    if len <= u64::from(u16::MAX) {
                        return Err(WireError::Protocol("64-bit length under 65536"));
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let Some(key) = b.get(at..at + 4) else {
            return Ok(None);
        };
        Ok(Some(Self {
            fin: b[0] & 0x80 != 0,
            rsv: b[0] & 0x70,
            opcode,
            mask: [key[0], key[1], key[2], key[3]],
            len: at + 4,
            payload: usize::try_from(payload).unwrap_or(usize::MAX),
        }))
    }
}

/// Removes the client's masking (RFC 6455 section 5.3).
fn unmask(payload: &mut [u8], key: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// A masked client frame, as a browser would send it (used by tests and load clients).
pub fn client_frame(fin: bool, op: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (op & 0x0f));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn read_all(reader: &mut FrameReader, bytes: &[u8]) -> Result<Vec<Inbound>, WireError> {
        let mut got = Vec::new();
        reader.feed(bytes, &mut |m| got.push(m))?;
        Ok(got)
    }

    #[test]
    fn a_masked_text_frame_is_read() {
        let mut r = FrameReader::new(1024);
        let got = read_all(&mut r, &client_frame(true, 1, b"Hello", KEY)).unwrap();
        assert_eq!(got, vec![Inbound::Text("Hello".into())]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn the_rfc_example_decodes() {
        // RFC 6455 section 5.7: a masked "Hello".
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut r = FrameReader::new(1024);
        assert_eq!(
            read_all(&mut r, &bytes).unwrap(),
            vec![Inbound::Text("Hello".into())]
        );
    }

    #[test]
    fn a_frame_split_anywhere_is_held_until_complete() {
        let frame = client_frame(true, 1, &[b'x'; 300], KEY);
        for split in 1..frame.len() {
            let mut r = FrameReader::new(1024);
            assert!(read_all(&mut r, &frame[..split]).unwrap().is_empty());
            assert_eq!(r.buffered(), split);
            let got = read_all(&mut r, &frame[split..]).unwrap();
            assert_eq!(got, vec![Inbound::Text("x".repeat(300))]);
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn fragments_are_assembled_and_control_frames_may_come_between() {
        let mut bytes = client_frame(false, 1, b"Hel", KEY);
        bytes.extend(client_frame(true, 9, b"hb", KEY));
        bytes.extend(client_frame(true, 0, b"lo", KEY));
        let mut r = FrameReader::new(1024);
        assert_eq!(
            read_all(&mut r, &bytes).unwrap(),
            vec![
                Inbound::Fragment,
                Inbound::Ping(b"hb".to_vec()),
                Inbound::Text("Hello".into())
            ]
        );
    }

    #[test]
    fn every_data_frame_is_reported_even_empty_continuations() {
        let mut bytes = client_frame(false, 2, b"", KEY);
        for _ in 0..5 {
            bytes.extend(client_frame(false, 0, b"", KEY));
        }
        bytes.extend(client_frame(true, 0, b"", KEY));
        let mut r = FrameReader::new(64);
        let got = read_all(&mut r, &bytes).unwrap();
        assert_eq!(got.len(), 7, "{got:?}");
        assert!(got[..6].iter().all(|m| *m == Inbound::Fragment));
        assert_eq!(got[6], Inbound::Binary(0));
    }

    #[test]
    fn close_frames_must_carry_a_code_that_may_be_sent_and_a_utf8_reason() {
        let close = |payload: &[u8]| {
            let mut r = FrameReader::new(64);
            read_all(&mut r, &client_frame(true, 8, payload, KEY))
        };
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 3999, 4000, 4999,
        ] {
            let got = close(&code.to_be_bytes()).unwrap();
            assert_eq!(got, vec![Inbound::Close(Some(code))], "{code}");
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                close(&code.to_be_bytes()),
                Err(WireError::Protocol("close code that may not be sent")),
                "{code}"
            );
        }
        assert_eq!(close(&[0x03]).unwrap_err().code(), 1002, "one byte");
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend_from_slice(&[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ]);
        assert_eq!(close(&bad_reason).unwrap_err().code(), 1007);
        let mut good_reason = 1000u16.to_be_bytes().to_vec();
        good_reason.extend_from_slice("κόσμε".as_bytes());
        assert_eq!(
            close(&good_reason).unwrap(),
            vec![Inbound::Close(Some(1000))]
        );
    }

    #[test]
    fn lengths_must_be_minimal_and_64_bit_ones_below_2_pow_63() {
        let header = |len_bytes: &[u8]| {
            let mut f = vec![0x81];
            f.extend_from_slice(len_bytes);
            f.extend_from_slice(&KEY);
            let mut r = FrameReader::new(usize::MAX);
            read_all(&mut r, &f)
        };
        // 5 bytes announced in the 16-bit and the 64-bit forms.
        assert_eq!(header(&[0x80 | 126, 0, 5]).unwrap_err().code(), 1002);
        assert_eq!(
            header(&[0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5])
                .unwrap_err()
                .code(),
            1002
        );
        // 65,535 fits 16 bits, so it may not take 64.
        assert_eq!(
            header(&[0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
                .unwrap_err()
                .code(),
            1002
        );
        // The top bit of a 64-bit length is reserved, even for a reader without a size limit.
        assert_eq!(
            header(&[0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0])
                .unwrap_err()
                .code(),
            1002
        );
        // Minimal forms wait for their payload.
        assert_eq!(header(&[0x80 | 126, 0, 126]).unwrap(), vec![]);
        assert_eq!(
            header(&[0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap(),
            vec![]
        );
    }

    #[test]
    fn unmasked_frames_are_a_protocol_error() {
        let mut r = FrameReader::new(1024);
        let err = read_all(&mut r, &[0x81, 0x02, b'h', b'i']).unwrap_err();
        assert_eq!(err.code(), 1002);
    }

    #[test]
    fn oversize_messages_are_refused_from_the_header_alone() {
        let mut r = FrameReader::new(16);
        let frame = client_frame(true, 1, &[b'a'; 17], KEY);
        // Only the header has arrived: the announced length is enough to refuse.
        let err = read_all(&mut r, &frame[..8]).unwrap_err();
        assert_eq!(err, WireError::TooLarge(16));
        assert_eq!(err.code(), 1009);
        // Fragments count together.
        let mut r = FrameReader::new(16);
        let mut bytes = client_frame(false, 1, &[b'a'; 10], KEY);
        bytes.extend(client_frame(true, 0, &[b'a'; 10], KEY));
        assert_eq!(read_all(&mut r, &bytes).unwrap_err().code(), 1009);
    }

    #[test]
    fn invalid_utf8_text_is_refused_with_1007() {
        let mut r = FrameReader::new(64);
        let err = read_all(&mut r, &client_frame(true, 1, &[0xff, 0xfe], KEY)).unwrap_err();
        assert_eq!(err.code(), 1007);
    }

    #[test]
    fn broken_fragmentation_and_control_frames_are_protocol_errors() {
        let cases: Vec<Vec<u8>> = vec![
            client_frame(true, 0, b"x", KEY),  // continuation without a message
            client_frame(false, 9, b"x", KEY), // fragmented ping
            client_frame(true, 9, &[0; 126], KEY), // ping too long
            client_frame(true, 3, b"x", KEY),  // reserved opcode
            {
                let mut f = client_frame(true, 1, b"x", KEY);
                f[0] |= 0x40; // RSV1 without an extension
                f
            },
            {
                let mut f = client_frame(false, 1, b"a", KEY);
                f.extend(client_frame(true, 1, b"b", KEY)); // new message mid-message
                f
            },
        ];
        for bytes in cases {
            let mut r = FrameReader::new(64);
            assert_eq!(
                read_all(&mut r, &bytes).unwrap_err().code(),
                1002,
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn close_carries_its_code_and_binary_its_size() {
        let mut bytes = client_frame(true, 2, &[1, 2, 3], KEY);
        bytes.extend(client_frame(true, 10, b"", KEY));
        bytes.extend(client_frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e'], KEY));
        bytes.extend(client_frame(true, 8, b"", KEY));
        let mut r = FrameReader::new(64);
        assert_eq!(
            read_all(&mut r, &bytes).unwrap(),
            vec![
                Inbound::Binary(3),
                Inbound::Pong,
                Inbound::Close(Some(1000)),
                Inbound::Close(None)
            ]
        );
    }

    #[test]
    fn sixteen_and_sixty_four_bit_lengths_are_read() {
        let mut r = FrameReader::new(1 << 20);
        let medium = "m".repeat(70_000);
        let got = read_all(&mut r, &client_frame(true, 1, medium.as_bytes(), KEY)).unwrap();
        assert_eq!(got, vec![Inbound::Text(medium)]);
        let short = "s".repeat(300);
        let got = read_all(&mut r, &client_frame(true, 1, short.as_bytes(), KEY)).unwrap();
        assert_eq!(got, vec![Inbound::Text(short)]);
    }
}
