//! `POST /webhooks/hubspot`: HubSpot's own app webhooks. The signature headers are checked
//! before the body is read, the v3 signature over method, URL, raw body and timestamp before
//! it is parsed; a batch with a malformed event is refused whole (400 naming it). Each change
//! callbridge acts on is stored with its `contact_change` job, keyed so a redelivery is a
//! duplicate, and routed to its portal by `portalId`; only then is the batch acknowledged
//! (HubSpot retries anything but a 2xx for a day). What the jobs do: [`crate::hubspot_webhooks`].

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use callbridge_sources::hubspot::{self, Webhooks};
use callbridge_store::now_ms;
use futures_util::future::join_all;
use serde_json::json;

use super::{ApiError, AppState};
use crate::jobs::{ContactChanged, JobKind};

/// The HubSpot webhook route's settings: the app's secret, and the address HubSpot posts to.
#[derive(Clone, Default)]
pub struct HubSpotWebhooks {
    pub webhooks: Webhooks,
    /// `public_url`: the scheme and host HubSpot signs; else the request's `Host`, either scheme.
    pub public_url: Option<String>,
}

#[utoipa::path(post, path = "/webhooks/hubspot", tag = "webhooks",
    description = "HubSpot's app webhooks (contact merge, deletion, privacy deletion, property change), verified with `X-HubSpot-Signature-v3`.",
    request_body(content = Vec<Object>, description = "HubSpot's batch of events"),
    responses((status = 200, description = "stored", body = Object), (status = 400, description = "a malformed event, named", body = crate::http::error::ErrorBody),
              (status = 401, description = "the signature is missing, stale or wrong", body = crate::http::error::ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    Extension(settings): Extension<Arc<HubSpotWebhooks>>,
    request: Request,
) -> Response {
    accept(&state, &settings, request).await.unwrap_or_else(IntoResponse::into_response)
}

async fn accept(state: &AppState, settings: &HubSpotWebhooks, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let webhooks = &settings.webhooks;
    webhooks.check_headers(&parts.headers, now_ms()).map_err(|u| ApiError::Unauthorized(u.0))?;
    let body = state.intake.read(&parts.headers, body).await?;
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/webhooks/hubspot");
    let uris = match &settings.public_url {
        Some(base) => vec![format!("{base}{path}")],
        None => {
            let host = parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
            vec![format!("https://{host}{path}"), format!("http://{host}{path}")]
        }
    };
    webhooks
        .check_request(&parts.headers, parts.method.as_str(), &uris, &body.bytes, now_ms())
        .map_err(|u| ApiError::Unauthorized(u.0))?;
    let value = callbridge_sources::decode_json(&body.bytes).map_err(|f| ApiError::InvalidPayload(f.errors))?;
    let batch = hubspot::parse(&value).map_err(|f| ApiError::InvalidPayload(f.errors))?;
    let mut unrouted = 0;
    let mut deliveries = Vec::new();
    for delivered in batch.changes {
        let Some(portal) = state.portals.for_hub(delivered.change.hub_id) else {
            unrouted += 1;
            continue;
        };
        let contact = delivered.change.contact_id;
        let delivery = crate::inbox::for_job(
            portal.id().clone(),
            hubspot::NAME,
            delivered.key,
            delivered.event.to_string().into_bytes(),
            JobKind::ContactChanged(ContactChanged(delivered.change)),
            crate::hubspot_webhooks::change_key(contact),
        )
        .map_err(|_| ApiError::Internal)?;
        deliveries.push(delivery);
    }
    if unrouted > 0 {
        tracing::warn!(events = unrouted, "HubSpot sent changes of a portal not served here; acknowledged, not kept");
    }
    // Stored side by side, so they share the store's group commits.
    let stored = join_all(deliveries.into_iter().map(|d| super::webhooks::store(state, hubspot::NAME, d))).await;
    let (mut accepted, mut duplicates) = (0, 0);
    for ingested in stored {
        if ingested?.duplicate {
            duplicates += 1;
        } else {
            accepted += 1;
        }
    }
    Ok(Json(json!({
        "status": "accepted", "accepted": accepted, "duplicates": duplicates,
        "ignored": batch.ignored, "unrouted": unrouted,
    }))
    .into_response())
}
