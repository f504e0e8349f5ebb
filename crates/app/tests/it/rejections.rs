//! Nothing rejected is invisible: a wrong secret or a bad body is answered 401/400 to the
//! sender and recorded — route, reason, what the sender was told, size, peer — listed at
//! `/events?status=rejected` and counted in `/metrics`, never with the body.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_wrong_secret_and_a_bad_body_are_listed_and_counted_without_their_bodies() {
    let app = TestApp::start().await;
    let report = vapi_report("call-r1", "+14155550177", "2026-01-06T14:05:00Z").to_string();
    let (status, _) = app.post("/webhooks/vapi", None, &[("x-vapi-secret", "not-the-secret")], &report).await;
    assert_eq!(status, 401);
    let booking = json!({"email": "dana.reyes@example.com", "firstname": "Dana"}).to_string();
    let (status, _) = app.post("/webhooks/generic", Some(GENERIC_TOKEN), &[], &booking).await;
    assert_eq!(status, 400);

    let started = Instant::now();
    let rows = loop {
        let (status, listed) = app.admin_get("/events?status=rejected").await;
        assert_eq!(status, 200);
        let rows = listed["events"].as_array().cloned().unwrap_or_default();
        if rows.len() == 2 {
            break rows;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never listed: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Written after the answers, each on its own: found by route, not by order.
    let by_route =
        |route: &str| rows.iter().find(|r| r["route"] == route).unwrap_or_else(|| panic!("{route}: {rows:?}"));
    let (bad_body, wrong_secret) = (by_route("/webhooks/generic"), by_route("/webhooks/vapi"));
    assert_eq!(
        (wrong_secret["route"].as_str(), wrong_secret["reason"].as_str(), wrong_secret["status"].as_i64()),
        (Some("/webhooks/vapi"), Some("unauthorized"), Some(401))
    );
    assert_eq!(wrong_secret["size"].as_i64(), Some(report.len() as i64));
    assert_eq!(wrong_secret["peer"], "127.0.0.1");
    assert_eq!(
        (bad_body["route"].as_str(), bad_body["reason"].as_str(), bad_body["status"].as_i64()),
        (Some("/webhooks/generic"), Some("invalid_payload"), Some(400))
    );
    assert!(bad_body["detail"].as_str().unwrap().contains("meeting_datetime"), "{bad_body}");
    let listed = Value::Array(rows.clone()).to_string();
    for personal in ["dana.reyes", "+14155550177", "Dana", "not-the-secret"] {
        assert!(!listed.contains(personal), "{personal} kept in {listed}");
    }

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("callbridge_webhooks_rejected_total{route=\"/webhooks/vapi\",reason=\"unauthorized\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("callbridge_webhooks_rejected_total{route=\"/webhooks/generic\",reason=\"invalid_payload\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}
