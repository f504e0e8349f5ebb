//! ElevenLabs Agents post-call webhooks: `{"type", "event_timestamp", "data"}`.
//! `post_call_transcription` becomes a call event: the caller from `metadata.phone_call`
//! (or the `system__caller_id` dynamic variable), the summary, data-collection items and
//! evaluation results. `post_call_audio` and `call_initiation_failure` are acknowledged and
//! recorded without a job; other types are acknowledged and ignored.

use callbridge_domain::event::CallStage;
use callbridge_domain::{CallEvent, Caller, DefaultRegion, Direction, Email, IdempotencyKey, Sentiment, Source};
use serde_json::{Value, json};

use super::Fields;

#[derive(Debug)]
pub enum Message {
    Call(Box<CallEvent>, IdempotencyKey),
    /// Kept in the inbox (key, what to store instead of the raw body when it is audio).
    Record {
        key: IdempotencyKey,
        summary: Option<Value>,
    },
    Ignored(String),
}

const TRANSCRIPT_KEPT: usize = 1200;

pub fn parse(body: &Value, region: DefaultRegion) -> Result<Message, Fields> {
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
            return Ok(Message::Record { key: IdempotencyKey::event("elevenlabs", &id, &kind), summary });
        }
        _ => return Ok(Message::Ignored(kind)),
    }
    let Some(data) = body.get("data").filter(|d| d.is_object()) else {
        f.error("data", "is required and must be an object");
        return Err(f);
    };
    let id = conversation_id(&mut f);
    let direction =
        match f.string(data, "metadata.phone_call.direction", "data.metadata.phone_call.direction").as_deref() {
            Some("outbound") => Direction::Outbound,
            _ => Direction::Inbound,
        };
    let number = f
        .string(data, "metadata.phone_call.external_number", "data.metadata.phone_call.external_number")
        .or_else(|| {
            f.string(
                data,
                "conversation_initiation_client_data.dynamic_variables.system__caller_id",
                "data.conversation_initiation_client_data.dynamic_variables.system__caller_id",
            )
        });
    let phone = f.phone(number, "data.metadata.phone_call.external_number", region);
    let our_number = f.string(data, "metadata.phone_call.agent_number", "data.metadata.phone_call.agent_number");
    let collected = |f: &mut Fields, keys: &[&str]| -> Option<String> {
        keys.iter().find_map(|k| {
            let path = format!("analysis.data_collection_results.{k}.value");
            f.string(data, &path, &format!("data.{path}"))
        })
    };
    let email = collected(&mut f, &["caller_email", "email"]).and_then(|e| Email::parse(&e).ok());
    let name = collected(&mut f, &["caller_name", "name"]);
    let mut caller = Caller { phone, email, first_name: None, last_name: None };
    if let Some(n) = name {
        caller = caller.with_full_name(&n);
    }
    if caller.phone.is_none() && caller.email.is_none() && f.is_empty() {
        f.error("data.metadata.phone_call.external_number", "no caller phone or email to attach the call to");
    }
    let start = f
        .number(data, "metadata.start_time_unix_secs", "data.metadata.start_time_unix_secs")
        .map(|s| (s * 1000.0) as i64);
    let duration_ms =
        f.number(data, "metadata.call_duration_secs", "data.metadata.call_duration_secs").map(|s| (s * 1000.0) as i64);
    let event_ts = f.number(body, "event_timestamp", "event_timestamp").map(|s| (s * 1000.0) as i64);
    let occurred_at_ms = match (start, duration_ms) {
        (Some(s), Some(d)) => Some(s + d),
        (Some(s), None) => Some(s),
        _ => event_ts,
    };
    if occurred_at_ms.is_none() && f.is_empty() {
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
    let transcript = (!turns.is_empty()).then(|| {
        let text: Vec<String> =
            turns.iter().map(|(r, m)| format!("{}: {m}", if r == "user" { "User" } else { "Agent" })).collect();
        callbridge_domain::plan::transcript_excerpt(&text.join("\n"), TRANSCRIPT_KEPT)
    });
    let summary = f.string(data, "analysis.transcript_summary", "data.analysis.transcript_summary");
    let success = match f.string(data, "analysis.call_successful", "data.analysis.call_successful").as_deref() {
        Some("success") => Some(true),
        Some("failure") => Some(false),
        _ => None,
    };
    // The platform's own verdicts: a data item or an evaluation criterion about sentiment.
    let sentiment = collected(&mut f, &["sentiment", "caller_sentiment", "user_sentiment"])
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
    let user_text: String =
        turns.iter().filter(|(r, _)| r == "user").map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" ");
    let stated_intent = collected(&mut f, &["intent"]);
    let (sentiment, intent) = super::read_caller(sentiment, stated_intent, &user_text, None, summary.as_deref());
    let next_steps = collected(&mut f, &["next_steps"]);
    let appointment = collected(&mut f, &["appointment", "appointment_start"]);
    let ended_reason = f.string(data, "metadata.termination_reason", "data.metadata.termination_reason");
    if !f.is_empty() {
        return Err(f);
    }
    let (Some(id), Some(occurred_at_ms)) = (id, occurred_at_ms) else { return Err(f) };
    let key = IdempotencyKey::event("elevenlabs", &id, &kind);
    Ok(Message::Call(
        Box::new(CallEvent {
            source: Source::ElevenLabs,
            call_id: id,
            stage: CallStage::Analyzed,
            occurred_at_ms,
            started_at_ms: start,
            duration_ms,
            direction,
            caller,
            our_number,
            summary,
            transcript,
            recording_url: None,
            ended_reason,
            success,
            sentiment,
            intent,
            next_steps,
            appointment,
        }),
        key,
    ))
}
