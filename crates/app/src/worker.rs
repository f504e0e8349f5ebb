//! The worker: claims jobs, runs them, and records the outcome — done, retry at a later
//! time (exponential backoff with jitter), or dead with the reason after the last attempt
//! or on an error retrying cannot fix. Several loops run concurrently; the queue keeps each
//! caller's jobs in order and one at a time.
//!
//! Adaptive batching: a loop claims up to `batch_max` jobs at once (each the oldest of a
//! different caller). Fewer than `batch_min` means the queue is short: each job takes the
//! single path, concurrently, at the lowest latency. More means work is piling up: the
//! jobs go through [`crate::batch`] together, which spends a request per 100 records
//! instead of several per event.

use std::sync::Arc;
use std::time::Duration;

use callbridge_domain::Event;
use callbridge_store::{Failure, Job, Store, now_ms};
use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::batch::BatchJob;
use crate::sync::{Landed, SyncError, Syncer};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub workers: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
    /// Jobs claimed at once that switch a loop to the batch path.
    pub batch_min: usize,
    /// Jobs a loop claims at most at once.
    pub batch_max: usize,
    /// How long a loop that found a burst keeps topping its batch up with jobs still
    /// arriving before it starts (a fuller batch spends fewer requests per event).
    pub gather: Duration,
}

pub struct Worker {
    pub syncer: Arc<Syncer>,
    pub store: Arc<dyn Store>,
    pub config: WorkerConfig,
    /// Woken when a job is enqueued.
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Starts the loops on `tracker`; they stop when `shutdown` fires, after their current job.
    pub fn start(self: Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        for n in 0..self.config.workers {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { worker.run_loop(format!("worker-{n}-{}", std::process::id()), shutdown).await });
        }
    }

    async fn run_loop(&self, name: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let notified = self.wake.notified();
            match self.store.claim_many(&name, self.config.lease, self.config.batch_max.max(1)).await {
                Ok(mut jobs) if !jobs.is_empty() => {
                    let batch = jobs.len() >= self.config.batch_min.max(2);
                    if batch {
                        self.top_up(&name, &mut jobs).await;
                    }
                    // The leases of every job held are renewed until they are all settled.
                    let heartbeat = self.heartbeat(&name, jobs.iter().map(|j| j.id).collect());
                    if batch {
                        let span = tracing::info_span!("batch", batch.jobs = jobs.len());
                        self.process_batch(jobs).instrument(span).await;
                    } else {
                        self.process_by_caller(jobs).await;
                    }
                    heartbeat.abort();
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "claiming a job failed"),
            }
            // Nothing runnable: sleep until woken, until the next retry is due, or a second.
            let wait = match self.store.next_run_at().await {
                Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(5, 1000) as u64),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A burst is still arriving: claim what comes in for a moment, up to `batch_max`.
    async fn top_up(&self, name: &str, jobs: &mut Vec<Job>) {
        let deadline = tokio::time::Instant::now() + self.config.gather;
        while jobs.len() < self.config.batch_max && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(self.config.gather / 5).await;
            match self.store.claim_many(name, self.config.lease, self.config.batch_max - jobs.len()).await {
                Ok(more) if !more.is_empty() => jobs.extend(more),
                _ => return,
            }
        }
    }

    /// Renews the leases of running jobs until aborted, so a slow job (waiting for
    /// HubSpot's budget, retrying through an outage) is never taken over by another worker.
    fn heartbeat(&self, worker: &str, ids: Vec<i64>) -> tokio::task::JoinHandle<()> {
        let (store, lease, worker) = (self.store.clone(), self.config.lease, worker.to_string());
        tokio::spawn(async move {
            let mut ids = ids;
            while !ids.is_empty() {
                tokio::time::sleep(lease / 3).await;
                match store.renew_many(&ids, &worker, lease).await {
                    Ok(held) => ids = held,
                    Err(e) => tracing::warn!(error = %e, "renewing job leases failed"),
                }
            }
        })
    }

    /// A short queue: callers side by side, each caller's jobs one after another, in order.
    async fn process_by_caller(&self, jobs: Vec<Job>) {
        let mut by_caller: Vec<Vec<Job>> = Vec::new();
        for job in jobs {
            match by_caller.iter_mut().find(|g| g[0].caller_key == job.caller_key) {
                Some(g) => g.push(job),
                None => by_caller.push(vec![job]),
            }
        }
        join_all(by_caller.into_iter().map(|group| async {
            for job in group {
                let span = tracing::info_span!("job", job.id = job.id, event.id = job.inbox_id, job.kind = %job.kind, event.source = %job.source);
                self.process(job).instrument(span).await;
            }
        }))
        .await;
    }

    async fn process(&self, job: Job) {
        let started = std::time::Instant::now();
        let outcome = match serde_json::from_str::<Event>(&job.event_json) {
            Ok(event) => self.syncer.run(&event, retrying(&job)).await,
            Err(e) => Err(SyncError::Permanent(format!("stored event cannot be read: {e}"))),
        };
        self.record(&job, outcome, started).await;
    }

    /// Lands a batch of jobs together; jobs the batch hands back run on the single path.
    async fn process_batch(&self, jobs: Vec<Job>) {
        let started = std::time::Instant::now();
        let mut batch = Vec::with_capacity(jobs.len());
        let mut by_id = std::collections::HashMap::with_capacity(jobs.len());
        for job in jobs {
            match serde_json::from_str::<Event>(&job.event_json) {
                Ok(event) => batch.push(BatchJob {
                    id: job.id,
                    event,
                    retrying: retrying(&job),
                    caller_key: job.caller_key.clone(),
                }),
                Err(e) => {
                    let e = SyncError::Permanent(format!("stored event cannot be read: {e}"));
                    self.record(&job, Err(e), started).await;
                    continue;
                }
            }
            by_id.insert(job.id, job);
        }
        match self.syncer.run_batch(batch).await {
            Ok(report) => {
                tracing::info!(
                    batch.landed = report.landed.len(),
                    batch.failed = report.failed.len(),
                    batch.single = report.single.len(),
                    hubspot.contacts_created = report.contacts_created,
                    hubspot.activities_created = report.activities_created,
                    resolve_ms = report.phase_ms[0],
                    contacts_ms = report.phase_ms[1],
                    activities_ms = report.phase_ms[2],
                    record_ms = report.phase_ms[3],
                    duration_ms = started.elapsed().as_millis() as u64,
                    "batch landed"
                );
                for (id, e) in report.failed {
                    if let Some(job) = by_id.get(&id) {
                        self.record(job, Err(e), started).await;
                    }
                }
                // One at a time: these may share a contact with each other.
                for id in report.single {
                    if let Some(job) = by_id.remove(&id) {
                        self.process(job).await;
                    }
                }
            }
            // The store failed mid-way: every job runs again, and looks up what it wrote.
            Err(e) => {
                for job in by_id.values() {
                    self.record(job, Err(SyncError::Transient(e.to_string())), started).await;
                }
            }
        }
    }

    async fn record(&self, job: &Job, outcome: Result<Landed, SyncError>, started: std::time::Instant) {
        let result = match outcome {
            Ok(landed) => {
                tracing::info!(
                    hubspot.contact_id = landed.contact_id,
                    hubspot.activity_id = landed.activity_id,
                    activity.created = landed.created_activity,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "event landed"
                );
                self.store.complete(job.id).await
            }
            Err(e) => {
                let attempt = job.attempts as u32 + 1;
                let failure = match &e {
                    SyncError::Transient(_) if attempt < self.config.max_attempts => {
                        Failure::RetryAt(now_ms() + self.backoff(attempt).as_millis() as i64)
                    }
                    _ => Failure::Dead,
                };
                match failure {
                    Failure::Dead => {
                        tracing::error!(
                            job.attempt = attempt,
                            error.kind = e.kind(),
                            "job is dead; its reason is in GET /events?status=dead; replay it once the cause is fixed"
                        )
                    }
                    Failure::RetryAt(at) => {
                        tracing::warn!(
                            job.attempt = attempt,
                            retry.in_ms = at - now_ms(),
                            error.kind = e.kind(),
                            "job failed; will retry"
                        )
                    }
                }
                self.store.fail(job.id, &e.to_string(), failure).await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "recording the job's outcome failed; its lease will expire and it will run again");
        }
    }

    /// Exponential backoff with jitter: base · 2^(attempt−1), capped, between half and all of it.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.config.retry_base.saturating_mul(1u32 << (attempt - 1).min(20)).min(self.config.retry_max);
        exp / 2 + exp.mul_f64(fastrand::f64() / 2.0)
    }
}

/// Whether a job ran before, so its earlier attempt may have written to HubSpot.
fn retrying(job: &Job) -> bool {
    job.claims > 1 || job.attempts > 0
}
