//! ElevenLabs Agents post-call webhooks: `{"type", "event_timestamp", "data"}`.
//! `post_call_transcription` becomes a call event: the caller from `metadata.phone_call`
//! (or the `system__caller_id` dynamic variable), the summary, data-collection items and
//! evaluation results. `post_call_audio` and `call_initiation_failure` are acknowledged and
//! recorded without a job; other types are acknowledged and ignored.

use callbridge_domain::event::CallStage;
use callbridge_domain::{DefaultRegion, Email, IdempotencyKey, Sentiment, Source};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::call::CallFacts;
use crate::credential::{Unauthorized, configured, header};
use crate::{CallerNumber, Fields, Parsed, Platform, Unit};

/// ElevenLabs' post-call webhook, as configured.
#[derive(Clone)]
pub struct ElevenLabs {
    /// The webhook secret, which signs `ElevenLabs-Signature`.
    pub secret: Option<SecretString>,
}

impl Platform for ElevenLabs {
    const NAME: &'static str = "elevenlabs";
    const AGENT_PATHS: &'static [&'static str] = &["data.agent_id"];

    fn check_headers(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), Unauthorized> {
        configured(&self.secret)?;
        Ok(crate::signature::elevenlabs(header(headers, "elevenlabs-signature"), now_ms / 1000).map(drop)?)
    }

    fn check_body(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), Unauthorized> {
        let secret = configured(&self.secret)?.expose_secret();
        Ok(crate::signature::verify_elevenlabs(header(headers, "elevenlabs-signature"), body, secret, now_ms / 1000)?)
    }

    fn parse(&self, _: &HeaderMap, body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
        parse(body, region)
    }
}

/// An ElevenLabs webhook: the transcription as a call event, the audio and initiation
/// failures recorded, any other type ignored.
pub fn parse(body: &Value, region: DefaultRegion) -> Result<Parsed, Fields> {
    let kind = Fields::tag(body, "type")?;
    let mut f = Fields::default();
    let conversation_id = |f: &mut Fields| {
        let id = f.string(body, "data.conversation_id", "data.conversation_id");
        if id.is_none() && f.is_empty() {
            f.error("data.conversation_id", "is required");
        }
        id
    };
    match kind.as_str() {
        "post_call_transcription" => {}
        "post_call_audio" | "call_initiation_failure" => {
            let id = conversation_id(&mut f);
            let Some(id) = id.filter(|_| f.is_empty()) else { return Err(f) };
            // The audio itself (base64) is not kept: only that it arrived, and its size.
            let summary = (kind == "post_call_audio").then(|| {
                let size = Fields::at(body, "data.full_audio").and_then(Value::as_str).map(str::len).unwrap_or(0);
                json!({"type": kind, "conversation_id": id, "agent_id": Fields::at(body, "data.agent_id"), "full_audio_base64_chars": size})
            });
            return Ok(Parsed::Record { key: IdempotencyKey::event("elevenlabs", &id, &kind), kept: summary });
        }
        _ => return Ok(Parsed::Ignored(kind)),
    }
    let Some(data) = body.get("data").filter(|d| d.is_object()) else {
        f.error("data", "is required and must be an object");
        return Err(f);
    };
    let mut facts = CallFacts { call_id: conversation_id(&mut f), ..CallFacts::default() };
    facts.outbound = f.string(data, "metadata.phone_call.direction", "data.metadata.phone_call.direction").as_deref()
        == Some("outbound");
    let number = f
        .string(data, "metadata.phone_call.external_number", "data.metadata.phone_call.external_number")
        .or_else(|| {
            f.string(
                data,
                "conversation_initiation_client_data.dynamic_variables.system__caller_id",
                "data.conversation_initiation_client_data.dynamic_variables.system__caller_id",
            )
        });
    let number = CallerNumber::read(number, region);
    facts.number_withheld = number == CallerNumber::Withheld;
    let phone = number.phone();
    facts.our_number = f.string(data, "metadata.phone_call.agent_number", "data.metadata.phone_call.agent_number");
    let collected = |f: &mut Fields, keys: &[&str]| -> Option<String> {
        keys.iter().find_map(|k| {
            let path = format!("analysis.data_collection_results.{k}.value");
            f.string(data, &path, &format!("data.{path}"))
        })
    };
    let email = collected(&mut f, &["caller_email", "email"]).and_then(|e| Email::parse(&e).ok());
    let name = collected(&mut f, &["caller_name", "name"]);
    facts.caller = crate::call::caller(phone, email, name);
    let start = f.instant(data, "metadata.start_time_unix_secs", "data.metadata.start_time_unix_secs", Unit::Seconds);
    facts.started_at_ms = start;
    let duration_ms =
        f.duration(data, "metadata.call_duration_secs", "data.metadata.call_duration_secs", Unit::Seconds);
    let event_ts = f.instant(body, "event_timestamp", "event_timestamp", Unit::Seconds);
    facts.duration_ms = duration_ms;
    facts.occurred_at_ms = match (start, duration_ms) {
        (Some(s), Some(d)) => Some(s + d),
        (Some(s), None) => Some(s),
        _ => event_ts,
    };
    if facts.occurred_at_ms.is_none() && f.is_empty() {
        f.error("data.metadata.start_time_unix_secs", "the conversation has no time");
    }
    let turns: Vec<(String, String)> = Fields::at(data, "transcript")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|turn| {
                    let role = turn.get("role").and_then(Value::as_str)?;
                    let message = turn.get("message").and_then(Value::as_str).filter(|m| !m.trim().is_empty())?;
                    Some((role.to_string(), message.trim().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    facts.transcript = (!turns.is_empty()).then(|| {
        let text: Vec<String> =
            turns.iter().map(|(r, m)| format!("{}: {m}", if r == "user" { "User" } else { "Agent" })).collect();
        text.join("\n")
    });
    facts.summary = f.string(data, "analysis.transcript_summary", "data.analysis.transcript_summary");
    facts.success = match f.string(data, "analysis.call_successful", "data.analysis.call_successful").as_deref() {
        Some("success") => Some(true),
        Some("failure") => Some(false),
        _ => None,
    };
    // The platform's own verdicts: a data item or an evaluation criterion about sentiment.
    facts.sentiment = collected(&mut f, &["sentiment", "caller_sentiment", "user_sentiment"])
        .and_then(|s| Sentiment::parse(&s))
        .or_else(|| {
            let criteria = Fields::at(data, "analysis.evaluation_criteria_results")?.as_object()?;
            criteria.iter().find(|(k, _)| k.contains("sentiment") || k.contains("satisf")).and_then(|(_, v)| {
                match v.get("result").and_then(Value::as_str) {
                    Some("success") => Some(Sentiment::Positive),
                    Some("failure") => Some(Sentiment::Negative),
                    _ => None,
                }
            })
        });
    facts.caller_turns =
        turns.iter().filter(|(r, _)| r == "user").map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" ");
    facts.stated_intent = collected(&mut f, &["intent"]);
    facts.next_steps = collected(&mut f, &["next_steps"]);
    facts.appointment = collected(&mut f, &["appointment", "appointment_start"]);
    facts.ended_reason = f.string(data, "metadata.termination_reason", "data.metadata.termination_reason");
    facts.finish(f, Source::ElevenLabs, CallStage::Analyzed, &kind)
}
