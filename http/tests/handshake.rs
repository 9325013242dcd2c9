//! The edges of the upgrade handshake (RFC 6455 4.2) and the answers hyper writes before any
//! route runs, spoken byte by byte over real sockets.

mod common;

use std::collections::HashMap;

use common::{Backend, Shop, TestApp, WAIT};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as read from the socket: status line, headers (lowercase names), body.
struct Answer {
    status_line: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line: {}", self.status_line))
    }

    /// Asserts the contract's error shape with `code`.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status(), status, "{} {}", self.status_line, self.body);
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is JSON ({e}): {:?}", self.body));
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        assert_eq!(
            body["error"].as_object().map(|o| o.len()),
            Some(2),
            "{body}"
        );
    }
}

/// Writes `request` on a fresh connection and reads the whole answer (the server closes the
/// connection after an error answer, or the body ends at its content-length).
async fn exchange(app: &TestApp, request: &[u8]) -> Answer {
    let mut socket = TcpStream::connect(app.addr).await.expect("connect");
    socket.write_all(request).await.expect("request is written");
    read_answer(&mut socket).await
}

async fn read_answer(socket: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(answer) = parse(&bytes) {
                return answer;
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return parse(&bytes).unwrap_or_else(|| {
                        panic!("incomplete answer: {:?}", String::from_utf8_lossy(&bytes))
                    });
                }
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    answer.expect("an answer arrives in time")
}

fn parse(bytes: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    (body.len() >= length).then(|| Answer {
        status_line,
        headers,
        body: body[..length].to_owned(),
    })
}

/// An upgrade request for `/v1/ws` with `token`, over `version`, with `extra` header lines.
fn upgrade(token: &str, version: &str, extra: &[&str]) -> Vec<u8> {
    let mut request = format!(
        "GET /v1/ws?token={token} {version}\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

const GOOD_KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";

async fn app_and_shop() -> (TestApp, Shop) {
    let app = TestApp::default(Backend::Sqlite).await;
    let shop = app.shop("handshake").await;
    (app, shop)
}

#[tokio::test]
async fn another_websocket_version_is_answered_426_naming_version_13() {
    let (app, shop) = app_and_shop().await;
    for version in ["Sec-WebSocket-Version: 8", "Sec-WebSocket-Version: 14"] {
        let answer = exchange(
            &app,
            &upgrade(&shop.viewer, "HTTP/1.1", &[version, GOOD_KEY]),
        )
        .await;
        answer.assert_error(426, "bad_request");
        assert_eq!(
            answer
                .headers
                .get("sec-websocket-version")
                .map(String::as_str),
            Some("13"),
            "{:?}",
            answer.headers
        );
    }
    // Without the header at all, too.
    let answer = exchange(&app, &upgrade(&shop.viewer, "HTTP/1.1", &[GOOD_KEY])).await;
    answer.assert_error(426, "bad_request");
}

#[tokio::test]
async fn an_upgrade_over_http_1_0_is_refused_not_switched() {
    let (app, shop) = app_and_shop().await;
    let request = upgrade(
        &shop.viewer,
        "HTTP/1.0",
        &["Sec-WebSocket-Version: 13", GOOD_KEY],
    );
    let answer = exchange(&app, &request).await;
    answer.assert_error(400, "bad_request");
    assert!(answer.body.contains("HTTP/1.1"), "{}", answer.body);
}

#[tokio::test]
async fn a_key_that_is_not_16_bytes_of_base64_is_refused() {
    let (app, shop) = app_and_shop().await;
    for key in [
        "Sec-WebSocket-Key: not-base64!",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=", // 17 bytes
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j",     // 15 bytes
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ",   // no padding
        "Sec-WebSocket-Key: ",
    ] {
        let request = upgrade(
            &shop.viewer,
            "HTTP/1.1",
            &["Sec-WebSocket-Version: 13", key],
        );
        let answer = exchange(&app, &request).await;
        answer.assert_error(400, "bad_request");
        assert!(
            answer.body.contains("Sec-WebSocket-Key"),
            "{key}: {}",
            answer.body
        );
    }
    // The same request with a proper key switches protocols.
    let request = upgrade(
        &shop.viewer,
        "HTTP/1.1",
        &["Sec-WebSocket-Version: 13", GOOD_KEY],
    );
    let answer = exchange(&app, &request).await;
    assert_eq!(answer.status(), 101, "{}", answer.status_line);
}

#[tokio::test]
async fn the_token_is_still_checked_before_the_handshake() {
    let (app, _shop) = app_and_shop().await;
    let answer = exchange(
        &app,
        &upgrade("not-a-token", "HTTP/1.1", &["Sec-WebSocket-Version: 8"]),
    )
    .await;
    answer.assert_error(401, "unauthorized");
}

/// The security headers of a routed answer (`/health`), to compare hyper-level answers with.
async fn routed_security_headers(app: &TestApp) -> Vec<(String, String)> {
    let answer = exchange(
        app,
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 200);
    let mut security: Vec<_> = answer
        .headers
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("x-content-type")
                || name.starts_with("x-frame")
                || name.starts_with("referrer")
                || name.starts_with("strict-transport")
        })
        .collect();
    security.sort();
    assert_eq!(security.len(), 3, "{security:?}");
    security
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_the_error_shape_and_security_headers() {
    let app = TestApp::default(Backend::Sqlite).await;
    let expected = routed_security_headers(&app).await;
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        (
            "malformed request line",
            b"GET /health HTTP/1.1 extra\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "bad header name",
            b"GET /health HTTP/1.1\r\nbad header: x\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        ("URI too long", long_uri.into_bytes(), 414, "too_large"),
        (
            "too many headers",
            many_headers.into_bytes(),
            431,
            "too_large",
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = exchange(&app, &request).await;
        assert_eq!(answer.status(), status, "{what}: {}", answer.status_line);
        answer.assert_error(status, code);
        let mut security: Vec<_> = expected
            .iter()
            .map(|(name, _)| {
                (
                    name.clone(),
                    answer.headers.get(name).cloned().unwrap_or_default(),
                )
            })
            .collect();
        security.sort();
        assert_eq!(security, expected, "{what}: {:?}", answer.headers);
        assert_eq!(
            answer.headers.get("content-type").map(String::as_str),
            Some("application/json"),
            "{what}"
        );
    }
    // The server is unharmed and still answers properly.
    routed_security_headers(&app).await;
}
