//! Scheduler meeting links (reference §6.2): one personal link, availability from business
//! hours (Monday–Friday, in the link's time zone) less existing meetings, and booking, which
//! matches or creates the contact and creates a meeting associated with it.

use std::collections::HashMap;

use axum::Json;
use axum::extract::Path;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Body, Query, Shared};
use crate::db::{AssocInput, Db};
use crate::error::{ApiError, ApiResult};
use crate::model::{Kind, default_association};
use crate::state::State;
use crate::util::{iso, now_ms, parse_datetime_ms};

pub const LINK_SLUG: &str = crate::MEETING_LINK_SLUG;
const LINK_ID: &str = "600001";
const LINK_NAME: &str = "Discovery call";
const DURATIONS: [i64; 2] = [1_800_000, 3_600_000];
const SLOT_STEP_MS: i64 = 1_800_000;
const WEEKS_TO_ADVERTISE: i64 = 4;

fn link_json(st: &State) -> Value {
    let owner = &st.db.lock().owners[0].clone();
    json!({
        "id": LINK_ID, "slug": LINK_SLUG, "link": format!("https://meetings.hubspot.com/{LINK_SLUG}"),
        "name": LINK_NAME, "type": "PERSONAL_LINK", "organizerUserId": owner.user_id.to_string(),
        "userIdsOfLinkMembers": [owner.user_id.to_string()], "defaultLink": true,
        "createdAt": "2024-01-02T09:00:00.000Z", "updatedAt": "2024-01-02T09:00:00.000Z",
    })
}

pub async fn links(st: Shared, q: Query) -> ApiResult<Json<Value>> {
    let link = link_json(&st);
    let keep = q.one("name").is_none_or(|n| LINK_NAME.to_lowercase().contains(&n.to_lowercase()))
        && q.one("type").is_none_or(|t| t == "PERSONAL_LINK");
    let results = if keep { vec![link] } else { vec![] };
    Ok(Json(json!({"total": results.len(), "results": results})))
}

fn check_slug(slug: &str) -> ApiResult<()> {
    if slug == LINK_SLUG {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!("No meeting link with slug {slug}"),
        ))
    }
}

pub async fn link(st: Shared, Path(slug): Path<String>) -> ApiResult<Json<Value>> {
    check_slug(&slug)?;
    let (open, close) = st.config.business_hours;
    let busy = busy_times(&st.db.lock());
    Ok(Json(json!({
        "linkId": LINK_ID, "linkType": "PERSONAL_LINK", "isOffline": false,
        "customParams": {
            "durations": DURATIONS, "meetingBufferTime": 0, "weeksToAdvertise": WEEKS_TO_ADVERTISE,
            "availability": {"businessHours": {"startHour": open, "endHour": close, "days": ["MONDAY","TUESDAY","WEDNESDAY","THURSDAY","FRIDAY"]}, "timezone": st.config.scheduler_timezone},
            "formFields": [], "legalConsentEnabled": false,
        },
        "allUsersBusyTimes": [busy_user(&st, &busy)],
        "brandingMetadata": {},
    })))
}

/// Scheduled meetings as busy intervals.
fn busy_times(db: &Db) -> Vec<(i64, i64)> {
    db.live_records(Kind::Meeting)
        .filter(|m| m.get("hs_meeting_outcome") != Some("CANCELED"))
        .filter_map(|m| {
            let start = m.get("hs_meeting_start_time").and_then(parse_datetime_ms)?;
            let end = m.get("hs_meeting_end_time").and_then(parse_datetime_ms).unwrap_or(start + SLOT_STEP_MS);
            Some((start, end))
        })
        .collect()
}

fn busy_user(st: &State, busy: &[(i64, i64)]) -> Value {
    let owner = st.db.lock().owners[0].clone();
    json!({
        "meetingsUser": {"id": LINK_ID, "userId": owner.user_id.to_string(), "isSalesStarter": false,
            "userProfile": {"firstName": owner.first_name, "lastName": owner.last_name, "email": owner.email,
                            "fullName": format!("{} {}", owner.first_name, owner.last_name)}},
        "busyTimes": busy.iter().map(|(s, e)| json!({"start": s, "end": e})).collect::<Vec<_>>(),
        "isOffline": false,
    })
}

/// Free slots of `duration` between `from` and `to` (epoch ms).
fn slots(st: &State, busy: &[(i64, i64)], duration: i64, from: i64, to: i64) -> Vec<(i64, i64)> {
    let Ok(tz) = TimeZone::get(&st.config.scheduler_timezone) else { return Vec::new() };
    let (open, close) = st.config.business_hours;
    let Ok(start) = Timestamp::from_millisecond(from) else { return Vec::new() };
    let mut day = start.to_zoned(tz.clone()).date();
    let mut out = Vec::new();
    loop {
        let Ok(day_start) = day.to_zoned(tz.clone()) else { break };
        if day_start.timestamp().as_millisecond() >= to {
            break;
        }
        if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
            let at = |h: u8| day.at(h as i8, 0, 0, 0).to_zoned(tz.clone()).ok().map(|z| z.timestamp().as_millisecond());
            if let (Some(o), Some(c)) = (at(open), at(close)) {
                let mut s = o;
                while s + duration <= c {
                    let e = s + duration;
                    if s >= from && e <= to && !busy.iter().any(|(bs, be)| s < *be && *bs < e) {
                        out.push((s, e));
                    }
                    s += SLOT_STEP_MS;
                }
            }
        }
        match day.checked_add(1.day()) {
            Ok(d) => day = d,
            Err(_) => break,
        }
    }
    out
}

pub async fn availability(st: Shared, Path(slug): Path<String>, q: Query) -> ApiResult<Json<Value>> {
    check_slug(&slug)?;
    let month_offset = q.int32("monthOffset", 0)?.unwrap_or(0) as i64;
    let now = now_ms();
    let horizon = now + WEEKS_TO_ADVERTISE * 7 * 86_400_000;
    let window = 30 * 86_400_000;
    let from = now + month_offset * window;
    let to = (from + window).min(horizon);
    let busy = busy_times(&st.db.lock());
    let mut by_duration = Map::new();
    for d in DURATIONS {
        let list: Vec<Value> = if from < to {
            slots(&st, &busy, d, from, to)
                .into_iter()
                .map(|(s, e)| json!({"startMillisUtc": s, "endMillisUtc": e}))
                .collect()
        } else {
            Vec::new()
        };
        by_duration.insert(d.to_string(), json!({"meetingDurationMillis": d, "availabilities": list}));
    }
    Ok(Json(json!({
        "linkAvailability": {"linkAvailabilityByDuration": by_duration, "hasMore": to < horizon},
        "allUsersBusyTimes": [busy_user(&st, &busy)],
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookInput {
    pub slug: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub start_time: Value,
    #[serde(deserialize_with = "super::java::field::long")]
    pub duration: i64,
    #[serde(default)]
    pub guest_emails: Vec<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub form_fields: Vec<Value>,
    #[serde(default)]
    pub legal_consent_responses: Vec<Value>,
    #[serde(default)]
    pub likely_available_user_ids: Vec<Value>,
}

pub async fn book(st: Shared, q: Query, Body(input): Body<BookInput>) -> ApiResult<Json<Value>> {
    check_slug(&input.slug)?;
    if !DURATIONS.contains(&input.duration) {
        return Err(ApiError::validation(format!(
            "duration {} is not offered by this link; offered: {:?}",
            input.duration, DURATIONS
        )));
    }
    let start = match &input.start_time {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_datetime_ms(s),
        _ => None,
    }
    .ok_or_else(|| ApiError::validation("startTime must be epoch milliseconds or an ISO-8601 date-time"))?;
    let end = start + input.duration;
    let now = now_ms();
    let mut db = st.db.lock();
    let busy = busy_times(&db);
    let open = slots(&st, &busy, input.duration, start, end);
    if start < now || open.first() != Some(&(start, end)) {
        return Err(ApiError::validation("The requested time is not available on this meeting link"));
    }
    // Match the contact by email (primary or additional), else create it.
    let email = input.email.trim().to_lowercase();
    let contact = match db.contact_with_email(&email).filter(|id| db.record(Kind::Contact, *id).is_some()) {
        Some(id) => {
            let record = db.record(Kind::Contact, id).cloned();
            let mut fill = Map::new();
            if let Some(r) = &record {
                if r.get("firstname").is_none() {
                    fill.insert("firstname".into(), json!(input.first_name));
                }
                if r.get("lastname").is_none() {
                    fill.insert("lastname".into(), json!(input.last_name));
                }
            }
            let write = db
                .prepare(Kind::Contact, record.as_ref(), &fill)
                .map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
            db.apply(Kind::Contact, id, write, now);
            id
        }
        None => {
            let mut props = Map::new();
            props.insert("email".into(), json!(email));
            props.insert("firstname".into(), json!(input.first_name));
            props.insert("lastname".into(), json!(input.last_name));
            let write =
                db.prepare(Kind::Contact, None, &props).map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
            db.check_conflicts(Kind::Contact, None, &write, &mut HashMap::new(), 0)?;
            db.insert(Kind::Contact, write, &[], now)
        }
    };
    let owner = db.owners[0].clone();
    let subject = format!("{LINK_NAME} with {} {}", input.first_name.trim(), input.last_name.trim());
    let mut props = Map::new();
    props.insert("hs_meeting_title".into(), json!(subject));
    props.insert("hs_meeting_start_time".into(), json!(iso(start)));
    props.insert("hs_meeting_end_time".into(), json!(iso(end)));
    props.insert("hs_timestamp".into(), json!(iso(start)));
    props.insert("hs_meeting_outcome".into(), json!("SCHEDULED"));
    props.insert("hubspot_owner_id".into(), json!(owner.id));
    let write = db.prepare(Kind::Meeting, None, &props).map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
    let type_id = default_association(Kind::Meeting, Kind::Contact).map(|(id, _)| id).unwrap_or(200);
    let meeting =
        db.insert(Kind::Meeting, write, &[(Kind::Contact, AssocInput { to: contact, type_ids: vec![type_id] })], now);
    let timezone = input
        .timezone
        .or_else(|| q.one("timezone").map(String::from))
        .unwrap_or_else(|| st.config.scheduler_timezone.clone());
    let _ = &input.likely_available_user_ids;
    Ok(Json(json!({
        "calendarEventId": meeting.to_string(),
        "start": iso(start), "end": iso(end), "duration": input.duration,
        "contactId": contact.to_string(), "bookingTimezone": timezone,
        "locale": input.locale.unwrap_or_else(|| "en-us".into()),
        "guestEmails": input.guest_emails, "subject": subject, "location": "",
        "isOffline": false, "formFields": input.form_fields, "legalConsentResponses": input.legal_consent_responses,
    })))
}
