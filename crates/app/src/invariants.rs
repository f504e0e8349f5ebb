//! The invariants every untrusted input keeps, whatever its bytes: the fuzz targets
//! (`fuzz/`, `scripts/fuzz.sh`) run them on millions of generated inputs, and the regression
//! test runs them on every input the fuzzer ever found failing (`fuzz/regressions/<target>/`).
//! [`check`] runs the target a name picks; each panics when an invariant breaks.
//!
//! | target | input | invariants |
//! |---|---|---|
//! | `vapi`, `retell`, `elevenlabs`, `generic` | an optional `Idempotency-Key` line (one starting `form` also sends the body form-encoded), then a body | the parser never panics; a refusal names a field; an accepted event is stored as its job and reads back the same; keys are never empty |
//! | `pulled` | a polled call record | as the webhooks, through a mapping that uses every field |
//! | `signatures` | a header line, then a body | no arbitrary header verifies; a properly signed one does, over that body only |
//! | `phone_email` | text | a number that parses is E.164 and parses again to itself, masked never whole; an email parses again to itself |
//! | `config` | TOML, then after a NUL `KEY=VALUE` lines | loading never panics |
//! | `tool_calls` | a tool request body | each platform's reader never panics; a refusal names a field; every Vapi call keeps its place, and every answer is one line |

use std::collections::HashMap;

use callbridge_domain::{DefaultRegion, Email, PhoneE164};
use callbridge_sources::signature::{self, SignatureError, sign};
use callbridge_sources::{ElevenLabs, Generic, Parsed, Platform, Retell, Vapi};
use http::HeaderMap;

use crate::jobs::JobKind;

/// Every target, by name.
pub const TARGETS: [&str; 9] =
    ["vapi", "retell", "elevenlabs", "generic", "pulled", "signatures", "phone_email", "config", "tool_calls"];

/// Runs the invariants of `target` on `data`; panics when one breaks. An unknown target is a
/// panic too, so a misnamed regression directory cannot pass unnoticed.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "vapi" => webhook(&Vapi { secret: None, hmac: false }, data),
        "retell" => webhook(&Retell { api_key: None }, data),
        "elevenlabs" => webhook(&ElevenLabs { secret: None }, data),
        "generic" => webhook(&Generic::default(), data),
        "pulled" => pulled(data),
        "signatures" => signatures(data),
        "phone_email" => phone_email(data),
        "config" => config(data),
        "tool_calls" => tool_calls(data),
        other => panic!("no fuzz target is called {other:?}"),
    }
}

fn tool_calls(data: &[u8]) {
    use crate::tools::frames;
    use crate::tools::{Answer, ToolError};
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    match frames::vapi(&body) {
        Ok(calls) => {
            assert!(calls.len() <= frames::MAX_CALLS, "a message holds at most {} calls", frames::MAX_CALLS);
            // Whatever the arguments said, each call's answer keeps its place and one line.
            let outcomes: Vec<_> = calls
                .iter()
                .enumerate()
                .map(|(i, (id, call))| {
                    let text = format!("{}\n{}", call.name, call.args);
                    let outcome = if i % 2 == 0 {
                        Ok(Answer { text, data: serde_json::Value::Null })
                    } else {
                        Err(ToolError(text))
                    };
                    (id.clone(), call.name.clone(), outcome)
                })
                .collect();
            let answer = frames::vapi_answer(&outcomes);
            let results = answer["results"].as_array().expect("results are a list");
            assert_eq!(results.len(), calls.len(), "one result per call");
            for (r, (id, _)) in results.iter().zip(&calls) {
                assert_eq!(r["toolCallId"].as_str(), Some(id.as_str()), "results in call order");
                let line = r["result"].as_str().or(r["error"].as_str()).expect("a result or an error");
                assert!(!line.contains('\n'), "one line");
            }
        }
        Err(u) => assert!(!u.field.is_empty(), "a refusal names a field"),
    }
    match frames::retell("book_meeting", &body) {
        Ok(call) => assert!(call.args.is_object(), "arguments are an object"),
        Err(u) => assert!(!u.field.is_empty(), "a refusal names a field"),
    }
    match frames::elevenlabs("book_meeting", Some(&body), &[]) {
        Ok(call) => assert!(call.args.is_object(), "arguments are an object"),
        Err(u) => assert!(!u.field.is_empty(), "a refusal names a field"),
    }
}

fn webhook<P: Platform>(platform: &P, data: &[u8]) {
    // The first line may carry an `Idempotency-Key` header; the rest is the body.
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(header) {
        headers.insert("idempotency-key", v);
    }
    // A first line starting `form` sends the body form-encoded, as Zapier does.
    if header.starts_with(b"form") {
        headers.insert("content-type", http::HeaderValue::from_static("application/x-www-form-urlencoded"));
    }
    let Ok(value) = platform.decode(&headers, body) else { return };
    let region = DefaultRegion::parse("US").expect("US is a region");
    parsed(platform.parse(&headers, &value, region));
}

/// What every parser's outcome keeps: a key that is never empty, an accepted event that is
/// stored as its job and reads back the same, a refusal that names a field.
fn parsed(outcome: Result<Parsed, callbridge_sources::Fields>) {
    match outcome {
        Ok(Parsed::Event(event, key)) => {
            assert!(!key.to_string().is_empty(), "an idempotency key is never empty");
            let job = JobKind::for_event(*event.clone());
            let payload = job.payload().expect("an accepted event can be stored");
            let back = JobKind::decode(job.name(), &payload).expect("a stored job reads back");
            assert_eq!(back.event(), Some(*event), "a stored event reads back the same");
        }
        Ok(Parsed::Record { key, .. } | Parsed::Unattached(key)) => {
            assert!(!key.to_string().is_empty(), "an idempotency key is never empty");
        }
        Ok(Parsed::Ignored(_)) => {}
        Err(fields) => assert!(!fields.errors.is_empty(), "a refusal names at least one field"),
    }
}

/// A polled record through a mapping that reads every field, with the webhooks' invariants.
fn pulled(data: &[u8]) {
    use callbridge_sources::pulled::{CallMap, TimeFormat, parse_record};
    let Ok(record) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let path = |p: &str| Some(p.to_string());
    let map = CallMap {
        id: "id".into(),
        started_at: "started_at".into(),
        time_format: if data.len().is_multiple_of(2) { TimeFormat::Rfc3339 } else { TimeFormat::EpochSeconds },
        caller_phone: path("caller.phone"),
        caller_name: path("caller.name"),
        email: path("caller.email"),
        duration: path("duration"),
        direction: path("direction"),
        our_number: path("line"),
        summary: path("summary"),
        transcript: path("transcript"),
        turn_speaker: path("speaker"),
        turn_text: path("text"),
        recording_url: path("recording"),
        outcome: path("outcome"),
        answers: path("answers"),
        question: path("q"),
        answer: path("a"),
    };
    let region = DefaultRegion::parse("US").expect("US is a region");
    let source = callbridge_domain::Source::named("fuzzed");
    parsed(parse_record(&record, &map, source, region));
}

const KEY: &str = "fuzz-key";
const NOW_MS: i64 = 1_767_708_331_902;

fn signatures(data: &[u8]) {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => (String::from_utf8_lossy(data).into_owned(), &b""[..]),
    };
    let (ts_text, _) = header.split_once(',').unwrap_or((&header, ""));

    // Arbitrary headers: any outcome but a panic; a match means the fuzzer found the HMAC.
    let retell = signature::verify_retell(Some(&header), body, KEY, NOW_MS);
    assert_ne!(retell, Ok(()), "an arbitrary Retell header verified");
    let eleven = signature::verify_elevenlabs(Some(&header), body, KEY, NOW_MS / 1000);
    assert_ne!(eleven, Ok(()), "an arbitrary ElevenLabs header verified");
    let vapi = signature::verify_vapi_hmac(Some(&header), Some(ts_text), body, KEY, NOW_MS);
    assert_ne!(vapi, Ok(()), "an arbitrary Vapi signature verified");

    // A header signed properly over this body verifies; over another body it does not.
    let ts = (NOW_MS - 1000).to_string();
    let good = format!("v={ts},d={}", sign(KEY, &[body, ts.as_bytes()]));
    assert_eq!(signature::verify_retell(Some(&good), body, KEY, NOW_MS), Ok(()));
    let mut other = body.to_vec();
    other.push(b'!');
    assert_eq!(signature::verify_retell(Some(&good), &other, KEY, NOW_MS), Err(SignatureError::Mismatch));
    let secs = (NOW_MS / 1000 - 1).to_string();
    let good = format!("t={secs},v0={}", sign(KEY, &[secs.as_bytes(), b".", body]));
    assert_eq!(signature::verify_elevenlabs(Some(&good), body, KEY, NOW_MS / 1000), Ok(()));
}

fn phone_email(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for region in ["US", "GB", "DE"] {
        let region = DefaultRegion::parse(region).expect("a known region");
        if let Ok(phone) = PhoneE164::parse(text, region) {
            let e164 = phone.as_str();
            assert!(e164.starts_with('+') && e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
            assert_eq!(PhoneE164::parse(e164, region).map(|p| p.as_str().to_string()), Ok(e164.to_string()));
            assert_ne!(phone.masked(), e164, "a masked number hides digits");
            assert!(!phone.search_values().is_empty());
        }
    }
    if let Ok(email) = Email::parse(text) {
        assert_eq!(Email::parse(email.as_str()).map(|e| e.as_str().to_string()), Ok(email.as_str().to_string()));
    }
}

fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The TOML file, then after a NUL one `KEY=VALUE` variable per line.
    let (toml, vars) = text.split_once('\0').unwrap_or((text, ""));
    let vars: HashMap<String, String> = vars
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("CALLBRIDGE_{}", k.trim().to_ascii_uppercase()), v.to_string()))
        .collect();
    let _ = crate::config::Config::from_text(Some((toml, "fuzz.toml")), &vars);
    let _ = crate::config::Config::from_text(None, &vars);
}
