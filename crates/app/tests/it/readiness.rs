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
