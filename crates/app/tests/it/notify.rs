//! Told, not just shown: events going dead and a daily budget running low reach the
//! notification URL as signed, counted messages that carry no personal data.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use callbridge_sandbox::{Faults, SandboxConfig};
use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "notify-test-secret";

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A JSON receiver on loopback that keeps what it is sent.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test]
async fn events_going_dead_are_told_in_signed_counted_messages_without_personal_data() {
    let (url, received) = receiver().await;
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.hubspot_retry_secs = 0;
        c.notify_url = Some(url);
        c.notify_secret = Some(secrecy::SecretString::from(SECRET));
        c.notify_interval_secs = 1;
    })
    .await;
    // Every record locked (423): each failure is an attempt, and both calls die.
    app.sandbox.set_faults(Faults { error_rate: 1.0, error_statuses: vec![423], ..Faults::default() });
    app.vapi(&vapi_report("dies-1", "+15715550143", "2026-01-06T14:05:29Z")).await;
    app.vapi(&vapi_report("dies-2", "+15715550144", "2026-01-06T14:06:29Z")).await;

    let started = Instant::now();
    let told = loop {
        let messages: Vec<(HeaderMap, Value)> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_str::<Value>(b).unwrap()))
            .filter(|(_, m)| m["kind"] == "event_dead")
            .collect();
        if messages.iter().map(|(_, m)| m["count"].as_u64().unwrap()).sum::<u64>() == 2 {
            break messages;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "never told of two dead events: {messages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (headers, message) in &told {
        let ts = headers["x-callbridge-timestamp"].to_str().unwrap();
        // The receiver checks the signature over the bytes it got.
        let raw = received.lock().unwrap().iter().find(|(h, _)| h["x-callbridge-timestamp"] == ts).unwrap().1.clone();
        let expected = callbridge_sources::signature::hmac_sha256_hex(SECRET, &[ts.as_bytes(), b".", raw.as_bytes()]);
        assert_eq!(headers["x-callbridge-signature"].to_str().unwrap(), format!("v1={expected}"));
        assert!(message["text"].as_str().unwrap().contains("/events?status=dead"), "{message}");
        for personal in ["+1571555014", "5715550143", "Dana"] {
            assert!(!raw.contains(personal), "{personal} in {raw}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_daily_budget_running_low_is_told_once_naming_the_portal() {
    let (url, received) = receiver().await;
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.notify_url = Some(url);
        c.notify_interval_secs = 1;
    })
    .await;
    // The day's limit is spent (setup used more than 1): HubSpot answers 429 DAILY.
    app.sandbox.set_daily_max(Some(1));
    for i in 0..3 {
        app.vapi(&vapi_report(&format!("low-{i}"), "+15715550150", "2026-01-06T14:05:29Z")).await;
    }
    let started = Instant::now();
    loop {
        let low: Vec<Value> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
            .filter(|m| m["kind"] == "daily_budget_low")
            .collect();
        if let Some(message) = low.first() {
            assert_eq!(message["names"], serde_json::json!(["default"]));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never told of the low budget");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still low several intervals later: nothing more to tell.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let told = received.lock().unwrap().iter().filter(|(_, b)| b.contains("daily_budget_low")).count();
    assert_eq!(told, 1, "told once while it stays low");
    app.stop().await;
}
