//! An outage is told in a couple of lines with counts, not a line per job per attempt.

use std::time::Duration;

use callbridge_sandbox::SandboxConfig;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_when_it_starts_and_when_jobs_land_again_with_the_counts() {
    let captured = Captured::install("info,callbridge_sandbox=off");

    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.hubspot_retry_secs = 0;
        c.max_attempts = 30;
    })
    .await;
    app.sandbox.outage(Duration::from_secs(2));
    for i in 0..10 {
        let report = vapi_report(&format!("quiet-{i}"), &format!("+1415555{:04}", 300 + i), "2026-01-06T14:05:29Z");
        assert_eq!(app.vapi(&report).await.0, 200);
    }
    app.settle().await;
    assert_eq!(app.records("calls").len(), 10);
    let (_, events) = app.admin_get("/events").await;
    let attempts: u64 = events["events"].as_array().unwrap().iter().map(|e| e["attempts"].as_u64().unwrap()).sum();
    app.stop().await;

    let logs = captured.text();
    let failing = logs.lines().filter(|l| l.contains("jobs are failing and will retry")).count();
    let again: Vec<&str> = logs.lines().filter(|l| l.contains("jobs are landing again")).collect();
    let per_job = logs.lines().filter(|l| l.contains("job failed; will retry")).count();
    assert_eq!((failing, per_job), (1, 0), "one line for the start of the outage, none per job");
    assert_eq!(again.len(), 1, "{again:?}");
    let line: serde_json::Value = serde_json::from_str(again[0]).unwrap();
    // Every failed attempt, and only those: jobs that waited for the breaker's probe were not
    // attempts (how many failed before it opened depends on how the jobs were batched).
    assert!(attempts >= 1, "the outage failed jobs");
    assert_eq!(line["fields"]["jobs.failed"].as_u64(), Some(attempts), "it counts the failures: {line}");
}
