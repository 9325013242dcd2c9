//! The HTTP error type: caller faults become 4xx with stable codes, internal faults are logged with
//! their cause chain and answered with an opaque 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use liveshop_engine::storage::StorageError;
use liveshop_engine::{ErrorCode, Rejection};

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A refusal the caller can act on.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A fault inside the engine; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A refusal with the given code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Rejected(Rejection::new(code, message))
    }

    /// A `bad_request` naming the field.
    pub fn field(field: &str, problem: &str) -> Self {
        Self::Rejected(Rejection::field(field, problem))
    }

    /// A `not_found` for the named kind.
    pub fn not_found(what: &str) -> Self {
        Self::Rejected(Rejection::not_found(what))
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Conflict(what) => {
                Self::new(ErrorCode::Conflict, format!("{what} already exists"))
            }
            StorageError::Constraint(msg) => Self::new(ErrorCode::Conflict, msg),
            StorageError::Invalid(why) => {
                tracing::warn!(reason = %why, "storage refused a value of the request");
                Self::new(
                    ErrorCode::BadRequest,
                    "a value of the request cannot be stored",
                )
            }
            StorageError::Fenced { scope, token } => {
                tracing::warn!(%scope, token, "a write of a stale owner was fenced off");
                Self::new(ErrorCode::Unavailable, "storage unavailable; retry")
            }
            StorageError::Unavailable(source) => {
                tracing::error!(error = %source, "storage unavailable");
                Self::new(ErrorCode::Unavailable, "storage unavailable; retry")
            }
        }
    }
}

/// The error body of the contract.
pub fn error_body(code: ErrorCode, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code.as_str(), "message": message } })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Rejected(r) => {
                let status =
                    StatusCode::from_u16(r.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response =
                    (status, axum::Json(error_body(r.code, &r.message))).into_response();
                if let Some(ms) = r.retry_after_ms {
                    let secs = ms.div_ceil(1000).max(1);
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                response
            }
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(error_body(ErrorCode::Internal, "internal error")),
                )
                    .into_response()
            }
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
