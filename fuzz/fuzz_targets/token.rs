//! Token verification (`Keys::verify` of `http/src/auth.rs`): arbitrary strings as tokens, and
//! arbitrary claims signed with the right secret, so the fuzzer gets past the signature to the
//! claims. Never a panic; a refusal is always `unauthorized`.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use liveshop_engine::ErrorCode;
use liveshop_http::auth::Keys;

const SECRET: &[u8] = b"fuzzing-secret-0123456789-abcdefghijklmnop";

fuzz_target!(|data: &[u8]| {
    let keys = Keys::new(SECRET);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        // Any text as a token.
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        // Any bytes as the claims of a correctly signed token.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(rest));
        let key = EncodingKey::from_secret(SECRET);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
            .expect("HS256 signs");
        format!("{message}.{signature}")
    };
    if let Err(rejection) = keys.verify(&token) {
        assert_eq!(rejection.code, ErrorCode::Unauthorized);
    }
});
