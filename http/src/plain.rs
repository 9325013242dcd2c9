//! Answers written without the router: to a connection refused at accept, and in place of the
//! bodiless 400/414/431 hyper writes itself when it cannot parse a request. They carry the
//! contract's error body and the security headers `app::router` adds to every other answer, and
//! they close the connection.

use liveshop_engine::ErrorCode;

/// The security headers of every answer: `app::router` sets them on routed answers and
/// [`error_answer`] writes them on the others.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// The header every answer carries in production, routed or not.
pub const HSTS: (&str, &str) = (
    "strict-transport-security",
    "max-age=63072000; includeSubDomains",
);

/// A whole HTTP/1.1 answer with status `status`, the error body of `code` and `message`, the
/// security headers (HSTS when `production`), an optional `Retry-After`, and `connection: close`.
pub fn error_answer(
    status: u16,
    code: ErrorCode,
    message: &str,
    production: bool,
    retry_after_secs: Option<u64>,
) -> Vec<u8> {
    let body = crate::error::error_body(code, message).to_string();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in SECURITY_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if production {
        head.push_str(&format!("{}: {}\r\n", HSTS.0, HSTS.1));
    }
    if let Some(secs) = retry_after_secs {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("\r\n");
    let mut answer = head.into_bytes();
    answer.extend_from_slice(body.as_bytes());
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_is_complete_http_with_the_contract_body() {
        let answer = error_answer(429, ErrorCode::RateLimited, "slow down", true, Some(1));
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(head.contains("retry-after: 1"));
        assert!(head.contains("x-frame-options: DENY"));
        assert!(head.contains("strict-transport-security"));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(body["error"]["message"], "slow down");
    }
}
