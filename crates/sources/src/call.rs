//! The one constructor of a canonical call event. Each platform's parser gathers what its
//! payload says into [`CallFacts`] (only the fields it has); [`CallFacts::finish`] applies the
//! rules every source shares — a caller needs a phone or an email, the platform's verdicts on
//! sentiment and intent win over the caller's own words, the transcript is cut to what a rep
//! reads (the raw body keeps it whole) — and names the idempotency key.

use callbridge_domain::plan::transcript_excerpt;
use callbridge_domain::{
    CallEvent, CallStage, Caller, Direction, Event, IdempotencyKey, Intent, Sentiment, Source, sentiment,
};

use crate::{Fields, Parsed};

/// Characters of transcript the canonical event keeps (the raw body keeps all).
pub const TRANSCRIPT_KEPT: usize = 1200;

/// What a platform says about a call, before the rules make it a [`CallEvent`].
#[derive(Debug, Default)]
pub struct CallFacts {
    pub call_id: Option<String>,
    /// When the call ended (or started, if no end is known), epoch milliseconds.
    pub occurred_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Inbound unless said otherwise.
    pub outbound: bool,
    pub caller: Caller,
    pub our_number: Option<String>,
    pub summary: Option<String>,
    /// The transcript as sent (cut by `finish`).
    pub transcript: Option<String>,
    pub recording_url: Option<String>,
    pub ended_reason: Option<String>,
    pub success: Option<bool>,
    /// The platform's own sentiment verdict.
    pub sentiment: Option<Sentiment>,
    /// The platform's own word for what the caller wanted.
    pub stated_intent: Option<String>,
    /// What the caller said, when the platform separates their turns.
    pub caller_turns: String,
    pub next_steps: Option<String>,
    pub appointment: Option<String>,
    /// The payload's caller number was no usable number.
    pub number_withheld: bool,
    /// Questions the receptionist asked, with the caller's answers.
    pub answers: Vec<(String, String)>,
}

impl CallFacts {
    /// The canonical event under its idempotency key (`platform:call id:event`), or every
    /// problem found. A call with neither a usable phone nor an email cannot be attached to a
    /// contact: it is kept and listed ([`Parsed::Unattached`]), never refused or dropped.
    pub fn finish(self, f: Fields, source: Source, stage: CallStage, event: &str) -> Result<Parsed, Fields> {
        if !f.is_empty() {
            return Err(f);
        }
        let (Some(call_id), Some(occurred_at_ms)) = (self.call_id, self.occurred_at_ms) else { return Err(f) };
        let key = IdempotencyKey::event(source.as_str(), &call_id, event);
        if self.caller.phone.is_none() && self.caller.email.is_none() {
            return Ok(Parsed::Unattached(key));
        }
        let transcript = self.transcript.map(|t| transcript_excerpt(&t, TRANSCRIPT_KEPT));
        let (sentiment, intent) = read_caller(
            self.sentiment,
            self.stated_intent,
            &self.caller_turns,
            transcript.as_deref(),
            self.summary.as_deref(),
        );
        let event = CallEvent {
            source,
            call_id,
            stage,
            occurred_at_ms,
            started_at_ms: self.started_at_ms,
            duration_ms: self.duration_ms,
            direction: if self.outbound { Direction::Outbound } else { Direction::Inbound },
            caller: self.caller,
            our_number: self.our_number,
            summary: self.summary,
            transcript,
            recording_url: self.recording_url,
            ended_reason: self.ended_reason,
            success: self.success,
            sentiment,
            intent,
            next_steps: self.next_steps,
            appointment: self.appointment,
            number_withheld: self.number_withheld,
            answers: self.answers,
        };
        Ok(Parsed::Event(Box::new(Event::Call(event)), key))
    }
}

/// A caller from what a payload says: phone, email, and a full name split into parts.
pub fn caller(
    phone: Option<callbridge_domain::PhoneE164>,
    email: Option<callbridge_domain::Email>,
    name: Option<String>,
) -> Caller {
    let caller = Caller { phone, email, first_name: None, last_name: None };
    match name {
        Some(n) => caller.with_full_name(&n),
        None => caller,
    }
}

/// What the caller wanted and how they felt. The platform's own verdicts win; otherwise the
/// caller's words decide (their turns, or their lines of a `Role: text` transcript).
pub fn read_caller(
    platform_sentiment: Option<Sentiment>,
    platform_intent: Option<String>,
    caller_turns: &str,
    transcript: Option<&str>,
    summary: Option<&str>,
) -> (Option<Sentiment>, Option<Intent>) {
    let spoken = if caller_turns.is_empty() {
        transcript.map(sentiment::caller_lines).unwrap_or_default()
    } else {
        caller_turns.to_string()
    };
    let sentiment = platform_sentiment.or_else(|| sentiment::classify(&spoken));
    let said = format!("{spoken} {}", summary.unwrap_or(""));
    let intent = platform_intent.and_then(|i| Intent::infer(&i)).or_else(|| Intent::infer(&said));
    (sentiment, intent)
}
