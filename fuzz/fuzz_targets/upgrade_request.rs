//! The WebSocket upgrade checks (`handshake_key` of `http/src/ws/gateway.rs`) on arbitrary
//! request heads, parsed by httparse as hyper parses them: never a panic, and an accepted
//! handshake is a GET that names the upgrade and the key it sent.

#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
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
    let mut map = HeaderMap::new();
    for h in request.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            map.append(name, value);
        }
    }
    if let Ok(key) = handshake_key(&method, &map) {
        assert_eq!(method, Method::GET);
        assert!(map.contains_key(axum::http::header::UPGRADE));
        let sent = map.get(axum::http::header::SEC_WEBSOCKET_KEY);
        assert_eq!(sent.and_then(|v| v.to_str().ok()), Some(key.as_str()));
    }
});
