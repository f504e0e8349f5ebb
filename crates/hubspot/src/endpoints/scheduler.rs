//! The scheduler's meeting links (reference §6.2): a link's open times, read from its
//! availability page, and a booking through it (HubSpot then matches or creates the contact by
//! email and creates the meeting). Both are asked for while an agent waits: interactive.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::budget::Priority;
use crate::error::HubSpotError;
use crate::transport::{Call, HubSpotClient};

/// One page of a link's availability (a month from `monthOffset`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkAvailability {
    /// Meeting length (ms) → open (start, end) times, epoch ms.
    pub by_duration: BTreeMap<i64, Vec<(i64, i64)>>,
    /// More pages follow (a later `monthOffset`).
    pub has_more: bool,
}

/// A booking through a meeting link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBooking {
    pub slug: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub start_ms: i64,
    pub duration_ms: i64,
    /// IANA zone the booking is made in.
    pub time_zone: String,
}

/// What HubSpot answered to a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBooked {
    /// The contact HubSpot matched or created.
    pub contact_id: Option<u64>,
}

fn number(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl HubSpotClient {
    /// The open times of meeting link `slug`, `month_offset` months ahead.
    pub async fn link_availability(
        &self,
        slug: &str,
        time_zone: &str,
        month_offset: u32,
    ) -> Result<LinkAvailability, HubSpotError> {
        let url = format!("{}/book/availability-page/{slug}", self.paths.scheduler());
        let mut call =
            Call::new(Method::GET, url).query("timezone", time_zone).query("monthOffset", month_offset.to_string());
        call.priority = Priority::Interactive;
        let v = self.execute(call).await?;
        let mut out = LinkAvailability {
            has_more: v.pointer("/linkAvailability/hasMore").and_then(Value::as_bool).unwrap_or(false),
            ..LinkAvailability::default()
        };
        let by = v.pointer("/linkAvailability/linkAvailabilityByDuration").and_then(Value::as_object);
        for (key, entry) in by.into_iter().flatten() {
            let Some(duration) = entry.get("meetingDurationMillis").and_then(number).or_else(|| key.parse().ok())
            else {
                continue;
            };
            let slots = entry
                .get("availabilities")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    Some((a.get("startMillisUtc").and_then(number)?, a.get("endMillisUtc").and_then(number)?))
                })
                .collect();
            out.by_duration.insert(duration, slots);
        }
        Ok(out)
    }

    /// Books a meeting through its link. Not retried blindly: an attempt whose outcome is
    /// unknown returns the error, and the caller looks for what landed.
    pub async fn book_link(&self, b: &LinkBooking) -> Result<LinkBooked, HubSpotError> {
        let body = json!({
            "slug": b.slug, "firstName": b.first_name, "lastName": b.last_name, "email": b.email,
            "startTime": b.start_ms, "duration": b.duration_ms, "timezone": b.time_zone, "locale": "en-us",
            "guestEmails": [], "formFields": [], "legalConsentResponses": [], "likelyAvailableUserIds": [],
        });
        let mut call = Call::new(Method::POST, format!("{}/book", self.paths.scheduler()))
            .query("timezone", b.time_zone.clone())
            .body(body);
        call.priority = Priority::Interactive;
        call.once = true;
        let v = self.execute(call).await?;
        Ok(LinkBooked { contact_id: v.get("contactId").and_then(number).and_then(|n| u64::try_from(n).ok()) })
    }
}
