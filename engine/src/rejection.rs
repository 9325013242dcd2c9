//! Stable error codes shared by the HTTP API and the WebSocket protocol.

use serde::{Deserialize, Serialize};

/// A machine-readable reason a request was refused. Clients branch on these strings, so they never
/// change once published (contract v1, section 3 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed input or failed validation; the message names the field.
    BadRequest,
    /// No credentials, or credentials that do not verify.
    Unauthorized,
    /// Valid credentials acting outside their role or tenant.
    Forbidden,
    /// No such resource visible to the caller.
    NotFound,
    /// A unique value is already taken.
    Conflict,
    /// The resource is not in a state that allows the operation.
    InvalidState,
    /// No units left in the drop.
    SoldOut,
    /// The caller reached the per-user limit of a drop.
    LimitExceeded,
    /// The drop no longer accepts claims.
    DropClosed,
    /// A body or frame over its size limit.
    TooLarge,
    /// Too many requests; retry later.
    RateLimited,
    /// A dependency (storage, Redis) does not answer.
    Unavailable,
    /// Something failed inside the engine; details are logged, never sent.
    Internal,
    /// A WebSocket frame that is not JSON or carries no known `op`.
    BadFrame,
    /// A stream operation on a stream the connection has not joined.
    NotJoined,
    /// The path exists but not for this HTTP method.
    MethodNotAllowed,
    /// The caller is muted in this stream's chat (with `retry_after_ms`).
    Muted,
    /// The chat message holds a word the stream's moderators blocked; it was not sent.
    Blocked,
    /// The caller is banned from the tenant.
    Banned,
}

impl ErrorCode {
    /// The wire spelling of the code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::InvalidState => "invalid_state",
            Self::SoldOut => "sold_out",
            Self::LimitExceeded => "limit_exceeded",
            Self::DropClosed => "drop_closed",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::BadFrame => "bad_frame",
            Self::NotJoined => "not_joined",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Muted => "muted",
            Self::Blocked => "blocked",
            Self::Banned => "banned",
        }
    }

    /// The HTTP status the contract assigns to this code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::BadFrame | Self::Blocked => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::Muted | Self::Banned => 403,
            Self::NotFound => 404,
            Self::Conflict
            | Self::InvalidState
            | Self::SoldOut
            | Self::LimitExceeded
            | Self::DropClosed
            | Self::NotJoined => 409,
            Self::MethodNotAllowed => 405,
            Self::TooLarge => 413,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}

/// A refusal with a human-readable message; `retry_after_ms` is set for rate limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}: {message}", code.as_str())]
pub struct Rejection {
    /// What went wrong, for machines.
    pub code: ErrorCode,
    /// What went wrong, for people. Never contains internals.
    pub message: String,
    /// When to try again, for `rate_limited`.
    pub retry_after_ms: Option<u64>,
}

impl Rejection {
    /// A refusal with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A `bad_request` naming the offending field.
    pub fn field(field: &str, problem: &str) -> Self {
        Self::new(ErrorCode::BadRequest, format!("{field}: {problem}"))
    }

    /// A `rate_limited` refusal that says when to retry.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: "rate limit reached".to_owned(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    /// The refusal of a stream operation (chat, react, leave) before `join`.
    pub fn not_joined() -> Self {
        Self::new(ErrorCode::NotJoined, "join the stream first")
    }

    /// A `not_found` for the named kind of resource.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
}
