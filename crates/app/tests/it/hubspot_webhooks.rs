//! HubSpot's own webhooks, sent by the sandbox as HubSpot sends them (signed, batched, retried):
//! a merge made in HubSpot moves the caller to the survivor (the next call needs no search), a
//! privacy deletion leaves no trace of the contact in callbridge's database, a changed number
//! re-indexes its contact; unsigned, stale, malformed and repeated deliveries are told apart.

use std::time::{Duration, Instant};

use callbridge_domain::PortalId;
use callbridge_sandbox::SandboxConfig;
use callbridge_sources::signature::sign_hubspot_v3;
use serde_json::{Value, json};

use crate::helpers::*;

const APP_SECRET: &str = "hubspot-app-secret";

async fn app() -> TestApp {
    let sandbox = SandboxConfig { client_secret: APP_SECRET.into(), ..SandboxConfig::default() };
    let app = TestApp::start_with(sandbox, |c| c.hubspot_app_secret = Some(APP_SECRET.to_string().into())).await;
    let subscriptions = [
        ("contact.merge", None),
        ("contact.deletion", None),
        ("contact.privacyDeletion", None),
        ("contact.propertyChange", Some("phone")),
        ("contact.propertyChange", Some("mobilephone")),
        ("contact.propertyChange", Some("email")),
    ];
    app.sandbox.send_webhooks(&format!("{}/webhooks/hubspot", app.base), &subscriptions);
    app
}

/// Waits until `done` holds of the app's store (HubSpot's delivery and the job after it).
async fn until<F: AsyncFn(&TestApp) -> bool>(app: &TestApp, what: &str, done: F) {
    let started = Instant::now();
    while !done(app).await {
        assert!(started.elapsed() < Duration::from_secs(30), "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.settle().await;
}

async fn known(app: &TestApp, key: &str) -> Option<u64> {
    app.store.known_contact(&PortalId::default(), &[key.to_string()]).await.unwrap()
}

async fn sandbox_post(app: &TestApp, path: &str, body: Value) -> u16 {
    let url = format!("{}{path}", app.sandbox.base_url());
    let r = app.http.post(url).bearer_auth(app.sandbox.token()).json(&body).send().await.unwrap();
    r.status().as_u16()
}

fn contact_id(record: &Value) -> u64 {
    record["id"].as_str().unwrap().parse().unwrap()
}

fn call_contact(app: &TestApp, call: &str) -> Value {
    let calls = app.records("calls");
    let found = calls.iter().find(|c| prop(c, "hs_call_external_id").is_some_and(|x| x.contains(call)));
    found.unwrap_or_else(|| panic!("call {call} landed")).clone()["associations"]["contacts"].clone()
}

#[tokio::test]
async fn a_merge_made_in_hubspot_lands_the_next_call_from_the_merged_number_on_the_survivor_without_a_search() {
    let app = app().await;
    let props = |v: Value| v.as_object().unwrap().clone();
    let ids = app
        .sandbox
        .seed("contacts", &[props(json!({"email": "dana@example.com"})), props(json!({"phone": "+15715550143"}))])
        .unwrap();
    let (older, newer) = (ids[0], ids[1]);
    assert_eq!(app.vapi(&vapi_report("before-merge", "+15715550143", "2026-01-07T10:00:00.000Z")).await.0, 200);
    app.settle().await;
    assert_eq!(known(&app, "phone:+15715550143").await, Some(newer));

    let merge = json!({"primaryObjectId": older.to_string(), "objectIdToMerge": newer.to_string()});
    assert_eq!(sandbox_post(&app, "/crm/v3/objects/contacts/merge", merge).await, 200);
    until(&app, "the merge reached the caller index", async |app| {
        known(app, "phone:+15715550143").await == Some(older)
    })
    .await;

    app.sandbox.reset_stats();
    assert_eq!(app.vapi(&vapi_report("after-merge", "+15715550143", "2026-01-07T11:00:00.000Z")).await.0, 200);
    app.settle().await;
    assert_eq!(app.sandbox.stats().matching("POST", "/search"), 0, "known through the index");
    assert_eq!(call_contact(&app, "after-merge"), json!([older.to_string()]));
    app.stop().await;
}

#[tokio::test]
async fn a_privacy_deletion_leaves_no_trace_of_the_contact_and_keeps_everyone_else() {
    let app = app().await;
    assert_eq!(app.vapi(&vapi_report("erased-call", "+15715550143", "2026-01-07T10:00:00.000Z")).await.0, 200);
    assert_eq!(app.vapi(&vapi_report("kept-call", "+15715550188", "2026-01-07T10:05:00.000Z")).await.0, 200);
    let booking = json!({"email": "dana@example.com", "phone": "+15715550143", "start_time": "2026-01-08T15:00:00Z"});
    let headers = [("idempotency-key", "erased-booking")];
    assert_eq!(app.post("/webhooks/generic", Some(GENERIC_TOKEN), &headers, &booking.to_string()).await.0, 200);
    app.settle().await;
    let erased = known(&app, "phone:+15715550143").await.expect("the caller is indexed");
    let kept = known(&app, "phone:+15715550188").await.expect("the other caller is indexed");
    let portal = PortalId::default();
    let traces =
        async |app: &TestApp, key: &str| app.store.caller_events(&portal, &[key.to_string()], 10).await.unwrap();
    assert!(!traces(&app, "phone:+15715550143").await.is_empty());

    assert_eq!(
        sandbox_post(&app, "/crm/v3/objects/contacts/gdpr-delete", json!({"objectId": erased.to_string()})).await,
        204
    );
    until(&app, "the privacy deletion was carried out", async |app| {
        known(app, "phone:+15715550143").await.is_none() && known(app, "email:dana@example.com").await.is_none()
    })
    .await;

    assert!(traces(&app, "phone:+15715550143").await.is_empty(), "the caller's deliveries are erased");
    assert!(traces(&app, "email:dana@example.com").await.is_empty(), "the booking's delivery is erased");
    let events = app.store.events(None, 1000).await.unwrap();
    let keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert!(!keys.iter().any(|k| k.contains("erased-call") || k.contains("erased-booking")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("kept-call")), "{keys:?}");
    let activities = app.store.activities().await.unwrap();
    assert!(activities.iter().all(|a| a.activity.contact_id != Some(erased)), "no activity of the erased contact");
    assert!(activities.iter().any(|a| a.activity.contact_id == Some(kept)));
    assert_eq!(app.store.last_call_at(&portal, erased).await.unwrap(), None);
    assert!(app.store.booking(&portal, "key:erased-booking").await.unwrap().is_none(), "its booking is erased");
    assert_eq!(known(&app, "phone:+15715550188").await, Some(kept), "another caller is untouched");
    app.stop().await;
}

#[tokio::test]
async fn a_number_changed_in_hubspot_re_indexes_its_contact() {
    let app = app().await;
    assert_eq!(app.vapi(&vapi_report("first", "+15715550143", "2026-01-07T10:00:00.000Z")).await.0, 200);
    app.settle().await;
    let contact = known(&app, "phone:+15715550143").await.unwrap();
    let url = format!("{}/crm/v3/objects/contacts/{contact}", app.sandbox.base_url());
    // A new main number and a mobile: the old number stays in callbridge's own number property,
    // so the contact still answers to it.
    let body = json!({"properties": {"phone": "+15715550199", "mobilephone": "(571) 555-0123"}});
    let r = app.http.patch(&url).bearer_auth(app.sandbox.token()).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    until(&app, "the new numbers were indexed", async |app| {
        known(app, "phone:+15715550199").await == Some(contact)
            && known(app, "phone:+15715550123").await == Some(contact)
    })
    .await;
    assert_eq!(known(&app, "phone:+15715550143").await, Some(contact), "still on the contact");
    // The mobile cleared, and the old number with it: neither names the contact any more.
    let body = json!({"properties": {"mobilephone": "", "callbridge_phone_e164": ""}});
    let r = app.http.patch(&url).bearer_auth(app.sandbox.token()).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    until(&app, "the cleared numbers were dropped", async |app| known(app, "phone:+15715550123").await.is_none()).await;
    assert_eq!(known(&app, "phone:+15715550143").await, None, "the old number no longer names the contact");
    assert_eq!(known(&app, "phone:+15715550199").await, Some(contact));
    let record = app.records("contacts").into_iter().find(|c| contact_id(c) == contact).unwrap();
    assert_eq!(prop(&record, "phone"), Some("+15715550199"));
    app.stop().await;
}

#[tokio::test]
async fn unsigned_stale_malformed_and_repeated_deliveries_are_told_apart() {
    let app = app().await;
    let url = format!("{}/webhooks/hubspot", app.base);
    let now = callbridge_store::now_ms();
    let post = async |body: &str, ts: i64, signature: &str| {
        let headers = [("x-hubspot-signature-v3", signature), ("x-hubspot-request-timestamp", &ts.to_string())];
        app.post("/webhooks/hubspot", None, &headers, body).await
    };
    let deletion = json!([{"eventId": 9, "subscriptionId": 2, "portalId": 8_675_309, "occurredAt": now,
        "subscriptionType": "contact.deletion", "objectId": 123, "attemptNumber": 0, "changeFlag": "DELETED"}])
    .to_string();
    let signed = |body: &str, ts: i64| sign_hubspot_v3(APP_SECRET, "POST", &url, body.as_bytes(), ts);

    let (status, answer) = app.post("/webhooks/hubspot", None, &[], &deletion).await;
    assert_eq!((status, &answer["reason"]), (401, &json!("missing signature")), "{answer}");
    let (status, answer) =
        post(&deletion, now, &sign_hubspot_v3("another-secret", "POST", &url, deletion.as_bytes(), now)).await;
    assert_eq!((status, &answer["reason"]), (401, &json!("signature does not match")), "{answer}");
    let stale = now - 6 * 60 * 1000;
    let (status, answer) = post(&deletion, stale, &signed(&deletion, stale)).await;
    assert_eq!((status, &answer["reason"]), (401, &json!("stale timestamp")), "{answer}");

    let malformed = json!([{"eventId": 1, "subscriptionId": 2, "occurredAt": now, "objectId": 5,
        "subscriptionType": "contact.deletion"}])
    .to_string();
    let (status, answer) = post(&malformed, now, &signed(&malformed, now)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("[0].portalId"), "{answer}");

    let (status, answer) = post(&deletion, now, &signed(&deletion, now)).await;
    assert_eq!((status, &answer["accepted"], &answer["duplicates"]), (200, &json!(1), &json!(0)), "{answer}");
    let (status, answer) = post(&deletion, now, &signed(&deletion, now)).await;
    assert_eq!((status, &answer["accepted"], &answer["duplicates"]), (200, &json!(0), &json!(1)), "{answer}");
    app.settle().await;
    let counts = app.store.counts().await.unwrap();
    assert_eq!((counts.done, counts.dead), (1, 0), "one job for the delivery and its repeat");
    app.stop().await;
}
