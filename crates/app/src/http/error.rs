//! The HTTP layer's one error type, [`ApiError`], and its policy:
//!
//! - **4xx says what the sender can fix, by name.** 401 gives the check that failed
//!   (`missing credential`, `signature does not match`, …) and never echoes what was sent;
//!   400 lists each bad field with its problem; 404 says what was not found; 408 and 413
//!   state the time and size limits.
//! - **Overload is a 503 with `Retry-After`**, answered at once: callbridge never queues
//!   work it has not stored in memory it has not got.
//! - **5xx shows no internals.** It says only whether to retry (`"retry": true`); the cause
//!   is logged once, where it happened, by kind — never a phone, email, token or body.
//!
//! Every 4xx body is `{"error": <code>, …}`, with `reason` or `fields` saying why.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use callbridge_sources::FieldError;
use serde_json::json;

/// What an overloaded answer asks the sender to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug)]
pub enum ApiError {
    /// 401: a credential is missing or wrong; the reason names the check that failed.
    Unauthorized(&'static str),
    /// 400: the payload (or a query) has problems, each named by its field.
    InvalidPayload(Vec<FieldError>),
    /// 404: what the path names does not exist.
    NotFound(&'static str),
    /// 409: the request conflicts with work already going on.
    Conflict(String),
    /// 413: the body is larger than the limit, in bytes.
    TooLarge { limit: usize },
    /// 408: the body did not arrive within the time limit, in seconds.
    BodyTimeout { secs: u64 },
    /// 503 with `Retry-After`: too much is in flight (connections, unverified bodies).
    Overloaded,
    /// 502: HubSpot answered with an error; the reason is safe to show an operator.
    Upstream(String),
    /// 503: storage is unavailable; the sender should retry.
    Unavailable,
    /// 500: a bug; the sender may retry.
    Internal,
}

impl ApiError {
    /// One problem with one field.
    pub fn field(field: &str, problem: impl Into<String>) -> ApiError {
        ApiError::InvalidPayload(vec![FieldError { field: field.to_string(), problem: problem.into() }])
    }
}

/// A refusal of what the sender sent, attached to the answer so that it can be recorded
/// ([`crate::rejections`]): the error's code and what the sender was told.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: &'static str,
    pub detail: String,
}

impl ApiError {
    /// What a refusal of the sender's request tells it; `None` for any other answer.
    fn refused(&self) -> Option<Refused> {
        let (reason, detail) = match self {
            ApiError::Unauthorized(why) => ("unauthorized", why.to_string()),
            ApiError::InvalidPayload(fields) => (
                "invalid_payload",
                fields.iter().map(|f| format!("{}: {}", f.field, f.problem)).collect::<Vec<_>>().join("; "),
            ),
            ApiError::TooLarge { limit } => ("payload_too_large", format!("over {limit} bytes")),
            ApiError::BodyTimeout { secs } => ("request_timeout", format!("not complete within {secs} s")),
            _ => return None,
        };
        Some(Refused { reason, detail })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refused = self.refused();
        let mut response = self.answer();
        if let Some(refused) = refused {
            response.extensions_mut().insert(refused);
        }
        response
    }
}

impl ApiError {
    fn answer(self) -> Response {
        let (status, body) = match self {
            ApiError::Unauthorized(reason) => {
                (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized", "reason": reason}))
            }
            ApiError::InvalidPayload(fields) => {
                (StatusCode::BAD_REQUEST, json!({"error": "invalid_payload", "fields": fields}))
            }
            ApiError::NotFound(reason) => (StatusCode::NOT_FOUND, json!({"error": "not_found", "reason": reason})),
            ApiError::Conflict(reason) => (StatusCode::CONFLICT, json!({"error": "conflict", "reason": reason})),
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload_too_large", "reason": format!("the body is over the limit of {limit} bytes"), "limit_bytes": limit}),
            ),
            ApiError::BodyTimeout { secs } => (
                StatusCode::REQUEST_TIMEOUT,
                json!({"error": "request_timeout", "reason": format!("the body did not arrive within {secs} s")}),
            ),
            ApiError::Overloaded => {
                let body = json!({"error": "overloaded", "reason": "too many requests in flight; retry shortly", "retry": true});
                let retry_after = [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())];
                return (StatusCode::SERVICE_UNAVAILABLE, retry_after, Json(body)).into_response();
            }
            ApiError::Upstream(reason) => (StatusCode::BAD_GATEWAY, json!({"error": "hubspot", "reason": reason})),
            ApiError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "storage_unavailable", "retry": true}))
            }
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal", "retry": true})),
        };
        (status, Json(body)).into_response()
    }
}
