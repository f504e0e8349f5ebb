//! Mid-call tools a voice agent calls while the caller waits: `lookup_caller`,
//! `check_availability`, `book_meeting`, `reschedule_meeting`, `cancel_meeting`. Each platform's
//! request is read into a [`ToolCall`] (by [`frames`]) and each answer is a short, speakable
//! line (plus structured data), or an error line the agent can say; neither ever holds the
//! conversation up for a backlog.
//!
//! - Availability comes from the portal's scheduler meeting link when one is configured (its
//!   availability page, cached briefly; [`crate::scheduler`]), otherwise from business hours in
//!   the configuration (no HubSpot request at all) — either way less what callbridge has
//!   booked and not cancelled.
//! - A booking is checked against those hours and the bookings, then recorded with its job in
//!   one transaction ([`callbridge_store::Bookings::book`]); the answer waits for HubSpot at most
//!   the configured deadline, and past it the agent hears "booked" while the job lands it from
//!   the queue. The key is the platform's call id and the start, so a retried or repeated call
//!   returns the same booking and writes nothing new. With a meeting link, a caller with an
//!   email is booked through the link's book API (the `book_link` job); otherwise the job
//!   creates the meeting itself.
//! - A reschedule or a cancel changes the booking and queues an `update_meeting` job in one
//!   transaction ([`crate::meetings`] carries it to HubSpot).

pub mod frames;

use std::sync::Arc;
use std::time::Duration;

use callbridge_domain::availability::{BusinessHours, open_slots, speakable};
use callbridge_domain::{
    BookingEvent, Caller, DefaultRegion, Email, Event, IdempotencyKey, PhoneE164, PortalId, Source, time,
};
use callbridge_hubspot::ObjectType;
use callbridge_store::{Booked, Booking, BookingChange, BookingStatus, Store, now_ms};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::portals::Portals;

/// How many slots an answer offers.
const SLOTS_OFFERED: usize = 3;

/// A booking's job still queued this long after it was recorded waits behind a backlog.
const PICKUP_LIMIT: Duration = Duration::from_millis(100);

/// The longest `lookup_caller` waits for its one HubSpot read before it answers from what
/// callbridge knows.
const LOOKUP_READ_LIMIT: Duration = Duration::from_millis(250);

/// One tool call, whatever platform sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as an object (a platform's dynamic variables included).
    pub args: Value,
    /// The platform's id of the live call, when it sends one.
    pub call_id: Option<String>,
    /// The number the caller is calling from, when the platform sends it.
    pub caller_number: Option<String>,
}

/// What a tool answers: a line the agent can say, and the same as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    pub data: Value,
}

/// A refusal the agent can say ("that time is taken; 10:30 or 11:00 are open").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(pub String);

type Outcome = Result<Answer, ToolError>;

fn refuse<T>(why: impl Into<String>) -> Result<T, ToolError> {
    Err(ToolError(why.into()))
}

/// The tools, with what they read and write.
pub struct Tools {
    pub store: Arc<dyn Store>,
    pub portals: Portals,
    pub deadline: Duration,
    pub region: DefaultRegion,
    pub wake: Arc<Notify>,
}

impl Tools {
    /// Runs a tool call from `platform` (its name in keys and on records) for `portal`.
    pub async fn call(&self, portal: &PortalId, platform: &'static str, call: &ToolCall) -> Outcome {
        let portal = portal.clone();
        match canonical(&call.name) {
            Some("lookup_caller") => self.lookup_caller(&portal, call).await,
            Some("check_availability") => self.check_availability(&portal, call).await,
            Some("book_meeting") => self.book_meeting(&portal, platform, call).await,
            Some("reschedule_meeting") => self.change_meeting(&portal, platform, call, false).await,
            Some("cancel_meeting") => self.change_meeting(&portal, platform, call, true).await,
            _ => refuse(format!(
                "unknown tool {:?}: use lookup_caller, check_availability, book_meeting, reschedule_meeting or cancel_meeting",
                call.name.chars().take(64).collect::<String>()
            )),
        }
    }

    /// The portal's business hours (each portal has its own).
    fn hours(&self, portal: &PortalId) -> Result<&BusinessHours, ToolError> {
        self.portals.get(portal).map(|p| &p.hours).ok_or_else(|| ToolError("this portal is not served here".into()))
    }

    async fn lookup_caller(&self, portal: &PortalId, call: &ToolCall) -> Outcome {
        let caller = self.caller(call)?;
        if caller.phone.is_none() && caller.email.is_none() {
            return refuse("no caller number or email to look up");
        }
        let zone = &self.hours(portal)?.zone;
        let upcoming = self.upcoming(portal, &caller).await?;
        let meetings: Vec<Value> = upcoming.iter().map(|b| meeting_json(b, zone, None)).collect();
        // callbridge's own records first: the caller's latest events, as stored.
        let keys: Vec<String> =
            [caller.phone.as_ref().map(|p| format!("phone:{p}")), caller.email.as_ref().map(|e| format!("email:{e}"))]
                .into_iter()
                .flatten()
                .collect();
        let events: Vec<Event> = self
            .store
            .caller_events(portal, &keys, 20)
            .await
            .map_err(store_failed)?
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        let mut name = events.iter().find_map(|e| e.caller().display_name());
        let last_call = events.iter().find_map(|e| match e {
            Event::Call(c) => Some(c),
            Event::Booking(_) => None,
        });
        let mut summary = last_call.and_then(|c| c.summary.clone());
        let mut sentiment = last_call.and_then(|c| c.sentiment).map(|s| s.as_str().to_string());
        let contact = self.store.known_contact(portal, &caller.keys()).await.map_err(store_failed)?;
        if contact.is_none() && events.is_empty() {
            let text = "This caller is not known yet.".to_string();
            return Ok(Answer { text, data: json!({"known": false, "upcoming_meetings": meetings}) });
        }
        // One HubSpot read at most, and only for a contact callbridge has no calls of (known
        // through the caller index alone); bounded, so a busy budget never holds the caller up.
        if let (Some(id), None) = (contact, &name) {
            let read = callbridge_hubspot::interactive(self.read_contact(portal, id));
            if let Ok(Some(found)) = tokio::time::timeout(LOOKUP_READ_LIMIT, read).await {
                (name, summary, sentiment) = (found.0.or(name), summary.or(found.1), sentiment.or(found.2));
            }
        }
        let mut text = match &name {
            Some(n) => format!("Returning caller {n}."),
            None => "A returning caller.".to_string(),
        };
        if let Some(s) = &summary {
            text.push_str(&format!(" Last call: {}", one_line(s, 300)));
            if let Some(f) = &sentiment {
                text.push_str(&format!(" (they sounded {f})"));
            }
            text.push('.');
        }
        if let Some(next) = upcoming.first() {
            text.push_str(&format!(" Next meeting: {}.", speakable(next.start_ms, zone)));
        }
        Ok(Answer {
            text,
            data: json!({"known": true, "contact_id": contact.map(|c| c.to_string()), "name": name,
                         "last_call_summary": summary, "last_call_sentiment": sentiment, "upcoming_meetings": meetings}),
        })
    }

    /// A contact's name and last-call context from HubSpot (one read).
    async fn read_contact(
        &self,
        portal: &PortalId,
        id: u64,
    ) -> Option<(Option<String>, Option<String>, Option<String>)> {
        use callbridge_domain::plan::{PROP_LAST_CALL_SUMMARY, PROP_LAST_SENTIMENT};
        let hubspot = &self.portals.get(portal)?.hubspot;
        let props = ["firstname", "lastname", PROP_LAST_CALL_SUMMARY, PROP_LAST_SENTIMENT];
        let record = hubspot.batch_read(ObjectType::Contacts, &[id.to_string()], None, &props).await.ok()?;
        let object = record.results.into_iter().next()?;
        let got = |k: &str| {
            object.properties.get(k).and_then(|v| v.as_ref()).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
        };
        let name = [got("firstname"), got("lastname")].into_iter().flatten().collect::<Vec<_>>().join(" ");
        Some(((!name.is_empty()).then_some(name), got(PROP_LAST_CALL_SUMMARY), got(PROP_LAST_SENTIMENT)))
    }

    async fn check_availability(&self, portal: &PortalId, call: &ToolCall) -> Outcome {
        let hours = self.hours(portal)?;
        let zone = zone(call, hours)?;
        let duration = duration(call, hours)?;
        let range = self.range(call, &zone)?;
        let slots = self.open(portal, range, duration, SLOTS_OFFERED, None).await?;
        if slots.is_empty() {
            return Ok(Answer {
                text: "There are no open times then. Try another day.".into(),
                data: json!({"slots": []}),
            });
        }
        let said: Vec<String> = slots.iter().map(|s| speakable(*s, &zone)).collect();
        Ok(Answer {
            text: format!("Open times: {}.", said.join("; ")),
            data: json!({"slots": slots.iter().zip(&said).map(|(s, t)| json!({"start": time::iso_ms(*s), "spoken": t})).collect::<Vec<_>>(),
                         "time_zone": zone.iana_name().unwrap_or("UTC"), "duration_minutes": duration / 60_000}),
        })
    }

    async fn book_meeting(&self, portal: &PortalId, platform: &'static str, call: &ToolCall) -> Outcome {
        let hours = self.hours(portal)?;
        let zone = zone(call, hours)?;
        let raw_start = arg(&call.args, START).ok_or(ToolError("a start time is required (start_time)".into()))?;
        let start = parse_time(&raw_start, &zone)?;
        let duration = duration(call, hours)?;
        let mut caller = self.caller(call)?;
        if let Some(name) = arg(&call.args, NAME) {
            caller = caller.with_full_name(&name);
        }
        if caller.phone.is_none() && caller.email.is_none() {
            return refuse("an attendee email or phone number is required to book");
        }
        let now = now_ms();
        if start <= now {
            return refuse("that time is in the past; ask for a time ahead");
        }
        // The booking's key: the live call and the start, so a retry is the same booking.
        let who = call.call_id.clone().or_else(|| caller.ordering_key()).unwrap_or_default();
        let booking_key = format!("{platform}:{who}:{start}");
        if let Some(existing) = self.store.booking(portal, &booking_key).await.map_err(store_failed)? {
            return Ok(self.booked_answer(&existing, &zone, None));
        }
        if !self.bookable(portal, start, duration, now).await? {
            return refuse(format!(
                "that time is not open. {}",
                self.alternatives(portal, start, duration, &zone).await?
            ));
        }
        let event = BookingEvent {
            caller: caller.clone(),
            meeting_type: arg(&call.args, MEETING_TYPE),
            meeting_at_ms: Some(start),
            meeting_at: Some(raw_start.clone()),
            lead_source: Some(Source::named(platform).label().to_string()),
            lifecycle_stage: None,
            received_at_ms: now,
            booking_key: booking_key.clone(),
            duration_ms: Some(duration),
            notes: arg(&call.args, NOTES),
        };
        let booking = booking_of(portal, platform, &event).expect("a booking with a start");
        let raw = serde_json::to_vec(&call.args).unwrap_or_default();
        let key = tool_key(&booking_key);
        let delivery = if self.through_link(portal, &caller) {
            let job = crate::jobs::JobKind::BookLink(crate::jobs::BookLink { booking_key: booking_key.clone() });
            crate::inbox::for_job(portal.clone(), platform, key, raw, job, booking.caller_key.clone())
        } else {
            crate::inbox::with_job(portal.clone(), platform, key, raw, Event::Booking(event), None)
        }
        .map_err(|_| ToolError("the booking could not be stored; try again".into()))?;
        match self.store.book(&booking, delivery).await.map_err(store_failed)? {
            Booked::Existing(existing) => Ok(self.booked_answer(&existing, &zone, None)),
            Booked::Taken(_) => {
                refuse(format!("that time is taken. {}", self.alternatives(portal, start, duration, &zone).await?))
            }
            Booked::New(inbox_id) => {
                self.wake.notify_one();
                match self.wait_for(portal, inbox_id).await {
                    Some(landed) => Ok(self.booked_answer(&booking, &zone, Some(landed))),
                    // HubSpot refused it (the event is dead, listed with the reason): the agent
                    // must not say "booked", and the slot is not held for it.
                    None => {
                        let change = BookingChange {
                            start_ms: booking.start_ms,
                            end_ms: booking.end_ms,
                            status: BookingStatus::Canceled,
                            line: "HubSpot refused the booking; it was never made.".into(),
                        };
                        let note = crate::inbox::recorded(
                            portal.clone(),
                            platform,
                            tool_key(&format!("refused:{booking_key}")),
                            Vec::new(),
                        );
                        self.store.change_booking(portal, &booking_key, &change, note).await.map_err(store_failed)?;
                        refuse(
                            "the calendar did not accept that booking; offer another time or to have someone call back",
                        )
                    }
                }
            }
        }
    }

    async fn change_meeting(
        &self,
        portal: &PortalId,
        platform: &'static str,
        call: &ToolCall,
        cancel: bool,
    ) -> Outcome {
        let zone = zone(call, self.hours(portal)?)?;
        let booking = self.which_booking(portal, call).await?;
        let now = now_ms();
        let (change, key) = if cancel {
            let line = format!("Cancelled on {} through {}.", speakable(now, &zone), Source::named(platform).label());
            let change = BookingChange {
                start_ms: booking.start_ms,
                end_ms: booking.end_ms,
                status: BookingStatus::Canceled,
                line,
            };
            (change, format!("cancel:{}", booking.key))
        } else {
            let raw = arg(&call.args, NEW_START)
                .ok_or(ToolError("a new start time is required (new_start_time); to call it off, cancel".into()))?;
            let start = parse_time(&raw, &zone)?;
            if start <= now {
                return refuse("that time is in the past; ask for a time ahead");
            }
            let duration = booking.end_ms - booking.start_ms;
            if start == booking.start_ms {
                return Ok(self.booked_answer(&booking, &zone, None));
            }
            let open = self.bookable(portal, start, duration, now).await?
                && self
                    .store
                    .bookings_between(portal, start, start + duration)
                    .await
                    .map_err(store_failed)?
                    .iter()
                    .all(|b| b.key == booking.key);
            if !open {
                return refuse(format!(
                    "that time is not open. {}",
                    self.alternatives(portal, start, duration, &zone).await?
                ));
            }
            let line = format!(
                "Rescheduled from {} to {} on {} through {}.",
                speakable(booking.start_ms, &zone),
                speakable(start, &zone),
                speakable(now, &zone),
                Source::named(platform).label()
            );
            let change =
                BookingChange { start_ms: start, end_ms: start + duration, status: BookingStatus::Rescheduled, line };
            (change, format!("reschedule:{}:{start}", booking.key))
        };
        let job = crate::jobs::JobKind::UpdateMeeting(crate::jobs::UpdateMeeting { booking_key: booking.key.clone() });
        let delivery = crate::inbox::for_job(
            portal.clone(),
            platform,
            tool_key(&key),
            serde_json::to_vec(&call.args).unwrap_or_default(),
            job,
            booking.caller_key.clone(),
        )
        .map_err(|_| ToolError("the change could not be stored; try again".into()))?;
        let Some(changed) =
            self.store.change_booking(portal, &booking.key, &change, delivery).await.map_err(store_failed)?
        else {
            return refuse("that meeting is not booked");
        };
        self.wake.notify_one();
        if cancel {
            return Ok(Answer {
                text: format!("Cancelled the meeting on {}.", speakable(changed.start_ms, &zone)),
                data: meeting_json(&changed, &zone, None),
            });
        }
        Ok(self.booked_answer(&changed, &zone, None))
    }

    /// Whether a meeting of `duration` can start at `start`, with the notice kept: an open time
    /// of the portal's meeting link (read afresh), else within business hours.
    async fn bookable(&self, portal: &PortalId, start: i64, duration: i64, now: i64) -> Result<bool, ToolError> {
        let hours = self.hours(portal)?;
        if start < now + hours.min_notice_minutes * 60_000 {
            return Ok(false);
        }
        match self.portals.get(portal).and_then(|p| p.scheduler.as_ref().map(|l| (p, l))) {
            Some((p, link)) => {
                let (open, _) = link
                    .open_times(p.hubspot.as_ref(), duration, (start, start + duration), true)
                    .await
                    .map_err(calendar_failed)?;
                Ok(open.contains(&(start, start + duration)))
            }
            None => Ok(hours.admits(start, duration)),
        }
    }

    /// Whether bookings of this portal go through its meeting link (the caller has an email:
    /// the link's book API needs one).
    fn through_link(&self, portal: &PortalId, caller: &Caller) -> bool {
        caller.email.is_some() && self.portals.get(portal).is_some_and(|p| p.scheduler.is_some())
    }

    /// The booking a change is about: the one named (`booking_id`), else the caller's next.
    async fn which_booking(&self, portal: &PortalId, call: &ToolCall) -> Result<Booking, ToolError> {
        if let Some(key) = arg(&call.args, BOOKING_ID) {
            return match self.store.booking(portal, &key).await.map_err(store_failed)? {
                Some(b) if b.status != BookingStatus::Canceled => Ok(b),
                Some(_) => refuse("that meeting was already cancelled"),
                None => refuse("no meeting is booked with that id"),
            };
        }
        let caller = self.caller(call)?;
        if caller.phone.is_none() && caller.email.is_none() {
            return refuse("no caller number or email to find the meeting by; give booking_id");
        }
        self.upcoming(portal, &caller)
            .await?
            .into_iter()
            .next()
            .ok_or(ToolError("this caller has no upcoming meeting booked".into()))
    }

    async fn upcoming(&self, portal: &PortalId, caller: &Caller) -> Result<Vec<Booking>, ToolError> {
        let phone = caller.phone.as_ref().map(|p| p.as_str());
        let email = caller.email.as_ref().map(|e| e.as_str());
        self.store.caller_bookings(portal, phone, email, now_ms()).await.map_err(store_failed)
    }

    /// Open slot starts in `range`, `except` a booking that is moving.
    async fn open(
        &self,
        portal: &PortalId,
        range: (Option<i64>, Option<i64>),
        duration: i64,
        limit: usize,
        except: Option<&str>,
    ) -> Result<Vec<i64>, ToolError> {
        let (now, hours) = (now_ms(), self.hours(portal)?);
        let from = range.0.unwrap_or(now).max(now);
        let to = range.1.unwrap_or(now + hours.horizon_days * 86_400_000);
        let buffer = hours.buffer_minutes * 60_000;
        let booked = self.store.bookings_between(portal, from - buffer, to + buffer).await.map_err(store_failed)?;
        let busy: Vec<(i64, i64)> =
            booked.iter().filter(|b| Some(b.key.as_str()) != except).map(|b| (b.start_ms, b.end_ms)).collect();
        let Some((p, link)) = self.portals.get(portal).and_then(|p| p.scheduler.as_ref().map(|l| (p, l))) else {
            return Ok(open_slots(hours, &busy, now, range, duration, limit));
        };
        // The link's open times, less what callbridge booked that HubSpot may not show yet.
        let notice = now + hours.min_notice_minutes * 60_000;
        let (open, offered) =
            link.open_times(p.hubspot.as_ref(), duration, (from, to), false).await.map_err(calendar_failed)?;
        if !offered.is_empty() && !offered.contains(&duration) {
            let minutes: Vec<String> = offered.iter().map(|d| (d / 60_000).to_string()).collect();
            return refuse(format!("the calendar offers meetings of {} minutes", minutes.join(" or ")));
        }
        Ok(open
            .into_iter()
            .filter(|(s, e)| *s >= notice && !busy.iter().any(|(bs, be)| s < be && bs < e))
            .map(|(s, _)| s)
            .take(limit)
            .collect())
    }

    /// The nearest open times around `start`, said.
    async fn alternatives(
        &self,
        portal: &PortalId,
        start: i64,
        duration: i64,
        zone: &jiff::tz::TimeZone,
    ) -> Result<String, ToolError> {
        let day = 86_400_000;
        let mut near = self.open(portal, (Some(start - day), Some(start + 7 * day)), duration, 40, None).await?;
        near.sort_by_key(|s| (s - start).abs());
        near.truncate(SLOTS_OFFERED);
        near.sort();
        Ok(match near.as_slice() {
            [] => "No other times are open that week.".into(),
            slots => format!(
                "The nearest open times are {}.",
                slots.iter().map(|s| speakable(*s, zone)).collect::<Vec<_>>().join("; ")
            ),
        })
    }

    /// Waits for a booking's job to land, at most the deadline, and never behind a backlog:
    /// a job no worker has picked up soon after it was queued waits behind others, and one
    /// whose requests wait for the portal's rate budget waits behind the requests before it,
    /// so the agent is answered at once. `Some(true)` when it landed, `Some(false)` while it is on
    /// its way, `None` when HubSpot refused it for good.
    async fn wait_for(&self, portal: &PortalId, inbox_id: i64) -> Option<bool> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.deadline;
        let backlogged = || self.portals.get(portal).is_some_and(|p| p.hubspot.backlogged());
        loop {
            match self.store.job_status(inbox_id).await.ok().flatten().as_deref() {
                Some("done") => return Some(true),
                Some("dead") => return None,
                Some("queued") if started.elapsed() >= PICKUP_LIMIT => return Some(false),
                Some("running") if started.elapsed() >= PICKUP_LIMIT && backlogged() => return Some(false),
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Some(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn booked_answer(&self, b: &Booking, zone: &jiff::tz::TimeZone, landed: Option<bool>) -> Answer {
        let when = speakable(b.start_ms, zone);
        let text = match b.status {
            BookingStatus::Canceled => format!("That meeting on {when} was cancelled."),
            BookingStatus::Rescheduled => format!("Rescheduled: the meeting is now {when}."),
            BookingStatus::Scheduled => format!("Booked for {when}."),
        };
        Answer { text, data: meeting_json(b, zone, landed) }
    }

    fn caller(&self, call: &ToolCall) -> Result<Caller, ToolError> {
        let phone = arg(&call.args, PHONE).or_else(|| call.caller_number.clone());
        let phone = match phone.filter(|p| !p.trim().is_empty()) {
            Some(raw) => match PhoneE164::parse(&raw, self.region) {
                Ok(p) => Some(p),
                Err(_) => return refuse("that phone number is not valid"),
            },
            None => None,
        };
        let email = match arg(&call.args, EMAIL) {
            Some(raw) => match Email::parse(&raw) {
                Ok(e) => Some(e),
                Err(_) => return refuse("that email address is not valid"),
            },
            None => None,
        };
        Ok(Caller { phone, email, ..Caller::default() })
    }

    /// The range asked about: a `date` (that day in the zone), or `from`/`to` times.
    fn range(&self, call: &ToolCall, zone: &jiff::tz::TimeZone) -> Result<(Option<i64>, Option<i64>), ToolError> {
        if let Some(date) = arg(&call.args, DATE) {
            let d: jiff::civil::Date =
                date.trim().parse().map_err(|_| ToolError("the date must look like 2026-12-03".into()))?;
            let start = zone.to_ambiguous_zoned(d.to_datetime(jiff::civil::Time::midnight())).compatible();
            let end = d
                .tomorrow()
                .ok()
                .and_then(|t| zone.to_ambiguous_zoned(t.to_datetime(jiff::civil::Time::midnight())).compatible().ok());
            return match (start, end) {
                (Ok(s), Some(e)) => Ok((Some(s.timestamp().as_millisecond()), Some(e.timestamp().as_millisecond()))),
                _ => refuse("the date must look like 2026-12-03"),
            };
        }
        let from = arg(&call.args, FROM).map(|t| parse_time(&t, zone)).transpose()?;
        let to = arg(&call.args, TO).map(|t| parse_time(&t, zone)).transpose()?;
        Ok((from, to))
    }
}

/// The time zone a tool call asks in: its own, else the portal's business hours'.
fn zone(call: &ToolCall, hours: &BusinessHours) -> Result<jiff::tz::TimeZone, ToolError> {
    match arg(&call.args, TIME_ZONE) {
        Some(name) => jiff::tz::TimeZone::get(&name)
            .map_err(|_| ToolError("unknown time zone; use a name like America/New_York".into())),
        None => Ok(hours.zone.clone()),
    }
}

/// The meeting length a tool call asks for, else the portal's slot length.
fn duration(call: &ToolCall, hours: &BusinessHours) -> Result<i64, ToolError> {
    let minutes = match call.args.get("duration_minutes").or_else(|| call.args.get("duration")) {
        None | Some(Value::Null) => hours.slot_minutes,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(Value::String(s)) => s.trim().trim_end_matches("minutes").trim().parse().unwrap_or(-1),
        Some(_) => -1,
    };
    if !(5..=480).contains(&minutes) {
        return refuse("the duration must be 5 to 480 minutes");
    }
    Ok(minutes * 60_000)
}

/// A booking as a tool's answer carries it, its time said in `zone`.
fn meeting_json(b: &Booking, zone: &jiff::tz::TimeZone, landed: Option<bool>) -> Value {
    let mut v = json!({"booking_id": b.key, "start": time::iso_ms(b.start_ms), "end": time::iso_ms(b.end_ms),
                       "spoken": speakable(b.start_ms, zone), "status": b.status.as_str(),
                       "meeting_type": b.meeting_type});
    if let Some(landed) = landed {
        // false: recorded and queued; it lands in HubSpot from the queue.
        v["in_hubspot"] = json!(landed);
    }
    v
}

/// The booking record of a booking event with a time (any path: a tool, the booking webhook).
pub fn booking_of(portal: &PortalId, source: &str, b: &BookingEvent) -> Option<Booking> {
    let start = b.meeting_at_ms?;
    Some(Booking {
        portal: portal.clone(),
        key: b.booking_key.clone(),
        source: source.to_string(),
        phone: b.caller.phone.as_ref().map(|p| p.as_str().to_string()),
        email: b.caller.email.as_ref().map(|e| e.as_str().to_string()),
        name: b.caller.display_name(),
        meeting_type: b.meeting_type.clone(),
        notes: b.notes.clone(),
        start_ms: start,
        end_ms: start + b.duration_ms.filter(|d| *d > 0).unwrap_or(callbridge_domain::plan::DEFAULT_MEETING_MS),
        status: BookingStatus::Scheduled,
        history: Vec::new(),
        caller_key: b.caller.ordering_key().unwrap_or_else(|| b.booking_key.clone()),
        created_at_ms: b.received_at_ms,
    })
}

const START: &[&str] = &["start_time", "start", "startTime", "time", "datetime", "slot"];
const NEW_START: &[&str] = &["new_start_time", "new_start", "newStartTime", "start_time", "start", "time"];
const NAME: &[&str] = &["name", "attendee_name", "caller_name", "full_name"];
const EMAIL: &[&str] = &["email", "attendee_email", "caller_email"];
const PHONE: &[&str] = &["phone", "attendee_phone", "caller_phone", "number", "phone_number", "system__caller_id"];
const NOTES: &[&str] = &["notes", "reason", "summary", "description"];
const MEETING_TYPE: &[&str] = &["meeting_type", "service", "appointment_type", "type"];
const TIME_ZONE: &[&str] = &["timezone", "time_zone", "tz"];
const DATE: &[&str] = &["date", "day"];
const FROM: &[&str] = &["from", "after", "start_date", "range_start"];
const TO: &[&str] = &["to", "before", "end_date", "range_end"];
const BOOKING_ID: &[&str] = &["booking_id", "meeting_id", "appointment_id"];

/// The first of `names` that holds a non-empty string (or number) in `args`.
fn arg(args: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match args.get(*n) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// A tool's name as callbridge knows it (platforms' common synonyms accepted).
fn canonical(name: &str) -> Option<&'static str> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "lookup_caller" | "lookup_contact" | "get_caller" | "identify_caller" => "lookup_caller",
        "check_availability" | "get_availability" | "availability" => "check_availability",
        "book_meeting" | "book_appointment" | "book" | "schedule_meeting" => "book_meeting",
        "reschedule_meeting" | "reschedule_appointment" | "reschedule" => "reschedule_meeting",
        "cancel_meeting" | "cancel_appointment" | "cancel" => "cancel_meeting",
        _ => return None,
    })
}

/// A time an agent sends: ISO 8601 with an offset, a local date-time in `zone`, or epoch ms.
fn parse_time(raw: &str, zone: &jiff::tz::TimeZone) -> Result<i64, ToolError> {
    let raw = raw.trim();
    if let Some(ms) = time::parse_iso_with_offset(raw) {
        return Ok(ms);
    }
    if let Ok(ms) = raw.parse::<i64>()
        && ms > 1_000_000_000_000
    {
        return Ok(ms);
    }
    if let Ok(local) = raw.parse::<jiff::civil::DateTime>()
        && let Ok(z) = zone.to_ambiguous_zoned(local).compatible()
    {
        return Ok(z.timestamp().as_millisecond());
    }
    refuse("the time must look like 2026-12-03T10:30:00-05:00")
}

/// The key of a delivery a tool makes (a booking, a change): its job is interactive.
fn tool_key(id: &str) -> IdempotencyKey {
    IdempotencyKey::of("tool", id)
}

/// Whether a job's delivery came from a tool, an agent waiting on it: it runs as interactive
/// work, ahead of queued work on the rate budget.
pub fn is_interactive(idempotency_key: &str) -> bool {
    idempotency_key.starts_with("tool:")
}

/// The meeting link's calendar could not be read (HubSpot down, over budget, refusing).
fn calendar_failed(e: callbridge_hubspot::HubSpotError) -> ToolError {
    tracing::warn!(error.transient = e.is_transient(), "reading the meeting link's availability failed");
    ToolError("the calendar cannot be read right now; offer to have someone call back to book".into())
}

fn store_failed(e: callbridge_store::StoreError) -> ToolError {
    tracing::error!(error = %e, "a tool could not reach the store");
    ToolError("the booking system is busy; try again in a moment".into())
}

/// Text on one line, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
