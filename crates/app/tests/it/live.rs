//! Live updates of a call (Vapi's status updates, partial transcripts, interruptions and
//! conversation updates; Retell's `call_started`) coalesce: a burst of them about one call is
//! one contact write and one in-progress call carrying the newest state, and the end-of-call
//! report updates that call in place.

use callbridge_sandbox::SandboxConfig;
use serde_json::{Value, json};

use crate::helpers::*;

/// Vapi's live message `kind` about `call`, `n` updates into the call.
fn live(kind: &str, call: &str, n: i64) -> Value {
    json!({"message": {"type": kind, "status": "in-progress", "timestamp": 1_767_708_131_000_i64 + n * 10,
        "call": {"id": call, "type": "inboundPhoneCall", "createdAt": "2026-01-06T14:02:10.114Z",
                 "customer": {"number": "+15715550177", "name": "Robin Vale"}},
        "phoneNumber": {"number": "+15715550100"}}})
}

/// Writes HubSpot accepted to contact records (creates and updates, however batched).
fn contact_writes(app: &TestApp) -> u64 {
    app.sandbox.with_db(|db| db.writes(callbridge_sandbox::model::Kind::Contact))
}

#[tokio::test]
async fn twenty_updates_of_a_live_call_are_one_contact_write_and_the_report_updates_its_call() {
    // A window wide enough that twenty loopback posts fall inside it on any machine.
    let app = TestApp::start_with(SandboxConfig::default(), |c| c.live_update_window_ms = 1_500).await;
    let kinds = ["status-update", "transcript", "user-interrupted", "conversation-update"];
    for n in 0..20 {
        let (status, answer) = app.vapi(&live(kinds[n as usize % 4], "live-1", n)).await;
        assert_eq!(status, 200, "{answer}");
    }
    app.settle().await;
    assert_eq!(contact_writes(&app), 1, "twenty updates, one contact write: {:?}", app.sandbox.stats().rows);
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(prop(&contacts[0], "firstname"), Some("Robin"));
    let calls = app.records("calls");
    assert_eq!(calls.len(), 1, "one call while it is live");
    assert_eq!(prop(&calls[0], "hs_call_status"), Some("IN_PROGRESS"));
    let (_, events) = app.admin_get("/events?limit=50").await;
    let statuses: Vec<&str> =
        events["events"].as_array().unwrap().iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "coalesced").count(), 19, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == "done").count(), 1, "{statuses:?}");

    // A redelivered update changes nothing; the end-of-call report completes the same call.
    app.vapi(&live("status-update", "live-1", 0)).await;
    let (status, _) = app.vapi(&vapi_report("live-1", "+15715550177", "2026-01-06T14:05:29.771Z")).await;
    assert_eq!(status, 200);
    app.settle().await;
    let calls = app.records("calls");
    assert_eq!(calls.len(), 1, "the report updates the live call in place");
    assert_eq!(prop(&calls[0], "hs_call_status"), Some("COMPLETED"));
    assert_eq!(app.records("contacts").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn updates_after_a_window_has_run_make_one_more_write_not_one_each() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| c.live_update_window_ms = 1_000).await;
    for n in 0..5 {
        app.vapi(&live("status-update", "live-2", n)).await;
    }
    app.settle().await;
    let first = contact_writes(&app);
    for n in 5..10 {
        app.vapi(&live("transcript", "live-2", n)).await;
    }
    app.settle().await;
    let (_, events) = app.admin_get("/events?limit=50").await;
    let done = events["events"].as_array().unwrap().iter().filter(|e| e["status"] == "done").count();
    assert_eq!(done, 2, "one run per burst: {events}");
    assert_eq!(first, 1);
    assert!(contact_writes(&app) <= 2, "at most one write per run: {}", contact_writes(&app));
    assert_eq!(app.records("calls").len(), 1);
    app.stop().await;
}
