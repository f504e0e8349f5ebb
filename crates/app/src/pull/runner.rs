//! Each pulled source's schedule and its last outcome: a run every interval (± 10 % jitter),
//! `sync-now` on demand — which, when a run is already going (here or in another instance),
//! waits up to two minutes for it and answers its report — and what `/health` shows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callbridge_domain::DefaultRegion;
use callbridge_store::{Store, now_ms};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::settings::Resolved;
use super::{PullError, PullSource, RunReport, SessionKeeper, run};

/// How long `sync-now` waits for a run already going.
pub const WAIT_FOR_RUNNING: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Default, Serialize)]
struct Outcome {
    last_run_at_ms: Option<i64>,
    last_success_at_ms: Option<i64>,
    last_error: Option<String>,
    last_report: Option<RunReport>,
}

pub struct Runner {
    pub source: PullSource,
    pub interval: Duration,
    outcome: parking_lot::Mutex<Outcome>,
    finished: Notify,
    /// Held by this instance's run until its outcome is recorded: a `sync-now` that finds it
    /// held waits for that outcome, never for a lock another instance holds.
    running: tokio::sync::Mutex<()>,
}

impl Runner {
    pub fn new(resolved: Resolved, store: Arc<dyn Store>) -> Runner {
        let session = SessionKeeper::new(resolved.session, reqwest::Client::new(), store);
        Runner {
            source: PullSource {
                name: resolved.name,
                portal: resolved.portal,
                base_url: resolved.base_url,
                list: resolved.list,
                map: resolved.map,
                overlap: resolved.overlap,
                first_window: resolved.first_window,
                max_records: resolved.max_records,
                tries: 4,
                session,
            },
            interval: resolved.interval,
            outcome: Default::default(),
            finished: Notify::new(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub fn name(&self) -> &str {
        &self.source.name
    }

    /// A run now; if one is going, its report once it ends (waiting at most two minutes).
    pub async fn run_now(
        &self,
        store: &Arc<dyn Store>,
        wake: &Notify,
        region: DefaultRegion,
    ) -> Result<RunReport, PullError> {
        let asked = now_ms();
        let started = Instant::now();
        loop {
            let finished = self.finished.notified();
            let Ok(_ours) = self.running.try_lock() else {
                // This instance's run is going: its outcome is recorded before it lets go.
                let left = WAIT_FOR_RUNNING.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(PullError::AlreadyRunning);
                }
                let _ = tokio::time::timeout(left, finished).await;
                if let Some(report) = self.report_since(asked) {
                    return Ok(report);
                }
                continue;
            };
            match run(&self.source, store, wake, region, now_ms()).await {
                Ok(report) => {
                    self.record(Ok(&report));
                    return Ok(report);
                }
                // Another instance's run: retried each second while the wait lasts.
                Err(PullError::AlreadyRunning) if started.elapsed() < WAIT_FOR_RUNNING => {
                    drop(_ours);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    if e != PullError::AlreadyRunning {
                        self.record(Err(&e.to_string()));
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The last run's report, if that run was recorded at or after `asked`.
    fn report_since(&self, asked: i64) -> Option<RunReport> {
        let outcome = self.outcome.lock().clone();
        match (outcome.last_run_at_ms, outcome.last_report) {
            (Some(at), Some(report)) if at >= asked => Some(report),
            _ => None,
        }
    }

    fn record(&self, result: Result<&RunReport, &str>) {
        let source = self.source.name.clone();
        let outcome = match result {
            Ok(RunReport { failed: None, .. }) => "ok",
            Ok(_) => "failed",
            Err(_) => "error",
        };
        metrics::counter!("callbridge_poll_runs_total", "source" => source.clone(), "outcome" => outcome).increment(1);
        if let Ok(report) = result {
            for (kind, n) in [("new", report.new), ("known", report.known), ("rejected", report.rejected)] {
                metrics::counter!("callbridge_poll_records_total", "source" => source.clone(), "kind" => kind)
                    .increment(n);
            }
        }
        {
            let mut o = self.outcome.lock();
            let now = now_ms();
            o.last_run_at_ms = Some(now);
            match result {
                Ok(report) => {
                    match &report.failed {
                        None => {
                            o.last_success_at_ms = Some(now);
                            o.last_error = None;
                        }
                        Some(why) => o.last_error = Some(why.clone()),
                    }
                    o.last_report = Some(report.clone());
                }
                Err(why) => o.last_error = Some(why.to_string()),
            }
        }
        self.finished.notify_waiters();
    }

    /// Runs at once (logging in unless a stored session is still valid), then every interval,
    /// until `stop`.
    pub async fn schedule(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        region: DefaultRegion,
        stop: CancellationToken,
    ) {
        let mut first = true;
        loop {
            let jitter = 0.9 + fastrand::f64() * 0.2;
            let wait = if first { Duration::ZERO } else { self.interval.mul_f64(jitter) };
            first = false;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.run_now(&store, &wake, region).await {
                Ok(report) => tracing::info!(
                    source = %self.source.name, pages = report.pages, seen = report.seen, new = report.new,
                    known = report.known, rejected = report.rejected, failed = report.failed.as_deref(), "pull run"
                ),
                Err(e) => tracing::warn!(source = %self.source.name, error = %e, "pull run did not happen"),
            }
        }
    }

    /// What `/health` shows of this source.
    pub fn health(&self) -> Value {
        let o = self.outcome.lock().clone();
        json!({"source": self.source.name, "last_success_at_ms": o.last_success_at_ms, "last_error": o.last_error,
               "last_run_at_ms": o.last_run_at_ms, "last_report": o.last_report})
    }
}
