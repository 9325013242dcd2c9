//! RFC 6455 conformance of the server's WebSocket reader, in the case groups of the Autobahn
//! test suite: framing, pings and pongs, reserved bits, opcodes, fragmentation, UTF-8 (also split
//! across fragments), close handling and limits.
//!
//! Every case runs against the real server (port 0) over raw TCP: a hand-made upgrade, then
//! hand-built masked frames, byte for byte what a client could send. Each case names the exact
//! answer: the pong's payload, the JSON reply, the close code. A case that does not end in a close
//! then proves the connection is still open and sent nothing else (an application `ping` gets
//! its `pong` as the very next frame); a case that ends in a close proves nothing follows the close
//! frame (the server ends the TCP stream).

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, TestApp, WAIT};
use liveshop_engine::auth::Role;
use liveshop_engine::wire::client_frame;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The masking key of every frame (any key would do; the server must unmask with it).
const KEY: [u8; 4] = [0x9a, 0x11, 0xe3, 0x5c];

/// Frames per connection in the suite's server: no refill, so allowance cases count exactly.
const BURST: u32 = 60;

// Opcodes.
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BIN: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// What the server must answer, in order.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    /// A WebSocket pong with this payload.
    Pong(Vec<u8>),
    /// The application's `{"type":"pong","ref":…}`.
    AppPong(String),
    /// `{"type":"error","code":…}`.
    Error(&'static str),
    /// A close frame with this code; the last reply.
    Close(u16),
}

/// One case: the bytes a client sends after the welcome, and the answers, in order.
struct Case {
    name: String,
    send: Vec<u8>,
    expect: Vec<Reply>,
    /// Whether a connection that was not closed still has allowance to prove it is open.
    check_open: bool,
}

fn case(name: impl Into<String>, send: Vec<u8>, expect: Vec<Reply>) -> Case {
    Case {
        name: name.into(),
        send,
        expect,
        check_open: true,
    }
}

fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, op, payload, KEY)
}

/// A whole frame.
fn whole(op: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, op, payload)
}

/// An application ping with `ref`, as JSON text.
fn ping_op(r#ref: &str) -> Vec<u8> {
    json!({ "op": "ping", "ref": r#ref })
        .to_string()
        .into_bytes()
}

/// An application ping whose JSON text is exactly `size` bytes.
fn ping_op_of_size(size: usize) -> Vec<u8> {
    let bare = ping_op("").len();
    ping_op(&"r".repeat(size - bare))
}

fn app_pong(text: &[u8]) -> Reply {
    let v: Value = serde_json::from_slice(text).expect("a ping op");
    Reply::AppPong(v["ref"].as_str().expect("ref").to_owned())
}

/// Sets reserved bits (0x70 mask) on a frame.
fn with_rsv(mut f: Vec<u8>, bits: u8) -> Vec<u8> {
    f[0] |= bits;
    f
}

/// A masked frame header with a hand-written length field and no payload.
fn header(op: u8, length_field: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | op];
    f.extend_from_slice(length_field);
    f.extend_from_slice(&KEY);
    f
}

/// `text` cut into fragments at `cuts`, each a frame.
fn fragments(op: u8, text: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut start = 0;
    let points: Vec<usize> = cuts.iter().copied().chain([text.len()]).collect();
    for (i, &end) in points.iter().enumerate() {
        let last = i + 1 == points.len();
        bytes.extend(frame(
            last,
            if i == 0 { op } else { CONT },
            &text[start..end],
        ));
        start = end;
    }
    bytes
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn cases() -> Vec<Case> {
    use Reply::*;
    let mut all = Vec::new();

    // 1. Framing: text and binary of every length form, up to and over the 16 KiB limit.
    for size in [30usize, 125, 126, 127, 1000, 16 * 1024] {
        let text = ping_op_of_size(size);
        all.push(case(
            format!("1.1 text of {size} bytes"),
            whole(TEXT, &text),
            vec![app_pong(&text)],
        ));
    }
    all.push(case(
        "1.1 empty text",
        whole(TEXT, b""),
        vec![Error("bad_frame")],
    ));
    all.push(case(
        "1.1 text over 16 KiB",
        whole(TEXT, &ping_op_of_size(16 * 1024 + 1)),
        vec![Close(1009)],
    ));
    for size in [0usize, 1, 125, 126, 16 * 1024] {
        all.push(case(
            format!("1.2 binary of {size} bytes"),
            whole(BIN, &vec![0xfe; size]),
            vec![Error("bad_frame")],
        ));
    }
    all.push(case(
        "1.2 binary over 16 KiB",
        whole(BIN, &vec![0; 16 * 1024 + 1]),
        vec![Close(1009)],
    ));
    all.push(case(
        "1.3 a 2^32-byte frame is refused from its header",
        header(TEXT, &[0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0]),
        vec![Close(1009)],
    ));

    // 2. Pings and pongs.
    let binary: Vec<u8> = (0..=124u8).collect();
    for (name, payload) in [
        ("empty", Vec::new()),
        ("text", b"Hello, world!".to_vec()),
        ("binary", binary.clone()),
        ("125 bytes", vec![0xfe; 125]),
    ] {
        all.push(case(
            format!("2.1 ping, {name}"),
            whole(PING, &payload),
            vec![Pong(payload)],
        ));
    }
    all.push(case(
        "2.2 ping of 126 bytes",
        whole(PING, &[0; 126]),
        vec![Close(1002)],
    ));
    all.push(case(
        "2.3 unsolicited pongs are ignored",
        cat(&[&whole(PONG, b""), &whole(PONG, b"unsolicited")]),
        vec![],
    ));
    all.push(case(
        "2.4 ten pings answered in order",
        (0..10u8).flat_map(|i| whole(PING, &[i])).collect(),
        (0..10u8).map(|i| Pong(vec![i])).collect(),
    ));
    all.push(case(
        "2.5 pong of 126 bytes",
        whole(PONG, &[0; 126]),
        vec![Close(1002)],
    ));

    // 3. Reserved bits, each alone and all together, on data and control frames.
    for bits in [0x40u8, 0x20, 0x10, 0x70] {
        all.push(case(
            format!("3.1 text with RSV {bits:#04x}"),
            with_rsv(whole(TEXT, &ping_op("rsv")), bits),
            vec![Close(1002)],
        ));
    }
    all.push(case(
        "3.2 ping with RSV after a valid ping",
        cat(&[&whole(PING, b"ok"), &with_rsv(whole(PING, b"no"), 0x20)]),
        vec![Pong(b"ok".to_vec()), Close(1002)],
    ));
    all.push(case(
        "3.3 binary with RSV",
        with_rsv(whole(BIN, b"x"), 0x10),
        vec![Close(1002)],
    ));

    // 4. Opcodes: reserved non-control (3-7) and control (B-F) opcodes.
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        all.push(case(
            format!("4.1 reserved opcode {op:#x} after a valid ping"),
            cat(&[&whole(PING, b"first"), &whole(op, b"x")]),
            vec![Pong(b"first".to_vec()), Close(1002)],
        ));
    }

    // 5. Fragmentation.
    let text = ping_op("fragmented");
    all.push(case(
        "5.1 fragmented ping",
        frame(false, PING, b"a"),
        vec![Close(1002)],
    ));
    all.push(case(
        "5.2 fragmented pong",
        frame(false, PONG, b"a"),
        vec![Close(1002)],
    ));
    all.push(case(
        "5.3 text in two fragments",
        fragments(TEXT, &text, &[5]),
        vec![app_pong(&text)],
    ));
    all.push(case(
        "5.4 text in one-byte fragments",
        fragments(TEXT, &text, &(1..text.len()).collect::<Vec<_>>()),
        vec![app_pong(&text)],
    ));
    all.push(case(
        "5.5 pings between fragments",
        cat(&[
            &frame(false, TEXT, &text[..4]),
            &whole(PING, b"p1"),
            &frame(false, CONT, &text[4..9]),
            &whole(PING, b"p2"),
            &frame(true, CONT, &text[9..]),
        ]),
        vec![Pong(b"p1".to_vec()), Pong(b"p2".to_vec()), app_pong(&text)],
    ));
    all.push(case(
        "5.6 empty fragments",
        cat(&[
            &frame(false, TEXT, b""),
            &frame(false, CONT, b""),
            &frame(false, CONT, &text),
            &frame(true, CONT, b""),
        ]),
        vec![app_pong(&text)],
    ));
    all.push(case(
        "5.7 continuation without a message (final)",
        frame(true, CONT, &text),
        vec![Close(1002)],
    ));
    all.push(case(
        "5.8 continuation without a message (not final)",
        frame(false, CONT, &text),
        vec![Close(1002)],
    ));
    all.push(case(
        "5.9 new text inside a fragmented message",
        cat(&[&frame(false, TEXT, b"{"), &whole(TEXT, &text)]),
        vec![Close(1002)],
    ));
    all.push(case(
        "5.10 binary inside a fragmented text",
        cat(&[&frame(false, TEXT, b"{"), &frame(true, BIN, b"}")]),
        vec![Close(1002)],
    ));
    all.push(case(
        "5.11 fragments adding up to more than 16 KiB",
        cat(&[
            &frame(false, TEXT, &[b' '; 10_000]),
            &frame(true, CONT, &[b' '; 7_000]),
        ]),
        vec![Close(1009)],
    ));
    all.push(case(
        "5.12 a fragmented message then a whole one",
        cat(&[
            &fragments(TEXT, &text, &[3]),
            &whole(TEXT, &ping_op("next")),
        ]),
        vec![app_pong(&text), AppPong("next".into())],
    ));

    // 6. UTF-8: valid text of every width, split across fragments at every byte; invalid text.
    let greek = ping_op("κόσμε 👋 ü");
    all.push(case(
        "6.1 multi-byte UTF-8",
        whole(TEXT, &greek),
        vec![app_pong(&greek)],
    ));
    let start = greek.iter().position(|&b| b >= 0x80).expect("non-ASCII");
    for at in start..start + 16 {
        all.push(case(
            format!("6.2 UTF-8 split at byte {at}"),
            fragments(TEXT, &greek, &[at]),
            vec![app_pong(&greek)],
        ));
    }
    let emoji = greek.windows(4).position(|w| w == "👋".as_bytes()).unwrap();
    all.push(case(
        "6.3 a four-byte character in four fragments",
        fragments(TEXT, &greek, &[emoji + 1, emoji + 2, emoji + 3]),
        vec![app_pong(&greek)],
    ));
    for (name, bad) in [
        ("0xff", &[0xffu8][..]),
        ("lone continuation byte", &[0x80]),
        ("overlong NUL", &[0xc0, 0x80]),
        ("UTF-16 surrogate", &[0xed, 0xa0, 0x80]),
        ("beyond U+10FFFF", &[0xf4, 0x90, 0x80, 0x80]),
        ("truncated at the end", &[b'a', 0xce]),
    ] {
        all.push(case(
            format!("6.4 invalid UTF-8: {name}"),
            whole(TEXT, bad),
            vec![Close(1007)],
        ));
    }
    all.push(case(
        "6.5 invalid UTF-8 in the last fragment",
        cat(&[
            &frame(false, TEXT, "κόσμε".as_bytes()),
            &frame(true, CONT, &[0xed, 0xa0, 0x80]),
        ]),
        vec![Close(1007)],
    ));
    all.push(case(
        "6.6 a character cut short by the end of the message",
        cat(&[
            &frame(false, TEXT, b"\"ab"),
            &frame(true, CONT, &[0xe2, 0x82]),
        ]),
        vec![Close(1007)],
    ));

    // 7. Close handling.
    all.push(case(
        "7.1 empty close",
        whole(CLOSE, b""),
        vec![Close(1000)],
    ));
    all.push(case(
        "7.2 close with a reason",
        whole(CLOSE, &close_payload(1000, "κόσμε".as_bytes())),
        vec![Close(1000)],
    ));
    all.push(case(
        "7.3 close of the largest size",
        whole(CLOSE, &close_payload(1000, &[b'*'; 123])),
        vec![Close(1000)],
    ));
    all.push(case(
        "7.4 close of 126 bytes",
        whole(CLOSE, &close_payload(1000, &[b'*'; 124])),
        vec![Close(1002)],
    ));
    all.push(case(
        "7.5 close with one byte",
        whole(CLOSE, &[0x03]),
        vec![Close(1002)],
    ));
    all.push(case(
        "7.6 close with a reason that is not UTF-8",
        whole(CLOSE, &close_payload(1000, &[0xce, 0xba, 0xed, 0xa0, 0x80])),
        vec![Close(1007)],
    ));
    all.push(case(
        "7.7 fragmented close",
        frame(false, CLOSE, &close_payload(1000, b"")),
        vec![Close(1002)],
    ));
    all.push(case(
        "7.8 nothing is answered after a close",
        cat(&[
            &whole(CLOSE, b""),
            &whole(PING, b"late"),
            &whole(TEXT, &ping_op("late")),
        ]),
        vec![Close(1000)],
    ));
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 3999, 4000, 4999,
    ] {
        all.push(case(
            format!("7.9 close with valid code {code}"),
            whole(CLOSE, &close_payload(code, b"")),
            vec![Close(1000)],
        ));
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        all.push(case(
            format!("7.10 close with invalid code {code}"),
            whole(CLOSE, &close_payload(code, b"")),
            vec![Close(1002)],
        ));
    }

    // 9. Limits and the frame header.
    all.push(case(
        "9.1 unmasked text",
        vec![0x81, 0x02, b'h', b'i'],
        vec![Close(1002)],
    ));
    all.push(case(
        "9.2 unmasked ping",
        vec![0x89, 0x00],
        vec![Close(1002)],
    ));
    all.push(case(
        "9.3 16-bit length under 126",
        header(TEXT, &[0x80 | 126, 0, 5]),
        vec![Close(1002)],
    ));
    all.push(case(
        "9.4 64-bit length under 65,536",
        header(TEXT, &[0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5]),
        vec![Close(1002)],
    ));
    all.push(case(
        "9.5 64-bit length with its top bit set",
        header(TEXT, &[0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 5]),
        vec![Close(1002)],
    ));
    all.push(case(
        "9.6 a frame written one byte per write",
        whole(TEXT, &ping_op("trickled")),
        vec![AppPong("trickled".into())],
    ));
    // The frame allowance counts every frame the client sends, whatever it is.
    let over = 5;
    let n = BURST as usize + over;
    let limited = |name: &str, send: Vec<u8>, mut expect: Vec<Reply>| {
        expect.extend(std::iter::repeat_n(Error("rate_limited"), over));
        Case {
            name: name.into(),
            send,
            expect,
            check_open: false,
        }
    };
    all.push(limited(
        "9.7 pings count against the frame allowance",
        (0..n).flat_map(|_| whole(PING, b"p")).collect(),
        vec![Pong(b"p".to_vec()); BURST as usize],
    ));
    all.push(limited(
        "9.8 binary frames count against the frame allowance",
        (0..n).flat_map(|_| whole(BIN, b"b")).collect(),
        vec![Error("bad_frame"); BURST as usize],
    ));
    all.push(limited(
        "9.9 empty continuations count against the frame allowance",
        cat(&[
            &frame(false, TEXT, b""),
            &(0..n - 2)
                .flat_map(|_| frame(false, CONT, b""))
                .collect::<Vec<_>>(),
            // The message over the allowance is dropped whole: no pong for it.
            &frame(true, CONT, &ping_op("dropped")),
        ]),
        vec![],
    ));
    let mut pongs_then_op: Vec<u8> = (0..BURST).flat_map(|_| whole(PONG, b"")).collect();
    pongs_then_op.extend((0..over).flat_map(|_| whole(TEXT, &ping_op("spent"))));
    all.push(limited(
        "9.10 pongs count against the frame allowance",
        pongs_then_op,
        vec![],
    ));
    all
}

/// A raw WebSocket connection after its welcome.
struct Raw {
    socket: TcpStream,
}

impl Raw {
    async fn open(app: &TestApp, token: &str) -> Result<Self, String> {
        let mut socket = TcpStream::connect(app.addr)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            app.addr
        );
        socket
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(within(socket.read_u8()).await?.map_err(|e| e.to_string())?);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(format!("upgrade: {}", String::from_utf8_lossy(&head)));
        }
        let mut raw = Self { socket };
        let (op, welcome) = raw.frame().await?;
        let welcome: Value = serde_json::from_slice(&welcome).map_err(|e| e.to_string())?;
        if op != TEXT || welcome["type"] != "welcome" {
            return Err(format!("expected the welcome, got {welcome}"));
        }
        Ok(raw)
    }

    /// The next server frame other than a server ping: opcode and payload.
    async fn frame(&mut self) -> Result<(u8, Vec<u8>), String> {
        within(next_frame(&mut self.socket)).await?
    }

    /// The next answer, as a [`Reply`].
    async fn reply(&mut self) -> Result<Reply, String> {
        let (op, payload) = self.frame().await?;
        match op {
            PONG => Ok(Reply::Pong(payload)),
            CLOSE if payload.len() >= 2 => {
                Ok(Reply::Close(u16::from_be_bytes([payload[0], payload[1]])))
            }
            TEXT => {
                let v: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                match v["type"].as_str() {
                    Some("pong") => Ok(Reply::AppPong(v["ref"].as_str().unwrap_or("").into())),
                    Some("error") => match v["code"].as_str() {
                        Some("bad_frame") => Ok(Reply::Error("bad_frame")),
                        Some("rate_limited") => Ok(Reply::Error("rate_limited")),
                        _ => Err(format!("unexpected error {v}")),
                    },
                    _ => Err(format!("unexpected frame {v}")),
                }
            }
            _ => Err(format!("unexpected opcode {op:#x} with {payload:?}")),
        }
    }

    /// After a close frame: the server sends nothing more and ends the stream once we end ours.
    async fn expect_end(&mut self) -> Result<(), String> {
        let _ = self.socket.shutdown().await;
        let mut rest = Vec::new();
        match within(self.socket.read_to_end(&mut rest)).await? {
            Ok(_) if rest.is_empty() => Ok(()),
            Ok(_) => Err(format!("{} bytes after the close frame", rest.len())),
            // A reset after the close frame is an end too.
            Err(_) => Ok(()),
        }
    }
}

/// Reads server frames until one that is not a ping (pings are spread over the first seconds of
/// a connection too): its opcode and payload. Server frames are unmasked and carry no RSV bits.
async fn next_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<(u8, Vec<u8>), String> {
    loop {
        let got = async {
            let mut head = [0u8; 2];
            r.read_exact(&mut head).await?;
            let len = match head[1] & 0x7f {
                126 => u64::from(r.read_u16().await?),
                127 => r.read_u64().await?,
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            r.read_exact(&mut payload).await?;
            Ok::<_, std::io::Error>((head, payload))
        }
        .await;
        let (head, payload) = got.map_err(|e| format!("reading a frame: {e}"))?;
        if head[0] & 0x70 != 0 || head[0] & 0x80 == 0 || head[1] & 0x80 != 0 {
            return Err(format!("malformed server frame header {head:?}"));
        }
        if head[0] & 0x0f != PING {
            return Ok((head[0] & 0x0f, payload));
        }
    }
}

async fn within<T>(f: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| "no answer in time".to_owned())
}

async fn run(app: &TestApp, token: &str, case: &Case) -> Result<(), String> {
    let mut raw = Raw::open(app, token).await?;
    if case.name.contains("one byte per write") {
        for byte in &case.send {
            raw.socket
                .write_all(&[*byte])
                .await
                .map_err(|e| e.to_string())?;
            raw.socket.flush().await.map_err(|e| e.to_string())?;
        }
    } else {
        raw.socket
            .write_all(&case.send)
            .await
            .map_err(|e| e.to_string())?;
    }
    for (i, want) in case.expect.iter().enumerate() {
        let got = raw.reply().await?;
        if &got != want {
            return Err(format!("answer {i}: expected {want:?}, got {got:?}"));
        }
    }
    if matches!(case.expect.last(), Some(Reply::Close(_))) {
        return raw.expect_end().await;
    }
    if case.check_open {
        raw.socket
            .write_all(&whole(TEXT, &ping_op("still-open")))
            .await
            .map_err(|e| e.to_string())?;
        let got = raw.reply().await?;
        if got != Reply::AppPong("still-open".into()) {
            return Err(format!(
                "expected the connection open and quiet, got {got:?}"
            ));
        }
    }
    Ok(())
}

/// The whole table on one server; failures are gathered so one run reports them all.
#[tokio::test]
async fn the_reader_follows_rfc_6455() {
    // One connection per case, all from one address within a second or two: the per-address
    // upgrade rate (its own tests are in handshake.rs and exhaustion.rs) is lifted here.
    let app = TestApp::spawn(Backend::Sqlite, |c| {
        c.frame_burst = BURST;
        c.frames_per_sec = 0.0;
        c.upgrades_per_ip_per_sec = 0.0;
    })
    .await;
    let shop = app.shop("conformance").await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failed = Vec::new();
    for case in &cases {
        if let Err(why) = run(&app, &shop.viewer, case).await {
            failed.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    app.stop().await;
}

/// A frame that never completes is no sign of life: trickled a byte at a time, it does not keep
/// the connection open past the idle timeout (the frame would need 20 s to arrive).
#[tokio::test]
async fn a_partial_frame_trickled_byte_by_byte_is_closed_as_idle() {
    let app = TestApp::spawn(Backend::Sqlite, |c| c.idle_secs = 2).await;
    let shop = app.shop("trickle").await;
    let mut raw = Raw::open(&app, &shop.viewer).await.expect("upgrade");
    let frame = whole(TEXT, &ping_op_of_size(100));
    let (mut read, mut write) = raw.socket.split();
    let trickle = async {
        for byte in &frame {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::future::pending::<()>().await;
    };
    let (op, payload) = tokio::select! {
        _ = trickle => unreachable!("the trickle never ends by itself"),
        got = within(next_frame(&mut read)) => got
            .expect("closed before the frame could complete")
            .expect("a close frame"),
    };
    assert_eq!(op, CLOSE);
    assert_eq!(&payload[..2], &1000u16.to_be_bytes());
    assert_eq!(&payload[2..], b"idle_timeout");
    app.stop().await;
}

/// Whole frames are a sign of life: pinging more often than the idle timeout keeps a connection
/// open well past it.
#[tokio::test]
async fn whole_frames_keep_a_connection_alive_past_the_idle_timeout() {
    let app = TestApp::spawn(Backend::Sqlite, |c| c.idle_secs = 1).await;
    let shop = app.shop("alive").await;
    let mut raw = Raw::open(&app, &shop.viewer).await.expect("upgrade");
    for i in 0..10u8 {
        raw.socket.write_all(&whole(PING, &[i])).await.unwrap();
        assert_eq!(raw.reply().await, Ok(Reply::Pong(vec![i])));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    raw.socket
        .write_all(&whole(TEXT, &ping_op("alive")))
        .await
        .unwrap();
    assert_eq!(raw.reply().await, Ok(Reply::AppPong("alive".into())));
    app.stop().await;
}

both! {
    a_join_with_a_resume_point_that_cannot_be_current_gets_a_snapshot,
}

/// Contract section 4, clarification: any `epoch` that is not current (a string, an object,
/// another number) or a `since` out of range gets a fresh snapshot with `resumed:false`.
async fn a_join_with_a_resume_point_that_cannot_be_current_gets_a_snapshot(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("odd-epochs").await;
    let stream = app.live_stream(&shop).await;
    let mut client = app.ws(&shop.token(Role::Viewer, "viewer-odd")).await;
    let current = client.join(&stream, None).await;
    let epoch = current["epoch"].clone();
    let points = [
        json!({ "epoch": "abc", "since": 0 }),
        json!({ "epoch": epoch.to_string(), "since": 0 }),
        json!({ "epoch": { "node": "other" }, "since": 0 }),
        json!({ "epoch": [epoch], "since": 0 }),
        json!({ "epoch": 1.5, "since": 0 }),
        json!({ "epoch": -1, "since": 0 }),
        json!({ "epoch": epoch, "since": -1 }),
        json!({ "epoch": epoch, "since": "0" }),
        json!({ "epoch": epoch, "since": 1e300 }),
        json!({ "epoch": epoch, "since": u64::MAX }),
        json!({ "epoch": epoch }),
        json!({ "since": 0 }),
    ];
    for (i, point) in points.iter().enumerate() {
        let r#ref = format!("odd-{i}");
        let mut join = json!({ "op": "join", "stream": stream, "ref": r#ref });
        join.as_object_mut()
            .unwrap()
            .extend(point.as_object().unwrap().clone());
        client.send_json(&join).await;
        let joined = client.next_json().await;
        assert_eq!(joined["type"], "joined", "{point}: {joined}");
        assert_eq!(joined["ref"], r#ref.as_str(), "{joined}");
        assert_eq!(joined["resumed"], false, "{point}: {joined}");
        assert_eq!(joined["epoch"], current["epoch"], "{joined}");
        assert!(
            joined["snapshot"]["stream"].is_object(),
            "{point}: {joined}"
        );
    }
    app.stop().await;
}

/// A message one of whose fragments was over the frame allowance is dropped whole, even when its
/// last fragment arrives once the allowance has refilled: answered `rate_limited` once, never
/// handled as a shortened message.
#[tokio::test]
async fn a_message_with_a_refused_fragment_is_dropped_whole() {
    let app = TestApp::spawn(Backend::Sqlite, |c| {
        c.frame_burst = 3;
        c.frames_per_sec = 10.0;
    })
    .await;
    let shop = app.shop("refused-fragment").await;
    let mut raw = Raw::open(&app, &shop.viewer).await.expect("upgrade");
    let text = ping_op("cut");
    let mut first = frame(false, TEXT, &text[..4]);
    for _ in 0..3 {
        first.extend(frame(false, CONT, b""));
    }
    raw.socket.write_all(&first).await.unwrap();
    assert_eq!(raw.reply().await, Ok(Reply::Error("rate_limited")));
    // Long enough to refill more than the two frames that follow.
    tokio::time::sleep(Duration::from_millis(400)).await;
    raw.socket
        .write_all(&frame(true, CONT, &text[4..]))
        .await
        .unwrap();
    raw.socket
        .write_all(&whole(TEXT, &ping_op("next")))
        .await
        .unwrap();
    assert_eq!(
        raw.reply().await,
        Ok(Reply::AppPong("next".into())),
        "the cut message got no answer of its own"
    );
    app.stop().await;
}
