//! A polled receptionist's call record as a call event, by a configured mapping ([`CallMap`]):
//! each field callbridge reads is a path in the one path language of [`crate::fields`]. The id
//! and the start time are required; a record lacking one is refused with the field named (the
//! poller records and counts it, and goes on). What lands is what a pushed call gets: the
//! caller by phone in any format (or email), one activity per platform call id, sentiment and
//! intent read from the caller's words when the platform gives none, the summary, and the
//! questions the receptionist asked with their answers in the call's body.

use callbridge_domain::{CallStage, DefaultRegion, Email, Source};
use serde_json::Value;

use crate::call::CallFacts;
use crate::fields::{CallerNumber, Unit};
use crate::{Fields, Parsed};

/// How a record gives its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// ISO-8601 / RFC 3339 with an offset.
    Rfc3339,
    EpochSeconds,
    EpochMillis,
}

impl TimeFormat {
    pub fn parse(s: &str) -> Option<TimeFormat> {
        match s {
            "rfc3339" => Some(TimeFormat::Rfc3339),
            "epoch_s" => Some(TimeFormat::EpochSeconds),
            "epoch_ms" => Some(TimeFormat::EpochMillis),
            _ => None,
        }
    }
}

/// Where a record's fields are.
#[derive(Debug, Clone)]
pub struct CallMap {
    pub id: String,
    pub started_at: String,
    pub time_format: TimeFormat,
    pub caller_phone: Option<String>,
    pub caller_name: Option<String>,
    pub email: Option<String>,
    /// In seconds.
    pub duration: Option<String>,
    /// A value of `outbound` (any case) makes the call outbound.
    pub direction: Option<String>,
    pub our_number: Option<String>,
    pub summary: Option<String>,
    /// A string, or a list of turns read with `turn_speaker` and `turn_text`.
    pub transcript: Option<String>,
    pub turn_speaker: Option<String>,
    pub turn_text: Option<String>,
    pub recording_url: Option<String>,
    pub outcome: Option<String>,
    /// A list of question/answer pairs, read with `question` and `answer`.
    pub answers: Option<String>,
    pub question: Option<String>,
    pub answer: Option<String>,
}

impl CallMap {
    /// Every path, with the setting it belongs to.
    fn paths(&self) -> Vec<(&'static str, &str)> {
        let optional = [
            ("caller_phone", &self.caller_phone),
            ("caller_name", &self.caller_name),
            ("email", &self.email),
            ("duration", &self.duration),
            ("direction", &self.direction),
            ("our_number", &self.our_number),
            ("summary", &self.summary),
            ("transcript", &self.transcript),
            ("turn_speaker", &self.turn_speaker),
            ("turn_text", &self.turn_text),
            ("recording_url", &self.recording_url),
            ("outcome", &self.outcome),
            ("answers", &self.answers),
            ("question", &self.question),
            ("answer", &self.answer),
        ];
        let mut all = vec![("id", self.id.as_str()), ("started_at", self.started_at.as_str())];
        all.extend(optional.into_iter().filter_map(|(k, v)| v.as_deref().map(|v| (k, v))));
        all
    }

    /// The first setting whose path is malformed, named, with why.
    pub fn check(&self) -> Result<(), String> {
        if let Some((key, path)) = self.paths().into_iter().find(|(_, p)| !Fields::valid_path(p)) {
            return Err(format!("`{key}`: {path:?} is not a path like call.id or turns[0].text"));
        }
        if self.answers.is_some() && (self.question.is_none() || self.answer.is_none()) {
            return Err("`answers` needs `question` and `answer` paths too".into());
        }
        Ok(())
    }
}

/// A record as an event of `source`, or every problem with it.
pub fn parse_record(record: &Value, map: &CallMap, source: Source, region: DefaultRegion) -> Result<Parsed, Fields> {
    let mut f = Fields::default();
    if !record.is_object() {
        f.error("record", "must be an object");
        return Err(f);
    }
    let text =
        |f: &mut Fields, path: &Option<String>, name: &str| path.as_deref().and_then(|p| f.string(record, p, name));
    // Ids are text or numbers.
    let call_id = match Fields::at(record, &map.id) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => {
            f.error(&map.id, "is required (the call's id)");
            None
        }
    };
    let started = match map.time_format {
        TimeFormat::Rfc3339 => f.iso_instant(record, &map.started_at, &map.started_at),
        TimeFormat::EpochSeconds => f.instant(record, &map.started_at, &map.started_at, Unit::Seconds),
        TimeFormat::EpochMillis => f.instant(record, &map.started_at, &map.started_at, Unit::Milliseconds),
    };
    // Absent, empty or unusable: the record has no start time, and the refusal says so.
    if started.is_none() && !f.errors.iter().any(|e| e.field == map.started_at) {
        f.error(&map.started_at, "is required (when the call started)");
    }
    let number = CallerNumber::read(text(&mut f, &map.caller_phone, "caller_phone"), region);
    let email = text(&mut f, &map.email, "email").and_then(|e| Email::parse(&e).ok());
    let name = text(&mut f, &map.caller_name, "caller_name");
    let duration_ms = map.duration.as_deref().and_then(|p| f.duration(record, p, p, Unit::Seconds));
    let mut facts = CallFacts {
        call_id,
        started_at_ms: started,
        occurred_at_ms: started.map(|s| s + duration_ms.unwrap_or(0)),
        duration_ms,
        number_withheld: number == CallerNumber::Withheld,
        caller: crate::call::caller(number.phone(), email, name),
        outbound: text(&mut f, &map.direction, "direction").is_some_and(|d| d.eq_ignore_ascii_case("outbound")),
        our_number: text(&mut f, &map.our_number, "our_number"),
        summary: text(&mut f, &map.summary, "summary"),
        recording_url: text(&mut f, &map.recording_url, "recording_url"),
        ended_reason: text(&mut f, &map.outcome, "outcome"),
        ..CallFacts::default()
    };
    // A transcript is a string, or turns; the caller's own turns are what sentiment reads.
    match map.transcript.as_deref().and_then(|p| Fields::at(record, p)) {
        Some(Value::String(s)) => facts.transcript = Some(s.clone()),
        Some(Value::Array(turns)) => {
            let mut lines = Vec::new();
            let mut caller = Vec::new();
            for turn in turns {
                let speaker = text_at(turn, &map.turn_speaker).unwrap_or("");
                let said = text_at(turn, &map.turn_text).unwrap_or("");
                if said.is_empty() {
                    continue;
                }
                let who = if speaker.is_empty() { "Unknown" } else { speaker };
                lines.push(format!("{who}: {said}"));
                if matches!(speaker.to_ascii_lowercase().as_str(), "caller" | "user" | "customer" | "human") {
                    caller.push(said);
                }
            }
            facts.transcript = Some(lines.join("\n")).filter(|t| !t.is_empty());
            facts.caller_turns = caller.join(" ");
        }
        _ => {}
    }
    if let Some(Value::Array(pairs)) = map.answers.as_deref().and_then(|p| Fields::at(record, p)) {
        facts.answers = pairs
            .iter()
            .filter_map(|pair| {
                Some((text_at(pair, &map.question)?.to_string(), text_at(pair, &map.answer)?.to_string()))
            })
            .filter(|(q, a)| !q.is_empty() && !a.is_empty())
            .collect();
    }
    facts.finish(f, source, CallStage::Analyzed, "call")
}

/// The trimmed text at `path` of `v`, if there is text there.
fn text_at<'v>(v: &'v Value, path: &Option<String>) -> Option<&'v str> {
    path.as_deref().and_then(|p| Fields::at(v, p)).and_then(Value::as_str).map(str::trim)
}

#[cfg(test)]
mod tests {
    use callbridge_domain::Event;
    use serde_json::json;

    use super::*;

    fn map() -> CallMap {
        CallMap {
            id: "id".into(),
            started_at: "started".into(),
            time_format: TimeFormat::Rfc3339,
            caller_phone: Some("from.number".into()),
            caller_name: Some("from.name".into()),
            email: None,
            duration: Some("seconds".into()),
            direction: None,
            our_number: None,
            summary: Some("summary".into()),
            transcript: Some("turns".into()),
            turn_speaker: Some("who".into()),
            turn_text: Some("said".into()),
            recording_url: None,
            outcome: Some("outcome".into()),
            answers: Some("intake".into()),
            question: Some("q".into()),
            answer: Some("a".into()),
        }
    }

    #[test]
    fn a_record_becomes_a_call_with_turns_and_answers() {
        let record = json!({"id": 981, "started": "2026-03-02T15:04:00Z", "seconds": 95,
            "from": {"number": "(571) 830-8515", "name": "Dana Reyes"}, "summary": "Breaker trips",
            "turns": [{"who": "agent", "said": "How can I help?"}, {"who": "caller", "said": "My breaker keeps tripping, it's awful"}],
            "intake": [{"q": "Address", "a": "12 Elm St"}, {"q": "Urgent?", "a": ""}], "extra": true});
        let source = Source::named("receptionist");
        let Parsed::Event(event, key) = parse_record(&record, &map(), source, DefaultRegion::default()).unwrap() else {
            panic!("a call")
        };
        let Event::Call(call) = *event else { panic!("a call") };
        assert_eq!(call.call_id, "981");
        assert_eq!(call.source.as_str(), "receptionist");
        assert_eq!(call.caller.phone.unwrap().as_str(), "+15718308515");
        assert_eq!(call.caller.first_name.as_deref(), Some("Dana"));
        assert_eq!(call.duration_ms, Some(95_000));
        assert_eq!(call.occurred_at_ms, call.started_at_ms.unwrap() + 95_000);
        assert_eq!(call.answers, vec![("Address".to_string(), "12 Elm St".to_string())]);
        assert!(call.transcript.unwrap().starts_with("agent: How can I help?\ncaller: My breaker"));
        assert!(call.sentiment.is_some(), "read from the caller's turns");
        assert_eq!(key.as_str(), "receptionist:981:call");
    }

    #[test]
    fn a_record_without_its_id_or_time_is_refused_by_name_and_paths_are_checked() {
        let e = parse_record(
            &json!({"started": "2026-03-02T15:04:00Z"}),
            &map(),
            Source::named("r"),
            DefaultRegion::default(),
        )
        .unwrap_err();
        assert_eq!(e.errors[0].field, "id");
        let e = parse_record(&json!({"id": "x"}), &map(), Source::named("r"), DefaultRegion::default()).unwrap_err();
        assert_eq!(e.errors[0].field, "started");
        let e = parse_record(
            &json!({"id": "x", "started": "yesterday"}),
            &map(),
            Source::named("r"),
            DefaultRegion::default(),
        )
        .unwrap_err();
        assert_eq!(e.errors[0].field, "started");
        let mut bad = map();
        bad.summary = Some("a[".into());
        assert!(bad.check().unwrap_err().starts_with("`summary`"));
        let mut half = map();
        half.question = None;
        assert!(half.check().is_err());
        assert!(map().check().is_ok());
    }
}
