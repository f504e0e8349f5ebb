//! What goes into the inbox, built in one place: a delivery with the job that lands its event
//! (stored in one commit), or a delivery kept without work (recorded). Webhooks and pull
//! sources both store through it.

use callbridge_domain::{CallStage, Event, IdempotencyKey, PortalId};
use callbridge_store::{Coalesce, NewDelivery, now_ms};

use crate::jobs::JobKind;

/// The delivery of `event` with its job; the caller's key orders it behind that caller's
/// earlier events.
///
/// A call at its first stage (a platform saying it started, is ringing, is in progress, the
/// caller interrupted, the conversation moved on) is a **live update**: with a
/// `live_window_ms`, the updates of one call coalesce in the queue, so the call costs one
/// HubSpot write per window carrying its latest state (see [`callbridge_store::Coalesce`]).
pub fn with_job(
    portal: PortalId,
    source: &str,
    key: IdempotencyKey,
    raw_body: Vec<u8>,
    event: Event,
    live_window_ms: Option<i64>,
) -> Result<NewDelivery, serde_json::Error> {
    let caller_key = event.caller().ordering_key().unwrap_or_else(|| key.to_string());
    let coalesce = match (&event, live_window_ms) {
        (Event::Call(c), Some(window_ms)) if c.stage == CallStage::Started => {
            Some(Coalesce { key: format!("call:{}:{}", c.source.as_str(), c.call_id), window_ms })
        }
        _ => None,
    };
    let mut delivery = for_job(portal, source, key, raw_body, JobKind::for_event(event), caller_key)?;
    delivery.coalesce = coalesce;
    Ok(delivery)
}

/// The delivery of any job, ordered behind `caller_key`'s earlier jobs.
pub fn for_job(
    portal: PortalId,
    source: &str,
    key: IdempotencyKey,
    raw_body: Vec<u8>,
    job: JobKind,
    caller_key: String,
) -> Result<NewDelivery, serde_json::Error> {
    Ok(NewDelivery {
        portal,
        source: source.to_string(),
        idempotency_key: key,
        raw_body,
        event_json: job.payload()?,
        job_kind: Some(job.name()),
        caller_key,
        received_at_ms: now_ms(),
        coalesce: None,
    })
}

/// A delivery kept without work (listed as recorded).
pub fn recorded(portal: PortalId, source: &str, key: IdempotencyKey, raw_body: Vec<u8>) -> NewDelivery {
    NewDelivery {
        portal,
        source: source.to_string(),
        caller_key: key.to_string(),
        idempotency_key: key,
        raw_body,
        event_json: "null".into(),
        job_kind: None,
        received_at_ms: now_ms(),
        coalesce: None,
    }
}
