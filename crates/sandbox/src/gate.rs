//! What HubSpot does before and after a request reaches its handler: added latency and
//! injected faults, authentication (private-app and OAuth bearer tokens, expiry), the rate
//! limits (rolling 10-second window per app, daily cap per account, search per second),
//! scope checks, the `X-HubSpot-RateLimit-*` headers, and request counting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ApiError, CorrelationId};
use crate::state::{CALLS_READ, CALLS_WRITE, State, TokenKind};
use crate::util::{correlation_id, now_ms};

/// Adds `X-HubSpot-Correlation-Id` to every response.
pub async fn correlation(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let id = response.extensions().get::<CorrelationId>().map(|c| c.0.clone()).unwrap_or_else(correlation_id);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-hubspot-correlation-id", v);
    }
    response
}

/// The API gate, run after routing (so it knows the endpoint's template).
pub async fn gate(
    AxState(state): AxState<Arc<State>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let endpoint = matched.as_ref().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let place = state.stats.lock().arrive();
    let response = gate_inner(&state, req, next).await;
    state.stats.lock().record(method.as_str(), &endpoint, response.status().as_u16(), place);
    response
}

async fn gate_inner(state: &Arc<State>, req: Request, next: Next) -> Response {
    let faults = state.runtime.lock().faults.clone();
    let delay = faults.latency_ms + if faults.jitter_ms > 0 { fastrand::u64(0..=faults.jitter_ms) } else { 0 };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let now = Instant::now();
    let (outage, storm) = {
        let rt = state.runtime.lock();
        (rt.outage_until.is_some_and(|t| now < t), rt.storm_until.is_some_and(|t| now < t))
    };
    if outage {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "Service Unavailable")
            .into_response();
    }

    // Authentication.
    let token = bearer(req.headers());
    let info = token.as_deref().and_then(|t| state.auth.lock().tokens.get(t).cloned());
    let Some(info) = info else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
        .header("x-hubspot-auth-failure", "401 Unauthorized")
        .into_response();
    };
    if let Some(exp) = info.expires_ms {
        let now_ms = now_ms();
        if now_ms >= exp {
            let ago = (now_ms - exp) / 1000;
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "EXPIRED_AUTHENTICATION",
                format!("The OAuth token used to make this call expired {ago} second(s) ago."),
            )
            .header("x-hubspot-auth-failure", "401 Unauthorized")
            .into_response();
        }
    }

    // Rate limits.
    let path = req.uri().path().to_string();
    let is_search = path.ends_with("/search");
    let retry_after = faults.retry_after_on_429;
    if storm {
        return rate_limited("TEN_SECONDLY_ROLLING", state.config.portal_id, retry_after.then_some(10)).into_response();
    }
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    {
        let rt = state.runtime.lock().clone();
        let mut limiter = state.limiter.lock();
        if is_search {
            let key = format!("search:{}", state.config.portal_id);
            let draw = limiter.draw(&key, state.config.search_per_second, Duration::from_secs(1), now);
            if !draw.allowed {
                return rate_limited("SECONDLY", state.config.portal_id, retry_after.then_some(1)).into_response();
            }
        } else {
            let (key, max) = match info.kind {
                TokenKind::Private => (format!("app:{}", info.app_id), rt.private_ten_second_max()),
                TokenKind::OAuth => {
                    (format!("oauth:{}:{}", info.app_id, state.config.portal_id), state.config.oauth_ten_second_max)
                }
            };
            let daily = rt.daily();
            if info.kind == TokenKind::Private && limiter.daily_used() >= daily {
                return rate_limited("DAILY", state.config.portal_id, None).into_response();
            }
            let draw = limiter.draw(&key, max, state.config.window, now);
            if !draw.allowed {
                return rate_limited("TEN_SECONDLY_ROLLING", state.config.portal_id, retry_after.then_some(10))
                    .into_response();
            }
            let secondly_max = max.div_ceil(10);
            let secondly = limiter.remaining(&format!("{key}:1s"), secondly_max, Duration::from_secs(1), now);
            let _ = limiter.draw(&format!("{key}:1s"), secondly_max, Duration::from_secs(1), now);
            if info.kind == TokenKind::Private {
                let left = limiter.draw_daily(daily).unwrap_or(0);
                headers.push(("x-hubspot-ratelimit-daily", daily.to_string()));
                headers.push(("x-hubspot-ratelimit-daily-remaining", left.to_string()));
            }
            headers.push(("x-hubspot-ratelimit-interval-milliseconds", state.config.window.as_millis().to_string()));
            headers.push(("x-hubspot-ratelimit-max", max.to_string()));
            headers.push(("x-hubspot-ratelimit-remaining", draw.remaining.to_string()));
            headers.push(("x-hubspot-ratelimit-secondly", secondly_max.to_string()));
            headers.push(("x-hubspot-ratelimit-secondly-remaining", secondly.saturating_sub(1).to_string()));
        }
    }

    // Scopes.
    let required = required_scopes(req.method(), &path);
    let missing: Vec<&str> =
        required.iter().filter(|s| !s.iter().any(|alt| info.scopes.contains(*alt))).map(|s| s[0]).collect();
    if !missing.is_empty() {
        return with_headers(ApiError::missing_scopes(&missing).into_response(), &headers);
    }

    // Faults before the effect.
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        let statuses =
            if faults.error_statuses.is_empty() { vec![500, 502, 503, 504] } else { faults.error_statuses.clone() };
        let status = statuses[fastrand::usize(..statuses.len())];
        return with_headers(fault(status).into_response(), &headers);
    }
    let is_write = req.method() != Method::GET && !is_search && !path.ends_with("/batch/read");
    let response = next.run(req).await;
    // Faults after the effect: the write happened, the client sees a gateway timeout — by
    // chance, or once at the chosen path (the fault clears as it fires).
    if is_write && response.status().is_success() {
        let by_chance = faults.error_after_write_rate > 0.0 && fastrand::f64() < faults.error_after_write_rate;
        let chosen = |p: &String| path.ends_with(p.as_str());
        if by_chance
            || (faults.lose_answer_to.as_ref().is_some_and(chosen)
                && state.runtime.lock().faults.lose_answer_to.take_if(|p| chosen(p)).is_some())
        {
            return with_headers(fault(504).into_response(), &headers);
        }
    }
    with_headers(response, &headers)
}

fn with_headers(mut response: Response, headers: &[(&'static str, String)]) -> Response {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            response.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
    response
}

fn fault(status: u16) -> ApiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (category, message) = match status.as_u16() {
        423 => ("LOCKED", "The resource is locked by a concurrent write; retry after 2 seconds"),
        502 => ("BAD_GATEWAY", "Bad Gateway"),
        503 => ("SERVICE_UNAVAILABLE", "Service Unavailable"),
        504 => ("GATEWAY_TIMEOUT", "Gateway Timeout"),
        _ => ("INTERNAL_ERROR", "internal error"),
    };
    ApiError::new(status, category, message)
}

/// HubSpot's 429 body for a policy (reference §2.3).
pub fn rate_limited(policy: &str, portal_id: u64, retry_after_secs: Option<u64>) -> ApiError {
    let (message, group) = match policy {
        "DAILY" => ("You have reached your daily limit.", format!("publicapi:private-app-api-calls-daily:{portal_id}")),
        "SECONDLY" => {
            ("You have reached your secondly limit.", format!("publicapi:private-app-search-secondly:{portal_id}"))
        }
        _ => (
            "You have reached your ten_secondly_rolling limit.",
            format!("publicapi:private-app-api-calls-ten-secondly:{portal_id}"),
        ),
    };
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITS", message)
        .with("errorType", json!("RATE_LIMIT"))
        .with("policyName", json!(policy))
        .with("groupName", json!(group))
        .with("requestId", json!(correlation_id()));
    e.body.remove("category");
    if let Some(s) = retry_after_secs {
        e = e.header("retry-after", s.to_string());
    }
    e
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// Scopes an API request needs; each entry lists alternatives, the first is the one named.
fn required_scopes(method: &Method, path: &str) -> Vec<&'static [&'static str]> {
    let read = method == Method::GET || path.ends_with("/search") || path.ends_with("/batch/read");
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&'static [&'static str]> = Vec::new();
    if path.starts_with("/crm/v3/properties") || path.starts_with("/crm/properties/") {
        out.push(if read {
            &["crm.schemas.contacts.read", "crm.objects.contacts.read", "crm.schemas.contacts.write"]
        } else {
            &["crm.schemas.contacts.write"]
        });
    } else if path.starts_with("/crm/v3/owners") {
        out.push(&["crm.objects.owners.read"]);
    } else if path.starts_with("/scheduler/") {
        if method == Method::POST {
            out.push(&["crm.objects.contacts.write"]);
        } else {
            out.push(&["scheduler.meetings.meeting-link.read"]);
        }
    } else if path.starts_with("/crm/") || path.starts_with("/engagements/") {
        out.push(if read {
            &["crm.objects.contacts.read", "crm.objects.contacts.write"]
        } else {
            &["crm.objects.contacts.write"]
        });
        let touches_calls =
            path.starts_with("/crm/") && segments.iter().any(|s| matches!(*s, "calls" | "call" | "0-48"));
        if touches_calls {
            out.push(if read { &[CALLS_READ, CALLS_WRITE] } else { &[CALLS_WRITE] });
        }
    }
    out
}
