//! Vapi server messages (`{"message": {"type": …}}`). The end-of-call report becomes a call
//! event; it is read from the `artifact`, `analysis` and `call` objects and, for older
//! assistants, the legacy top-level fields (`transcript`, `recordingUrl`, `summary`). Other
//! message types are acknowledged and ignored.

use callbridge_domain::{CallStage, DefaultRegion, Email, Sentiment, Source};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::call::CallFacts;
use crate::credential::{Unauthorized, check_shared_secret, header};
use crate::{CallerNumber, Fields, Parsed, Platform, Unit};

/// Vapi's webhook, as configured.
#[derive(Clone)]
pub struct Vapi {
    /// The shared secret (`X-Vapi-Secret` or Bearer), or the HMAC key.
    pub secret: Option<SecretString>,
    /// Vapi signs with its HMAC credential (`x-signature` over `{timestamp}.{body}`) instead
    /// of sending the secret.
    pub hmac: bool,
}

impl Platform for Vapi {
    const NAME: &'static str = "vapi";

    fn check_headers(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), Unauthorized> {
        match (&self.secret, self.hmac) {
            (None, _) => Err(Unauthorized::NOT_CONFIGURED),
            (Some(_), true) => {
                let (signature, timestamp) = (header(headers, "x-signature"), header(headers, "x-timestamp"));
                Ok(crate::signature::vapi(signature, timestamp, now_ms).map(drop)?)
            }
            (Some(secret), false) => check_shared_secret(Some(secret), headers, &["x-vapi-secret"]),
        }
    }

    fn check_body(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), Unauthorized> {
        let (Some(key), true) = (&self.secret, self.hmac) else { return Ok(()) };
        let (signature, timestamp) = (header(headers, "x-signature"), header(headers, "x-timestamp"));
        Ok(crate::signature::verify_vapi_hmac(signature, timestamp, body, key.expose_secret(), now_ms)?)
    }

    fn parse(&self, _: &HeaderMap, body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
        parse(body, region)
    }
}

/// A Vapi server message: the end-of-call report as a call event, any other type ignored.
pub fn parse(body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
    let mut f = Fields::default();
    let Some(message) = body.get("message").filter(|m| m.is_object()) else {
        f.error("message", "is required and must be an object");
        return Err(f);
    };
    let kind = Fields::tag(body, "message.type")?;
    if kind != "end-of-call-report" {
        return Ok(Parsed::Ignored(kind));
    }
    let m = message;
    let mut facts = CallFacts { call_id: f.string(m, "call.id", "message.call.id"), ..CallFacts::default() };
    if facts.call_id.is_none() && f.is_empty() {
        f.error("message.call.id", "is required");
    }
    // The caller: the call's customer, then the top-level customer; details the assistant
    // collected fill in the rest.
    let number = f
        .string(m, "call.customer.number", "message.call.customer.number")
        .or_else(|| f.string(m, "customer.number", "message.customer.number"));
    let number = CallerNumber::read(number, region);
    facts.number_withheld = number == CallerNumber::Withheld;
    let phone = number.phone();
    let data = Fields::at(m, "analysis.structuredData").filter(|d| d.is_object()).cloned().unwrap_or(Value::Null);
    let raw_email = f
        .string(m, "call.customer.email", "message.call.customer.email")
        .or_else(|| f.string(m, "customer.email", "message.customer.email"))
        .or_else(|| f.string(&data, "caller_email", "message.analysis.structuredData.caller_email"))
        .or_else(|| f.string(&data, "email", "message.analysis.structuredData.email"));
    // A malformed email the assistant heard is not worth refusing the call for.
    let email = raw_email.and_then(|e| Email::parse(&e).ok());
    let name = f
        .string(m, "call.customer.name", "message.call.customer.name")
        .or_else(|| f.string(&data, "caller_name", "message.analysis.structuredData.caller_name"))
        .or_else(|| f.string(&data, "name", "message.analysis.structuredData.name"));
    facts.caller = crate::call::caller(phone, email, name);

    let started = f
        .iso_instant(m, "startedAt", "message.startedAt")
        .or_else(|| f.iso_instant(m, "call.startedAt", "message.call.startedAt"));
    let ended = f
        .iso_instant(m, "endedAt", "message.endedAt")
        .or_else(|| f.iso_instant(m, "call.endedAt", "message.call.endedAt"));
    let timestamp = f.instant(m, "timestamp", "message.timestamp", Unit::Milliseconds);
    facts.started_at_ms = started;
    facts.duration_ms = match (started, ended) {
        (Some(s), Some(e)) if e >= s => Some(e - s),
        _ => f.duration(m, "durationSeconds", "message.durationSeconds", Unit::Seconds),
    };
    facts.occurred_at_ms = ended.or(started).or(timestamp);
    if facts.occurred_at_ms.is_none() && f.is_empty() {
        f.error("message.endedAt", "the report has no time (endedAt, startedAt or timestamp)");
    }

    facts.summary = f
        .string(m, "analysis.summary", "message.analysis.summary")
        .or_else(|| f.string(m, "summary", "message.summary"));
    facts.transcript = f
        .string(m, "artifact.transcript", "message.artifact.transcript")
        .or_else(|| f.string(m, "transcript", "message.transcript"));
    facts.recording_url = f
        .string(m, "artifact.recordingUrl", "message.artifact.recordingUrl")
        .or_else(|| f.string(m, "artifact.recording.mono.combinedUrl", "message.artifact.recording.mono.combinedUrl"))
        .or_else(|| f.string(m, "recordingUrl", "message.recordingUrl"));
    facts.ended_reason = f
        .string(m, "endedReason", "message.endedReason")
        .or_else(|| f.string(m, "call.endedReason", "message.call.endedReason"));
    facts.success = match Fields::at(m, "analysis.successEvaluation") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "pass" | "success" | "successful" => Some(true),
            "false" | "fail" | "failure" | "unsuccessful" => Some(false),
            _ => None,
        },
        _ => None,
    };
    facts.outbound = f.string(m, "call.type", "message.call.type").as_deref() == Some("outboundPhoneCall");
    facts.our_number = f.string(m, "phoneNumber.number", "message.phoneNumber.number");
    facts.sentiment = f
        .string(&data, "sentiment", "message.analysis.structuredData.sentiment")
        .or_else(|| f.string(&data, "caller_sentiment", "message.analysis.structuredData.caller_sentiment"))
        .or_else(|| structured_output(m, "sentiment"))
        .and_then(|s| Sentiment::parse(&s));
    facts.caller_turns = Fields::at(m, "artifact.messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter(|x| x.get("role").and_then(Value::as_str) == Some("user"))
                .filter_map(|x| x.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    facts.stated_intent = f.string(&data, "intent", "message.analysis.structuredData.intent");
    facts.next_steps = f.string(&data, "next_steps", "message.analysis.structuredData.next_steps");
    facts.appointment = f
        .string(&data, "appointment_start", "message.analysis.structuredData.appointment_start")
        .or_else(|| f.string(&data, "appointment", "message.analysis.structuredData.appointment"));

    // The end-of-call report is Vapi's last word on a call, analysis included.
    facts.finish(f, Source::Vapi, CallStage::Analyzed, "end-of-call-report")
}

/// A string result of a structured output whose name mentions `word`.
fn structured_output(m: &Value, word: &str) -> Option<String> {
    let outputs = Fields::at(m, "artifact.structuredOutputs")?.as_object()?;
    outputs.values().find_map(|o| {
        let name = o.get("name").and_then(Value::as_str)?;
        if name.to_lowercase().contains(word) {
            o.get("result").and_then(Value::as_str).map(String::from)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_domain::{Event, Intent};
    use serde_json::json;

    fn report() -> Value {
        json!({"message": {
            "type": "end-of-call-report",
            "endedReason": "customer-ended-call",
            "startedAt": "2026-01-06T14:02:11.020Z",
            "endedAt": "2026-01-06T14:05:29.771Z",
            "call": {"id": "call-1", "type": "inboundPhoneCall", "customer": {"number": "+15715550143"}},
            "phoneNumber": {"number": "+15715550100"},
            "artifact": {"transcript": "AI: Hi\nUser: I'd like to book a visit", "recordingUrl": "https://example.com/r.wav",
                         "messages": [{"role": "user", "message": "I'd like to book a visit"}]},
            "analysis": {"summary": "Booked a visit.", "structuredData": {"caller_name": "Dana Reyes", "caller_email": "dana@example.com"},
                         "successEvaluation": "true"},
            "somethingNew": {"vendors": "add fields"}
        }})
    }

    #[test]
    fn an_end_of_call_report_becomes_a_call_event() {
        let Parsed::Event(e, key) = parse(&report(), DefaultRegion::default()).unwrap() else { panic!() };
        let Event::Call(e) = *e else { panic!() };
        assert_eq!(key.as_str(), "vapi:call-1:end-of-call-report");
        assert_eq!(e.caller.phone.as_ref().unwrap().as_str(), "+15715550143");
        assert_eq!(e.caller.email.as_ref().unwrap().as_str(), "dana@example.com");
        assert_eq!((e.caller.first_name.as_deref(), e.caller.last_name.as_deref()), (Some("Dana"), Some("Reyes")));
        assert_eq!(e.duration_ms, Some(198_751));
        assert_eq!(e.success, Some(true));
        assert_eq!(e.intent, Some(Intent::Book));
        assert_eq!(e.our_number.as_deref(), Some("+15715550100"));
    }

    #[test]
    fn without_a_platform_verdict_the_callers_own_words_are_scored() {
        let mut r = report();
        r["message"]["artifact"]["messages"] = json!([{"role": "bot", "message": "Great to hear!"},
            {"role": "user", "message": "Nobody came. This is unacceptable and I am furious."}]);
        let Parsed::Event(e, _) = parse(&r, DefaultRegion::default()).unwrap() else { panic!() };
        let Event::Call(e) = *e else { panic!() };
        assert_eq!(e.sentiment, Some(Sentiment::Negative));
        r["message"]["analysis"]["structuredData"]["sentiment"] = json!("positive");
        let Parsed::Event(e, _) = parse(&r, DefaultRegion::default()).unwrap() else { panic!() };
        let Event::Call(e) = *e else { panic!() };
        assert_eq!(e.sentiment, Some(Sentiment::Positive), "the platform's verdict wins");
    }

    #[test]
    fn legacy_top_level_fields_are_read() {
        let mut r = report();
        let m = r["message"].as_object_mut().unwrap();
        m.remove("artifact");
        m.remove("analysis");
        m.insert("summary".into(), json!("Legacy summary"));
        m.insert("transcript".into(), json!("User: hello"));
        m.insert("recordingUrl".into(), json!("https://example.com/legacy.wav"));
        let Parsed::Event(e, _) = parse(&r, DefaultRegion::default()).unwrap() else { panic!() };
        let Event::Call(e) = *e else { panic!() };
        assert_eq!(e.summary.as_deref(), Some("Legacy summary"));
        assert_eq!(e.recording_url.as_deref(), Some("https://example.com/legacy.wav"));
    }

    #[test]
    fn other_messages_are_ignored_and_bad_fields_named() {
        let status = json!({"message": {"type": "status-update", "status": "ended"}});
        assert!(
            matches!(parse(&status, DefaultRegion::default()).unwrap(), Parsed::Ignored(t) if t == "status-update")
        );
        let fields = |v: Value| {
            parse(&v, DefaultRegion::default()).unwrap_err().errors.into_iter().map(|e| e.field).collect::<Vec<_>>()
        };
        assert_eq!(fields(json!({"nope": 1})), ["message"]);
        assert_eq!(fields(json!({"message": {"type": 3}})), ["message.type"]);
        let mut r = report();
        r["message"]["call"]["id"] = json!(42);
        r["message"]["endedAt"] = json!("yesterday");
        assert_eq!(fields(r), ["message.call.id", "message.endedAt"]);
    }
}
