//! Retell webhooks: `{"event": …, "call": {…}}`. `call_started`, `call_ended` and
//! `call_analyzed` describe one call at three stages; any other event is acknowledged and
//! ignored. The caller is `from_number` on inbound calls and `to_number` on outbound ones.

use callbridge_domain::event::CallStage;
use callbridge_domain::{DefaultRegion, Email, Sentiment, Source};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::call::CallFacts;
use crate::credential::{Unauthorized, configured, header};
use crate::{CallerNumber, Fields, Parsed, Platform, Unit};

/// Retell's webhook, as configured.
#[derive(Clone)]
pub struct Retell {
    /// The API key with the webhook badge, which signs `x-retell-signature`.
    pub api_key: Option<SecretString>,
}

impl Platform for Retell {
    const NAME: &'static str = "retell";
    const AGENT_PATHS: &'static [&'static str] = &["call.agent_id", "agent_id"];

    fn check_headers(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), Unauthorized> {
        configured(&self.api_key)?;
        Ok(crate::signature::retell(header(headers, "x-retell-signature"), now_ms).map(drop)?)
    }

    fn check_body(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), Unauthorized> {
        let key = configured(&self.api_key)?.expose_secret();
        Ok(crate::signature::verify_retell(header(headers, "x-retell-signature"), body, key, now_ms)?)
    }

    fn parse(&self, _: &HeaderMap, body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
        parse(body, region)
    }
}

/// A Retell webhook: its three call events as stages of one call, any other event ignored.
pub fn parse(body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
    let event = Fields::tag(body, "event")?;
    let mut f = Fields::default();
    let stage = match event.as_str() {
        "call_started" => CallStage::Started,
        "call_ended" => CallStage::Ended,
        "call_analyzed" => CallStage::Analyzed,
        _ => return Ok(Parsed::Ignored(event)),
    };
    // `data` is the deprecated name of `call`.
    let Some(call) = body.get("call").or_else(|| body.get("data")).filter(|c| c.is_object()) else {
        f.error("call", "is required and must be an object");
        return Err(f);
    };
    let mut facts = CallFacts { call_id: f.string(call, "call_id", "call.call_id"), ..CallFacts::default() };
    if facts.call_id.is_none() && f.is_empty() {
        f.error("call.call_id", "is required");
    }
    facts.outbound = f.string(call, "direction", "call.direction").as_deref() == Some("outbound");
    let (caller_field, ours_field) =
        if facts.outbound { ("to_number", "from_number") } else { ("from_number", "to_number") };
    let number = f.string(call, caller_field, &format!("call.{caller_field}"));
    let number = CallerNumber::read(number, region);
    facts.number_withheld = number == CallerNumber::Withheld;
    let phone = number.phone();
    facts.our_number = f.string(call, ours_field, &format!("call.{ours_field}"));
    // What the agent collected: analysis data first, then dynamic variables.
    let sources = ["call_analysis.custom_analysis_data", "collected_dynamic_variables", "retell_llm_dynamic_variables"];
    let lookup = |f: &mut Fields, keys: &[&str]| -> Option<String> {
        for s in sources {
            let Some(obj) = Fields::at(call, s) else { continue };
            for k in keys {
                if let Some(v) = f.string(obj, k, &format!("call.{s}.{k}")) {
                    return Some(v);
                }
            }
        }
        None
    };
    let email = lookup(&mut f, &["email", "caller_email", "customer_email"]).and_then(|e| Email::parse(&e).ok());
    let name = lookup(&mut f, &["name", "caller_name", "customer_name"]);
    facts.caller = crate::call::caller(phone, email, name);
    let start = f.instant(call, "start_timestamp", "call.start_timestamp", Unit::Milliseconds);
    let end = f.instant(call, "end_timestamp", "call.end_timestamp", Unit::Milliseconds);
    facts.started_at_ms = start;
    facts.duration_ms =
        f.duration(call, "duration_ms", "call.duration_ms", Unit::Milliseconds).or(match (start, end) {
            (Some(s), Some(e)) if e >= s => Some(e - s),
            _ => None,
        });
    facts.occurred_at_ms = end.or(start);
    if facts.occurred_at_ms.is_none() && f.is_empty() {
        f.error("call.start_timestamp", "the call has no start or end time");
    }
    facts.transcript = f.string(call, "transcript", "call.transcript");
    facts.recording_url = f.string(call, "recording_url", "call.recording_url");
    facts.ended_reason = f.string(call, "disconnection_reason", "call.disconnection_reason");
    facts.summary = f.string(call, "call_analysis.call_summary", "call.call_analysis.call_summary");
    facts.success = match Fields::at(call, "call_analysis.call_successful") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            f.error("call.call_analysis.call_successful", "must be a boolean");
            None
        }
    };
    facts.sentiment = f
        .string(call, "call_analysis.user_sentiment", "call.call_analysis.user_sentiment")
        .and_then(|s| Sentiment::parse(&s));
    facts.caller_turns = Fields::at(call, "transcript_object")
        .and_then(Value::as_array)
        .map(|turns| {
            turns
                .iter()
                .filter(|t| t.get("role").and_then(Value::as_str) == Some("user"))
                .filter_map(|t| t.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    // Retell's `Unknown` sentiment, or a call not analysed yet, leaves it to the caller's words.
    facts.stated_intent = lookup(&mut f, &["intent"]);
    facts.next_steps = lookup(&mut f, &["next_steps"]);
    facts.appointment = lookup(&mut f, &["appointment", "appointment_start"]);
    facts.finish(f, Source::Retell, stage, &event)
}
