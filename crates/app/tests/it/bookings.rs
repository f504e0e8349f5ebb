//! The booking webhook as people really send it: Zapier's form bodies and flattened keys, an
//! array-wrapped body, a named endpoint with a mapping of its own, contacts-only endpoints,
//! and 400s that say what was looked for and what the body had.

use std::collections::BTreeMap;

use callbridge::config::{GenericEndpoint, Paths};
use callbridge_sandbox::SandboxConfig;
use serde_json::{Value, json};

use crate::helpers::*;

fn endpoints(c: &mut callbridge::Config) {
    let crm = GenericEndpoint {
        map: BTreeMap::from([
            ("email".to_string(), Paths::One("person.emails[0]".to_string())),
            ("meeting_datetime".to_string(), Paths::Many(vec!["slot.start".to_string(), "slot.begins".to_string()])),
        ]),
        ..GenericEndpoint::default()
    };
    let leads = GenericEndpoint { contacts_only: true, ..GenericEndpoint::default() };
    c.generic.insert("crm".into(), crm);
    c.generic.insert("leads".into(), leads);
}

async fn post_form(app: &TestApp, path: &str, form: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(GENERIC_TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn zapier_form_bodies_wrapped_bodies_and_named_mappings_all_land_as_meetings() {
    let app = TestApp::start_with(SandboxConfig::default(), endpoints).await;
    let (status, body) = post_form(
        &app,
        "/webhooks/generic",
        "caller_email=zap%40example.com&contact__first_name=Zed&start_time=2026-03-02T09%3A00%3A00-05%3A00",
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")), "{body}");
    let wrapped = json!([{"caller_phone": "(646) 555-0177", "meeting_time": "2026-03-03T09:00:00Z"}]);
    let (status, body) = app.booking(&wrapped).await;
    assert_eq!(status, 200, "{body}");
    let mapped = json!({"person": {"emails": ["mapped@example.com"]}, "slot": {"begins": "2026-03-04T09:00:00Z"}});
    let (status, body) = app.post("/webhooks/generic/crm", Some(GENERIC_TOKEN), &[], &mapped.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        app.post("/webhooks/generic/leads", Some(GENERIC_TOKEN), &[], r#"{"email": "lead@example.com"}"#).await;
    assert_eq!(status, 200, "a contacts-only endpoint takes a booking without a time: {body}");
    app.settle().await;

    let emails: Vec<String> =
        app.records("contacts").iter().filter_map(|c| prop(c, "email").map(str::to_string)).collect();
    for email in ["zap@example.com", "mapped@example.com", "lead@example.com"] {
        assert!(emails.contains(&email.to_string()), "{email} in {emails:?}");
    }
    let zed = app.records("contacts").into_iter().find(|c| prop(c, "email") == Some("zap@example.com")).unwrap();
    assert_eq!(prop(&zed, "firstname"), Some("Zed"));
    assert_eq!(app.records("meetings").len(), 3, "three bookings with times, one contact without");
    app.stop().await;
}

#[tokio::test]
async fn a_booking_that_cannot_be_read_is_a_400_naming_what_was_looked_for_and_what_was_sent() {
    let app = TestApp::start_with(SandboxConfig::default(), endpoints).await;
    let (status, body) = app.booking(&json!({"caller": "Ann", "when": "soon"})).await;
    assert_eq!(status, 400, "{body}");
    let fields = body["fields"].as_array().unwrap();
    let email = fields.iter().find(|f| f["field"] == "email").unwrap()["problem"].as_str().unwrap();
    assert!(email.contains("looked for email, caller_email"), "{email}");
    assert!(email.ends_with("the body has caller, when"), "{email}");
    let time = fields.iter().find(|f| f["field"] == "meeting_datetime").unwrap()["problem"].as_str().unwrap();
    assert!(time.starts_with("a meeting time is required"), "{time}");
    // A named endpoint's mapping is what its 400 names.
    let (status, body) =
        app.post("/webhooks/generic/crm", Some(GENERIC_TOKEN), &[], r#"{"email": "a@example.com"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("looked for person.emails[0]"), "{body}");
    let (status, _) = app.post("/webhooks/generic/unknown", Some(GENERIC_TOKEN), &[], "{}").await;
    assert_eq!(status, 404);
    app.settle().await;
    assert!(app.records("contacts").is_empty(), "nothing half-written");
    app.stop().await;
}
