//! Validation that never loses a call: numbers that are no numbers, times that cannot be,
//! offsets no zone has are 400s naming the field; a withheld caller number with an email still
//! lands; a call with nothing to attach it to is recorded and listed, not refused.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::platforms::{app, retell};

fn retell_call(call: Value) -> String {
    let mut c = json!({"call_id": "v-1", "direction": "inbound", "from_number": "+14155550177",
        "to_number": "+15715550100", "start_timestamp": 1_767_708_131_020_i64, "end_timestamp": 1_767_708_329_771_i64});
    for (k, v) in call.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({"event": "call_ended", "call": c}).to_string()
}

#[tokio::test]
async fn numbers_that_are_not_finite_or_plausible_are_400s_naming_the_field() {
    let app = app().await;
    for (field, value) in [
        ("start_timestamp", json!("inf")),
        ("start_timestamp", json!("NaN")),
        ("end_timestamp", json!(1e300)),
        ("end_timestamp", json!(1_767_708_329)),
        ("duration_ms", json!("-inf")),
        ("duration_ms", json!(1e18)),
    ] {
        let (status, answer) = retell(&app, &retell_call(json!({field: value}))).await;
        assert_eq!(status, 400, "{field} = {value}: {answer}");
        let named = answer["fields"].as_array().unwrap().iter().any(|f| f["field"] == format!("call.{field}"));
        assert!(named, "{field} = {value}: {answer}");
    }
    assert!(app.store.events(None, 10).await.unwrap().is_empty(), "nothing was stored");
    app.stop().await;
}

#[tokio::test]
async fn a_withheld_number_with_an_email_still_lands_and_says_so() {
    let app = TestApp::start().await;
    let mut report = vapi_report("withheld-1", "anonymous", "2026-01-06T14:05:29.771Z");
    report["message"]["analysis"]["structuredData"]["caller_email"] = json!("hidden.number@example.com");
    let (status, answer) = app.vapi(&report).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
    app.settle().await;
    let calls = app.records("calls");
    assert_eq!(calls.len(), 1);
    assert!(prop(&calls[0], "hs_call_body").unwrap().contains("withheld"));
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(prop(&contacts[0], "email"), Some("hidden.number@example.com"));
    assert_eq!(prop(&contacts[0], "phone"), None, "no number is made up");
    app.stop().await;
}

#[tokio::test]
async fn a_call_with_nothing_to_attach_it_to_is_recorded_and_listed() {
    let app = TestApp::start().await;
    let (status, answer) = app.vapi(&vapi_report("restricted-1", "Restricted", "2026-01-06T14:05:29.771Z")).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("recorded")), "{answer}");
    assert!(answer["reason"].as_str().unwrap().contains("no caller phone or email"));
    let (_, listed) = app.admin_get("/events?status=recorded").await;
    let events = listed["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["idempotency_key"], "vapi:restricted-1:end-of-call-report");
    // Sent again, it is a duplicate; nothing reaches HubSpot.
    let (_, again) = app.vapi(&vapi_report("restricted-1", "Restricted", "2026-01-06T14:05:29.771Z")).await;
    assert_eq!(again["status"], "duplicate");
    app.settle().await;
    assert_eq!(app.sandbox.stats().total(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_meeting_time_with_an_offset_no_zone_has_is_refused() {
    let app = TestApp::start().await;
    let (status, answer) =
        app.booking(&json!({"email": "tz@example.com", "meeting_datetime": "2026-02-10T10:00:00+19:00"})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["fields"][0]["field"], "meeting_datetime");
    app.stop().await;
}
