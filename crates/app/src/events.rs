//! One event as an operator sees it (`GET /events/{id}`): where it came from and when, the raw
//! body and the canonical event with personal values masked unless asked, each failed attempt
//! with its error kind and when it was to run again, and what it wrote to HubSpot — the
//! record ids, v3 or v1, and links into HubSpot's own pages. Times are given as epoch
//! milliseconds and as RFC 3339 text.

use callbridge_domain::PortalId;
use callbridge_domain::plan::{ActivityKey, KIND_CALL, KIND_MEETING, KIND_TASK};
use callbridge_domain::time::iso_ms;
use callbridge_store::{EventDetail, Result as StoreResult, Store};
use serde_json::{Map, Value, json};

use crate::jobs::JobKind;
use crate::portals::Portals;

/// What a masked value becomes.
const MASK: &str = "[masked]";

/// Keys whose text values are personal whatever they hold (names, numbers, free text).
const PERSONAL_KEYS: [&str; 14] = [
    "phone",
    "number",
    "email",
    "name",
    "transcript",
    "summary",
    "address",
    "message",
    "content",
    "text",
    "note",
    "recording",
    "answer",
    "body",
];

/// The detail of event `id`, masked unless `reveal`; `None` when there is no such event.
pub async fn detail(store: &dyn Store, portals: &Portals, id: i64, reveal: bool) -> StoreResult<Option<Value>> {
    let Some(d) = store.event(id).await? else { return Ok(None) };
    let written = written(store, portals, &d).await?;
    let EventDetail { row, raw_body, event_json, run_at_ms, attempts } = d;
    let raw = match serde_json::from_slice::<Value>(&raw_body) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(&raw_body).into_owned()),
    };
    let event = serde_json::from_str::<Value>(&event_json).unwrap_or(Value::String(event_json));
    let (raw, event) = if reveal { (raw, event) } else { (mask(raw, false), mask(event, false)) };
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({"attempt": a.attempt, "at_ms": a.at_ms, "at": iso_ms(a.at_ms), "error_kind": a.error_kind,
                   "error": a.error, "retry_at_ms": a.retry_at_ms, "retry_at": a.retry_at_ms.map(iso_ms),
                   "outcome": if a.retry_at_ms.is_some() { "retry" } else { "dead" }})
        })
        .collect();
    Ok(Some(json!({
        "id": row.id, "portal": row.portal, "source": row.source, "idempotency_key": row.idempotency_key,
        "received_at_ms": row.received_at_ms, "received_at": iso_ms(row.received_at_ms),
        "kind": row.kind, "status": row.status, "attempts": row.attempts, "last_error": row.last_error,
        "next_run_at_ms": run_at_ms, "next_run_at": run_at_ms.map(iso_ms),
        "history": attempts, "written": written, "masked": !reveal,
        "raw_body": raw, "event": event,
    })))
}

/// The HubSpot records the event's job made, with links into HubSpot's pages when the
/// portal's account id is known.
async fn written(store: &dyn Store, portals: &Portals, d: &EventDetail) -> StoreResult<Vec<Value>> {
    let Some(kind) = d.row.kind.as_deref() else { return Ok(Vec::new()) };
    let Some(event) = JobKind::decode(kind, &d.event_json).ok().and_then(|k| k.event()) else { return Ok(Vec::new()) };
    let portal = PortalId::parse(&d.row.portal).unwrap_or_default();
    let hub = portals.get(&portal).and_then(|p| p.hub_id());
    let key = ActivityKey::of(&event);
    let mut written = Vec::new();
    for (kind, object) in [(KIND_CALL, "0-48"), (KIND_MEETING, "0-47"), (KIND_TASK, "0-27")] {
        let Some(a) = store.activity(&portal, key.source, &key.key, kind).await? else { continue };
        let link =
            |object: &str, id: u64| hub.map(|h| format!("https://app.hubspot.com/contacts/{h}/record/{object}/{id}"));
        written.push(json!({"object": kind, "hubspot_id": a.hubspot_id.to_string(), "api": a.via,
                            "url": link(object, a.hubspot_id),
                            "contact_id": a.contact_id.map(|c| c.to_string()),
                            "contact_url": a.contact_id.and_then(|c| link("0-1", c))}));
    }
    Ok(written)
}

/// `value` with every personal text masked: the values of personal keys, and any text that
/// holds an email or a phone number wherever it is.
pub fn mask(value: Value, personal: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let personal = PERSONAL_KEYS.iter().any(|p| lower.contains(p));
                    (k, mask(v, personal))
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask(v, personal)).collect()),
        Value::String(s) if personal || looks_personal(&s) => Value::String(MASK.into()),
        Value::Number(_) if personal => Value::String(MASK.into()),
        other => other,
    }
}

/// Text that holds an email, or a phone number however written: a run of digits, spaces and
/// `+-().` with seven digits or more (a timestamp aside).
fn looks_personal(s: &str) -> bool {
    if s.contains('@') {
        return true;
    }
    if s.parse::<jiff::Timestamp>().is_ok() {
        return false;
    }
    let mut digits = 0;
    for c in s.chars() {
        match c {
            '0'..='9' => digits += 1,
            ' ' | '+' | '-' | '(' | ')' | '.' => {}
            _ => digits = 0,
        }
        if digits >= 7 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_values_are_masked_wherever_they_are_and_the_rest_kept() {
        let body = json!({"message": {"type": "end-of-call-report", "call": {"id": "call-1",
            "customer": {"number": "+15715550143"}}, "summary": "Wants a quote", "durationSeconds": 42,
            "analysis": {"successEvaluation": "true"}, "artifact": {"messages": [{"role": "user", "message": "hi"}]},
            "endedAt": "2026-01-06T14:05:29.771Z", "notes": ["call me at 571 555 0143"], "contact": "dana@example.com"}});
        let masked = mask(body, false);
        let text = masked.to_string();
        for personal in ["+15715550143", "Wants a quote", "dana@example.com", "571 555 0143", "\"hi\""] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
        assert_eq!(masked["message"]["call"]["id"], "call-1");
        assert_eq!(masked["message"]["durationSeconds"], 42);
        assert_eq!(masked["message"]["endedAt"], "2026-01-06T14:05:29.771Z");
        assert_eq!(masked["message"]["analysis"]["successEvaluation"], "true");
    }
}
