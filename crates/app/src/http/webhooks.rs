//! Webhooks in, one handler for every platform ([`webhook`]). Its [`Verified`] extractor
//! checks the platform's header credential before the body is read, reads the body within
//! the bounds of [`super::intake`], and checks its signature on the raw bytes before anything
//! is parsed (the body's share of the unverified budget is given back then); the
//! handler parses, stores the event with its job in one commit, and only then answers — 200
//! `accepted`, or `duplicate` for a delivery seen before (which changes nothing).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use callbridge_domain::{Event, IdempotencyKey, PortalId};
use callbridge_sources::{Guard, Parsed, Platform};
use callbridge_store::{Ingested, NewDelivery, now_ms};
use serde_json::json;

use super::{ApiError, AppState};

/// A request whose credentials checked out, for the platform (or guard) `P` its route carries
/// (an `Extension`): its headers and raw body.
pub struct Verified<P> {
    pub platform: Arc<P>,
    /// The portal its route names (an `Extension`), if any ([`AppState::portal_for`]).
    pub portal: Option<PortalId>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<P: Guard> FromRequest<AppState> for Verified<P> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let checked = async {
            let platform = parts.extensions.get::<Arc<P>>().cloned().ok_or(ApiError::Internal)?;
            platform.check_headers(&parts.headers, now_ms()).map_err(|u| ApiError::Unauthorized(u.0))?;
            let body = state.intake.read(&parts.headers, body).await?;
            platform.check_body(&parts.headers, &body.bytes, now_ms()).map_err(|u| ApiError::Unauthorized(u.0))?;
            let portal = parts.extensions.get::<PortalId>().cloned();
            Ok(Verified { platform, portal, headers: parts.headers, body: body.bytes })
        };
        checked.await
    }
}

/// `POST /webhooks/{platform}`.
#[utoipa::path(post, path = "/webhooks/{platform}", tag = "webhooks",
    description = "A platform's webhook. A portal of several is named by path (`/webhooks/{platform}/{portal}`) or by its agent's id. Credentials: Vapi `X-Vapi-Secret` (or its HMAC), Retell `x-retell-signature`, ElevenLabs `ElevenLabs-Signature`, generic `Authorization: Bearer`. Acknowledged only once stored; a duplicate changes nothing. Unknown fields are accepted.",
    params(("platform" = String, Path, description = "vapi, retell, elevenlabs, generic, or generic/NAME")),
    request_body(content = Object, description = "the platform's payload, as it sends it"),
    responses((status = 200, description = "stored", body = Acknowledged), (status = 400, description = "a field is missing or malformed: each named", body = crate::http::error::ErrorBody),
              (status = 401, description = "a credential is missing or wrong: the check named", body = crate::http::error::ErrorBody),
              (status = 408, description = "the body did not arrive in time", body = crate::http::error::ErrorBody), (status = 413, description = "over the body limit", body = crate::http::error::ErrorBody),
              (status = 503, description = "overloaded or storage unavailable: retry", body = crate::http::error::ErrorBody)))]
pub async fn webhook<P: Platform>(State(state): State<AppState>, delivery: Verified<P>) -> Response {
    receive(&state, delivery).await.unwrap_or_else(IntoResponse::into_response)
}

async fn receive<P: Platform>(state: &AppState, delivery: Verified<P>) -> Result<Response, ApiError> {
    let Verified { platform, portal, headers, body } = delivery;
    let value = platform.decode(&headers, &body).map_err(|f| ApiError::InvalidPayload(f.errors))?;
    let portal = state.portal_for(portal.as_ref(), Some(&value), P::AGENT_PATHS)?;
    match platform.parse(&headers, &value, state.region).map_err(|f| ApiError::InvalidPayload(f.errors))? {
        Parsed::Event(event, key) => Ok(acknowledge(accept(state, &portal, P::NAME, key, &body, *event).await?, None)),
        Parsed::Record { key, kept } => {
            let kept = kept.map(|v| Bytes::from(v.to_string())).unwrap_or(body);
            Ok(acknowledge(record(state, &portal, P::NAME, key, &kept).await?, None))
        }
        // Nothing to attach it to in HubSpot: kept and listed (`/events?status=recorded`), so
        // no call is lost silently; a retry by the sender would not help.
        Parsed::Unattached(key) => {
            tracing::warn!(
                event.source = P::NAME,
                "a call with no usable caller phone or email was recorded, not synced"
            );
            let ingested = record(state, &portal, P::NAME, key, &body).await?;
            Ok(acknowledge(ingested, Some("no caller phone or email to attach the call to: kept, not synced")))
        }
        Parsed::Ignored(kind) => {
            metrics::counter!("callbridge_webhooks_total", "outcome" => "ignored").increment(1);
            Ok(Json(json!({"status": "ignored", "type": kind})).into_response())
        }
    }
}

/// Stores the delivery and the job that lands its event in one commit, then answers.
async fn accept(
    state: &AppState,
    portal: &PortalId,
    source: &str,
    key: IdempotencyKey,
    body: &Bytes,
    event: Event,
) -> Result<Ingested, ApiError> {
    let booking = match &event {
        Event::Booking(b) => crate::tools::booking_of(portal, source, b),
        Event::Call(_) => None,
    };
    let delivery =
        crate::inbox::with_job(portal.clone(), source, key, body.to_vec(), event, Some(state.live_window_ms)).map_err(
            |e| {
                tracing::error!(error.kind = "serialise", event.source = source, "an event could not be stored: {e}");
                ApiError::Internal
            },
        )?;
    let ingested = store(state, source, delivery).await?;
    // A booked time is kept where the tools see it (availability, reschedule, cancel). On a
    // redelivery too: a failure here is mended by the sender's retry.
    if let Some(booking) = booking {
        state.store.record_booking(&booking).await.map_err(|e| {
            tracing::error!(error = %e, "recording a booking failed");
            ApiError::Unavailable
        })?;
    }
    Ok(ingested)
}

/// Keeps a delivery that needs no work (recorded, not queued).
async fn record(
    state: &AppState,
    portal: &PortalId,
    source: &str,
    key: IdempotencyKey,
    body: &Bytes,
) -> Result<Ingested, ApiError> {
    store(state, source, crate::inbox::recorded(portal.clone(), source, key, body.to_vec())).await
}

pub(super) async fn store(state: &AppState, source: &str, delivery: NewDelivery) -> Result<Ingested, ApiError> {
    let queued = delivery.job_kind.is_some();
    let started = std::time::Instant::now();
    let ingested = state.store.ingest(delivery).await.map_err(|e| {
        tracing::error!(error = %e, "storing a delivery failed");
        ApiError::Unavailable
    })?;
    metrics::histogram!("callbridge_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    if ingested.duplicate {
        metrics::counter!("callbridge_webhooks_total", "outcome" => "duplicate").increment(1);
        tracing::info!(event.id = ingested.inbox_id, event.source = source, "duplicate delivery acknowledged");
    } else {
        metrics::counter!("callbridge_webhooks_total", "outcome" => "accepted").increment(1);
        if queued {
            state.wake.notify_one();
        }
    }
    Ok(ingested)
}

/// The 200 for a stored delivery: `accepted`, or `duplicate` when it was seen before;
/// `recorded`, with the reason, when it is kept without work to do.
fn acknowledge(ingested: Ingested, recorded: Option<&'static str>) -> Response {
    let status = match (ingested.duplicate, recorded) {
        (true, _) => "duplicate",
        (false, Some(_)) => "recorded",
        (false, None) => "accepted",
    };
    Json(Acknowledged { status, event_id: ingested.inbox_id, reason: recorded }).into_response()
}

/// A delivery's acknowledgement, sent once it is stored.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Acknowledged {
    /// `accepted` (stored, its job queued), `duplicate` (stored before: nothing changes) or
    /// `recorded` (stored, nothing to sync: `reason` says why).
    pub status: &'static str,
    /// Its id at `/events/{id}`.
    pub event_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}
