//! The HTTP surface: webhooks (acknowledged only after the delivery is committed), and the
//! admin API behind its token. Handlers are thin: check the credential, parse into a domain
//! event, store, answer. Errors show no internals: a 5xx says only what the sender can do.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use callbridge_domain::{DefaultRegion, Event, IdempotencyKey};
use callbridge_store::{NewDelivery, Store, StoreError, now_ms};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::jobs::JobKind;
use crate::sources::signature::{SignatureError, verify_elevenlabs, verify_retell, verify_vapi_hmac};
use crate::sources::{self, FieldError};
use callbridge_domain::PortalId;

/// Largest webhook body accepted.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub ignored: AtomicU64,
    pub rejected_auth: AtomicU64,
    pub rejected_payload: AtomicU64,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub portals: crate::portals::Portals,
    pub wake: Arc<Notify>,
    pub region: DefaultRegion,
    pub admin_token: Option<SecretString>,
    pub vapi_secret: Option<SecretString>,
    /// Vapi signs with its HMAC credential instead of sending the secret.
    pub vapi_hmac: bool,
    pub retell_api_key: Option<SecretString>,
    pub elevenlabs_secret: Option<SecretString>,
    pub generic_token: Option<SecretString>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/events", get(events))
        .route("/events/{id}/replay", post(replay))
        .route("/probe", get(probe))
        .route("/setup-properties", post(setup_properties))
        .route("/metrics", get(metrics))
        .route_layer(from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/health", get(health))
        .route("/webhooks/generic", post(generic_webhook))
        .route("/webhooks/vapi", post(vapi_webhook))
        .route("/webhooks/retell", post(retell_webhook))
        .route("/webhooks/elevenlabs", post(elevenlabs_webhook))
        .merge(admin)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The credential a request carries: a Bearer token or one of the named headers.
fn presented(headers: &HeaderMap, header_names: &[&str]) -> Option<String> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    bearer.or_else(|| header_names.iter().find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(String::from)))
}

/// Checks a shared secret in constant time; the 401 says why without echoing anything.
#[expect(clippy::result_large_err, reason = "the rejection is the response itself, built once per rejected request")]
fn authorise(
    state: &AppState,
    expected: &Option<SecretString>,
    headers: &HeaderMap,
    header_names: &[&str],
) -> Result<(), Response> {
    let reject = |reason: &str| unauthorized(state, reason);
    let Some(expected) = expected else { return Err(reject("this endpoint has no secret configured")) };
    let Some(given) = presented(headers, header_names) else { return Err(reject("missing credential")) };
    if bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
        Ok(())
    } else {
        Err(reject("wrong credential"))
    }
}

async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match authorise(&state, &state.admin_token, req.headers(), &[]) {
        Ok(()) => next.run(req).await,
        Err(r) => r,
    }
}

fn unauthorized(state: &AppState, reason: &str) -> Response {
    state.metrics.rejected_auth.fetch_add(1, Ordering::Relaxed);
    (StatusCode::UNAUTHORIZED, Json(json!({"error": "unauthorized", "reason": reason}))).into_response()
}

/// Checks a platform's signature on the raw body, before anything is parsed.
#[expect(clippy::result_large_err, reason = "the rejection is the response itself, built once per rejected request")]
fn check_signature(
    state: &AppState,
    secret: &Option<SecretString>,
    check: impl FnOnce(&str) -> Result<(), SignatureError>,
) -> Result<(), Response> {
    let Some(secret) = secret else { return Err(unauthorized(state, "this endpoint has no secret configured")) };
    check(secret.expose_secret()).map_err(|e| unauthorized(state, e.reason()))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn invalid(state: &AppState, errors: Vec<FieldError>) -> Response {
    state.metrics.rejected_payload.fetch_add(1, Ordering::Relaxed);
    (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_payload", "fields": errors}))).into_response()
}

#[expect(clippy::result_large_err, reason = "the rejection is the response itself, built once per rejected request")]
fn parse_json(state: &AppState, body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        invalid(state, vec![FieldError { field: "body".into(), problem: format!("is not valid JSON ({e})") }])
    })
}

/// Stores the delivery and the job that lands its event in one commit, then answers.
async fn accept(state: &AppState, source: &str, key: IdempotencyKey, body: &Bytes, event: Event) -> Response {
    let caller_key = event.caller().ordering_key().unwrap_or_else(|| key.to_string());
    let job = JobKind::for_event(event);
    let payload = match job.payload() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error.kind = "serialise", event.source = source, "an event could not be stored: {e}");
            return internal_error();
        }
    };
    let delivery = NewDelivery {
        portal: PortalId::default(),
        source: source.to_string(),
        idempotency_key: key,
        raw_body: body.to_vec(),
        event_json: payload,
        job_kind: Some(job.name()),
        caller_key,
        received_at_ms: now_ms(),
    };
    store_delivery(state, source, delivery).await
}

/// Keeps a delivery that needs no work (recorded, not queued).
async fn record(state: &AppState, source: &str, key: IdempotencyKey, body: &Bytes) -> Response {
    let delivery = NewDelivery {
        portal: PortalId::default(),
        source: source.to_string(),
        caller_key: key.to_string(),
        idempotency_key: key,
        raw_body: body.to_vec(),
        event_json: "null".into(),
        job_kind: None,
        received_at_ms: now_ms(),
    };
    store_delivery(state, source, delivery).await
}

fn internal_error() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "internal", "retry": true}))).into_response()
}

async fn store_delivery(state: &AppState, source: &str, delivery: NewDelivery) -> Response {
    let queued = delivery.job_kind.is_some();
    match state.store.ingest(delivery).await {
        Ok(ingested) => {
            if ingested.duplicate {
                state.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::info!(event.id = ingested.inbox_id, event.source = source, "duplicate delivery acknowledged");
            } else {
                state.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                if queued {
                    state.wake.notify_one();
                }
            }
            let status = if ingested.duplicate { "duplicate" } else { "accepted" };
            (StatusCode::OK, Json(json!({"status": status, "event_id": ingested.inbox_id}))).into_response()
        }
        Err(e) => storage_unavailable(e),
    }
}

fn storage_unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "storing a delivery failed");
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "storage_unavailable", "retry": true}))).into_response()
}

async fn generic_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorise(&state, &state.generic_token, &headers, &[]) {
        return r;
    }
    let value = match parse_json(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let key_header = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    match sources::generic::parse(&value, state.region, key_header) {
        Ok((booking, key)) => accept(&state, "generic", key, &body, Event::Booking(booking)).await,
        Err(f) => invalid(&state, f.errors),
    }
}

async fn vapi_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let checked = if state.vapi_hmac {
        check_signature(&state, &state.vapi_secret, |key| {
            verify_vapi_hmac(header(&headers, "x-signature"), header(&headers, "x-timestamp"), &body, key, now_ms())
        })
    } else {
        authorise(&state, &state.vapi_secret, &headers, &["x-vapi-secret"])
    };
    if let Err(r) = checked {
        return r;
    }
    let value = match parse_json(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match sources::vapi::parse(&value, state.region) {
        Ok(sources::vapi::Message::EndOfCall(event, key)) => {
            accept(&state, "vapi", key, &body, Event::Call(*event)).await
        }
        Ok(sources::vapi::Message::Ignored(kind)) => ignored(&state, &kind),
        Err(f) => invalid(&state, f.errors),
    }
}

async fn retell_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let checked = check_signature(&state, &state.retell_api_key, |key| {
        verify_retell(header(&headers, "x-retell-signature"), &body, key, now_ms())
    });
    if let Err(r) = checked {
        return r;
    }
    let value = match parse_json(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match sources::retell::parse(&value, state.region) {
        Ok(sources::retell::Message::Call(event, key)) => {
            accept(&state, "retell", key, &body, Event::Call(*event)).await
        }
        Ok(sources::retell::Message::Ignored(kind)) => ignored(&state, &kind),
        Err(f) => invalid(&state, f.errors),
    }
}

async fn elevenlabs_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let checked = check_signature(&state, &state.elevenlabs_secret, |secret| {
        verify_elevenlabs(header(&headers, "elevenlabs-signature"), &body, secret, now_ms() / 1000)
    });
    if let Err(r) = checked {
        return r;
    }
    let value = match parse_json(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match sources::elevenlabs::parse(&value, state.region) {
        Ok(sources::elevenlabs::Message::Call(event, key)) => {
            accept(&state, "elevenlabs", key, &body, Event::Call(*event)).await
        }
        Ok(sources::elevenlabs::Message::Record { key, summary }) => {
            let kept = summary.map(|s| Bytes::from(s.to_string())).unwrap_or_else(|| body.clone());
            record(&state, "elevenlabs", key, &kept).await
        }
        Ok(sources::elevenlabs::Message::Ignored(kind)) => ignored(&state, &kind),
        Err(f) => invalid(&state, f.errors),
    }
}

fn ignored(state: &AppState, kind: &str) -> Response {
    state.metrics.ignored.fetch_add(1, Ordering::Relaxed);
    (StatusCode::OK, Json(json!({"status": "ignored", "type": kind}))).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    match state.store.counts().await {
        Ok(c) => Json(json!({"status": "ok", "jobs": c})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check cannot read the store");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "degraded", "store": "unavailable"})))
                .into_response()
        }
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn events(State(state): State<AppState>, Query(q): Query<EventsQuery>) -> Response {
    if let Some(s) = &q.status
        && !matches!(s.as_str(), "queued" | "running" | "done" | "dead" | "recorded")
    {
        let e =
            FieldError { field: "status".into(), problem: "must be queued, running, done, dead or recorded".into() };
        return invalid(&state, vec![e]);
    }
    match state.store.events(q.status.as_deref(), q.limit.unwrap_or(100).clamp(1, 1000)).await {
        Ok(rows) => Json(json!({"events": rows})).into_response(),
        Err(e) => storage_unavailable(e),
    }
}

async fn replay(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    match state.store.replay(id).await {
        Ok(true) => {
            state.wake.notify_one();
            Json(json!({"status": "queued", "event_id": id})).into_response()
        }
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "reason": "no finished or dead event with this id"})),
        )
            .into_response(),
        Err(e) => storage_unavailable(e),
    }
}

/// The HubSpot client of the portal admin requests name (today: the configuration's only one).
#[expect(clippy::result_large_err, reason = "the rejection is the response itself")]
fn admin_portal(state: &AppState) -> Result<&Arc<crate::portals::Portal>, Response> {
    state.portals.default_portal().ok_or_else(|| {
        (StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "reason": "no portal is configured"})))
            .into_response()
    })
}

async fn probe(State(state): State<AppState>) -> Response {
    let portal = match admin_portal(&state) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match portal.hubspot.probe().await {
        Ok(c) => Json(json!({"capabilities": c})).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, Json(json!({"error": "hubspot", "reason": e.to_string()}))).into_response(),
    }
}

async fn setup_properties(State(state): State<AppState>) -> Response {
    let portal = match admin_portal(&state) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match crate::properties::setup(portal.hubspot.as_ref()).await {
        Ok(report) => Json(json!(report)).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, Json(json!({"error": "hubspot", "reason": e.to_string()}))).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let jobs = state.store.counts().await.unwrap_or_default();
    let client = state.portals.iter().map(|p| p.hubspot.stats()).fold(
        Default::default(),
        |a: callbridge_hubspot::ClientStats, s| callbridge_hubspot::ClientStats {
            requests: a.requests + s.requests,
            retries: a.retries + s.retries,
            rate_limited: a.rate_limited + s.rate_limited,
            refreshes: a.refreshes + s.refreshes,
        },
    );
    let mut lines: Vec<(String, u64)> = vec![
        ("callbridge_webhooks_accepted_total".into(), m.accepted.load(Ordering::Relaxed)),
        ("callbridge_webhooks_duplicate_total".into(), m.duplicates.load(Ordering::Relaxed)),
        ("callbridge_webhooks_ignored_total".into(), m.ignored.load(Ordering::Relaxed)),
        ("callbridge_webhooks_unauthorized_total".into(), m.rejected_auth.load(Ordering::Relaxed)),
        ("callbridge_webhooks_invalid_total".into(), m.rejected_payload.load(Ordering::Relaxed)),
        ("callbridge_hubspot_requests_total".into(), client.requests),
        ("callbridge_hubspot_retries_total".into(), client.retries),
        ("callbridge_hubspot_rate_limited_total".into(), client.rate_limited),
        ("callbridge_hubspot_token_refreshes_total".into(), client.refreshes),
    ];
    let by_status: HashMap<&str, i64> =
        [("queued", jobs.queued), ("running", jobs.running), ("done", jobs.done), ("dead", jobs.dead)].into();
    for (status, n) in by_status {
        lines.push((format!("callbridge_jobs{{status=\"{status}\"}}"), n as u64));
    }
    let body: String = lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}
