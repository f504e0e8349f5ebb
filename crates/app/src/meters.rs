//! What callbridge measures, exported for Prometheus at `/metrics` through the `metrics` crates:
//! the recorder (one per process, installed on first use), the histogram buckets, the HTTP
//! middleware that times every request, and the gauges sampled when Prometheus scrapes (queue,
//! budgets, tokens). Counters and histograms are recorded where things happen, with the
//! `metrics` macros: ingest commits ([`crate::http::webhooks`]), job outcomes ([`crate::worker`]),
//! HubSpot requests and 429s (`callbridge_hubspot::transport`), poll runs
//! ([`crate::pull::runner`]), merges ([`crate::dedup`]), refusals ([`crate::rejections`]).
//!
//! Names follow Prometheus' conventions (`_total` counters, `_seconds` durations); label values
//! come from small fixed sets, route templates, endpoint templates with ids masked, and names
//! from the configuration (portals, pulled sources) — never an id, phone number or email.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::http::AppState;

/// Latency buckets, in seconds: from a fast commit (1 ms) to a slow HubSpot answer (10 s).
const SECONDS_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Attempts a job took, when it ended.
const ATTEMPT_BUCKETS: [f64; 7] = [1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0];

/// The process' recorder, installed on first use. Several apps in one process (tests) share it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("callbridge_job_attempts".into()), &ATTEMPT_BUCKETS))
            .expect("the buckets are not empty")
            .install_recorder()
            .expect("callbridge installs the only metrics recorder");
        describe();
        // Histograms are folded into their buckets here, so memory stays bounded between scrapes.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("a thread can be started");
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("callbridge_http_requests_total", "HTTP requests answered, by route template and status");
    describe_histogram!("callbridge_http_request_duration_seconds", "HTTP request latency, by route template");
    describe_histogram!("callbridge_ingest_commit_seconds", "Time to store a delivery and its job durably");
    describe_counter!("callbridge_webhooks_total", "Deliveries stored or recognised, by outcome");
    describe_counter!("callbridge_webhooks_rejected_total", "Deliveries refused, by route template and reason");
    describe_gauge!("callbridge_jobs", "Jobs by status");
    describe_gauge!("callbridge_queue_oldest_age_seconds", "Age of the oldest queued job (0 when none)");
    describe_counter!("callbridge_job_outcomes_total", "Job outcomes: done, retry, dead, waiting");
    describe_histogram!("callbridge_job_attempts", "Attempts a job took, when it ended done or dead");
    describe_counter!("callbridge_worker_claims_total", "Claims of idle worker loops, by whether they found jobs");
    describe_counter!("callbridge_hubspot_requests_total", "HubSpot requests, by endpoint template and status");
    describe_histogram!("callbridge_hubspot_request_duration_seconds", "HubSpot request latency, by endpoint");
    describe_counter!("callbridge_hubspot_rate_limited_total", "HubSpot 429 answers, by policy");
    describe_gauge!("callbridge_hubspot_budget_remaining", "Requests left in a portal's budget, by window");
    describe_counter!("callbridge_poll_runs_total", "Pull runs, by source and outcome");
    describe_counter!("callbridge_poll_records_total", "Records a pull run read, by source and kind");
    describe_gauge!("callbridge_token_expires_in_seconds", "Seconds until a HubSpot or pull-source token expires");
    describe_counter!("callbridge_dedup_merges_total", "Contacts merged by the duplicate sweep");
}

/// Times and counts every request by its route template (`/webhooks/{platform}/{portal}`),
/// never its path (which may name a portal the deployment does not serve).
pub async fn observe(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("callbridge_http_requests_total", "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("callbridge_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the gauges sampled now, then everything recorded, in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "Prometheus' text format", content_type = "text/plain", body = String)))]
pub async fn scrape(State(state): State<AppState>) -> Response {
    sample(&state).await;
    let body = handle().render();
    Response::builder()
        .header("content-type", "text/plain; version=0.0.4")
        .body(body.into())
        .expect("a static header is valid")
}

/// The gauges: the queue, each portal's budgets and token, each pulled source's session.
async fn sample(state: &AppState) {
    let now = callbridge_store::now_ms();
    if let Ok(jobs) = state.store.counts().await {
        for (status, n) in
            [("queued", jobs.queued), ("running", jobs.running), ("done", jobs.done), ("dead", jobs.dead)]
        {
            metrics::gauge!("callbridge_jobs", "status" => status).set(n as f64);
        }
        let oldest = jobs.oldest_queued_at_ms.map_or(0, |at| (now - at).max(0));
        metrics::gauge!("callbridge_queue_oldest_age_seconds").set(oldest as f64 / 1000.0);
    }
    for portal in state.portals.iter() {
        let id = portal.id().to_string();
        for (window, left) in portal.hubspot.budget_remaining() {
            metrics::gauge!("callbridge_hubspot_budget_remaining", "portal" => id.clone(), "window" => window)
                .set(left as f64);
        }
        if let Some(expires) = portal.hubspot.oauth_status().await.and_then(|s| s.expires_at_ms) {
            metrics::gauge!("callbridge_token_expires_in_seconds", "portal" => id.clone(), "token" => "hubspot")
                .set((expires - now) as f64 / 1000.0);
        }
    }
    for runner in state.pulls.iter() {
        if let Some(expires) = runner.source.session.status(now).await.expires_at_ms {
            metrics::gauge!("callbridge_token_expires_in_seconds", "source" => runner.name().to_string(), "token" => "pull")
                .set((expires - now) as f64 / 1000.0);
        }
    }
}

/// A worker loop's claim, and whether it found jobs to run.
pub fn claim(found: bool) {
    metrics::counter!("callbridge_worker_claims_total", "found" => if found { "jobs" } else { "nothing" }).increment(1);
}

/// Counts a job's outcome (`done`, `retry`, `dead`, `waiting`) and, when it ended, its attempts.
pub fn job_outcome(outcome: &'static str, attempts: i64) {
    metrics::counter!("callbridge_job_outcomes_total", "outcome" => outcome).increment(1);
    if matches!(outcome, "done" | "dead") {
        metrics::histogram!("callbridge_job_attempts").record(attempts.max(1) as f64);
    }
}
