//! Canonical events: what every source is parsed into before it is stored. A call event
//! carries who called, what happened and how it went; a booking carries who and when.

use serde::{Deserialize, Serialize};

use crate::email::Email;
use crate::phone::PhoneE164;

/// Where an event came from; stable snake_case names are stored in rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Vapi,
    Retell,
    #[serde(rename = "elevenlabs")]
    ElevenLabs,
    Generic,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Vapi => "vapi",
            Source::Retell => "retell",
            Source::ElevenLabs => "elevenlabs",
            Source::Generic => "generic",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Source::Vapi => "Vapi",
            Source::Retell => "Retell",
            Source::ElevenLabs => "ElevenLabs",
            Source::Generic => "Booking webhook",
        }
    }
}

/// The person on the other end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    pub phone: Option<PhoneE164>,
    pub email: Option<Email>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl Caller {
    /// Keys callbridge remembers this caller by, strongest first.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(e) = &self.email {
            keys.push(format!("email:{e}"));
        }
        if let Some(p) = &self.phone {
            keys.push(format!("phone:{p}"));
        }
        keys
    }

    /// The key jobs for this caller are ordered by.
    pub fn ordering_key(&self) -> Option<String> {
        self.phone.as_ref().map(|p| format!("phone:{p}")).or_else(|| self.email.as_ref().map(|e| format!("email:{e}")))
    }

    pub fn display_name(&self) -> Option<String> {
        let name =
            [self.first_name.as_deref(), self.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
        (!name.is_empty()).then_some(name)
    }

    /// Splits a full name into first and rest.
    pub fn with_full_name(mut self, full: &str) -> Caller {
        let full = full.trim();
        if full.is_empty() {
            return self;
        }
        let (first, last) = match full.split_once(' ') {
            Some((f, l)) => (f.trim(), Some(l.trim())),
            None => (full, None),
        };
        self.first_name.get_or_insert_with(|| first.to_string());
        if let Some(l) = last.filter(|l| !l.is_empty()) {
            self.last_name.get_or_insert_with(|| l.to_string());
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// How the caller felt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Positive,
    Neutral,
    Negative,
}

impl Sentiment {
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Positive => "positive",
            Sentiment::Neutral => "neutral",
            Sentiment::Negative => "negative",
        }
    }

    pub fn parse(s: &str) -> Option<Sentiment> {
        match s.trim().to_ascii_lowercase().as_str() {
            "positive" | "happy" | "satisfied" => Some(Sentiment::Positive),
            "neutral" => Some(Sentiment::Neutral),
            "negative" | "angry" | "frustrated" | "upset" | "unhappy" => Some(Sentiment::Negative),
            _ => None,
        }
    }
}

/// What the caller wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Book,
    Reschedule,
    Cancel,
    Complaint,
    Inquiry,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Book => "book",
            Intent::Reschedule => "reschedule",
            Intent::Cancel => "cancel",
            Intent::Complaint => "complaint",
            Intent::Inquiry => "inquiry",
        }
    }

    /// A keyword reading of what the caller said and the call's summary. Cancellation and
    /// rescheduling outrank booking (a reschedule mentions an appointment too), and a
    /// complaint outranks all.
    pub fn infer(text: &str) -> Option<Intent> {
        let t = text.to_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| t.contains(w));
        if any(&["complain", "unacceptable", "terrible service", "refund", "speak to a manager", "very disappointed"]) {
            Some(Intent::Complaint)
        } else if any(&["reschedul", "move my appointment", "different time", "push it back", "change my appointment"])
        {
            Some(Intent::Reschedule)
        } else if any(&["cancel"]) {
            Some(Intent::Cancel)
        } else if any(&[
            "book",
            "appointment",
            "schedule",
            "availability",
            "available",
            "is thursday",
            "is monday",
            "open?",
        ]) {
            Some(Intent::Book)
        } else if t.trim().is_empty() {
            None
        } else {
            Some(Intent::Inquiry)
        }
    }
}

/// How far along the call an event describes. A later stage carries more (the analysis
/// arrives after the hang-up); an event never overwrites what a later stage wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStage {
    Started = 1,
    Ended = 2,
    Analyzed = 3,
}

/// A finished (or updated) call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    pub source: Source,
    /// The platform's call id.
    pub call_id: String,
    pub stage: CallStage,
    /// When the call ended (or started, if no end is known), epoch milliseconds.
    pub occurred_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub direction: Direction,
    pub caller: Caller,
    /// The number the caller dialled (ours).
    pub our_number: Option<String>,
    pub summary: Option<String>,
    /// The caller-facing transcript, possibly long.
    pub transcript: Option<String>,
    pub recording_url: Option<String>,
    /// Why the call ended (`customer-ended-call`, `voicemail`, …).
    pub ended_reason: Option<String>,
    /// The platform's success verdict.
    pub success: Option<bool>,
    pub sentiment: Option<Sentiment>,
    pub intent: Option<Intent>,
    pub next_steps: Option<String>,
    /// A meeting the agent booked during the call, if the platform reported one.
    pub appointment: Option<String>,
    /// The platform gave a caller number that is no number (`anonymous`, `Restricted`): the
    /// call is attached by the caller's email instead.
    #[serde(default)]
    pub number_withheld: bool,
}

/// A booking from the generic webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingEvent {
    pub caller: Caller,
    pub meeting_type: Option<String>,
    /// Start, epoch milliseconds, and as given (with its offset).
    pub meeting_at_ms: Option<i64>,
    pub meeting_at: Option<String>,
    pub lead_source: Option<String>,
    pub lifecycle_stage: Option<String>,
    pub received_at_ms: i64,
    /// What identifies this booking across deliveries.
    pub booking_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Call(CallEvent),
    Booking(BookingEvent),
}

impl Event {
    pub fn caller(&self) -> &Caller {
        match self {
            Event::Call(c) => &c.caller,
            Event::Booking(b) => &b.caller,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_reads_the_strongest_signal() {
        assert_eq!(Intent::infer("Is Thursday morning open? I'd like to book."), Some(Intent::Book));
        assert_eq!(Intent::infer("I need to reschedule my appointment"), Some(Intent::Reschedule));
        assert_eq!(Intent::infer("Please cancel my appointment"), Some(Intent::Cancel));
        assert_eq!(Intent::infer("This is unacceptable, cancel everything"), Some(Intent::Complaint));
        assert_eq!(Intent::infer("What are your hours?"), Some(Intent::Inquiry));
        assert_eq!(Intent::infer("  "), None);
    }

    #[test]
    fn a_full_name_fills_only_missing_parts() {
        let c = Caller::default().with_full_name("Dana Maria Reyes");
        assert_eq!((c.first_name.as_deref(), c.last_name.as_deref()), (Some("Dana"), Some("Maria Reyes")));
        let c = Caller { first_name: Some("D".into()), ..Caller::default() }.with_full_name("Dana Reyes");
        assert_eq!(c.first_name.as_deref(), Some("D"));
    }
}
