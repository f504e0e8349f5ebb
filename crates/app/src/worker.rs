//! The worker: claims jobs, runs them, and records the outcome — done, retry at a later
//! time (exponential backoff with jitter), or dead with the reason after the last attempt
//! or on an error retrying cannot fix. Several loops run concurrently; the queue keeps each
//! caller's jobs in order and one at a time.

use std::sync::Arc;
use std::time::Duration;

use callbridge_domain::Event;
use callbridge_store::{Failure, Job, Store, now_ms};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::sync::{SyncError, Syncer};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub workers: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
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
            match self.store.claim(&name, self.config.lease).await {
                Ok(Some(job)) => {
                    let span = tracing::info_span!("job", job.id = job.id, event.id = job.inbox_id, job.kind = %job.kind, event.source = %job.source);
                    self.process_leased(&name, job).instrument(span).await;
                    continue;
                }
                Ok(None) => {}
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

    /// Runs a job while renewing its lease, so a slow job (waiting for HubSpot's budget,
    /// retrying through an outage) is never taken over by another worker while it runs.
    async fn process_leased(&self, worker: &str, job: Job) {
        let (store, id, lease, worker) = (self.store.clone(), job.id, self.config.lease, worker.to_string());
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match store.renew(id, &worker, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, "renewing a job's lease failed"),
                }
            }
        });
        self.process(job).await;
        heartbeat.abort();
    }

    async fn process(&self, job: Job) {
        let started = std::time::Instant::now();
        let outcome = match serde_json::from_str::<Event>(&job.event_json) {
            Ok(event) => self.syncer.run(&event, job.claims > 1 || job.attempts > 0).await,
            Err(e) => Err(SyncError::Permanent(format!("stored event cannot be read: {e}"))),
        };
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
