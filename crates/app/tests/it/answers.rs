//! Snapshots of what callbridge answers: webhook acknowledgements, every 4xx body, `/health`
//! and `/events`. A change to any of them is a visible diff in `tests/it/snapshots/`.

use callbridge_sandbox::SandboxConfig;
use callbridge_sources::signature::sign;
use serde_json::{Value, json};

use crate::helpers::*;

const RETELL_KEY: &str = "retell-test-key";

/// Times differ from run to run: the snapshot holds their place, not their value.
fn redact_times(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k.ends_with("_at_ms") || k.ends_with("_at") {
                        *x = json!("[time]");
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[tokio::test]
async fn webhook_answers_and_every_refusal_have_a_stable_shape() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.retell_api_key = Some(secrecy::SecretString::from(RETELL_KEY));
    })
    .await;
    let booking = json!({"email": "snap@example.com", "firstname": "Sam", "meeting_type": "Demo",
        "meeting_datetime": "2026-02-10T10:00:00-05:00"});
    let (status, answer) = app.booking(&booking).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("webhook_accepted", answer);
    insta::assert_json_snapshot!("webhook_duplicate", app.booking(&booking).await.1);
    let ignored = json!({"message": {"type": "speech-update", "status": "started"}});
    insta::assert_json_snapshot!("webhook_ignored", app.vapi(&ignored).await.1);

    // 401: each check that can fail says which.
    let retell_body = json!({"event": "call_ended", "call": {"call_id": "c1"}}).to_string();
    let now = callbridge_store::now_ms();
    let signed =
        |ts: i64, key: &str| format!("v={ts},d={}", sign(key, &[retell_body.as_bytes(), ts.to_string().as_bytes()]));
    let refusals = [
        ("retell_missing_signature", app.post("/webhooks/retell", None, &[], &retell_body).await),
        (
            "retell_malformed_signature",
            app.post("/webhooks/retell", None, &[("x-retell-signature", "v=abc")], &retell_body).await,
        ),
        (
            "retell_stale_timestamp",
            app.post(
                "/webhooks/retell",
                None,
                &[("x-retell-signature", &signed(now - 3_600_000, RETELL_KEY))],
                &retell_body,
            )
            .await,
        ),
        (
            "retell_signature_does_not_match",
            app.post("/webhooks/retell", None, &[("x-retell-signature", &signed(now, "another-key"))], &retell_body)
                .await,
        ),
        ("vapi_wrong_credential", app.post("/webhooks/vapi", None, &[("x-vapi-secret", "nope")], "{}").await),
        ("generic_missing_credential", app.post("/webhooks/generic", None, &[], "{}").await),
        ("elevenlabs_not_configured", app.post("/webhooks/elevenlabs", None, &[], "{}").await),
        ("admin_missing_credential", app.post("/events/1/replay", None, &[], "").await),
    ];
    for (name, (status, body)) in refusals {
        assert_eq!(status, 401, "{name}: {body}");
        insta::assert_json_snapshot!(name, body);
    }

    // 400: every problem named by its field.
    let invalid = [
        ("generic_not_json", app.post("/webhooks/generic", Some(GENERIC_TOKEN), &[], "{not json").await),
        (
            "generic_bad_fields",
            app.booking(&json!({"email": "not-an-email", "phone": "12", "meeting_datetime": "tomorrow", "lifecycle_stage": "vip"}))
                .await,
        ),
        ("generic_no_identity", app.booking(&json!({"firstname": "Nobody"})).await),
        (
            "vapi_bad_report",
            app.vapi(&json!({"message": {"type": "end-of-call-report", "call": {"customer": {"number": "not a number"}}, "timestamp": "inf"}}))
                .await,
        ),
        ("vapi_no_message", app.vapi(&json!({"hello": "world"})).await),
    ];
    for (name, (status, body)) in invalid {
        assert_eq!(status, 400, "{name}: {body}");
        insta::assert_json_snapshot!(name, body);
    }
    let (status, body) = app.admin_get("/events?status=lost").await;
    assert_eq!(status, 400);
    insta::assert_json_snapshot!("events_bad_status", body);
    let (status, body) = app.post("/events/999/replay", Some(ADMIN_TOKEN), &[], "").await;
    assert_eq!(status, 404);
    insta::assert_json_snapshot!("replay_unknown_event", body);

    app.settle().await;
    let r = app.http.get(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    insta::assert_json_snapshot!("health", r.json::<Value>().await.unwrap());
    let (status, events) = app.admin_get("/events").await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("events", redact_times(events));
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_that_states_the_limit() {
    let app = TestApp::start().await;
    // Past the limit by a little, so the whole body is sent before the answer.
    let body = format!("{{\"pad\": \"{}\"}}", "x".repeat(callbridge::http::BODY_LIMIT));
    let (status, answer) = app.post("/webhooks/generic", Some(GENERIC_TOKEN), &[], &body).await;
    assert_eq!(status, 413, "{answer}");
    insta::assert_json_snapshot!("body_too_large", answer);
    assert!(app.store.events(None, 10).await.unwrap().is_empty(), "nothing stored");
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_without_credentials_and_names_every_route_family() {
    let app = TestApp::start().await;
    let r = app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/webhooks/{platform}", "/tools/vapi", "/events/{id}", "/metrics", "/oauth/callback", "/health"] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    app.stop().await;
}
