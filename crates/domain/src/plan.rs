//! The planner: a pure function from a caller's events and what is known of their contact
//! to the CRM operations to make ([`plan_caller`] → [`CallerPlan`]). The rules live here:
//! fields are only filled, never blanked or overwritten (except callbridge's own "last call"
//! fields); lifecycle stage only moves forward; a call older than the contact's last synced
//! call does not replace its context; one call is one activity, and an event about an earlier
//! stage than what was logged changes nothing. How an operation reaches HubSpot (single or
//! batch endpoint, v3 or v1) is the applier's business, not the planner's.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::event::{BookingEvent, CallEvent, Caller, Direction, Event, Intent};

/// callbridge's property group and contact properties (created by `setup-properties`).
pub const GROUP: &str = "callbridge";
pub const PROP_LEAD_SOURCE: &str = "callbridge_lead_source";
pub const PROP_LAST_CALL_AT: &str = "callbridge_last_call_at";
pub const PROP_LAST_CALL_SUMMARY: &str = "callbridge_last_call_summary";
pub const PROP_LAST_CALL_OUTCOME: &str = "callbridge_last_call_outcome";
pub const PROP_LAST_SENTIMENT: &str = "callbridge_last_sentiment";
pub const PROP_LAST_INTENT: &str = "callbridge_last_intent";
pub const PROP_NEXT_STEPS: &str = "callbridge_next_steps";
pub const PROP_SOURCE_PLATFORM: &str = "callbridge_source_platform";
pub const PROP_PHONE_E164: &str = "callbridge_phone_e164";
/// On meetings: what identifies the booking that made it.
pub const PROP_MEETING_EVENT_ID: &str = "callbridge_event_id";
/// On contacts: the next meeting callbridge booked (start, type, outcome), for workflows to
/// trigger on; moved by a reschedule, cleared by a cancel.
pub const PROP_NEXT_MEETING_AT: &str = "callbridge_next_meeting_at";
pub const PROP_NEXT_MEETING_TYPE: &str = "callbridge_next_meeting_type";
pub const PROP_NEXT_MEETING_OUTCOME: &str = "callbridge_next_meeting_outcome";

/// Contact properties the planner reads before writing.
pub const CONTACT_READ: [&str; 11] = [
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "lifecyclestage",
    PROP_LEAD_SOURCE,
    PROP_LAST_CALL_AT,
    PROP_PHONE_E164,
    PROP_LEAD_STATUS,
    PROP_OWNER,
];

/// HubSpot's lifecycle stages in order (DOC:contacts).
pub const LIFECYCLE_ORDER: [&str; 7] =
    ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"];

fn rank(stage: &str) -> Option<usize> {
    LIFECYCLE_ORDER.iter().position(|s| *s == stage)
}

/// Whether moving from `current` to `proposed` goes forward (or sets a first stage).
pub fn lifecycle_moves_forward(current: Option<&str>, proposed: &str) -> bool {
    match (current.filter(|c| !c.is_empty()).map(rank), rank(proposed)) {
        (None, Some(_)) => true,
        (Some(Some(a)), Some(b)) => b > a,
        // An unknown (custom) stage on either side: never overwrite what is there.
        (Some(None), _) | (_, None) => false,
    }
}

/// Whether an event at `event_ms` is older than the contact's last synced call.
pub fn is_older_than_last_call(event_ms: i64, last_synced_ms: Option<i64>) -> bool {
    last_synced_ms.is_some_and(|last| event_ms < last)
}

/// A portal's rules for what a call sets beyond the caller's own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRules {
    /// The call's intent → the contact's `hs_lead_status` (an option the portal has).
    pub lead_status: Vec<(Intent, String)>,
    /// Who a call's task goes to when its contact has no owner.
    pub task_owner: Option<String>,
}

impl PlanRules {
    pub fn lead_status_for(&self, intent: Intent) -> Option<&str> {
        self.lead_status.iter().find(|(i, _)| *i == intent).map(|(_, v)| v.as_str())
    }
}

/// HubSpot's lead status property.
pub const PROP_LEAD_STATUS: &str = "hs_lead_status";
/// The contact's owner.
pub const PROP_OWNER: &str = "hubspot_owner_id";
/// The kind of activity row that records a call's task.
pub const KIND_TASK: &str = "task";

/// The task a call makes for a rep: a complaint, an urgent matter, a callback asked for, or a
/// reschedule without a new time — one per call, due by urgency from the call's time, for the
/// contact's owner (else `rules.task_owner`), stamped with the call's identity.
pub fn task_properties(c: &CallEvent, owner: Option<&str>, rules: &PlanRules) -> Option<Map<String, Value>> {
    const HOUR: i64 = 3_600_000;
    let (what, due_in, priority) = match c.intent? {
        Intent::Urgent => ("Urgent", HOUR, "HIGH"),
        Intent::Complaint => ("Complaint", 4 * HOUR, "HIGH"),
        Intent::Callback => ("Call back", 24 * HOUR, "MEDIUM"),
        Intent::Reschedule if c.appointment.is_none() => ("Reschedule (no new time agreed)", 24 * HOUR, "MEDIUM"),
        _ => return None,
    };
    let who = c
        .caller
        .display_name()
        .or_else(|| c.caller.phone.as_ref().map(|p| p.as_str().to_string()))
        .or_else(|| c.caller.email.as_ref().map(|e| e.as_str().to_string()))
        .unwrap_or_else(|| "caller".into());
    let mut body = format!("<p>From a {} call.</p>", c.source.label());
    if let Some(s) = &c.summary {
        body.push_str(&format!("<p>{}</p>", escape(&truncate(s, 2000))));
    }
    if let Some(n) = &c.next_steps {
        body.push_str(&format!("<p>Next steps: {}</p>", escape(&truncate(n, 2000))));
    }
    let mut out = Map::new();
    out.insert("hs_task_subject".into(), json!(format!("{what}: {who}")));
    out.insert("hs_task_body".into(), json!(body));
    out.insert("hs_timestamp".into(), json!(crate::time::iso_ms(c.occurred_at_ms + due_in)));
    out.insert("hs_task_priority".into(), json!(priority));
    out.insert("hs_task_status".into(), json!("NOT_STARTED"));
    out.insert("hs_task_type".into(), json!("CALL"));
    if let Some(owner) = owner.or(rules.task_owner.as_deref()).filter(|o| !o.trim().is_empty()) {
        out.insert(PROP_OWNER.into(), json!(owner));
    }
    out.insert(PROP_MEETING_EVENT_ID.into(), json!(task_identity(c)));
    Some(out)
}

/// What identifies a call's task in HubSpot (its `callbridge_event_id`).
pub fn task_identity(c: &CallEvent) -> String {
    format!("task:{}", call_identity(c))
}

/// What an event wants on the contact.
#[derive(Debug, Clone, Default)]
pub struct ContactWish {
    pub caller: Caller,
    pub lifecycle_stage: Option<String>,
    pub lead_source: Option<String>,
    /// callbridge's own fields (last call context); written whenever the event is newest.
    pub context: Vec<(String, String)>,
}

impl ContactWish {
    pub fn for_call(e: &CallEvent, newest: bool, rules: &PlanRules) -> ContactWish {
        let mut context = Vec::new();
        if newest {
            if let Some(status) = e.intent.and_then(|i| rules.lead_status_for(i)) {
                context.push((PROP_LEAD_STATUS.to_string(), status.to_string()));
            }
            context.push((PROP_LAST_CALL_AT.to_string(), crate::time::iso_ms(e.occurred_at_ms)));
            context.push((PROP_SOURCE_PLATFORM.to_string(), e.source.as_str().to_string()));
            if let Some(s) = &e.summary {
                context.push((PROP_LAST_CALL_SUMMARY.to_string(), truncate(s, 2000)));
            }
            if let Some(o) = outcome(e) {
                context.push((PROP_LAST_CALL_OUTCOME.to_string(), o));
            }
            if let Some(s) = e.sentiment {
                context.push((PROP_LAST_SENTIMENT.to_string(), s.as_str().to_string()));
            }
            if let Some(i) = e.intent {
                context.push((PROP_LAST_INTENT.to_string(), i.as_str().to_string()));
            }
            if let Some(n) = &e.next_steps {
                context.push((PROP_NEXT_STEPS.to_string(), truncate(n, 2000)));
            }
        }
        ContactWish {
            caller: e.caller.clone(),
            lifecycle_stage: None,
            lead_source: Some(e.source.label().to_string()),
            context,
        }
    }

    pub fn for_booking(b: &BookingEvent) -> ContactWish {
        let context = match b.meeting_at_ms {
            Some(at) => next_meeting(at, b.meeting_type.as_deref().unwrap_or("Meeting"), "SCHEDULED"),
            None => Vec::new(),
        };
        ContactWish {
            caller: b.caller.clone(),
            lifecycle_stage: b.lifecycle_stage.clone(),
            lead_source: b.lead_source.clone(),
            context,
        }
    }
}

/// Properties for a new contact.
pub fn new_contact(wish: &ContactWish) -> Map<String, Value> {
    let mut out = Map::new();
    let c = &wish.caller;
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
            out.insert(k.to_string(), json!(v));
        }
    };
    put("email", c.email.as_ref().map(|e| e.as_str()));
    put("firstname", c.first_name.as_deref());
    put("lastname", c.last_name.as_deref());
    put("phone", c.phone.as_ref().map(|p| p.as_str()));
    put(PROP_PHONE_E164, c.phone.as_ref().map(|p| p.as_str()));
    put(PROP_LEAD_SOURCE, wish.lead_source.as_deref());
    if let Some(stage) = wish.lifecycle_stage.as_deref().filter(|s| rank(s).is_some()) {
        out.insert("lifecyclestage".into(), json!(stage));
    }
    for (k, v) in &wish.context {
        out.insert(k.clone(), json!(v));
    }
    out
}

/// Properties to change on an existing contact whose current values are `current`:
/// fill what is empty, move lifecycle forward, refresh callbridge's context. Empty when
/// nothing needs writing.
pub fn contact_update(current: &HashMap<String, String>, wish: &ContactWish) -> Map<String, Value> {
    let has = |k: &str| current.get(k).is_some_and(|v| !v.trim().is_empty());
    let mut out = Map::new();
    let c = &wish.caller;
    let mut fill = |k: &str, v: Option<&str>| {
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty())
            && !has(k)
        {
            out.insert(k.to_string(), json!(v));
        }
    };
    fill("email", c.email.as_ref().map(|e| e.as_str()));
    fill("firstname", c.first_name.as_deref());
    fill("lastname", c.last_name.as_deref());
    fill(PROP_LEAD_SOURCE, wish.lead_source.as_deref());
    fill(PROP_PHONE_E164, c.phone.as_ref().map(|p| p.as_str()));
    if let Some(p) = &c.phone
        && !has("phone")
        && !has("mobilephone")
    {
        out.insert("phone".into(), json!(p.as_str()));
    }
    if let Some(stage) = wish.lifecycle_stage.as_deref()
        && lifecycle_moves_forward(current.get("lifecyclestage").map(String::as_str), stage)
    {
        out.insert("lifecyclestage".into(), json!(stage));
    }
    for (k, v) in &wish.context {
        if current.get(k) != Some(v) {
            out.insert(k.clone(), json!(v));
        }
    }
    out
}

fn outcome(e: &CallEvent) -> Option<String> {
    let verdict = e.success.map(|s| if s { "successful" } else { "not successful" });
    match (verdict, e.ended_reason.as_deref()) {
        (Some(v), Some(r)) => Some(format!("{v} ({})", r.replace('-', " "))),
        (Some(v), None) => Some(v.to_string()),
        (None, Some(r)) => Some(r.replace('-', " ")),
        (None, None) => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The transcript a rep reads first: the opening turns, cut to about `max` characters.
pub fn transcript_excerpt(transcript: &str, max: usize) -> String {
    let mut out = String::new();
    for line in transcript.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if out.chars().count() + line.chars().count() > max {
            out.push('…');
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

/// The call activity's properties: a body a rep wants to read, the platform's call id.
pub fn call_properties(e: &CallEvent) -> Map<String, Value> {
    let mut body = String::new();
    let mut section = |label: &str, text: &str| {
        body.push_str(&format!("<p><strong>{label}:</strong> {}</p>", escape(text).replace('\n', "<br>")));
    };
    if let Some(s) = &e.summary {
        section("Summary", s);
    }
    if let Some(o) = outcome(e) {
        section("Outcome", &o);
    }
    if let Some(s) = e.sentiment {
        section("Caller sentiment", s.as_str());
    }
    if let Some(i) = e.intent {
        section("Intent", i.as_str());
    }
    if let Some(a) = &e.appointment {
        section("Appointment", a);
    }
    if e.number_withheld {
        section("Caller's number", "withheld");
    }
    if let Some(n) = &e.next_steps {
        section("Next steps", n);
    }
    for (question, answer) in &e.answers {
        section(question, answer);
    }
    if let Some(t) = &e.transcript {
        section("Transcript (excerpt)", &transcript_excerpt(t, 1200));
    }
    if let Some(url) = e.recording_url.as_deref().filter(|u| u.starts_with("https://")) {
        body.push_str(&format!("<p><a href=\"{}\">Recording</a></p>", escape(url)));
    }
    let who = e.caller.display_name().unwrap_or_else(|| "caller".into());
    let mut out = Map::new();
    out.insert("hs_timestamp".into(), json!(crate::time::iso_ms(e.started_at_ms.unwrap_or(e.occurred_at_ms))));
    out.insert("hs_call_title".into(), json!(format!("{} call with {who}", e.source.label())));
    out.insert("hs_call_body".into(), json!(body));
    out.insert(
        "hs_call_direction".into(),
        json!(if e.direction == Direction::Inbound { "INBOUND" } else { "OUTBOUND" }),
    );
    let status = if e.stage == crate::event::CallStage::Started { "IN_PROGRESS" } else { "COMPLETED" };
    out.insert("hs_call_status".into(), json!(status));
    out.insert("hs_call_external_id".into(), json!(call_identity(e)));
    if let Some(d) = e.duration_ms {
        out.insert("hs_call_duration".into(), json!(d.to_string()));
    }
    let (from, to) = match e.direction {
        Direction::Inbound => (e.caller.phone.as_ref().map(|p| p.to_string()), e.our_number.clone()),
        Direction::Outbound => (e.our_number.clone(), e.caller.phone.as_ref().map(|p| p.to_string())),
    };
    if let Some(f) = from {
        out.insert("hs_call_from_number".into(), json!(f));
    }
    if let Some(t) = to {
        out.insert("hs_call_to_number".into(), json!(t));
    }
    if let Some(url) = e.recording_url.as_deref().filter(|u| u.starts_with("https://")) {
        out.insert("hs_call_recording_url".into(), json!(url));
    }
    out
}

/// The id stamped on a call activity: platform and call id, unique across platforms.
pub fn call_identity(e: &CallEvent) -> String {
    format!("{}:{}", e.source.as_str(), e.call_id)
}

/// Default meeting length when a booking gives only a start.
pub const DEFAULT_MEETING_MS: i64 = 30 * 60 * 1000;

/// The meeting's properties for a booking (`None` without a time).
pub fn meeting_properties(b: &BookingEvent) -> Option<Map<String, Value>> {
    let start = b.meeting_at_ms?;
    let end = start + b.duration_ms.filter(|d| *d > 0).unwrap_or(DEFAULT_MEETING_MS);
    let kind = b.meeting_type.clone().unwrap_or_else(|| "Meeting".into());
    let who = b
        .caller
        .display_name()
        .or_else(|| b.caller.email.as_ref().map(|e| e.to_string()))
        .unwrap_or_else(|| "caller".into());
    let mut out = meeting_times(start, end, "SCHEDULED", &meeting_body(b, &[]));
    out.insert("hs_meeting_title".into(), json!(format!("{kind} with {who}")));
    out.insert(PROP_MEETING_EVENT_ID.into(), json!(b.booking_key));
    Some(out)
}

/// A meeting's body: how it was booked, what it is about, then what happened to it since
/// (a line each). A change renders it again from the booking, so the body is the same
/// however many times a change is carried out.
pub fn meeting_body(b: &BookingEvent, history: &[String]) -> String {
    let mut body = format!(
        "<p>Booked through callbridge{}.</p>",
        b.lead_source.as_ref().map(|s| format!(" (lead source: {})", escape(s))).unwrap_or_default()
    );
    if let Some(notes) = b.notes.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        body.push_str(&format!("<p>Notes: {}</p>", escape(&truncate(notes, 2000))));
    }
    if let Some(at) = &b.meeting_at {
        body.push_str(&format!("<p>Requested time as given: {}</p>", escape(at)));
    }
    for line in history {
        body.push_str(&format!("<p>{}</p>", escape(line)));
    }
    body
}

/// A meeting's times, outcome and body: what a reschedule or a cancel writes.
pub fn meeting_times(start_ms: i64, end_ms: i64, outcome: &str, body: &str) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("hs_timestamp".into(), json!(crate::time::iso_ms(start_ms)));
    out.insert("hs_meeting_start_time".into(), json!(crate::time::iso_ms(start_ms)));
    out.insert("hs_meeting_end_time".into(), json!(crate::time::iso_ms(end_ms)));
    out.insert("hs_meeting_outcome".into(), json!(outcome));
    out.insert("hs_meeting_body".into(), json!(body));
    out
}

/// The contact's next-meeting properties for a meeting at `start_ms` (empty values clear them).
pub fn next_meeting(start_ms: i64, kind: &str, outcome: &str) -> Vec<(String, String)> {
    vec![
        (PROP_NEXT_MEETING_AT.to_string(), crate::time::iso_ms(start_ms)),
        (PROP_NEXT_MEETING_TYPE.to_string(), kind.to_string()),
        (PROP_NEXT_MEETING_OUTCOME.to_string(), outcome.to_string()),
    ]
}

/// A contact's current property values (non-empty ones).
pub type Values = HashMap<String, String>;

/// The kind of activity callbridge records per event (a row's `kind`).
pub const KIND_CALL: &str = "call";
pub const KIND_MEETING: &str = "meeting";

/// An activity an earlier event of the same call or booking already made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub hubspot_id: u64,
    /// The latest call stage written to it (0 for meetings).
    pub stage: i64,
    /// Made through the v1 engagements API rather than v3 objects.
    pub legacy: bool,
}

/// What callbridge records an activity under: the platform, its id for the call or
/// booking, and the activity's kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActivityKey {
    pub source: &'static str,
    pub key: String,
    pub kind: &'static str,
}

impl ActivityKey {
    pub fn of(event: &Event) -> ActivityKey {
        match event {
            Event::Call(c) => ActivityKey { source: c.source.as_str(), key: c.call_id.clone(), kind: KIND_CALL },
            Event::Booking(b) => ActivityKey {
                source: crate::event::Source::Generic.as_str(),
                key: b.booking_key.clone(),
                kind: KIND_MEETING,
            },
        }
    }
}

/// The write to the caller's contact.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactOp {
    /// A new contact with these properties.
    Create { properties: Map<String, Value> },
    /// Changes to an existing contact (never empty).
    Update { id: u64, properties: Map<String, Value> },
}

/// The write an event makes to its activity.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivityOp {
    /// Log the call, associated with the contact, stamped with `external_id`.
    LogCall { external_id: String, properties: Map<String, Value> },
    /// A later stage of a call already logged: update that activity in place.
    UpdateCall { logged: Logged, properties: Map<String, Value> },
    /// Create the booking's meeting, associated with the contact, stamped with `external_id`.
    CreateMeeting { external_id: String, properties: Map<String, Value> },
}

/// One event of a caller, with what callbridge already logged for it.
#[derive(Debug, Clone, Copy)]
pub struct PlannedEvent<'a> {
    pub event: &'a Event,
    pub logged: Option<&'a Logged>,
}

/// What a caller's events (in order) make: one contact write for all of them, and per event
/// its activity write and whether it is now the contact's newest call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallerPlan {
    pub contact: Option<ContactOp>,
    pub activities: Vec<Option<ActivityOp>>,
    /// Per event: a call that becomes the contact's "last call" (its context was written).
    pub newest: Vec<bool>,
}

/// Plans a caller's events, in order, against their contact (`None`: a new caller) and the
/// time of the newest call already synced to it. Later events apply on top of what earlier
/// ones wrote, by the same rules.
pub fn plan_caller(
    contact: Option<(u64, &Values)>,
    last_call_at: Option<i64>,
    events: &[PlannedEvent<'_>],
    rules: &PlanRules,
) -> CallerPlan {
    let mut current: Values = contact.map(|(_, v)| v.clone()).unwrap_or_default();
    let mut last = last_call_at;
    let mut write = Map::new();
    let mut plan = CallerPlan::default();
    for e in events {
        let (wish, activity, newest) = match e.event {
            Event::Call(c) => {
                // An event about an earlier stage than what is logged (a late `call_ended`
                // after `call_analyzed`) changes nothing: the later stage already said more.
                let superseded = e.logged.is_some_and(|l| l.stage > c.stage as i64);
                let newest = !superseded && !is_older_than_last_call(c.occurred_at_ms, last);
                if newest {
                    last = Some(last.map_or(c.occurred_at_ms, |l| l.max(c.occurred_at_ms)));
                }
                let activity = match e.logged {
                    _ if superseded => None,
                    Some(l) => Some(ActivityOp::UpdateCall { logged: l.clone(), properties: call_properties(c) }),
                    None => Some(ActivityOp::LogCall { external_id: call_identity(c), properties: call_properties(c) }),
                };
                (ContactWish::for_call(c, newest, rules), activity, newest)
            }
            Event::Booking(b) => {
                let activity = match (e.logged, meeting_properties(b)) {
                    (None, Some(properties)) => {
                        Some(ActivityOp::CreateMeeting { external_id: b.booking_key.clone(), properties })
                    }
                    _ => None,
                };
                (ContactWish::for_booking(b), activity, false)
            }
        };
        let changes =
            if contact.is_none() && write.is_empty() { new_contact(&wish) } else { contact_update(&current, &wish) };
        for (k, v) in changes {
            current.insert(k.clone(), v.as_str().map(String::from).unwrap_or_else(|| v.to_string()));
            write.insert(k, v);
        }
        plan.activities.push(activity);
        plan.newest.push(newest);
    }
    plan.contact = match contact {
        None => Some(ContactOp::Create { properties: write }),
        Some((id, _)) if !write.is_empty() => Some(ContactOp::Update { id, properties: write }),
        Some(_) => None,
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::Email;
    use crate::event::{Sentiment, Source};
    use crate::phone::{DefaultRegion, PhoneE164};

    fn caller() -> Caller {
        Caller {
            phone: Some(PhoneE164::parse("(415) 555-0100", DefaultRegion::default()).unwrap()),
            email: Some(Email::parse("dana@example.com").unwrap()),
            first_name: Some("Dana".into()),
            last_name: Some("Reyes".into()),
        }
    }

    fn current(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn updates_fill_empty_fields_and_never_blank_or_overwrite() {
        let wish = ContactWish {
            caller: caller(),
            lifecycle_stage: None,
            lead_source: Some("Vapi".into()),
            context: Vec::new(),
        };
        let existing = current(&[
            ("email", "dana@example.com"),
            ("firstname", "Danielle"),
            ("lastname", ""),
            ("mobilephone", "415 555 0100"),
        ]);
        let update = contact_update(&existing, &wish);
        assert_eq!(update.get("lastname"), Some(&json!("Reyes")));
        assert!(!update.contains_key("firstname"), "a name HubSpot has is kept");
        assert!(!update.contains_key("phone"), "a phone is already on file");
        assert!(!update.contains_key("email"));
        let empty_wish = ContactWish::default();
        assert!(contact_update(&existing, &empty_wish).is_empty(), "nothing is blanked");
    }

    #[test]
    fn lifecycle_stage_only_moves_forward() {
        assert!(lifecycle_moves_forward(None, "lead"));
        assert!(lifecycle_moves_forward(Some("lead"), "customer"));
        assert!(!lifecycle_moves_forward(Some("customer"), "lead"));
        assert!(!lifecycle_moves_forward(Some("customer"), "customer"));
        assert!(!lifecycle_moves_forward(Some("custom_stage"), "lead"));
        assert!(!lifecycle_moves_forward(None, "not_a_stage"));
        let wish = ContactWish { lifecycle_stage: Some("lead".into()), ..ContactWish::default() };
        assert!(!contact_update(&current(&[("lifecyclestage", "opportunity")]), &wish).contains_key("lifecyclestage"));
        assert_eq!(
            contact_update(&current(&[("lifecyclestage", "subscriber")]), &wish).get("lifecyclestage"),
            Some(&json!("lead"))
        );
    }

    #[test]
    fn an_older_call_does_not_replace_newer_context() {
        assert!(is_older_than_last_call(1_000, Some(2_000)));
        assert!(!is_older_than_last_call(2_000, Some(2_000)));
        assert!(!is_older_than_last_call(1_000, None));
        let event = call();
        assert!(ContactWish::for_call(&event, false, &PlanRules::default()).context.is_empty());
        assert!(!ContactWish::for_call(&event, true, &PlanRules::default()).context.is_empty());
    }

    #[test]
    fn the_newest_calls_intent_sets_the_lead_status_through_the_mapping_only() {
        let rules = PlanRules { lead_status: vec![(Intent::Book, "IN_PROGRESS".into())], ..PlanRules::default() };
        let booking = CallEvent { intent: Some(Intent::Book), ..call() };
        let lead = |e: &CallEvent, newest: bool, r: &PlanRules| {
            ContactWish::for_call(e, newest, r).context.into_iter().find(|(k, _)| k == PROP_LEAD_STATUS).map(|(_, v)| v)
        };
        assert_eq!(lead(&booking, true, &rules).as_deref(), Some("IN_PROGRESS"));
        assert_eq!(lead(&booking, false, &rules), None, "an older call never sets it");
        assert_eq!(lead(&booking, true, &PlanRules::default()), None, "no mapping, no write");
        let inquiry = CallEvent { intent: Some(Intent::Inquiry), ..call() };
        assert_eq!(lead(&inquiry, true, &rules), None, "an intent the mapping leaves out writes nothing");
        // Already at that status: nothing to write.
        let current: Values = [(PROP_LEAD_STATUS.to_string(), "IN_PROGRESS".to_string())].into();
        let wish = ContactWish::for_call(&booking, true, &rules);
        assert!(!contact_update(&current, &wish).contains_key(PROP_LEAD_STATUS));
    }

    #[test]
    fn a_complaint_urgent_callback_or_open_reschedule_makes_one_task_due_by_urgency() {
        let rules = PlanRules { task_owner: Some("75000002".into()), ..PlanRules::default() };
        let at = call().occurred_at_ms;
        let task = |intent, appointment: Option<&str>, owner: Option<&str>| {
            let c = CallEvent { intent: Some(intent), appointment: appointment.map(String::from), ..call() };
            task_properties(&c, owner, &rules)
        };
        let urgent = task(Intent::Urgent, None, Some("75000001")).unwrap();
        assert_eq!(urgent["hs_timestamp"], crate::time::iso_ms(at + 3_600_000));
        assert_eq!((&urgent["hs_task_priority"], &urgent[PROP_OWNER]), (&json!("HIGH"), &json!("75000001")));
        assert_eq!(urgent[PROP_MEETING_EVENT_ID], json!(task_identity(&call())));
        let complaint = task(Intent::Complaint, None, None).unwrap();
        assert_eq!(complaint[PROP_OWNER], "75000002", "no contact owner: the default owner");
        assert_eq!(complaint["hs_timestamp"], crate::time::iso_ms(at + 4 * 3_600_000));
        assert!(task(Intent::Callback, None, None).is_some());
        assert!(task(Intent::Reschedule, None, None).is_some(), "a reschedule without a new time");
        assert!(task(Intent::Reschedule, Some("Thursday 10:00"), None).is_none(), "rescheduled on the call");
        assert!(task(Intent::Book, None, None).is_none());
        assert!(task(Intent::Inquiry, None, None).is_none());
    }

    fn call() -> CallEvent {
        CallEvent {
            source: Source::Vapi,
            call_id: "abc".into(),
            stage: crate::event::CallStage::Analyzed,
            occurred_at_ms: 1_767_708_329_771,
            started_at_ms: Some(1_767_708_131_020),
            duration_ms: Some(198_751),
            direction: Direction::Inbound,
            caller: caller(),
            our_number: Some("+15715550100".into()),
            summary: Some("Booked a <visit> & paid".into()),
            transcript: Some("AI: Hello\nUser: Hi".into()),
            recording_url: Some("https://example.com/r.wav".into()),
            ended_reason: Some("customer-ended-call".into()),
            success: Some(true),
            sentiment: Some(Sentiment::Positive),
            intent: Some(Intent::Book),
            next_steps: None,
            appointment: None,
            number_withheld: false,
            answers: Vec::new(),
        }
    }

    #[test]
    fn the_call_body_is_escaped_and_carries_what_a_rep_needs() {
        let p = call_properties(&call());
        let body = p["hs_call_body"].as_str().unwrap();
        assert!(body.contains("Booked a &lt;visit&gt; &amp; paid"));
        assert!(body.contains("successful (customer ended call)"));
        assert!(body.contains("Caller sentiment:</strong> positive"));
        assert!(body.contains("AI: Hello<br>User: Hi"));
        assert_eq!(p["hs_call_external_id"], "vapi:abc");
        assert_eq!(p["hs_call_from_number"], "+14155550100");
        assert_eq!(p["hs_call_duration"], "198751");
        assert_eq!(p["hs_timestamp"], "2026-01-06T14:02:11.020Z");
    }

    fn booking(key: &str, at: Option<i64>) -> Event {
        Event::Booking(BookingEvent {
            caller: caller(),
            meeting_type: Some("Consultation".into()),
            meeting_at_ms: at,
            meeting_at: None,
            lead_source: Some("Website".into()),
            lifecycle_stage: Some("lead".into()),
            received_at_ms: 1,
            booking_key: key.into(),
            duration_ms: None,
            notes: None,
        })
    }

    #[test]
    fn a_new_caller_gets_one_contact_and_an_activity_per_event() {
        let (a, b) = (Event::Call(call()), booking("b1", Some(1_767_708_400_000)));
        let events = [PlannedEvent { event: &a, logged: None }, PlannedEvent { event: &b, logged: None }];
        let plan = plan_caller(None, None, &events, &PlanRules::default());
        let Some(ContactOp::Create { properties }) = &plan.contact else { panic!("{plan:?}") };
        assert_eq!(properties["email"], "dana@example.com");
        assert_eq!(properties["lifecyclestage"], "lead", "the booking's stage joins the call's contact write");
        assert_eq!(properties[PROP_LAST_SENTIMENT], "positive");
        assert!(
            matches!(&plan.activities[0], Some(ActivityOp::LogCall { external_id, .. }) if external_id == "vapi:abc")
        );
        assert!(
            matches!(&plan.activities[1], Some(ActivityOp::CreateMeeting { external_id, .. }) if external_id == "b1")
        );
        assert_eq!(plan.newest, [true, false]);
    }

    #[test]
    fn a_known_contact_with_nothing_to_change_gets_no_write() {
        let e = booking("b2", None);
        let current: Values = current(&[
            ("email", "dana@example.com"),
            ("firstname", "Dana"),
            ("lastname", "Reyes"),
            ("phone", "+14155550100"),
            (PROP_PHONE_E164, "+14155550100"),
            (PROP_LEAD_SOURCE, "Website"),
            ("lifecyclestage", "customer"),
        ]);
        let plan =
            plan_caller(Some((7, &current)), None, &[PlannedEvent { event: &e, logged: None }], &PlanRules::default());
        assert_eq!(plan.contact, None);
        assert_eq!(plan.activities, [None], "a booking without a time makes no meeting");
    }

    #[test]
    fn a_later_stage_updates_the_logged_call_and_an_earlier_one_changes_nothing() {
        let mut ended = call();
        ended.stage = crate::event::CallStage::Ended;
        let analyzed_logged = Logged { hubspot_id: 55, stage: 3, legacy: false };
        let e = Event::Call(ended.clone());
        let plan = plan_caller(
            None,
            None,
            &[PlannedEvent { event: &e, logged: Some(&analyzed_logged) }],
            &PlanRules::default(),
        );
        assert_eq!(plan.activities, [None]);
        assert_eq!(plan.newest, [false], "a superseded event does not touch the contact's context");
        let started_logged = Logged { hubspot_id: 55, stage: 1, legacy: true };
        let plan = plan_caller(
            None,
            None,
            &[PlannedEvent { event: &e, logged: Some(&started_logged) }],
            &PlanRules::default(),
        );
        assert!(
            matches!(&plan.activities[0], Some(ActivityOp::UpdateCall { logged, .. }) if logged.hubspot_id == 55 && logged.legacy)
        );
    }

    #[test]
    fn an_older_call_is_logged_but_leaves_the_newer_context() {
        let e = Event::Call(call());
        let current = current(&[("email", "dana@example.com")]);
        let plan = plan_caller(
            Some((9, &current)),
            Some(i64::MAX),
            &[PlannedEvent { event: &e, logged: None }],
            &PlanRules::default(),
        );
        assert!(matches!(plan.activities[0], Some(ActivityOp::LogCall { .. })));
        assert_eq!(plan.newest, [false]);
        let Some(ContactOp::Update { properties, .. }) = plan.contact else { panic!() };
        assert!(!properties.contains_key(PROP_LAST_CALL_SUMMARY));
    }
}
