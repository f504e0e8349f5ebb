//! A first start that heals itself: webhooks are acknowledged while HubSpot is down or refuses
//! the token, jobs wait instead of dying, and they land once HubSpot answers — no replay, no
//! restart.

use std::time::{Duration, Instant};

use callbridge_sandbox::{Sandbox, SandboxConfig};

use crate::helpers::*;

async fn until(app: &TestApp, what: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let health = app.health().await;
        if check(&health) {
            return health;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{what}: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_first_start_during_an_outage_acknowledges_webhooks_and_lands_them_when_hubspot_is_back() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    sandbox.outage(Duration::from_secs(3));
    let app = TestApp::launch(sandbox, |c| c.hubspot_retry_secs = 1).await;
    for i in 0..5 {
        let (status, _) = app.vapi(&vapi_report(&format!("outage-{i}"), "+14155550161", "2026-01-06T14:05:00Z")).await;
        assert_eq!(status, 200, "acknowledged while HubSpot is down");
    }
    let health =
        until(&app, "the reason shows", |h| h["portals"][0]["readiness"]["reason"] == "HubSpot is unreachable").await;
    assert_eq!(health["ready"], false);
    until(&app, "ready once the outage ends", |h| h["ready"] == true).await;
    app.settle().await;
    assert_eq!(app.store.counts().await.unwrap().dead, 0, "nothing went dead");
    assert_eq!(app.records("calls").len(), 5);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_token_makes_jobs_wait_and_they_land_once_it_is_accepted_again() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let token = sandbox.token().to_string();
    sandbox.deactivate_token(&token);
    let app = TestApp::launch(sandbox, |_| {}).await;
    for i in 0..3 {
        let (status, _) = app.vapi(&vapi_report(&format!("refused-{i}"), "+14155550162", "2026-01-06T14:05:00Z")).await;
        assert_eq!(status, 200);
    }
    let health = until(&app, "the refusal shows", |h| {
        h["portals"][0]["readiness"]["reason"].as_str().is_some_and(|r| r.contains("refused the token"))
    })
    .await;
    assert_eq!(health["ready"], false);
    // Well past the retry backoff: the jobs wait; none is attempted, none goes dead.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, queued) = app.admin_get("/events?status=queued").await;
    assert_eq!(queued["events"].as_array().unwrap().len(), 3, "{queued}");
    assert!(queued["events"].as_array().unwrap().iter().all(|e| e["attempts"] == 0), "{queued}");
    app.sandbox.activate_token(&token);
    until(&app, "ready once the token is accepted", |h| h["ready"] == true).await;
    app.settle().await;
    assert_eq!(app.store.counts().await.unwrap().dead, 0);
    assert_eq!(app.records("calls").len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_calls_intent_sets_the_lead_status_and_a_mapping_to_an_option_the_portal_lacks_holds_jobs() {
    // The default mapping: a booking call moves the lead to In Progress.
    let app = TestApp::start().await;
    let (status, _) = app.vapi(&vapi_report("lead-1", "+14155550171", "2026-01-06T14:05:00Z")).await;
    assert_eq!(status, 200);
    app.settle().await;
    let contact = &app.records("contacts")[0];
    assert_eq!(prop(contact, "callbridge_last_intent"), Some("book"));
    assert_eq!(prop(contact, "hs_lead_status"), Some("IN_PROGRESS"));
    app.stop().await;

    // A target the portal does not have: not ready, saying which; the call waits, not dead.
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let app = TestApp::launch(sandbox, |c| c.lead_status_map = "book=HOT_LEAD".into()).await;
    let health = until(&app, "the reason shows", |h| {
        h["portals"][0]["readiness"]["reason"].as_str().is_some_and(|r| r.starts_with("lead_status_map: book=HOT_LEAD"))
    })
    .await;
    assert_eq!(health["ready"], false);
    let (status, _) = app.vapi(&vapi_report("lead-2", "+14155550172", "2026-01-06T14:05:00Z")).await;
    assert_eq!(status, 200, "still acknowledged");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = app.store.counts().await.unwrap();
    assert_eq!((counts.queued, counts.dead), (1, 0), "the call waits: {counts:?}");
    assert!(app.records("calls").is_empty());
    app.stop().await;
}

fn report_saying(call_id: &str, number: &str, said: &str) -> serde_json::Value {
    let mut report = vapi_report(call_id, number, "2026-01-06T14:05:00Z");
    report["message"]["artifact"]["transcript"] = serde_json::json!(format!("AI: Hello\nUser: {said}"));
    report["message"]["analysis"]["summary"] = serde_json::json!(said);
    report
}

#[tokio::test]
async fn a_complaint_or_a_callback_makes_one_task_for_the_contacts_owner_else_the_default_owner() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| c.task_owner_id = Some("75000002".into())).await;
    // A contact of Alex's calls back about a quote; a new caller complains.
    let mut owned = serde_json::Map::new();
    owned.insert("phone".into(), serde_json::json!("+14155550181"));
    owned.insert("hubspot_owner_id".into(), serde_json::json!("75000001"));
    app.sandbox.seed("contacts", &[owned]).unwrap();
    let callback = report_saying("task-cb", "+14155550181", "Can you have someone call me back about the quote?");
    let complaint = report_saying("task-cx", "+14155550182", "This is unacceptable, nobody came yesterday.");
    let booking = report_saying("task-none", "+14155550183", "I'd like to book a visit on Thursday.");
    for r in [&callback, &complaint, &booking] {
        assert_eq!(app.vapi(r).await.0, 200);
    }
    app.settle().await;
    let tasks = app.records("tasks");
    assert_eq!(tasks.len(), 2, "a task for the callback and the complaint, none for the booking: {tasks:?}");
    let subjects: Vec<&str> = tasks.iter().filter_map(|t| prop(t, "hs_task_subject")).collect();
    let by_subject = |s: &str| {
        tasks
            .iter()
            .find(|t| prop(t, "hs_task_subject").unwrap_or("").starts_with(s))
            .unwrap_or_else(|| panic!("no {s:?} task among {subjects:?}"))
    };
    assert_eq!(prop(by_subject("Call back"), "hubspot_owner_id"), Some("75000001"), "the contact's owner");
    let cx = by_subject("Complaint");
    assert_eq!(prop(cx, "hubspot_owner_id"), Some("75000002"), "no owner: the default");
    assert_eq!(prop(cx, "hs_task_priority"), Some("HIGH"));

    // The same call again (a replay runs its job once more): still one task for it.
    let (_, events) = app.admin_get("/events?status=done").await;
    for e in events["events"].as_array().unwrap() {
        let id = e["id"].as_i64().unwrap();
        let (status, _) = app.post(&format!("/events/{id}/replay"), Some(ADMIN_TOKEN), &[], "").await;
        assert_eq!(status, 200);
    }
    app.settle().await;
    assert_eq!(app.records("tasks").len(), 2, "never two tasks for one call");
    app.stop().await;

    // A default owner the account does not have: not ready, saying so.
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let app = TestApp::launch(sandbox, |c| c.task_owner_id = Some("75009999".into())).await;
    until(&app, "the reason shows", |h| {
        h["portals"][0]["readiness"]["reason"] == "task_owner_id: 75009999 is not an owner of this HubSpot account"
    })
    .await;
    app.stop().await;
}
