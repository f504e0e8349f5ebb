//! Job kinds. Each kind is a type with a stable snake_case name, stored in its row and never
//! renamed, and a typed payload stored beside it as JSON. [`JobKind`] is the one place a row's
//! `kind` and payload become a typed job; the worker dispatches on it.
//!
//! | name | payload | run by |
//! |---|---|---|
//! | `sync_call` | [`SyncCall`]: a call event | the sync engine, batched with others |
//! | `sync_booking` | [`SyncBooking`]: a booking | the sync engine, batched with others |
//! | `update_meeting` | [`UpdateMeeting`]: a booking's key | [`crate::meetings`]: its meeting (and the contact's next meeting) made to match the booking as recorded |
//! | `book_link` | [`BookLink`]: a booking's key | [`crate::scheduler`]: booked through the portal's meeting link, once, its meeting tied to the booking |
//! | `contact_change` | [`ContactChanged`]: a change HubSpot reported about a contact | [`crate::hubspot_webhooks`]: the caller index (and, for a privacy deletion, everything kept about the contact) made to match |
//!
//! Payloads of the sync kinds are the canonical event as JSON (`{"kind":"call",…}`), the shape
//! rows have held since the first release, so queued jobs written by it still decode.

use callbridge_domain::{BookingEvent, CallEvent, ContactChange, Event};
use serde::Serialize;

/// Lands a call (or a later stage of it) in HubSpot.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncCall(pub CallEvent);

/// Lands a booking (the contact, and a meeting when it has a time) in HubSpot.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncBooking(pub BookingEvent);

/// Carries a booking's change (a reschedule, a cancel) to its meeting in HubSpot: the
/// meeting is made to match the booking as recorded then, so running it twice changes nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpdateMeeting {
    pub booking_key: String,
}

impl UpdateMeeting {
    pub const NAME: &'static str = "update_meeting";
}

/// Books a booking through the portal's scheduler meeting link (HubSpot makes the contact and
/// the meeting), then ties that meeting to the booking.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BookLink {
    pub booking_key: String,
}

impl BookLink {
    pub const NAME: &'static str = "book_link";
}

/// Makes callbridge's records match a change HubSpot reported about one of its contacts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ContactChanged(pub ContactChange);

impl ContactChanged {
    pub const NAME: &'static str = "contact_change";
}

impl SyncCall {
    pub const NAME: &'static str = "sync_call";
}

impl SyncBooking {
    pub const NAME: &'static str = "sync_booking";
}

/// A job as the worker runs it: its kind, with its payload decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    SyncCall(SyncCall),
    SyncBooking(SyncBooking),
    UpdateMeeting(UpdateMeeting),
    BookLink(BookLink),
    ContactChanged(ContactChanged),
}

/// Why a stored job cannot be run: retrying cannot fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown job kind {0:?}")]
    UnknownKind(String),
    #[error("the stored payload of a {kind} job cannot be read: {reason}")]
    Payload { kind: &'static str, reason: String },
}

impl JobKind {
    /// The job that lands an event.
    pub fn for_event(event: Event) -> JobKind {
        match event {
            Event::Call(c) => JobKind::SyncCall(SyncCall(c)),
            Event::Booking(b) => JobKind::SyncBooking(SyncBooking(b)),
        }
    }

    /// The stable name stored in the job's row.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::SyncCall(_) => SyncCall::NAME,
            JobKind::SyncBooking(_) => SyncBooking::NAME,
            JobKind::UpdateMeeting(_) => UpdateMeeting::NAME,
            JobKind::BookLink(_) => BookLink::NAME,
            JobKind::ContactChanged(_) => ContactChanged::NAME,
        }
    }

    /// The payload as stored.
    pub fn payload(&self) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum Stored<'a> {
            Call(&'a CallEvent),
            Booking(&'a BookingEvent),
        }
        match self {
            JobKind::SyncCall(SyncCall(c)) => serde_json::to_string(&Stored::Call(c)),
            JobKind::SyncBooking(SyncBooking(b)) => serde_json::to_string(&Stored::Booking(b)),
            JobKind::UpdateMeeting(u) => serde_json::to_string(u),
            JobKind::BookLink(b) => serde_json::to_string(b),
            JobKind::ContactChanged(c) => serde_json::to_string(c),
        }
    }

    /// A row's kind and payload as a typed job.
    pub fn decode(name: &str, payload: &str) -> Result<JobKind, DecodeError> {
        if name == UpdateMeeting::NAME {
            let bad = |e: serde_json::Error| DecodeError::Payload { kind: UpdateMeeting::NAME, reason: e.to_string() };
            return serde_json::from_str(payload).map(JobKind::UpdateMeeting).map_err(bad);
        }
        if name == ContactChanged::NAME {
            let bad = |e: serde_json::Error| DecodeError::Payload { kind: ContactChanged::NAME, reason: e.to_string() };
            return serde_json::from_str(payload).map(JobKind::ContactChanged).map_err(bad);
        }
        if name == BookLink::NAME {
            let bad = |e: serde_json::Error| DecodeError::Payload { kind: BookLink::NAME, reason: e.to_string() };
            return serde_json::from_str(payload).map(JobKind::BookLink).map_err(bad);
        }
        let kind = match name {
            SyncCall::NAME => SyncCall::NAME,
            SyncBooking::NAME => SyncBooking::NAME,
            other => return Err(DecodeError::UnknownKind(other.to_string())),
        };
        let bad = |reason: String| DecodeError::Payload { kind, reason };
        match (kind, serde_json::from_str::<Event>(payload).map_err(|e| bad(e.to_string()))?) {
            (SyncCall::NAME, Event::Call(c)) => Ok(JobKind::SyncCall(SyncCall(c))),
            (SyncBooking::NAME, Event::Booking(b)) => Ok(JobKind::SyncBooking(SyncBooking(b))),
            _ => Err(bad("it holds another kind's event".into())),
        }
    }

    /// The event a sync job lands (`None` for a job that is not a sync).
    pub fn event(&self) -> Option<Event> {
        match self {
            JobKind::SyncCall(SyncCall(c)) => Some(Event::Call(c.clone())),
            JobKind::SyncBooking(SyncBooking(b)) => Some(Event::Booking(b.clone())),
            JobKind::UpdateMeeting(_) | JobKind::BookLink(_) | JobKind::ContactChanged(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_domain::{Caller, Email};

    fn booking() -> BookingEvent {
        BookingEvent {
            caller: Caller { email: Some(Email::parse("a@example.com").unwrap()), ..Caller::default() },
            meeting_type: None,
            meeting_at_ms: None,
            meeting_at: None,
            lead_source: None,
            lifecycle_stage: None,
            received_at_ms: 1,
            booking_key: "k".into(),
            duration_ms: None,
            notes: None,
        }
    }

    #[test]
    fn a_job_round_trips_through_its_row() {
        let job = JobKind::SyncBooking(SyncBooking(booking()));
        let payload = job.payload().unwrap();
        assert_eq!(JobKind::decode(job.name(), &payload).unwrap(), job);
        // The shape the first release stored: the tagged event.
        assert_eq!(payload, serde_json::to_string(&Event::Booking(booking())).unwrap());
    }

    #[test]
    fn an_unknown_kind_or_a_mismatched_payload_is_refused() {
        let payload = JobKind::SyncBooking(SyncBooking(booking())).payload().unwrap();
        assert_eq!(JobKind::decode("sync_fax", &payload), Err(DecodeError::UnknownKind("sync_fax".into())));
        assert!(matches!(JobKind::decode(SyncCall::NAME, &payload), Err(DecodeError::Payload { .. })));
        assert!(matches!(JobKind::decode(SyncBooking::NAME, "{"), Err(DecodeError::Payload { .. })));
    }
}
