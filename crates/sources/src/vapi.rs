//! Vapi server messages (`{"message": {"type": …}}`). The end-of-call report becomes a call
//! event; it is read from the `artifact`, `analysis` and `call` objects and, for older
//! assistants, the legacy top-level fields (`transcript`, `recordingUrl`, `summary`). The
//! messages of a live call ([`LIVE`]: status updates, partial transcripts, interruptions,
//! conversation updates) are the call at its first stage, coalesced downstream into one write
//! per window. Other message types are acknowledged and ignored.

use callbridge_domain::{CallStage, DefaultRegion, Email, IdempotencyKey, Sentiment, Source};
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
    const AGENT_PATHS: &'static [&'static str] = &["message.call.assistantId", "message.assistant.id"];

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
    if LIVE.contains(&kind.as_str()) {
        return Ok(live(message, &kind, region));
    }
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

/// Messages Vapi sends while a call is live: each is the call at its first stage, and the
/// updates of one call coalesce into one write.
pub const LIVE: [&str; 4] = ["status-update", "transcript", "user-interrupted", "conversation-update"];

/// A live message as the call so far: who is calling, since when, which way. Under a key of
/// its own content (a redelivery is a duplicate; the next update is not). A live message that
/// says too little to land (no call id, no time) is kept without work: the end-of-call report
/// carries the call whatever happens to the updates before it.
fn live(m: &Value, kind: &str, region: DefaultRegion) -> Parsed {
    let mut f = Fields::default();
    let digest = crate::content_digest(m.to_string().as_bytes());
    let call_id = f.string(m, "call.id", "message.call.id");
    let key =
        IdempotencyKey::event(Source::Vapi.as_str(), call_id.as_deref().unwrap_or("-"), &format!("{kind}:{digest}"));
    let number = f
        .string(m, "call.customer.number", "message.call.customer.number")
        .or_else(|| f.string(m, "customer.number", "message.customer.number"));
    let number = CallerNumber::read(number, region);
    let email = f
        .string(m, "call.customer.email", "message.call.customer.email")
        .or_else(|| f.string(m, "customer.email", "message.customer.email"))
        .and_then(|e| Email::parse(&e).ok());
    let name = f.string(m, "call.customer.name", "message.call.customer.name");
    let started = f
        .iso_instant(m, "call.startedAt", "message.call.startedAt")
        .or_else(|| f.iso_instant(m, "call.createdAt", "message.call.createdAt"));
    let at = f.instant(m, "timestamp", "message.timestamp", Unit::Milliseconds).or(started);
    let facts = CallFacts {
        call_id,
        occurred_at_ms: at,
        started_at_ms: started,
        outbound: f.string(m, "call.type", "message.call.type").as_deref() == Some("outboundPhoneCall"),
        number_withheld: number == CallerNumber::Withheld,
        caller: crate::call::caller(number.phone(), email, name),
        our_number: f.string(m, "phoneNumber.number", "message.phoneNumber.number"),
        ..CallFacts::default()
    };
    match facts.finish(f, Source::Vapi, CallStage::Started, &format!("{kind}:{digest}")) {
        Ok(parsed) => parsed,
        Err(_) => Parsed::Record { key, kept: None },
    }
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
        let speech = json!({"message": {"type": "speech-update", "status": "started"}});
        assert!(
            matches!(parse(&speech, DefaultRegion::default()).unwrap(), Parsed::Ignored(t) if t == "speech-update")
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

    fn status(status: &str, at: i64) -> Value {
        json!({"message": {"type": "status-update", "status": status, "timestamp": at,
            "call": {"id": "call-9", "type": "inboundPhoneCall", "createdAt": "2026-01-06T14:02:10.114Z",
                     "customer": {"number": "(571) 555-0143"}},
            "phoneNumber": {"number": "+15715550100"}}})
    }

    #[test]
    fn a_live_message_is_the_call_at_its_first_stage_keyed_by_its_content() {
        let Parsed::Event(e, key) = parse(&status("in-progress", 1_767_708_131_100), DefaultRegion::default()).unwrap()
        else {
            panic!()
        };
        let Event::Call(e) = *e else { panic!() };
        assert_eq!((e.stage, e.call_id.as_str()), (CallStage::Started, "call-9"));
        assert_eq!(e.caller.phone.as_ref().unwrap().as_str(), "+15715550143");
        assert_eq!(e.occurred_at_ms, 1_767_708_131_100);
        assert_eq!(e.started_at_ms, Some(1_767_708_130_114));
        assert!(key.as_str().starts_with("vapi:call-9:status-update:"), "{key}");
        let again = parse(&status("in-progress", 1_767_708_131_100), DefaultRegion::default()).unwrap();
        let next = parse(&status("in-progress", 1_767_708_131_200), DefaultRegion::default()).unwrap();
        let key_of = |p: Parsed| match p {
            Parsed::Event(_, k) => k.as_str().to_string(),
            _ => panic!(),
        };
        assert_eq!(key_of(again), key.as_str(), "a redelivery is a duplicate");
        assert_ne!(key_of(next), key.as_str(), "the next update is not");
        for kind in LIVE {
            let mut m = status("in-progress", 1_767_708_131_100);
            m["message"]["type"] = json!(kind);
            assert!(matches!(parse(&m, DefaultRegion::default()).unwrap(), Parsed::Event(..)), "{kind}");
        }
    }

    #[test]
    fn a_live_message_too_thin_to_land_is_kept_without_work() {
        let mut m = status("ringing", 1_767_708_131_100);
        m["message"]["call"].as_object_mut().unwrap().remove("id");
        assert!(matches!(parse(&m, DefaultRegion::default()).unwrap(), Parsed::Record { .. }));
        let bare = json!({"message": {"type": "user-interrupted"}});
        assert!(matches!(parse(&bare, DefaultRegion::default()).unwrap(), Parsed::Record { .. }));
    }
}
