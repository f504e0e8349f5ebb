//! Retell, ElevenLabs and Vapi: signatures on the raw body, the shared fixtures landing, and
//! one activity per call however many events describe it.

use std::path::PathBuf;

use callbridge_sandbox::SandboxConfig;
use callbridge_sources::signature::sign;
use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) const RETELL_KEY: &str = "retell-test-key";
const ELEVEN_SECRET: &str = "wsec_test_eleven";

fn fixture(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/voice").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("fixture {} is needed: {e}", file.display()))
}

fn now_ms() -> i64 {
    callbridge_store::now_ms()
}

pub(crate) async fn app() -> TestApp {
    TestApp::start_with(SandboxConfig::default(), |c| {
        c.retell_api_key = Some(secrecy::SecretString::from(RETELL_KEY));
        c.elevenlabs_secret = Some(secrecy::SecretString::from(ELEVEN_SECRET));
    })
    .await
}

fn retell_header(body: &str, ts: i64, key: &str) -> String {
    callbridge_sources::signature::retell_header(key, body.as_bytes(), ts)
}

fn eleven_header(body: &str, t: i64, secret: &str) -> String {
    callbridge_sources::signature::elevenlabs_header(secret, body.as_bytes(), t)
}

pub(crate) async fn retell(app: &TestApp, body: &str) -> (u16, Value) {
    let h = retell_header(body, now_ms(), RETELL_KEY);
    app.post("/webhooks/retell", None, &[("x-retell-signature", &h)], body).await
}

async fn eleven(app: &TestApp, body: &str) -> (u16, Value) {
    let h = eleven_header(body, now_ms() / 1000, ELEVEN_SECRET);
    app.post("/webhooks/elevenlabs", None, &[("elevenlabs-signature", &h)], body).await
}

/// Retell's `call_ended` fixture turned into `call_analyzed` with an analysis.
fn retell_analyzed(ended: &str) -> String {
    let mut v: Value = serde_json::from_str(ended).unwrap();
    v["event"] = json!("call_analyzed");
    v["call"]["call_analysis"] = json!({"call_summary": "Caller checked in; nothing booked.", "user_sentiment": "Positive", "call_successful": true, "in_voicemail": false});
    v.to_string()
}

#[tokio::test]
async fn the_platform_fixtures_verify_and_land() {
    let app = app().await;
    // Retell's call_started then call_ended: one call, in progress, then completed.
    let (s, body) = retell(&app, &fixture("retell/call_started.openapi-examples.json")).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("accepted")), "{body}");
    app.settle().await;
    let started = app.records("calls");
    assert_eq!(started.len(), 1);
    assert_eq!(prop(&started[0], "hs_call_status"), Some("IN_PROGRESS"));
    let (s, body) = retell(&app, &fixture("retell/call_ended.openapi-examples.json")).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("accepted")), "{body}");
    let (s, body) = eleven(&app, &fixture("elevenlabs/post_call_transcription.phone-constructed.json")).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("accepted")), "{body}");
    let vapi = fixture("vapi/end-of-call-report.constructed.json");
    assert_eq!(app.post("/webhooks/vapi", None, &[("x-vapi-secret", VAPI_SECRET)], &vapi).await.0, 200);
    app.settle().await;

    let calls = app.records("calls");
    let mut ids: Vec<&str> = calls.iter().filter_map(|c| prop(c, "hs_call_external_id")).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "elevenlabs:conv_01jz8yq7example",
            "retell:Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6",
            "vapi:6a5e2f3c-9a3d-4c8e-b1c0-1f2e3d4c5b6a"
        ]
    );
    let contacts = app.records("contacts");
    // Dana called through ElevenLabs and Vapi from the same number: one contact.
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    let dana = contacts.iter().find(|c| prop(c, "email") == Some("dana.reyes@example.com")).unwrap();
    assert_eq!(prop(dana, "phone"), Some("+15715550143"));
    let retell_caller = contacts.iter().find(|c| prop(c, "phone") == Some("+12137771234")).unwrap();
    assert_eq!(prop(retell_caller, "callbridge_source_platform"), Some("retell"));
    let eleven_call =
        calls.iter().find(|c| prop(c, "hs_call_external_id") == Some("elevenlabs:conv_01jz8yq7example")).unwrap();
    let body = prop(eleven_call, "hs_call_body").unwrap();
    assert!(body.contains("booked a service visit") && body.contains("User: Hi, this is Dana Reyes"), "{body}");
    assert_eq!(prop(eleven_call, "hs_call_duration"), Some("118000"));

    // The audio webhook and a failed initiation are kept, not worked.
    let audio = json!({"type": "post_call_audio", "event_timestamp": 1, "data": {"agent_id": "a", "conversation_id": "conv_01jz8yq7example", "full_audio": "AAAA"}}).to_string();
    assert_eq!(eleven(&app, &audio).await.1["status"], "accepted");
    let failure = json!({"type": "call_initiation_failure", "event_timestamp": 1, "data": {"agent_id": "a", "conversation_id": "conv_2", "failure_reason": "busy"}}).to_string();
    assert_eq!(eleven(&app, &failure).await.1["status"], "accepted");
    let (_, recorded) = app.admin_get("/events?status=recorded").await;
    assert_eq!(recorded["events"].as_array().unwrap().len(), 2);
    app.settle().await;
    assert_eq!(app.records("calls").len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn bad_signatures_get_401_with_the_reason_and_store_nothing() {
    let app = app().await;
    let body = fixture("retell/call_ended.openapi-examples.json");
    let now = now_ms();
    let good = retell_header(&body, now, RETELL_KEY);
    let tampered = body.replace("inbound", "outbound");
    let eleven_body = fixture("elevenlabs/post_call_transcription.phone-constructed.json");
    let t = now / 1000;
    let retell_sig = |h: String| Some(("x-retell-signature", h));
    let eleven_sig = |h: String| Some(("elevenlabs-signature", h));
    let cases = [
        ("/webhooks/retell", retell_sig(good.clone()), tampered, "signature does not match"),
        (
            "/webhooks/retell",
            retell_sig(retell_header(&body, now, "wrong-key")),
            body.clone(),
            "signature does not match",
        ),
        (
            "/webhooks/retell",
            retell_sig(retell_header(&body, now - 301_000, RETELL_KEY)),
            body.clone(),
            "stale timestamp",
        ),
        ("/webhooks/retell", None, body.clone(), "missing signature"),
        ("/webhooks/retell", retell_sig("v=now,d=xyz".into()), body.clone(), "malformed signature"),
        (
            "/webhooks/elevenlabs",
            eleven_sig(eleven_header(&eleven_body, t, ELEVEN_SECRET)),
            eleven_body.replace("Dana", "Dina"),
            "signature does not match",
        ),
        (
            "/webhooks/elevenlabs",
            eleven_sig(eleven_header(&eleven_body, t, "wsec_other")),
            eleven_body.clone(),
            "signature does not match",
        ),
        (
            "/webhooks/elevenlabs",
            eleven_sig(eleven_header(&eleven_body, t - 1801, ELEVEN_SECRET)),
            eleven_body.clone(),
            "stale timestamp",
        ),
        ("/webhooks/elevenlabs", None, eleven_body.clone(), "missing signature"),
    ];
    for (path, header, body, reason) in cases {
        let headers: Vec<(&str, &str)> = header.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, answer) = app.post(path, None, &headers, &body).await;
        assert_eq!((s, answer["reason"].as_str()), (401, Some(reason)), "{path} {header:?}");
    }
    assert!(app.store.events(None, 10).await.unwrap().is_empty());
    assert_eq!(app.sandbox.stats().total(), 0);
    app.stop().await;
}

#[tokio::test]
async fn call_ended_and_call_analyzed_in_any_order_twice_each_concurrently_make_one_call_with_the_analysis() {
    for analyzed_first in [false, true] {
        let app = app().await;
        let ended = fixture("retell/call_ended.openapi-examples.json");
        let analyzed = retell_analyzed(&ended);
        let order = if analyzed_first {
            [&analyzed, &analyzed, &ended, &ended]
        } else {
            [&ended, &ended, &analyzed, &analyzed]
        };
        let [a, b, c, d] = order;
        let (a, b, c, d) = tokio::join!(retell(&app, a), retell(&app, b), retell(&app, c), retell(&app, d));
        assert!([a, b, c, d].iter().all(|(s, _)| *s == 200));
        app.settle().await;
        let calls = app.records("calls");
        assert_eq!(calls.len(), 1, "analyzed first: {analyzed_first}");
        let body = prop(&calls[0], "hs_call_body").unwrap();
        assert!(
            body.contains("Caller checked in; nothing booked.") && body.contains("positive"),
            "analyzed first: {analyzed_first}: {body}"
        );
        let contacts = app.records("contacts");
        assert_eq!(contacts.len(), 1);
        assert_eq!(prop(&contacts[0], "callbridge_last_sentiment"), Some("positive"));
        assert_eq!(prop(&contacts[0], "callbridge_last_call_summary"), Some("Caller checked in; nothing booked."));
        app.stop().await;
    }
}

#[tokio::test]
async fn vapi_can_sign_with_its_hmac_credential_instead_of_a_shared_secret() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| c.vapi_auth = "hmac".into()).await;
    let body = vapi_report("hmac-1", "+15715550143", "2026-01-06T14:05:29Z").to_string();
    let ts = (now_ms() / 1000).to_string();
    let sig = sign(VAPI_SECRET, &[ts.as_bytes(), b".", body.as_bytes()]);
    let (s, _) = app.post("/webhooks/vapi", None, &[("x-signature", &sig), ("x-timestamp", &ts)], &body).await;
    assert_eq!(s, 200);
    // The shared secret alone is not enough in this mode.
    let (s, answer) = app.post("/webhooks/vapi", None, &[("x-vapi-secret", VAPI_SECRET)], &body).await;
    assert_eq!((s, answer["reason"].as_str()), (401, Some("missing signature")));
    let (s, answer) = app
        .post("/webhooks/vapi", None, &[("x-signature", &sig), ("x-timestamp", &ts)], &body.replace("hmac-1", "hmac-2"))
        .await;
    assert_eq!((s, answer["reason"].as_str()), (401, Some("signature does not match")));
    app.stop().await;
}
