//! The WebSocket upgrade checks (`handshake_key` of `http/src/ws/gateway.rs`) on arbitrary
//! request heads, parsed by httparse as hyper parses them: never a panic, and an accepted
//! handshake is an HTTP/1.1 GET that names the upgrade, version 13 and the key it sent, the
//! base64 of 16 bytes.

#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use liveshop_http::ws::gateway::handshake_key;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    if request.parse(data).is_err() {
        return;
    }
    let Some(method) = request.method.and_then(|m| Method::from_bytes(m.as_bytes()).ok()) else {
        return;
    };
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut map = HeaderMap::new();
    for h in request.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            map.append(name, value);
        }
    }
    if let Ok(key) = handshake_key(&method, version, &map) {
        assert_eq!(method, Method::GET);
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(
            map.get(axum::http::header::SEC_WEBSOCKET_VERSION)
                .map(|v| v.as_bytes()),
            Some(&b"13"[..])
        );
        let nonce = base64::engine::general_purpose::STANDARD.decode(&key);
        assert_eq!(nonce.map(|n| n.len()).ok(), Some(16));
        assert!(map.contains_key(axum::http::header::UPGRADE));
        let sent = map.get(axum::http::header::SEC_WEBSOCKET_KEY);
        assert_eq!(sent.and_then(|v| v.to_str().ok()), Some(key.as_str()));
    }
});
