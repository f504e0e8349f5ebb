//! `/metrics` after the scenarios an operator's alerts watch — an OAuth install, a polled
//! source, calls landing through a 429 storm, a refused delivery, a duplicate sweep — parses
//! as Prometheus' text format, carries every family callbridge documents, and no label value
//! looks like a phone number or an email.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::helpers::*;

/// The families an operator's dashboards and alerts are built on.
const FAMILIES: [&str; 18] = [
    "callbridge_http_requests_total",
    "callbridge_http_request_duration_seconds",
    "callbridge_ingest_commit_seconds",
    "callbridge_webhooks_total",
    "callbridge_webhooks_rejected_total",
    "callbridge_jobs",
    "callbridge_queue_oldest_age_seconds",
    "callbridge_job_outcomes_total",
    "callbridge_job_attempts",
    "callbridge_worker_claims_total",
    "callbridge_hubspot_requests_total",
    "callbridge_hubspot_request_duration_seconds",
    "callbridge_hubspot_rate_limited_total",
    "callbridge_hubspot_budget_remaining",
    "callbridge_poll_runs_total",
    "callbridge_poll_records_total",
    "callbridge_token_expires_in_seconds",
    "callbridge_dedup_merges_total",
];

/// A label value that could be a phone number (seven digits or more in a row) or an email.
fn personal(value: &str) -> bool {
    let mut run = 0;
    for c in value.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 7 {
            return true;
        }
    }
    value.contains('@')
}

#[tokio::test]
async fn the_scrape_parses_carries_every_family_and_no_label_is_personal() {
    let (receptionist, _fake) = crate::pull_poll::fake().await;
    let app = crate::oauth::app_with(|c| c.pull_sources = vec![crate::pull_poll::resolved(&receptionist)]).await;
    let (to_callback, cookie) = crate::oauth::authorize(&app).await;
    assert_eq!(crate::oauth::callback(&to_callback, &cookie).await.0, 200);

    // A duplicate pair merged by a sweep.
    let seeded = [json!({"phone": "+15718308515", "firstname": "Dana"}), json!({"phone": "(571) 830-8515"})];
    let seeded: Vec<Map<String, Value>> = seeded.iter().map(|v| v.as_object().cloned().unwrap()).collect();
    app.sandbox.seed("contacts", &seeded).unwrap();
    let (status, answer) = app.post("/dedup?dry_run=false", Some(ADMIN_TOKEN), &[], "").await;
    assert_eq!(status, 202, "{answer}");
    let run = crate::dedup::finished(&app, answer["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "done", "{run}");

    // A call lands through a burst of 429s; a delivery with a wrong secret is refused.
    app.sandbox.storm(Duration::from_millis(300));
    assert_eq!(app.vapi(&vapi_report("through-a-storm", "+15715550143", "2026-01-07T10:00:00.000Z")).await.0, 200);
    let r = app.http.post(format!("{}/webhooks/vapi", app.base)).header("x-vapi-secret", "wrong");
    assert_eq!(r.json(&json!({})).send().await.unwrap().status().as_u16(), 401);
    app.settle().await;
    // The receptionist's calls were polled at start.
    let started = Instant::now();
    while !app.health().await["sources"][0]["last_success_at_ms"].is_i64() {
        assert!(started.elapsed() < Duration::from_secs(30), "the source was never polled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let text = app.metrics().await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    // Histograms come as `_bucket`, `_sum` and `_count` samples of one family.
    let families: BTreeSet<&str> = scrape
        .samples
        .iter()
        .map(|s| s.metric.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count"))
        .collect();
    let missing: Vec<&str> = FAMILIES.iter().copied().filter(|f| !families.contains(f)).collect();
    assert!(missing.is_empty(), "missing {missing:?} in\n{text}");
    for sample in &scrape.samples {
        for (name, value) in sample.labels.iter() {
            assert!(!personal(value), "{}{{{name}={value:?}}} looks personal", sample.metric);
        }
    }
    let value = |metric: &str, label: (&str, &str)| {
        scrape.samples.iter().find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1)).map(|s| {
            match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            }
        })
    };
    assert_eq!(value("callbridge_webhooks_rejected_total", ("reason", "unauthorized")), Some(1.0));
    assert!(value("callbridge_hubspot_rate_limited_total", ("policy", "TEN_SECONDLY_ROLLING")) >= Some(1.0), "{text}");
    let merges = scrape.samples.iter().find(|s| s.metric == "callbridge_dedup_merges_total").map(|s| &s.value);
    assert!(matches!(merges, Some(prometheus_parse::Value::Counter(n)) if *n >= 1.0), "{merges:?}");
    assert!(value("callbridge_poll_records_total", ("kind", "new")) >= Some(1.0), "{text}");
    assert_eq!(value("callbridge_jobs", ("status", "dead")), Some(0.0));
    let expires = value("callbridge_token_expires_in_seconds", ("token", "hubspot")).unwrap();
    assert!(expires > 0.0 && expires <= 6.0 * 3600.0, "{expires}");
    // Requests are counted by route template and status.
    assert!(scrape.samples.iter().any(|s| s.metric == "callbridge_http_requests_total"
        && s.labels.get("route") == Some("/webhooks/vapi")
        && s.labels.get("status") == Some("401")));
    app.stop().await;
}
