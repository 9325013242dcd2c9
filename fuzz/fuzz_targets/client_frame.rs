//! The client frame decoder (`ClientFrame::decode`) on arbitrary text: it never panics, a
//! refusal is `bad_frame` or `bad_request`, and what it accepts encodes back to the same frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use liveshop_engine::ErrorCode;
use liveshop_engine::frames::ClientFrame;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientFrame::decode(text) {
        Ok(frame) => {
            let again = ClientFrame::decode(&frame.encode()).expect("an encoded frame decodes");
            assert_eq!(again, frame);
        }
        Err(e) => assert!(
            matches!(e.rejection.code, ErrorCode::BadFrame | ErrorCode::BadRequest),
            "{e:?}"
        ),
    }
});
