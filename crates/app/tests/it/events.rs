//! `GET /events/{id}`: an event's story — each failed attempt with its error kind and when it
//! was to run again, the raw body and canonical event masked unless asked, and after a replay
//! what it wrote to HubSpot, with links into HubSpot's pages.

use std::time::{Duration, Instant};

use callbridge_sandbox::{Faults, SandboxConfig};
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn an_events_detail_tells_each_attempt_masks_personal_values_and_links_what_it_wrote() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.hubspot_retry_secs = 0;
        c.max_attempts = 3;
        c.retry_base_ms = 20;
        c.retry_max_ms = 50;
        c.hubspot_hub_id = Some(8_675_309);
    })
    .await;
    // Every record locked (423): each try is an attempt; the third is the last.
    app.sandbox.set_faults(Faults { error_rate: 1.0, error_statuses: vec![423], ..Faults::default() });
    let (status, answer) = app.vapi(&vapi_report("story-1", "+15715550143", "2026-01-06T14:05:29Z")).await;
    assert_eq!(status, 200, "{answer}");
    let started = Instant::now();
    let id = loop {
        let (_, dead) = app.admin_get("/events?status=dead").await;
        if let Some(event) = dead["events"].as_array().unwrap().first() {
            break event["id"].as_i64().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the event never went dead");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let (status, detail) = app.admin_get(&format!("/events/{id}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!((detail["status"].as_str(), detail["attempts"].as_i64()), (Some("dead"), Some(3)), "{detail}");
    let history = detail["history"].as_array().unwrap();
    let outcomes: Vec<&str> = history.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retry", "retry", "dead"], "{detail}");
    assert!(history.iter().all(|a| a["error_kind"] == "transient" && a["at"].as_str().unwrap().ends_with('Z')));
    assert!(history[0]["retry_at_ms"].as_i64() > history[0]["at_ms"].as_i64(), "{detail}");
    assert!(history[2]["retry_at"].is_null());
    assert_eq!(detail["received_at"].as_str().map(|t| t.len()), Some("2026-01-06T14:05:29.000Z".len()));
    assert_eq!(detail["written"], serde_json::json!([]), "nothing landed");
    // Masked unless asked: the number appears nowhere; the call's id does.
    let text = detail.to_string();
    assert!(!text.contains("5715550143") && !text.contains("Dana"), "{text}");
    assert!(text.contains("story-1"), "{text}");
    let (_, revealed) = app.admin_get(&format!("/events/{id}?reveal=true")).await;
    assert!(revealed["raw_body"].to_string().contains("+15715550143"), "{revealed}");

    // HubSpot takes writes again; replayed, the event lands and says where.
    app.sandbox.set_faults(Faults::default());
    let (status, _) = app.post(&format!("/events/{id}/replay"), Some(ADMIN_TOKEN), &[], "").await;
    assert_eq!(status, 200);
    app.settle().await;
    let (_, detail) = app.admin_get(&format!("/events/{id}")).await;
    assert_eq!(detail["status"], "done", "{detail}");
    assert_eq!(detail["history"].as_array().unwrap().len(), 3, "the failed attempts are kept");
    let call = app.records("calls").pop().unwrap();
    let written = &detail["written"][0];
    assert_eq!((written["object"].as_str(), written["api"].as_str()), (Some("call"), Some("v3")), "{detail}");
    assert_eq!(written["hubspot_id"].as_str(), call["id"].as_str());
    let url = format!("https://app.hubspot.com/contacts/8675309/record/0-48/{}", call["id"].as_str().unwrap());
    assert_eq!(written["url"].as_str(), Some(url.as_str()));
    assert!(written["contact_url"].as_str().unwrap().contains("/record/0-1/"));

    let (status, _): (u16, Value) = app.admin_get("/events/999999").await;
    assert_eq!(status, 404);
    app.stop().await;
}
