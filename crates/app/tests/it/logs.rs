//! Logs carry no personal data or secrets: the integration scenarios run with JSON logs at the
//! most verbose level (dependencies included), and the test fails on any email, phone number in
//! any format, token, secret or raw body fragment it finds.

use serde_json::json;

use crate::helpers::*;

/// Everything logged, in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_of_the_scenarios_hold_no_personal_data_or_secrets() {
    // The sandbox stands in for HubSpot, whose side of the wire is not callbridge's log.
    let captured = Captured::install("trace,callbridge_sandbox=off");

    let app = TestApp::start().await;
    let mut report = vapi_report("pii-1", "(415) 555-0188", "2026-01-06T14:05:29.771Z");
    report["message"]["analysis"]["structuredData"]["caller_email"] = json!("secret.caller@example.com");
    assert_eq!(app.vapi(&report).await.0, 200);
    assert_eq!(app.vapi(&report).await.0, 200, "a duplicate");
    let booking = json!({"email": "private.booker@example.com", "phone": "+1 646 555 0199", "firstname": "Quinn",
        "meeting_type": "Demo", "meeting_datetime": "2026-02-10T10:00:00-05:00"});
    assert_eq!(app.booking(&booking).await.0, 200);
    // Refusals: a wrong secret, a bad body naming its fields.
    let (status, _) = app.post("/webhooks/vapi", None, &[("x-vapi-secret", "guessed-secret-value")], "{}").await;
    assert_eq!(status, 401);
    let (status, _) = app.booking(&json!({"email": "not-an-email@", "phone": "+1 646 555 0177"})).await;
    assert_eq!(status, 400);
    app.settle().await;
    let (status, _) = app.admin_get("/events?status=done").await;
    assert_eq!(status, 200);
    let token = app.sandbox.token().to_string();
    app.stop().await;

    let logs = captured.text();
    assert!(logs.lines().count() > 50, "the scenarios were logged verbosely: {} lines", logs.lines().count());
    let targets: std::collections::BTreeSet<String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["target"].as_str().map(|t| t.split("::").next().unwrap_or(t).to_string()))
        .collect();
    for dependency in ["callbridge", "callbridge_hubspot", "sqlx", "reqwest"] {
        assert!(targets.contains(dependency), "{dependency}'s output was captured too: {targets:?}");
    }
    let forbidden = [
        "secret.caller@example.com",
        "private.booker@example.com",
        "not-an-email@",
        "4155550188",
        "415) 555-0188",
        "415-555-0188",
        "+14155550188",
        "6465550199",
        "646 555 0199",
        "+16465550199",
        "6465550177",
        "646 555 0177",
        VAPI_SECRET,
        GENERIC_TOKEN,
        ADMIN_TOKEN,
        "guessed-secret-value",
        token.as_str(),
        "I'd like to book a visit",
        "Caller booked a visit",
    ];
    for needle in forbidden {
        if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
            panic!("the logs hold {needle:?}: {}", &line[..line.len().min(600)]);
        }
    }
}
