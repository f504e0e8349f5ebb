//! Webhooks to HubSpot through the durable pipeline.

use std::time::Duration;

use callbridge_sandbox::{Faults, SandboxConfig};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_vapi_report_lands_a_contact_and_one_call_with_what_a_rep_needs() {
    let app = TestApp::start().await;
    let (status, body) = app.vapi(&vapi_report("call-1", "+1 571 555 0143", "2026-01-06T14:05:29.771Z")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    app.settle().await;
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(prop(c, "phone"), Some("+15715550143"));
    assert_eq!((prop(c, "firstname"), prop(c, "lastname")), (Some("Dana"), Some("Reyes")));
    assert_eq!(prop(c, "callbridge_last_sentiment"), Some("positive"));
    assert_eq!(prop(c, "callbridge_last_intent"), Some("book"));
    assert_eq!(prop(c, "callbridge_last_call_summary"), Some("Caller booked a visit."));
    assert_eq!(prop(c, "callbridge_lead_source"), Some("Vapi"));
    let calls = app.records("calls");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(prop(call, "hs_call_external_id"), Some("vapi:call-1"));
    assert_eq!(prop(call, "hs_call_direction"), Some("INBOUND"));
    assert_eq!(prop(call, "hs_call_duration"), Some("198751"));
    assert_eq!(prop(call, "hs_call_recording_url"), Some("https://example.com/rec.wav"));
    let body = prop(call, "hs_call_body").unwrap();
    for part in
        ["Caller booked a visit.", "successful (customer ended call)", "positive", "User: I'd like to book a visit."]
    {
        assert!(body.contains(part), "{part} missing from {body}");
    }
    assert_eq!(call["associations"]["contacts"][0], c["id"]);
    app.stop().await;
}

#[tokio::test]
async fn a_booking_lands_a_contact_and_a_meeting() {
    let app = TestApp::start().await;
    let (status, _) = app
        .booking(&json!({"email": "Priya.Shah@Example.com", "firstname": "Priya", "lastname": "Shah", "meeting_type": "Quote call",
            "meeting_datetime": "2026-11-13T10:30:00-05:00", "lead_source": "Website", "lifecycle_stage": "lead", "extra": "ignored"}))
        .await;
    assert_eq!(status, 200);
    app.settle().await;
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(prop(&contacts[0], "email"), Some("priya.shah@example.com"));
    assert_eq!(prop(&contacts[0], "lifecyclestage"), Some("lead"));
    assert_eq!(prop(&contacts[0], "callbridge_lead_source"), Some("Website"));
    let meetings = app.records("meetings");
    assert_eq!(meetings.len(), 1);
    let m = &meetings[0];
    assert_eq!(prop(m, "hs_meeting_title"), Some("Quote call with Priya Shah"));
    assert_eq!(prop(m, "hs_meeting_start_time"), Some("2026-11-13T15:30:00.000Z"));
    assert_eq!(prop(m, "hs_meeting_outcome"), Some("SCHEDULED"));
    assert_eq!(m["associations"]["contacts"][0], contacts[0]["id"]);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_repeated_five_times_lands_once() {
    let app = TestApp::start().await;
    let report = vapi_report("call-dup", "+15715550143", "2026-01-06T14:05:29.771Z");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, body) = app.vapi(&report).await;
        statuses.push((status, body["status"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(statuses[0], (200, "accepted".to_string()));
    assert!(statuses[1..].iter().all(|s| *s == (200, "duplicate".to_string())), "{statuses:?}");
    app.settle().await;
    assert_eq!(app.records("calls").len(), 1);
    assert_eq!(app.store.counts().await.unwrap().done, 1);
    let booking = json!({"email": "a@example.com", "meeting_datetime": "2026-11-13T10:30:00Z"});
    for _ in 0..5 {
        assert_eq!(app.booking(&booking).await.0, 200);
    }
    app.settle().await;
    assert_eq!(app.records("meetings").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn one_caller_in_two_phone_formats_is_one_contact() {
    let app = TestApp::start().await;
    app.booking(&json!({"phone": "(415) 555-0100", "firstname": "Ada", "meeting_datetime": "2026-01-09T10:00:00Z"}))
        .await;
    app.settle().await;
    app.vapi(&vapi_report("call-2", "+1 415-555-0100", "2026-01-07T10:00:00Z")).await;
    app.settle().await;
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    // The name HubSpot already had is kept; what was missing is filled.
    assert_eq!(prop(&contacts[0], "firstname"), Some("Ada"));
    assert_eq!(prop(&contacts[0], "lastname"), Some("Reyes"));
    assert_eq!(app.records("calls").len(), 1);
    // A phone typed by hand in HubSpot is found too.
    app.sandbox
        .seed(
            "contacts",
            &[json!({"mobilephone": "212.555.0187", "firstname": "Marcus"}).as_object().cloned().unwrap()],
        )
        .unwrap();
    app.vapi(&vapi_report("call-3", "+12125550187", "2026-01-07T11:00:00Z")).await;
    app.settle().await;
    assert_eq!(app.records("contacts").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn rejected_deliveries_leave_no_row_behind() {
    let app = TestApp::start().await;
    let report = vapi_report("call-x", "+15715550143", "2026-01-06T14:05:29.771Z").to_string();
    let (s, body) = app.post("/webhooks/vapi", None, &[], &report).await;
    assert_eq!((s, body["reason"].as_str()), (401, Some("missing credential")));
    let (s, body) = app.post("/webhooks/vapi", None, &[("x-vapi-secret", "wrong")], &report).await;
    assert_eq!((s, body["reason"].as_str()), (401, Some("wrong credential")));
    let (s, _) = app.post("/webhooks/generic", Some("wrong"), &[], "{}").await;
    assert_eq!(s, 401);

    let cases = [
        ("/webhooks/vapi", "not json", "body"),
        (
            "/webhooks/vapi",
            r#"{"message": {"type": "end-of-call-report", "call": {"customer": {"number": "+15715550143"}}, "endedAt": "2026-01-06T14:05:29Z"}}"#,
            "message.call.id",
        ),
        (
            "/webhooks/vapi",
            r#"{"message": {"type": "end-of-call-report", "call": {"id": "c", "customer": {"number": "+15715550143"}}, "endedAt": "2026-01-06T14:05:29+19:00"}}"#,
            "message.endedAt",
        ),
        ("/webhooks/generic", r#"{"firstname": "No contact details"}"#, "email"),
        ("/webhooks/generic", r#"{"email": "x@example.com", "meeting_datetime": "Thursday 9am"}"#, "meeting_datetime"),
        ("/webhooks/generic", r#"{"phone": "12"}"#, "phone"),
        ("/webhooks/generic", r#"{"email": ["a@example.com"]}"#, "email"),
    ];
    for (path, body, field) in cases {
        let (token, headers): (Option<&str>, Vec<(&str, &str)>) = if path.ends_with("vapi") {
            (None, vec![("x-vapi-secret", VAPI_SECRET)])
        } else {
            (Some(GENERIC_TOKEN), vec![])
        };
        let (s, answer) = app.post(path, token, &headers, body).await;
        assert_eq!(s, 400, "{path} {body}");
        assert_eq!(answer["error"], "invalid_payload");
        assert!(answer["fields"].as_array().unwrap().iter().any(|f| f["field"] == field), "{body}: {answer}");
    }
    // Other Vapi message types are acknowledged and not stored.
    let (s, answer) = app.vapi(&json!({"message": {"type": "speech-update", "status": "started"}})).await;
    assert_eq!((s, answer["status"].as_str()), (200, Some("ignored")));
    assert!(app.store.events(None, 100).await.unwrap().is_empty());
    assert_eq!(app.sandbox.stats().total(), 0, "nothing reached HubSpot");
    app.stop().await;
}

#[tokio::test]
async fn an_outage_longer_than_several_retries_ends_with_everything_landed_and_nothing_dead() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.hubspot_retry_secs = 0;
        c.max_attempts = 30;
    })
    .await;
    app.sandbox.outage(Duration::from_secs(3));
    for i in 0..10 {
        let (s, _) = app
            .vapi(&vapi_report(&format!("outage-{i}"), &format!("+1415555{:04}", 100 + i), "2026-01-06T14:05:29Z"))
            .await;
        assert_eq!(s, 200);
    }
    app.settle().await;
    let (_, events) = app.admin_get("/events").await;
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 10);
    assert!(events.iter().all(|e| e["status"] == "done"), "{events:?}");
    // The outage failed jobs; once the breaker opened the rest waited for its probe instead of
    // spending attempts.
    assert!(events.iter().any(|e| e["attempts"].as_i64().unwrap() >= 1), "the outage failed jobs: {events:?}");
    assert_eq!(app.records("calls").len(), 10);
    assert_eq!(app.records("contacts").len(), 10);
    app.stop().await;
}

/// During an outage the portal's circuit breaker opens: jobs wait in the queue for its probe
/// (not an attempt: with two attempts allowed, none dies), HubSpot sees the writes in flight
/// and one probe at a time instead of every job retrying, and everything lands once after.
#[tokio::test]
async fn an_outage_pauses_the_portal_and_its_jobs_wait_without_spending_attempts() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| c.max_attempts = 2).await;
    app.sandbox.outage(Duration::from_secs(5));
    app.sandbox.reset_stats();
    for i in 0..10 {
        let report = vapi_report(&format!("paused-{i}"), &format!("+1415555{:04}", 400 + i), "2026-01-06T14:05:29Z");
        assert_eq!(app.vapi(&report).await.0, 200);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = app.sandbox.stats().with_status(503);
    app.settle().await;
    let (_, events) = app.admin_get("/events").await;
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 10);
    assert!(events.iter().all(|e| e["status"] == "done" && e["attempts"] == 0), "{events:?}");
    // The breaker opens at the fifth failure in a row; then a probe 0.5, 1 and 2 s apart.
    assert!((5..=12).contains(&during), "requests during the outage: {during}");
    assert_eq!(app.records("calls").len(), 10);
    app.stop().await;
}

/// While the breaker holds requests back, the workers leave the queue alone: only the loop
/// whose round carries the next probe claims jobs, instead of every job being claimed and
/// handed back at each probe (a write per job, taken from acknowledgements). With batches of
/// two, four loops, 20 queued calls and ~4 probes: 60–74 jobs handed back when every loop
/// claimed at each probe, 12–14 with one loop claiming (the rounds the outage met in flight
/// and one batch per probe). Rounds the outage meets in flight wait for the probe instead of
/// handing their jobs back, for as long as a request is retried: one second here, so the loops
/// are free again while HubSpot is still down.
#[tokio::test]
async fn while_the_breaker_is_open_the_queue_is_left_alone_until_the_next_probe() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        (c.workers, c.batch_min, c.batch_max) = (4, 2, 2);
        c.hubspot_retry_secs = 1;
    })
    .await;
    app.sandbox.outage(Duration::from_secs(5));
    for i in 0..20 {
        let report = vapi_report(&format!("quiet-{i}"), &format!("+1415555{:04}", 500 + i), "2026-01-06T14:05:29Z");
        assert_eq!(app.vapi(&report).await.0, 200);
    }
    app.settle().await;
    let metrics = app.metrics().await;
    let handed_back: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("callbridge_job_outcomes_total{outcome=\"waiting\"} "))
        .map_or(0, |n| n.trim().parse().unwrap());
    assert!(handed_back > 0, "the jobs met the outage: {metrics}");
    assert!(handed_back <= 24, "jobs handed back while HubSpot was down: {handed_back}");
    assert_eq!(app.records("calls").len(), 20);
    app.stop().await;
}

#[tokio::test]
async fn writes_that_time_out_after_landing_are_not_repeated() {
    let app = TestApp::start().await;
    app.sandbox.set_faults(Faults { error_after_write_rate: 0.5, ..Faults::default() });
    // One at a time, so each lands in a round of its own: 40 writes, half of them timing out.
    for i in 0..20 {
        app.vapi(&vapi_report(&format!("flaky-{i}"), &format!("+1415555{:04}", 200 + i), "2026-01-06T14:05:29Z")).await;
        app.settle().await;
    }
    app.sandbox.set_faults(Faults::default());
    let calls = app.records("calls");
    let mut ids: Vec<&str> = calls.iter().filter_map(|c| prop(c, "hs_call_external_id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((calls.len(), ids.len()), (20, 20));
    assert_eq!(app.records("contacts").len(), 20);
    assert!(app.sandbox.stats().with_status(504) > 0);
    app.stop().await;
}

/// A batch of calls whose answer is lost (HubSpot made them; the gateway timed out) costs its
/// jobs no attempt: they go on together to the round after, which finds through their
/// contacts' associations what was made and writes nothing twice. With one attempt allowed, a
/// job charged an attempt for the lost answer would be dead.
#[tokio::test]
async fn a_lost_answer_to_a_batch_of_calls_is_looked_up_in_the_next_round_without_spending_an_attempt() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| c.max_attempts = 1).await;
    let lost = "/crm/v3/objects/calls/batch/create";
    app.sandbox.set_faults(Faults { lose_answer_to: Some(lost.into()), ..Faults::default() });
    for i in 0..10 {
        let report = vapi_report(&format!("lost-{i}"), &format!("+1415555{:04}", 600 + i), "2026-01-06T14:05:29Z");
        assert_eq!(app.vapi(&report).await.0, 200);
    }
    app.settle().await;
    assert_eq!(app.sandbox.faults().lose_answer_to, None, "an answer was lost");
    let (_, events) = app.admin_get("/events").await;
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 10);
    assert!(events.iter().all(|e| e["status"] == "done" && e["attempts"] == 0), "{events:?}");
    let calls = app.records("calls");
    let mut ids: Vec<&str> = calls.iter().filter_map(|c| prop(c, "hs_call_external_id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((calls.len(), ids.len()), (10, 10));
    let stats = app.sandbox.stats();
    assert_eq!(stats.with_status(504), 1);
    assert!(stats.matching("POST", "/associations/") > 0, "the round after looked for what was made: {stats:?}");
    app.stop().await;
}

#[tokio::test]
async fn without_the_calls_scope_calls_are_logged_as_v1_engagements() {
    let app = TestApp::start_with(SandboxConfig::default(), |_| {}).await;
    // Re-point the app at a token without the calls scope: build a second app sharing the sandbox.
    let sandbox_token = app.sandbox.no_calls_token().to_string();
    let db = temp_db();
    let mut config = config_for(&app.sandbox, &db);
    config.database_url = database_url(&db).await;
    config.hubspot_token = Some(secrecy::SecretString::from(sandbox_token.clone()));
    let store = callbridge_store::open(&config.database_url).await.unwrap();
    let hubspot = std::sync::Arc::new(callbridge::app::hubspot_client(
        &config,
        callbridge_hubspot::Credentials::PrivateApp(secrecy::SecretString::from(sandbox_token)),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task =
        tokio::spawn(callbridge::App::build(&config, store.clone(), hubspot).await.run(listener, shutdown.clone()));
    let r = reqwest::Client::new()
        .post(format!("{base}/webhooks/vapi"))
        .header("x-vapi-secret", VAPI_SECRET)
        .json(&vapi_report("starter-1", "+15715550143", "2026-01-06T14:05:29Z"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    loop {
        let c = store.counts().await.unwrap();
        if c.queued + c.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let activities = store.activities().await.unwrap();
    assert_eq!(activities.len(), 1);
    assert_eq!(activities[0].activity.via, "v1");
    let calls = app.records("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(prop(&calls[0], "hs_call_external_id"), Some("vapi:starter-1"));
    assert!(app.sandbox.stats().with_status(403) >= 1, "the probe met MISSING_SCOPES");
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_file(db);
    app.stop().await;
}

#[tokio::test]
async fn dead_events_are_listed_and_replayed_through_the_admin_api() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| c.hubspot_retry_secs = 0).await;
    let (s, _) = app.admin_get("/events?status=dead").await;
    assert_eq!(s, 200);
    let (s, _) = app.post("/events/1/replay", None, &[], "").await;
    assert_eq!(s, 401, "admin endpoints need the admin token");
    // Every record locked (423): HubSpot answers, so the breaker stays closed and each failure
    // is an attempt (a 5xx outage would pause the portal instead, and nothing would die).
    app.sandbox.set_faults(Faults { error_rate: 1.0, error_statuses: vec![423], ..Faults::default() });
    app.vapi(&vapi_report("dies", "+15715550143", "2026-01-06T14:05:29Z")).await;
    // With every request failing, the job exhausts its attempts (test config: 8, fast).
    let started = std::time::Instant::now();
    loop {
        let (_, dead) = app.admin_get("/events?status=dead").await;
        if dead["events"].as_array().is_some_and(|e| e.len() == 1) {
            assert!(dead["events"][0]["last_error"].as_str().unwrap().contains("423"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the job never died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.sandbox.set_faults(Faults::default());
    let id = app.store.events(Some("dead"), 1).await.unwrap()[0].id;
    let r = app.http.post(format!("{}/events/{id}/replay", app.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.settle().await;
    assert_eq!(app.records("calls").len(), 1);
    let (_, health) = app
        .http
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .map(|v| (0, v))
        .unwrap();
    assert_eq!(health["jobs"]["dead"], 0);
    app.stop().await;
}

/// `callbridge_worker_claims_total{found="nothing"}` in the scrape.
async fn empty_claims(app: &TestApp) -> f64 {
    let text = app.metrics().await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "callbridge_worker_claims_total" && s.labels.get("found") == Some("nothing"))
        .map_or(0.0, |s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test]
async fn deliveries_for_a_caller_whose_job_runs_wait_for_it_without_the_idle_loops_claiming_over_and_over() {
    let app = TestApp::start().await;
    app.vapi(&vapi_report("warm-up", "+14155550999", "2026-01-06T14:05:00.000Z")).await;
    app.settle().await;
    // A slow HubSpot holds the caller's first call in its round for a few seconds.
    app.sandbox.set_faults(Faults { latency_ms: 1_000, ..Faults::default() });
    let (status, _) = app.vapi(&vapi_report("first", "+14155550123", "2026-01-06T14:06:00.000Z")).await;
    assert_eq!(status, 200);
    app.until_running().await;
    let before = empty_claims(&app).await;
    // Each delivery wakes an idle loop, and each finds only jobs behind the running one.
    for i in 0..40 {
        let at = format!("2026-01-06T14:{:02}:00.000Z", 10 + i);
        let (status, _) = app.vapi(&vapi_report(&format!("next-{i}"), "+1 (415) 555-0123", &at)).await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let empty = empty_claims(&app).await - before;
    app.sandbox.set_faults(Faults::default());
    app.settle().await;
    let counts = app.store.counts().await.unwrap();
    assert_eq!((counts.done, counts.dead), (42, 0), "every call lands: {counts:?}");
    // Three idle loops for the 2 s of deliveries: claiming each time one wakes them, or every
    // few milliseconds while jobs are due, would be hundreds of claims; backing off, each loop
    // makes a few while its gap grows to 100 ms.
    assert!(empty < 150.0, "{empty} claims found nothing while the caller's job ran");
}
