//! The generic booking webhook (the Zapier / custom-agent shape): `email`, `firstname`,
//! `lastname`, `phone`, `meeting_type`, `meeting_datetime` (ISO-8601 with offset),
//! `lead_source`, `lifecycle_stage`. An email or a phone is required.

use callbridge_domain::plan::LIFECYCLE_ORDER;
use callbridge_domain::time::{now_ms, parse_iso_with_offset};
use callbridge_domain::{BookingEvent, Caller, DefaultRegion, Email, Event, IdempotencyKey, PhoneE164};
use http::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::credential::{Unauthorized, check_shared_secret, header};
use crate::{Fields, Parsed, Platform};

/// The booking webhook, as configured.
#[derive(Clone)]
pub struct Generic {
    /// The Bearer token senders present.
    pub token: Option<SecretString>,
}

impl Platform for Generic {
    const NAME: &'static str = "generic";

    fn check_headers(&self, headers: &HeaderMap, _now_ms: i64) -> Result<(), Unauthorized> {
        check_shared_secret(self.token.as_ref(), headers, &[])
    }

    fn check_body(&self, _: &HeaderMap, _: &[u8], _: i64) -> Result<(), Unauthorized> {
        Ok(())
    }

    fn parse(&self, headers: &HeaderMap, body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
        let (booking, key) = parse(body, region, header(headers, "idempotency-key"))?;
        Ok(Parsed::Event(Box::new(Event::Booking(booking)), key))
    }
}

/// Parses a booking. `idempotency_key` comes from the `Idempotency-Key` header when the
/// sender gives one; otherwise the booking's content identifies it, so a retried delivery
/// of the same booking is recognised.
pub fn parse(
    body: &Value,
    region: DefaultRegion,
    idempotency_key: Option<&str>,
) -> Result<(BookingEvent, IdempotencyKey), Fields> {
    let mut f = Fields::default();
    if !body.is_object() {
        f.error("body", "must be a JSON object");
        return Err(f);
    }
    let email = f.string(body, "email", "email").and_then(|raw| match Email::parse(&raw) {
        Ok(e) => Some(e),
        Err(e) => {
            f.error("email", e.to_string());
            None
        }
    });
    let phone = f.string(body, "phone", "phone").and_then(|raw| match PhoneE164::parse(&raw, region) {
        Ok(p) => Some(p),
        Err(e) => {
            f.error("phone", e.to_string());
            None
        }
    });
    let first_name = f.string(body, "firstname", "firstname");
    let last_name = f.string(body, "lastname", "lastname");
    let meeting_type = f.string(body, "meeting_type", "meeting_type");
    let meeting_at = f.string(body, "meeting_datetime", "meeting_datetime");
    let meeting_at_ms = meeting_at.as_deref().and_then(|s| match parse_iso_with_offset(s) {
        Some(ms) => Some(ms),
        None => {
            f.error("meeting_datetime", "must be an ISO-8601 date-time with an offset, like 2026-01-08T09:00:00-05:00");
            None
        }
    });
    let lead_source = f.string(body, "lead_source", "lead_source");
    let lifecycle_stage = f.string(body, "lifecycle_stage", "lifecycle_stage").and_then(|raw| {
        let value: String = raw.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        if LIFECYCLE_ORDER.contains(&value.as_str()) {
            Some(value)
        } else {
            f.error("lifecycle_stage", format!("must be one of {}", LIFECYCLE_ORDER.join(", ")));
            None
        }
    });
    if email.is_none() && phone.is_none() && !f.errors.iter().any(|e| e.field == "email" || e.field == "phone") {
        f.error("email", "an email or a phone is required");
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
        assert_eq!(
            problems(json!({"firstname": "x"})),
            vec![("email".to_string(), "an email or a phone is required".to_string())]
        );
        assert_eq!(problems(json!([1, 2]))[0].0, "body");
        assert_eq!(
            problems(json!({"phone": "555-0100"}))[0],
            ("phone".to_string(), "is not a valid phone number".to_string())
        );
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
