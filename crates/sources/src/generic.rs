//! The generic booking webhook (Zapier, Make, custom agents), at `/webhooks/generic` and at each
//! named endpoint (`/webhooks/generic/{name}`) configured with a mapping of its own.
//!
//! **Bodies as people send them:** JSON, or a form (`application/x-www-form-urlencoded`, what
//! Zapier's webhook step sends by default); an array wrapping one booking; Zapier's flattened
//! keys (`contact__email` is `contact.email`).
//!
//! **Fields by mapping:** each field callbridge reads ([`BOOKING_FIELDS`]) is found at the first
//! of its paths (the path language of [`crate::fields`]) that holds a value. The defaults accept
//! the common spellings (`email`, `caller_email`, `contact.email`, …); a named endpoint's
//! mapping replaces them field by field. An email or a phone is required, and a meeting time
//! (ISO-8601 with an offset) unless the endpoint takes contacts only; a 400 says which paths
//! were looked at and which keys the body has.

use std::collections::BTreeMap;
use std::sync::Arc;

use callbridge_domain::plan::LIFECYCLE_ORDER;
use callbridge_domain::time::{now_ms, parse_iso_with_offset};
use callbridge_domain::{BookingEvent, Caller, DefaultRegion, Email, Event, IdempotencyKey, PhoneE164};
use http::HeaderMap;
use secrecy::SecretString;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::credential::{Unauthorized, check_shared_secret, header};
use crate::{Fields, Parsed, Platform};

/// The fields a booking is read from, with the paths tried for each by default.
pub const BOOKING_FIELDS: [(&str, &[&str]); 9] = [
    (
        "email",
        &[
            "email",
            "caller_email",
            "customer_email",
            "contact.email",
            "customer.email",
            "attendee.email",
            "invitee.email",
        ],
    ),
    (
        "phone",
        &[
            "phone",
            "caller_phone",
            "phone_number",
            "customer_phone",
            "mobilephone",
            "contact.phone",
            "customer.phone",
            "customer.number",
        ],
    ),
    (
        "firstname",
        &["firstname", "first_name", "firstName", "contact.firstname", "contact.first_name", "customer.first_name"],
    ),
    ("lastname", &["lastname", "last_name", "lastName", "contact.lastname", "contact.last_name", "customer.last_name"]),
    ("meeting_type", &["meeting_type", "meetingType", "appointment_type", "event_type", "service"]),
    (
        "meeting_datetime",
        &["meeting_datetime", "meeting_time", "start_time", "startTime", "appointment_time", "scheduled_at"],
    ),
    ("lead_source", &["lead_source", "leadSource", "source"]),
    ("lifecycle_stage", &["lifecycle_stage", "lifecyclestage"]),
    ("notes", &["notes", "note", "comments", "description"]),
];

/// Where each booking field is read from.
#[derive(Debug, Clone)]
pub struct BookingMap {
    paths: BTreeMap<&'static str, Vec<String>>,
}

impl Default for BookingMap {
    fn default() -> Self {
        let paths = BOOKING_FIELDS.iter().map(|(f, p)| (*f, p.iter().map(|p| p.to_string()).collect())).collect();
        BookingMap { paths }
    }
}

impl BookingMap {
    /// The defaults with `overrides` (field → paths) in their place. An unknown field or a
    /// malformed path is refused, named.
    pub fn with(overrides: &BTreeMap<String, Vec<String>>) -> Result<BookingMap, String> {
        let mut map = BookingMap::default();
        for (field, paths) in overrides {
            let Some((name, _)) = BOOKING_FIELDS.iter().find(|(f, _)| f == field) else {
                let known: Vec<&str> = BOOKING_FIELDS.iter().map(|(f, _)| *f).collect();
                return Err(format!("`{field}` is not a booking field (use {})", known.join(", ")));
            };
            if paths.is_empty() {
                return Err(format!("`{field}` needs at least one path"));
            }
            if let Some(bad) = paths.iter().find(|p| !Fields::valid_path(p)) {
                return Err(format!("`{field}`: {bad:?} is not a path like contact.email or items[0].email"));
            }
            map.paths.insert(name, paths.clone());
        }
        Ok(map)
    }

    fn paths(&self, field: &str) -> &[String] {
        self.paths.get(field).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A booking webhook, as configured.
#[derive(Clone, Default)]
pub struct Generic {
    /// The Bearer token senders present.
    pub token: Option<SecretString>,
    /// Where the fields are read from.
    pub map: Arc<BookingMap>,
    /// Bookings without a meeting time are contacts to land, not a 400.
    pub contacts_only: bool,
}

impl Platform for Generic {
    const NAME: &'static str = "generic";

    fn check_headers(&self, headers: &HeaderMap, _now_ms: i64) -> Result<(), Unauthorized> {
        check_shared_secret(self.token.as_ref(), headers, &[])
    }

    fn check_body(&self, _: &HeaderMap, _: &[u8], _: i64) -> Result<(), Unauthorized> {
        Ok(())
    }

    fn decode(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, Fields> {
        let form = header(headers, "content-type")
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        let value = if form {
            Value::Object(
                form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect(),
            )
        } else {
            crate::decode_json(body)?
        };
        unwrap_one(value).map(unflatten)
    }

    fn parse(&self, headers: &HeaderMap, body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
        let (booking, key) =
            parse_with(body, region, header(headers, "idempotency-key"), &self.map, self.contacts_only)?;
        Ok(Parsed::Event(Box::new(Event::Booking(booking)), key))
    }
}

/// A body that is an array of one booking is that booking.
fn unwrap_one(value: Value) -> Result<Value, Fields> {
    match value {
        Value::Array(mut items) if items.len() == 1 => Ok(items.remove(0)),
        Value::Array(items) => {
            let mut f = Fields::default();
            f.error("body", format!("is a list of {} items: send one booking per request", items.len()));
            Err(f)
        }
        other => Ok(other),
    }
}

/// Zapier's flattened keys (`contact__email`) as nested objects, next to the keys as sent.
fn unflatten(value: Value) -> Value {
    let Value::Object(mut map) = value else { return value };
    let flattened: Vec<(String, Value)> =
        map.iter().filter(|(k, _)| k.contains("__")).map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, v) in flattened {
        let parts: Vec<&str> = key.split("__").filter(|p| !p.is_empty()).collect();
        insert_at(&mut map, &parts, v);
    }
    Value::Object(map)
}

/// Puts `v` at the nested keys `parts`, keeping whatever is there already.
fn insert_at(map: &mut Map<String, Value>, parts: &[&str], v: Value) {
    match parts {
        [] => {}
        [last] => {
            map.entry(last.to_string()).or_insert(v);
        }
        [first, rest @ ..] => {
            if let Value::Object(next) = map.entry(first.to_string()).or_insert_with(|| Value::Object(Map::new())) {
                insert_at(next, rest, v);
            }
        }
    }
}

/// The keys a body has, for a 400 that says what it saw (keys, never values).
fn keys_seen(body: &Value) -> String {
    let keys: Vec<&str> = body.as_object().map(|m| m.keys().map(String::as_str).take(20).collect()).unwrap_or_default();
    if keys.is_empty() { "no fields".to_string() } else { keys.join(", ") }
}

/// Parses a booking with the default mapping, a meeting time required.
pub fn parse(
    body: &Value,
    region: DefaultRegion,
    idempotency_key: Option<&str>,
) -> Result<(BookingEvent, IdempotencyKey), Fields> {
    parse_with(body, region, idempotency_key, &BookingMap::default(), false)
}

/// Parses a booking with `map`. `idempotency_key` comes from the `Idempotency-Key` header when
/// the sender gives one; otherwise the booking's content identifies it, so a retried delivery
/// of the same booking is recognised.
pub fn parse_with(
    body: &Value,
    region: DefaultRegion,
    idempotency_key: Option<&str>,
    map: &BookingMap,
    contacts_only: bool,
) -> Result<(BookingEvent, IdempotencyKey), Fields> {
    let mut f = Fields::default();
    if !body.is_object() {
        f.error("body", "must be a JSON object");
        return Err(f);
    }
    let email = f.first_string(body, map.paths("email"), "email").and_then(|raw| match Email::parse(&raw) {
        Ok(e) => Some(e),
        Err(e) => {
            f.error("email", e.to_string());
            None
        }
    });
    let phone =
        f.first_string(body, map.paths("phone"), "phone").and_then(|raw| match PhoneE164::parse(&raw, region) {
            Ok(p) => Some(p),
            Err(e) => {
                f.error("phone", e.to_string());
                None
            }
        });
    let first_name = f.first_string(body, map.paths("firstname"), "firstname");
    let last_name = f.first_string(body, map.paths("lastname"), "lastname");
    let meeting_type = f.first_string(body, map.paths("meeting_type"), "meeting_type");
    let meeting_at = f.first_string(body, map.paths("meeting_datetime"), "meeting_datetime");
    let meeting_at_ms = meeting_at.as_deref().and_then(|s| match parse_iso_with_offset(s) {
        Some(ms) => Some(ms),
        None => {
            f.error("meeting_datetime", "must be an ISO-8601 date-time with an offset, like 2026-01-08T09:00:00-05:00");
            None
        }
    });
    let lead_source = f.first_string(body, map.paths("lead_source"), "lead_source");
    let notes = f.first_string(body, map.paths("notes"), "notes");
    let lifecycle_stage = f.first_string(body, map.paths("lifecycle_stage"), "lifecycle_stage").and_then(|raw| {
        let value: String = raw.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        if LIFECYCLE_ORDER.contains(&value.as_str()) {
            Some(value)
        } else {
            f.error("lifecycle_stage", format!("must be one of {}", LIFECYCLE_ORDER.join(", ")));
            None
        }
    });
    let named = |f: &Fields, field: &str| f.errors.iter().any(|e| e.field == field);
    if email.is_none() && phone.is_none() && !named(&f, "email") && !named(&f, "phone") {
        let looked: Vec<&str> = map.paths("email").iter().chain(map.paths("phone")).map(String::as_str).collect();
        f.error(
            "email",
            format!(
                "an email or a phone is required: looked for {}; the body has {}",
                looked.join(", "),
                keys_seen(body)
            ),
        );
    }
    if meeting_at.is_none() && !contacts_only {
        f.error(
            "meeting_datetime",
            format!(
                "a meeting time is required (ISO-8601 with an offset): looked for {}; the body has {}",
                map.paths("meeting_datetime").join(", "),
                keys_seen(body)
            ),
        );
    }
    if !f.is_empty() {
        return Err(f);
    }
    let caller = Caller { phone, email, first_name, last_name };
    let booking_key = match idempotency_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => format!("key:{k}"),
        None => {
            let mut h = Sha256::new();
            for part in [
                caller.email.as_ref().map(|e| e.as_str().to_string()),
                caller.phone.as_ref().map(|p| p.to_string()),
                caller.first_name.clone(),
                caller.last_name.clone(),
                meeting_type.clone(),
                meeting_at_ms.map(|m| m.to_string()),
                lead_source.clone(),
                lifecycle_stage.clone(),
            ] {
                h.update(part.unwrap_or_default().as_bytes());
                h.update([0x1f]);
            }
            let digest = h.finalize();
            format!("content:{}", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>())
        }
    };
    let idempotency = IdempotencyKey::of("generic", &booking_key);
    Ok((
        BookingEvent {
            caller,
            meeting_type,
            meeting_at_ms,
            meeting_at,
            lead_source,
            lifecycle_stage,
            received_at_ms: now_ms(),
            booking_key,
            duration_ms: None,
            notes,
        },
        idempotency,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_ok(v: Value) -> BookingEvent {
        parse(&v, DefaultRegion::default(), None).unwrap().0
    }

    fn problems(v: Value) -> Vec<(String, String)> {
        parse(&v, DefaultRegion::default(), None)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| (e.field, e.problem))
            .collect()
    }

    #[test]
    fn a_booking_is_normalised() {
        let b = parse_ok(json!({"email": " Dana@Example.com", "firstname": " Dana ", "phone": "(571) 555-0143",
            "meeting_type": "Site visit", "meeting_datetime": "2026-01-08T09:00:00-05:00", "lifecycle_stage": "Sales Qualified Lead",
            "utm_campaign": "ignored"}));
        assert_eq!(b.caller.email.unwrap().as_str(), "dana@example.com");
        assert_eq!(b.caller.first_name.as_deref(), Some("Dana"));
        assert_eq!(b.caller.phone.unwrap().as_str(), "+15715550143");
        assert_eq!(b.meeting_at_ms, Some(1_767_880_800_000));
        assert_eq!(b.lifecycle_stage.as_deref(), Some("salesqualifiedlead"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let p =
            problems(json!({"email": "nope", "phone": 5, "meeting_datetime": "tomorrow", "lifecycle_stage": "vip"}));
        let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["email", "phone", "meeting_datetime", "lifecycle_stage"]);
        let p = problems(json!({"firstname": "x", "caller": "y"}));
        assert_eq!(p[0].0, "email");
        assert!(p[0].1.starts_with("an email or a phone is required: looked for email, caller_email"), "{}", p[0].1);
        assert!(p[0].1.ends_with("the body has caller, firstname"), "{}", p[0].1);
        assert_eq!(p[1].0, "meeting_datetime");
        assert!(p[1].1.contains("looked for meeting_datetime, meeting_time, start_time"), "{}", p[1].1);
        assert_eq!(problems(json!([1, 2]))[0].0, "body");
        assert_eq!(
            problems(json!({"phone": "555-0100", "meeting_datetime": "2026-01-08T09:00:00Z"}))[0],
            ("phone".to_string(), "is not a valid phone number".to_string())
        );
    }

    fn decoded(content_type: &str, body: &str) -> Result<Value, Fields> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", content_type.parse().unwrap());
        Generic::default().decode(&headers, body.as_bytes())
    }

    #[test]
    fn form_bodies_zapier_keys_and_a_wrapped_booking_are_read_like_json() {
        let form = decoded(
            "application/x-www-form-urlencoded; charset=utf-8",
            "caller_email=Ann%40Example.com&contact__first_name=Ann&start_time=2026-01-08T09%3A00%3A00-05%3A00",
        )
        .unwrap();
        let b = parse_ok(form);
        assert_eq!(b.caller.email.unwrap().as_str(), "ann@example.com");
        assert_eq!(b.caller.first_name.as_deref(), Some("Ann"), "contact__first_name is contact.first_name");
        assert_eq!(b.meeting_at_ms, Some(1_767_880_800_000));
        let wrapped =
            decoded("application/json", r#"[{"phone": "(571) 555-0143", "meeting_time": "2026-01-08T09:00:00Z"}]"#);
        assert_eq!(parse_ok(wrapped.unwrap()).caller.phone.unwrap().as_str(), "+15715550143");
        let many = decoded("application/json", r#"[{"a": 1}, {"b": 2}]"#).unwrap_err();
        assert_eq!(many.errors[0].field, "body");
        assert!(many.errors[0].problem.contains("list of 2 items"));
        let not_json = decoded("application/json", "{nope").unwrap_err();
        assert!(not_json.errors[0].problem.starts_with("is not valid JSON"));
    }

    #[test]
    fn a_mapping_replaces_the_default_paths_field_by_field_and_contacts_only_needs_no_time() {
        let overrides: BTreeMap<String, Vec<String>> = [
            ("email".to_string(), vec!["lead.contact[0].address".to_string()]),
            ("meeting_datetime".to_string(), vec!["slot.begins".to_string()]),
        ]
        .into();
        let map = BookingMap::with(&overrides).unwrap();
        let body = json!({"lead": {"contact": [{"address": "b@example.com"}]}, "slot": {"begins": "2026-01-08T09:00:00Z"}, "email": "ignored@example.com"});
        let (b, _) = parse_with(&body, DefaultRegion::default(), None, &map, false).unwrap();
        assert_eq!(b.caller.email.unwrap().as_str(), "b@example.com");
        let no_time = json!({"lead": {"contact": [{"address": "b@example.com"}]}});
        assert!(parse_with(&no_time, DefaultRegion::default(), None, &map, false).is_err());
        let (b, _) = parse_with(&no_time, DefaultRegion::default(), None, &map, true).unwrap();
        assert_eq!(b.meeting_at_ms, None);
        let unknown: BTreeMap<String, Vec<String>> = [("emial".to_string(), vec!["x".to_string()])].into();
        assert!(BookingMap::with(&unknown).unwrap_err().contains("`emial` is not a booking field"));
        let bad_path: BTreeMap<String, Vec<String>> = [("email".to_string(), vec!["a[".to_string()])].into();
        assert!(BookingMap::with(&bad_path).unwrap_err().contains("is not a path"));
    }

    #[test]
    fn the_same_booking_gets_the_same_key_and_a_header_key_wins() {
        let body = json!({"email": "a@example.com", "meeting_datetime": "2026-01-08T09:00:00Z"});
        let reordered = json!({"meeting_datetime": "2026-01-08T10:00:00+01:00", "email": "A@example.com"});
        let k1 = parse(&body, DefaultRegion::default(), None).unwrap().1;
        let k2 = parse(&reordered, DefaultRegion::default(), None).unwrap().1;
        assert_eq!(k1, k2);
        assert_eq!(parse(&body, DefaultRegion::default(), Some("zap-123")).unwrap().1.as_str(), "generic:key:zap-123");
    }
}
