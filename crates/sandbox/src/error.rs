//! HubSpot's error bodies. Every error the sandbox returns goes through [`ApiError`], so the
//! shape (`status`, `message`, `correlationId`, `category`, optional `errors`/`context`/`links`)
//! is the same everywhere, as HubSpot's is (reference §3.3).

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::util::correlation_id;

/// The correlation id a response carries; the gate copies it into `X-HubSpot-Correlation-Id`.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Map<String, Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// One invalid property value, rendered the way HubSpot lists them in a validation message.
#[derive(Debug, Clone, PartialEq)]
pub struct PropError {
    pub name: String,
    pub code: &'static str,
    pub message: String,
}

impl PropError {
    pub fn new(name: &str, code: &'static str, message: impl Into<String>) -> PropError {
        PropError { name: name.to_string(), code, message: message.into() }
    }

    pub fn doesnt_exist(name: &str) -> PropError {
        PropError::new(name, "PROPERTY_DOESNT_EXIST", format!("Property \"{name}\" does not exist"))
    }
}

impl ApiError {
    pub fn new(status: StatusCode, category: &str, message: impl Into<String>) -> ApiError {
        let mut body = Map::new();
        body.insert("status".into(), json!("error"));
        body.insert("message".into(), json!(message.into()));
        body.insert("category".into(), json!(category));
        ApiError { status, body, headers: Vec::new() }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn bad_json(detail: impl std::fmt::Display) -> ApiError {
        ApiError::validation(format!("Invalid input JSON: {detail}"))
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found")
    }

    pub fn route_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "Unable to find a route for the request")
    }

    /// HubSpot's 409 for an email already held by another contact (primary or additional).
    pub fn contact_exists(existing: u64) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "CONFLICT", format!("Contact already exists. Existing ID: {existing}"))
    }

    /// The 400 for invalid property values, with HubSpot's message format and an `errors`
    /// list a client can read without parsing the message.
    pub fn invalid_properties(errors: &[PropError], portal_id: u64) -> ApiError {
        // Written by hand to keep HubSpot's key order (serde_json maps sort their keys).
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let listed: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{{\"isValid\":false,\"message\":{m},\"error\":{c},\"name\":{n},\"localizedErrorMessage\":{m},\"portalId\":{portal_id}}}",
                    m = quote(&e.message),
                    c = quote(e.code),
                    n = quote(&e.name),
                )
            })
            .collect();
        let message = format!("Property values were not valid: [{}]", listed.join(","));
        let details: Vec<Value> = errors
            .iter()
            .map(|e| json!({"message": e.message, "code": e.code, "context": {"propertyName": [e.name]}}))
            .collect();
        ApiError::validation(message).with("errors", Value::Array(details))
    }

    pub fn missing_scopes(required: &[&str]) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
        )
        .with(
            "errors",
            json!([{"message": "One or more of the following scopes are required.",
                    "context": {"requiredScopes": required}}]),
        )
        .with("links", json!({"scopes": "https://developers.hubspot.com/scopes"}))
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.body.insert(key.to_string(), value);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(&value.into()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn category(&self) -> &str {
        self.body.get("category").and_then(Value::as_str).unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body.get("message").and_then(Value::as_str).unwrap_or("")
    }

    /// The error as an element of a batch response's `errors` list.
    pub fn as_batch_error(&self) -> Value {
        let mut v = self.body.clone();
        v.remove("correlationId");
        Value::Object(v)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = correlation_id();
        let mut body = self.body;
        // HubSpot's 429 bodies carry `correlationId` but keep `status` first; order is cosmetic.
        body.insert("correlationId".into(), Value::String(id.clone()));
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response.extensions_mut().insert(CorrelationId(id));
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.category(), self.message())
    }
}

impl std::error::Error for ApiError {}
