//! Canonical events: what every source is parsed into before it is stored. A call event
//! carries who called, what happened and how it went; a booking carries who and when.

use serde::{Deserialize, Serialize};

use crate::email::Email;
use crate::phone::PhoneE164;

/// Where an event came from; stable snake_case names are stored in rows. A pulled source
/// (a receptionist polled through its web app) carries the name it is configured under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Vapi,
    Retell,
    ElevenLabs,
    Generic,
    Pulled(&'static str),
}

impl Source {
    /// The built-in sources, by name.
    pub const BUILT_IN: [Source; 4] = [Source::Vapi, Source::Retell, Source::ElevenLabs, Source::Generic];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Vapi => "vapi",
            Source::Retell => "retell",
            Source::ElevenLabs => "elevenlabs",
            Source::Generic => "generic",
            Source::Pulled(name) => name,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Source::Vapi => "Vapi",
            Source::Retell => "Retell",
            Source::ElevenLabs => "ElevenLabs",
            Source::Generic => "Booking webhook",
            Source::Pulled(name) => name,
        }
    }

    /// The source a stored name stands for: a built-in one, else a pulled source of that name.
    /// Names are few (those configured), so each distinct one is kept for the process's life.
    pub fn named(name: &str) -> Source {
        if let Some(s) = Source::BUILT_IN.into_iter().find(|s| s.as_str() == name) {
            return s;
        }
        static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
            std::sync::OnceLock::new();
        let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        let interned = match names.get(name) {
            Some(n) => *n,
            None => {
                let n: &'static str = Box::leak(name.to_string().into_boxed_str());
                names.insert(n);
                n
            }
        };
        Source::Pulled(interned)
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        if name.is_empty() {
            return Err(serde::de::Error::custom("a source has a name"));
        }
        Ok(Source::named(&name))
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
    Urgent,
    Callback,
}

impl Intent {
    pub const ALL: [Intent; 7] = [
        Intent::Book,
        Intent::Reschedule,
        Intent::Cancel,
        Intent::Complaint,
        Intent::Inquiry,
        Intent::Urgent,
        Intent::Callback,
    ];

    pub fn parse(s: &str) -> Option<Intent> {
        Intent::ALL.into_iter().find(|i| i.as_str() == s.trim().to_ascii_lowercase())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Book => "book",
            Intent::Reschedule => "reschedule",
            Intent::Cancel => "cancel",
            Intent::Complaint => "complaint",
            Intent::Inquiry => "inquiry",
            Intent::Urgent => "urgent",
            Intent::Callback => "callback",
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
        } else if any(&["emergency", "urgent", "asap", "right away", "flooding", "no heat", "gas leak", "burst pipe"]) {
            Some(Intent::Urgent)
        } else if any(&["reschedul", "move my appointment", "different time", "push it back", "change my appointment"])
        {
            Some(Intent::Reschedule)
        } else if any(&["cancel"]) {
            Some(Intent::Cancel)
        } else if any(&["call me back", "call back", "callback", "return my call", "have someone call"]) {
            Some(Intent::Callback)
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
    /// What a receptionist captured: each question with the caller's answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<(String, String)>,
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
    /// The meeting's length (absent: the default half hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// What the caller or the agent said it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
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
        assert_eq!(Intent::infer("The basement is flooding, I need someone right away"), Some(Intent::Urgent));
        assert_eq!(Intent::infer("Can you have someone call me back about the quote?"), Some(Intent::Callback));
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

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn sources_are_stored_by_name_and_a_pulled_one_keeps_its_own() {
        for s in Source::BUILT_IN {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Source>(&json).unwrap(), s);
        }
        assert_eq!(serde_json::to_string(&Source::ElevenLabs).unwrap(), "\"elevenlabs\"");
        let pulled: Source = serde_json::from_str("\"goodcall\"").unwrap();
        assert_eq!(pulled, Source::named("goodcall"));
        assert_eq!((pulled.as_str(), pulled.label()), ("goodcall", "goodcall"));
        assert!(std::ptr::eq(Source::named("goodcall").as_str(), pulled.as_str()), "interned once");
        assert!(serde_json::from_str::<Source>("\"\"").is_err());
    }
}
