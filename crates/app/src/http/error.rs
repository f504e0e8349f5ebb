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

/// Every error's body: its kind, and what the sender needs to act on it.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `invalid_payload`, `not_found`, `conflict`, `payload_too_large`,
    /// `request_timeout`, `overloaded`, `hubspot`, `storage_unavailable` or `internal`.
    pub error: &'static str,
    /// Why, in words (the check that failed, what was not found, the limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each bad field and its problem (`invalid_payload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldProblem>>)]
    pub fields: Option<Vec<FieldError>>,
    /// The body size limit (`payload_too_large`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<usize>,
    /// Whether sending again later can succeed (5xx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
}

/// A bad field, as `fields` lists it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FieldProblem {
    /// Its path in the body (`message.call.customer.number`, `[2].portalId`).
    field: String,
    /// What is wrong with it.
    problem: String,
}

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
        let body = |error: &'static str| ErrorBody { error, ..ErrorBody::default() };
        let (status, body) = match self {
            ApiError::Unauthorized(reason) => {
                (StatusCode::UNAUTHORIZED, ErrorBody { reason: Some(reason.into()), ..body("unauthorized") })
            }
            ApiError::InvalidPayload(fields) => {
                (StatusCode::BAD_REQUEST, ErrorBody { fields: Some(fields), ..body("invalid_payload") })
            }
            ApiError::NotFound(reason) => {
                (StatusCode::NOT_FOUND, ErrorBody { reason: Some(reason.into()), ..body("not_found") })
            }
            ApiError::Conflict(reason) => {
                (StatusCode::CONFLICT, ErrorBody { reason: Some(reason), ..body("conflict") })
            }
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody {
                    reason: Some(format!("the body is over the limit of {limit} bytes")),
                    limit_bytes: Some(limit),
                    ..body("payload_too_large")
                },
            ),
            ApiError::BodyTimeout { secs } => (
                StatusCode::REQUEST_TIMEOUT,
                ErrorBody {
                    reason: Some(format!("the body did not arrive within {secs} s")),
                    ..body("request_timeout")
                },
            ),
            ApiError::Overloaded => {
                let body = ErrorBody {
                    reason: Some("too many requests in flight; retry shortly".into()),
                    retry: Some(true),
                    ..body("overloaded")
                };
                let retry_after = [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())];
                return (StatusCode::SERVICE_UNAVAILABLE, retry_after, Json(body)).into_response();
            }
            ApiError::Upstream(reason) => {
                (StatusCode::BAD_GATEWAY, ErrorBody { reason: Some(reason), ..body("hubspot") })
            }
            ApiError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorBody { retry: Some(true), ..body("storage_unavailable") })
            }
            ApiError::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorBody { retry: Some(true), ..body("internal") })
            }
        };
        (status, Json(body)).into_response()
    }
}
