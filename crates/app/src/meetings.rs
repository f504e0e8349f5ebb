//! Carrying a booking's change to HubSpot (the `update_meeting` job): HubSpot's scheduler
//! cannot reschedule, so callbridge updates the meeting object itself — its times, its outcome
//! (`RESCHEDULED`, `CANCELED`) and its body with the booking's history — and the contact's
//! next-meeting properties (moved, or cleared on a cancel). Everything written comes from the
//! booking as recorded, so a job that runs twice writes the same values.

use callbridge_domain::plan::{KIND_MEETING, meeting_body, meeting_times, next_meeting};
use callbridge_domain::{BookingEvent, Caller, Email, PhoneE164, Source};
use callbridge_hubspot::{ObjectType, UpdateInput};
use callbridge_store::{Booking, BookingStatus, Store};
use serde_json::{Map, Value, json};

use crate::jobs::UpdateMeeting;
use crate::portals::Portal;
use crate::sync::SyncError;

/// Makes the booking's meeting (and its contact's next meeting) match the booking.
pub async fn apply(store: &dyn Store, portal: &Portal, job: &UpdateMeeting) -> Result<(), SyncError> {
    let db = |e: callbridge_store::StoreError| SyncError::Transient(format!("the store failed: {e}"));
    let Some(booking) = store.booking(portal.id(), &job.booking_key).await.map_err(db)? else {
        return Err(SyncError::Permanent("no such booking is recorded".into()));
    };
    let meeting = store
        .activity(portal.id(), Source::Generic.as_str(), &booking.key, KIND_MEETING)
        .await
        .map_err(db)?
        // The job that books it runs first (the caller's jobs run in order); until it has
        // landed, this waits for it.
        .ok_or_else(|| SyncError::Transient("the booking's meeting is not in HubSpot yet".into()))?;
    let body = meeting_body(&as_event(&booking), &booking.history);
    let properties = meeting_times(booking.start_ms, booking.end_ms, booking.status.as_str(), &body);
    let mut updates = vec![(ObjectType::Meetings, meeting.hubspot_id, properties)];
    let contact = match meeting.contact_id {
        Some(id) => Some(id),
        None => store.known_contact(portal.id(), &caller(&booking).keys()).await.map_err(db)?,
    };
    if let Some(contact) = contact {
        updates.push((ObjectType::Contacts, contact, next_meeting_properties(&booking)));
    }
    for (t, id, properties) in updates {
        let outcome =
            portal.hubspot.batch_update(t, &[UpdateInput { id, properties, trace_id: Some(id.to_string()) }]).await?;
        if let Some(e) = outcome.errors.first() {
            // The category only: HubSpot's message may quote the values sent.
            return Err(SyncError::Permanent(format!("HubSpot refused the update of {t:?} {id}: {}", e.category)));
        }
    }
    Ok(())
}

/// The contact's next-meeting properties after this booking's change: moved with it, or
/// cleared when it is cancelled.
pub(crate) fn next_meeting_properties(b: &Booking) -> Map<String, Value> {
    let kind = b.meeting_type.as_deref().unwrap_or("Meeting");
    next_meeting(b.start_ms, kind, b.status.as_str())
        .into_iter()
        .map(|(k, v)| (k, if b.status == BookingStatus::Canceled { json!("") } else { json!(v) }))
        .collect()
}

pub(crate) fn caller(b: &Booking) -> Caller {
    Caller {
        phone: b.phone.as_deref().and_then(|p| PhoneE164::parse(p, Default::default()).ok()),
        email: b.email.as_deref().and_then(|e| Email::parse(e).ok()),
        ..Caller::default()
    }
}

/// The booking as the event its meeting body is rendered from.
pub fn as_event(b: &Booking) -> BookingEvent {
    BookingEvent {
        caller: caller(b),
        meeting_type: b.meeting_type.clone(),
        meeting_at_ms: Some(b.start_ms),
        meeting_at: None,
        lead_source: Some(Source::named(&b.source).label().to_string()),
        lifecycle_stage: None,
        received_at_ms: b.created_at_ms,
        booking_key: b.key.clone(),
        duration_ms: Some(b.end_ms - b.start_ms),
        notes: b.notes.clone(),
    }
}
