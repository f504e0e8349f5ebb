//! Retell webhooks: `{"event": …, "call": {…}}`. `call_started`, `call_ended` and
//! `call_analyzed` describe one call at three stages; any other event is acknowledged and
//! ignored. The caller is `from_number` on inbound calls and `to_number` on outbound ones.

use callbridge_domain::event::CallStage;
use callbridge_domain::{CallEvent, Caller, DefaultRegion, Direction, Email, IdempotencyKey, Sentiment, Source};
use serde_json::Value;

use super::Fields;

#[derive(Debug)]
pub enum Message {
    Call(Box<CallEvent>, IdempotencyKey),
    Ignored(String),
}

/// Characters of transcript the canonical event keeps (the raw body keeps all).
const TRANSCRIPT_KEPT: usize = 1200;

pub fn parse(body: &Value, region: DefaultRegion) -> Result<Message, Fields> {
    let event = Fields::tag(body, "event")?;
    let mut f = Fields::default();
    let stage = match event.as_str() {
        "call_started" => CallStage::Started,
        "call_ended" => CallStage::Ended,
        "call_analyzed" => CallStage::Analyzed,
        _ => return Ok(Message::Ignored(event)),
    };
    // `data` is the deprecated name of `call`.
    let Some(call) = body.get("call").or_else(|| body.get("data")).filter(|c| c.is_object()) else {
        f.error("call", "is required and must be an object");
        return Err(f);
    };
    let call_id = f.string(call, "call_id", "call.call_id");
    if call_id.is_none() && f.is_empty() {
        f.error("call.call_id", "is required");
    }
    let direction = match f.string(call, "direction", "call.direction").as_deref() {
        Some("outbound") => Direction::Outbound,
        _ => Direction::Inbound,
    };
    let (caller_field, ours_field) = match direction {
        Direction::Inbound => ("from_number", "to_number"),
        Direction::Outbound => ("to_number", "from_number"),
    };
    let number = f.string(call, caller_field, &format!("call.{caller_field}"));
    let phone = f.phone(number, &format!("call.{caller_field}"), region);
    let our_number = f.string(call, ours_field, &format!("call.{ours_field}"));
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
    let mut caller = Caller { phone, email, first_name: None, last_name: None };
    if let Some(n) = name {
        caller = caller.with_full_name(&n);
    }
    if caller.phone.is_none() && caller.email.is_none() && f.is_empty() {
        f.error(&format!("call.{caller_field}"), "no caller phone or email to attach the call to");
    }
    let start = f.number(call, "start_timestamp", "call.start_timestamp").map(|t| t as i64);
    let end = f.number(call, "end_timestamp", "call.end_timestamp").map(|t| t as i64);
    let duration_ms = f.number(call, "duration_ms", "call.duration_ms").map(|d| d as i64).or(match (start, end) {
        (Some(s), Some(e)) if e >= s => Some(e - s),
        _ => None,
    });
    let occurred_at_ms = end.or(start);
    if occurred_at_ms.is_none() && f.is_empty() {
        f.error("call.start_timestamp", "the call has no start or end time");
    }
    let transcript = f
        .string(call, "transcript", "call.transcript")
        .map(|t| callbridge_domain::plan::transcript_excerpt(&t, TRANSCRIPT_KEPT));
    let recording_url = f.string(call, "recording_url", "call.recording_url");
    let ended_reason = f.string(call, "disconnection_reason", "call.disconnection_reason");
    let summary = f.string(call, "call_analysis.call_summary", "call.call_analysis.call_summary");
    let success = match Fields::at(call, "call_analysis.call_successful") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            f.error("call.call_analysis.call_successful", "must be a boolean");
            None
        }
    };
    let sentiment = f
        .string(call, "call_analysis.user_sentiment", "call.call_analysis.user_sentiment")
        .and_then(|s| Sentiment::parse(&s));
    let user_turns: String = Fields::at(call, "transcript_object")
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
    let stated_intent = lookup(&mut f, &["intent"]);
    let (sentiment, intent) =
        super::read_caller(sentiment, stated_intent, &user_turns, transcript.as_deref(), summary.as_deref());
    let next_steps = lookup(&mut f, &["next_steps"]);
    let appointment = lookup(&mut f, &["appointment", "appointment_start"]);
    if !f.is_empty() {
        return Err(f);
    }
    let (Some(call_id), Some(occurred_at_ms)) = (call_id, occurred_at_ms) else { return Err(f) };
    let key = IdempotencyKey::event("retell", &call_id, &event);
    Ok(Message::Call(
        Box::new(CallEvent {
            source: Source::Retell,
            call_id,
            stage,
            occurred_at_ms,
            started_at_ms: start,
            duration_ms,
            direction,
            caller,
            our_number,
            summary,
            transcript,
            recording_url,
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
