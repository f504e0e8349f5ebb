//! Booking through a HubSpot scheduler meeting link (`scheduler_link`): the link's open times
//! (its availability page, cached briefly so asking again costs no request) and the
//! `book_link` job, which books through the link's book API — HubSpot then matches or creates
//! the contact by email and creates the meeting — and ties that meeting to callbridge's booking
//! so a reschedule or a cancel ([`crate::meetings`]) updates it like any other.
//!
//! The book API is never sent twice for one booking: once HubSpot has answered, the contact it
//! booked for is recorded (`link_booking`) before anything else, and a job that runs again
//! first looks on that contact (or the contact the booking's email names) for a meeting at the
//! booking's start.

use std::collections::HashMap;
use std::time::Duration;

use callbridge_domain::plan::{ActivityKey, KIND_MEETING, PROP_MEETING_EVENT_ID, meeting_body};
use callbridge_domain::{Event, time};
use callbridge_hubspot::{HubSpotApi, HubSpotError, LinkAvailability, LinkBooking, ObjectType, UpdateInput};
use callbridge_store::{Activity, ActivityRecord, Booking, Settlement, Store};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;

use crate::portals::Portal;
use crate::sync::SyncError;

/// How long a page of a link's availability is reused.
const CACHE_FOR: Duration = Duration::from_secs(30);

/// Pages (months) of availability read at most for one question.
const MONTHS_AT_MOST: u32 = 3;

/// What a booked-through-the-link booking is recorded as until its meeting is found: the
/// contact HubSpot booked it for.
pub const KIND_LINK_BOOKING: &str = "link_booking";

/// A portal's meeting link, with its availability cache.
pub struct MeetingLink {
    pub slug: String,
    /// The zone the link is asked in and bookings are made in (IANA).
    pub time_zone: String,
    cache: Mutex<HashMap<u32, (Instant, LinkAvailability)>>,
}

impl MeetingLink {
    pub fn new(slug: String, time_zone: String) -> MeetingLink {
        MeetingLink { slug, time_zone, cache: Mutex::new(HashMap::new()) }
    }

    /// The link's open (start, end) times of `duration` between `from` and `to`, and the
    /// lengths it offers. `fresh` reads past the cache (before a booking is accepted).
    pub async fn open_times(
        &self,
        hubspot: &dyn HubSpotApi,
        duration: i64,
        (from, to): (i64, i64),
        fresh: bool,
    ) -> Result<(Vec<(i64, i64)>, Vec<i64>), HubSpotError> {
        let now = time::now_ms();
        let months = (((to - now).max(0) / (30 * 86_400_000)) as u32 + 1).min(MONTHS_AT_MOST);
        let mut open = Vec::new();
        let mut offered = Vec::new();
        for month in 0..months {
            let page = self.page(hubspot, month, fresh).await?;
            offered.extend(page.by_duration.keys().copied());
            if let Some(slots) = page.by_duration.get(&duration) {
                open.extend(slots.iter().copied().filter(|(s, e)| *s >= from && *e <= to));
            }
            if !page.has_more {
                break;
            }
        }
        offered.sort_unstable();
        offered.dedup();
        open.sort_unstable();
        open.dedup();
        Ok((open, offered))
    }

    async fn page(&self, hubspot: &dyn HubSpotApi, month: u32, fresh: bool) -> Result<LinkAvailability, HubSpotError> {
        if !fresh
            && let Some((at, page)) = self.cache.lock().get(&month)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(page.clone());
        }
        let page = hubspot.link_availability(&self.slug, &self.time_zone, month).await?;
        self.cache.lock().insert(month, (Instant::now(), page.clone()));
        Ok(page)
    }

    /// Forgets what was read, after a booking changed the link's calendar.
    pub fn forget(&self) {
        self.cache.lock().clear();
    }
}

/// The `book_link` job: books the booking through the portal's meeting link, once, and ties
/// the meeting HubSpot made to the booking.
pub async fn book(store: &dyn Store, portal: &Portal, booking_key: &str, retrying: bool) -> Result<(), SyncError> {
    let Some(link) = portal.scheduler.as_ref() else {
        return Err(SyncError::Permanent("the portal has no scheduler_link to book through".into()));
    };
    let Some(booking) = store.booking(portal.id(), booking_key).await? else {
        return Err(SyncError::Permanent("no such booking is recorded".into()));
    };
    let key = ActivityKey::of(&Event::Booking(crate::meetings::as_event(&booking)));
    if store.activity(portal.id(), key.source, &key.key, KIND_MEETING).await?.is_some() {
        return Ok(());
    }
    let Some(email) = booking.email.clone() else {
        return Err(SyncError::Permanent("a booking through a meeting link needs the attendee's email".into()));
    };
    let hubspot = portal.hubspot.as_ref();
    // Booked before (recorded), or perhaps booked by an attempt whose answer was lost.
    let booked_for = store.activity(portal.id(), key.source, &key.key, KIND_LINK_BOOKING).await?.map(|a| a.hubspot_id);
    let contact = match booked_for {
        Some(c) => Some(c),
        None if retrying => contact_by_email(hubspot, &email).await?,
        None => None,
    };
    if let Some(c) = contact
        && let Some(meeting) = meeting_at(hubspot, c, booking.start_ms, booking_key).await?
    {
        return tie(store, portal, &booking, &key, c, meeting).await;
    }
    if booked_for.is_some() {
        return Err(SyncError::Transient("booked; HubSpot does not show the meeting on the contact yet".into()));
    }
    let name = booking.name.clone().unwrap_or_default();
    let (first, last) =
        name.split_once(' ').map(|(f, l)| (f.to_string(), l.to_string())).unwrap_or((name, String::new()));
    let request = LinkBooking {
        slug: link.slug.clone(),
        first_name: if first.is_empty() { "Caller".into() } else { first },
        last_name: last,
        email: email.clone(),
        start_ms: booking.start_ms,
        duration_ms: booking.end_ms - booking.start_ms,
        time_zone: link.time_zone.clone(),
    };
    let booked = hubspot.book_link(&request).await?;
    link.forget();
    let contact = match booked.contact_id {
        Some(c) => c,
        None => contact_by_email(hubspot, &email)
            .await?
            .ok_or_else(|| SyncError::Transient("booked; HubSpot does not show the contact yet".into()))?,
    };
    // Recorded at once: whatever happens next, this booking is never sent to the link again.
    let booked_for = record(&key, KIND_LINK_BOOKING, contact, Some(contact), booking.start_ms);
    store
        .settle(&Settlement { portal: portal.id().clone(), activities: vec![booked_for], ..Settlement::default() })
        .await?;
    match meeting_at(hubspot, contact, booking.start_ms, booking_key).await? {
        Some(meeting) => tie(store, portal, &booking, &key, contact, meeting).await,
        None => Err(SyncError::Transient("booked; HubSpot does not show the meeting on the contact yet".into())),
    }
}

fn record(key: &ActivityKey, kind: &'static str, id: u64, contact: Option<u64>, at: i64) -> ActivityRecord {
    ActivityRecord {
        source: key.source.to_string(),
        key: key.key.clone(),
        kind,
        activity: Activity { hubspot_id: id, contact_id: contact, via: "v3".into(), stage: 0 },
        occurred_at_ms: at,
    }
}

async fn contact_by_email(hubspot: &dyn HubSpotApi, email: &str) -> Result<Option<u64>, SyncError> {
    let found = hubspot.batch_read(ObjectType::Contacts, &[email.to_string()], Some("email"), &[]).await?;
    Ok(found.results.first().and_then(|o| o.id_u64()))
}

/// The meeting on `contact` that starts at `start` and is not another booking's.
async fn meeting_at(
    hubspot: &dyn HubSpotApi,
    contact: u64,
    start: i64,
    booking_key: &str,
) -> Result<Option<u64>, SyncError> {
    let found = hubspot.find_by_identities(ObjectType::Meetings, "hs_meeting_start_time", &[contact]).await?;
    Ok(found.into_iter().find_map(|(value, o)| {
        let at = time::parse_iso_with_offset(&value).or_else(|| value.parse().ok())?;
        let theirs = o.prop(PROP_MEETING_EVENT_ID).is_some_and(|k| k != booking_key);
        (at == start && !theirs).then(|| o.id_u64()).flatten()
    }))
}

/// Stamps the meeting with the booking (its key, its body) and the contact with its next
/// meeting, then records the meeting as the booking's.
async fn tie(
    store: &dyn Store,
    portal: &Portal,
    booking: &Booking,
    key: &ActivityKey,
    contact: u64,
    meeting: u64,
) -> Result<(), SyncError> {
    let body = meeting_body(&crate::meetings::as_event(booking), &booking.history);
    let mut meeting_props = serde_json::Map::new();
    meeting_props.insert(PROP_MEETING_EVENT_ID.into(), json!(booking.key));
    meeting_props.insert("hs_meeting_body".into(), json!(body));
    let updates = [
        (ObjectType::Meetings, meeting, meeting_props),
        (ObjectType::Contacts, contact, crate::meetings::next_meeting_properties(booking)),
    ];
    for (t, id, properties) in updates {
        let outcome =
            portal.hubspot.batch_update(t, &[UpdateInput { id, properties, trace_id: Some(id.to_string()) }]).await?;
        if let Some(e) = outcome.errors.first() {
            return Err(SyncError::Permanent(format!("HubSpot refused the update of {t:?} {id}: {}", e.category)));
        }
    }
    let caller = crate::meetings::caller(booking);
    store.remember_contact(portal.id(), &caller.keys(), contact).await?;
    let tied = record(key, KIND_MEETING, meeting, Some(contact), booking.start_ms);
    store.settle(&Settlement { portal: portal.id().clone(), activities: vec![tied], ..Settlement::default() }).await?;
    Ok(())
}
