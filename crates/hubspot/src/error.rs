//! The client's one error type. Each variant is something a caller can act on: fix the
//! input (validation), use the existing record (conflict), fall back (missing scopes), wait
//! (daily limit, an open circuit breaker), or ask the operator (rejected refresh token).

use serde_json::Value;

/// One property HubSpot refused, with its error code (`PROPERTY_DOESNT_EXIST`,
/// `INVALID_OPTION`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyIssue {
    pub name: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HubSpotError {
    #[error("HubSpot rejected the input: {message}")]
    Validation { message: String, properties: Vec<PropertyIssue> },
    #[error("HubSpot reports a conflict: {message}")]
    Conflict { message: String, existing_id: Option<u64> },
    #[error("the token lacks scopes: {}", scopes.join(", "))]
    MissingScopes { scopes: Vec<String> },
    #[error("not found in HubSpot")]
    NotFound,
    #[error("HubSpot refused the credentials ({category})")]
    Unauthorized { category: String },
    #[error("HubSpot rejected the refresh token: {message}; reinstall the app (GET /oauth/login)")]
    RefreshRejected { message: String },
    #[error("the portal's daily API limit is spent; it resets in {resets_in_secs} s")]
    DailyLimit { resets_in_secs: u64 },
    #[error("HubSpot kept answering {status} after {attempts} attempts: {message}")]
    Unavailable { status: u16, attempts: u32, message: String },
    #[error("could not reach HubSpot after {attempts} attempts: {message}")]
    Transport { attempts: u32, message: String },
    /// Not sent: HubSpot kept failing and the portal's circuit breaker is open; the next
    /// probe is due in `retry_in_ms`.
    #[error("HubSpot is failing; requests are paused for {retry_in_ms} ms")]
    Paused { retry_in_ms: u64 },
    #[error("merge refused: {message}")]
    MergeLimit { message: String },
    #[error("HubSpot answered {status} {category}: {message}")]
    Api { status: u16, category: String, message: String },
    #[error("unexpected response from HubSpot: {0}")]
    Decode(String),
}

impl HubSpotError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HubSpotError::Unavailable { .. }
                | HubSpotError::Transport { .. }
                | HubSpotError::DailyLimit { .. }
                | HubSpotError::Paused { .. }
        )
    }

    /// Builds the typed error from an error response.
    pub fn from_response(status: u16, body: &Value) -> HubSpotError {
        let message = body.get("message").and_then(Value::as_str).unwrap_or("").to_string();
        let category = body.get("category").and_then(Value::as_str).unwrap_or("").to_string();
        match (status, category.as_str()) {
            (401, _) => HubSpotError::Unauthorized { category },
            (403, "MISSING_SCOPES") => HubSpotError::MissingScopes { scopes: required_scopes(body) },
            (404, _) => HubSpotError::NotFound,
            (409, _) => HubSpotError::Conflict { existing_id: existing_id(&message), message },
            (414, _) => HubSpotError::MergeLimit { message },
            (400, _) => HubSpotError::Validation { properties: property_issues(body), message },
            _ => HubSpotError::Api { status, category, message },
        }
    }
}

/// The id in HubSpot's "Contact already exists. Existing ID: 123" (the id is only in the
/// message text).
pub fn existing_id(message: &str) -> Option<u64> {
    let at = message.find("Existing ID:")?;
    message[at + "Existing ID:".len()..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn required_scopes(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for e in body.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let ctx = e.get("context");
        for key in ["requiredScopes", "missingScopes"] {
            for s in ctx.and_then(|c| c.get(key)).and_then(Value::as_array).into_iter().flatten() {
                if let Some(s) = s.as_str() {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}

/// Property problems, from `errors[]` when present, else from the message's JSON list.
fn property_issues(body: &Value) -> Vec<PropertyIssue> {
    let mut out = Vec::new();
    for e in body.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let name = e.pointer("/context/propertyName/0").and_then(Value::as_str);
        if let (Some(name), Some(code)) = (name, e.get("code").and_then(Value::as_str)) {
            out.push(PropertyIssue {
                name: name.to_string(),
                code: code.to_string(),
                message: e.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
    }
    if out.is_empty()
        && let Some(list) = body
            .get("message")
            .and_then(Value::as_str)
            .and_then(|m| m.split_once(": ["))
            .map(|(_, rest)| format!("[{rest}"))
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&list)
    {
        for i in items {
            out.push(PropertyIssue {
                name: i.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                code: i.get("error").and_then(Value::as_str).unwrap_or("").to_string(),
                message: i.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
    }
    out
}

/// A transport error in a few words: reqwest's text can carry the URL, so it is cut there.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        // reqwest's Display can include the URL; ours carry no secrets, but keep it short.
        e.to_string().split(" for url").next().unwrap_or("request failed").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_existing_id_is_read_from_the_conflict_message() {
        assert_eq!(existing_id("Contact already exists. Existing ID: 37765128953"), Some(37_765_128_953));
        assert_eq!(existing_id("something else"), None);
    }

    #[test]
    fn validation_errors_name_each_property_from_errors_or_the_message() {
        let body = json!({"status":"error","category":"VALIDATION_ERROR",
            "message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Property \\\"x\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"x\"}]"});
        let HubSpotError::Validation { properties, .. } = HubSpotError::from_response(400, &body) else { panic!() };
        assert_eq!(
            properties,
            vec![PropertyIssue {
                name: "x".into(),
                code: "PROPERTY_DOESNT_EXIST".into(),
                message: "Property \"x\" does not exist".into()
            }]
        );
        let scopes =
            json!({"category":"MISSING_SCOPES","errors":[{"context":{"missingScopes":["a"],"requiredScopes":["b"]}}]});
        let HubSpotError::MissingScopes { scopes } = HubSpotError::from_response(403, &scopes) else { panic!() };
        assert_eq!(scopes, vec!["b".to_string(), "a".to_string()]);
    }
}
