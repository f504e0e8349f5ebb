//! callbridge's storage: the inbox of deliveries (one row per idempotency key), the job
//! queue with leases and retries, the caller index (phone/email → contact), the record of
//! which HubSpot activity each call became, per-contact sync state and OAuth tokens.
//!
//! [`Store`] is the seam; [`sqlite::SqliteStore`] is the embedded default. The backend is
//! chosen by the database URL's scheme.
//!
//! ## The job queue
//! A job is enqueued in the same transaction as its inbox row, so a delivery acknowledged is
//! a delivery that will be worked. Jobs are named by stable snake_case kinds (`sync_call`,
//! `sync_booking`) stored in rows. A job for a caller is claimable only when no other job of
//! that caller is running and no older one is waiting, which keeps each caller's writes in
//! order and never concurrent. A claimed job holds a lease; a worker that dies leaves it to
//! be claimed again when the lease runs out. Failed jobs retry at a time the worker gives;
//! after the last attempt they are dead, listed, and replayable.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

pub mod postgres;
mod rows;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported database URL {0:?}: use sqlite://PATH, sqlite::memory: or postgres://…")]
    UnsupportedUrl(String),
    #[error("the store is shut down")]
    Closed,
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A delivery to store: the raw body as received and the canonical event parsed from it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub source: String,
    pub idempotency_key: String,
    pub raw_body: Vec<u8>,
    pub event_json: String,
    /// The job to run (`sync_call`, `sync_booking`), or `None` to record only.
    pub job_kind: Option<&'static str>,
    pub caller_key: String,
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub inbox_id: i64,
    /// The key was seen before: nothing new was stored or enqueued.
    pub duplicate: bool,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub inbox_id: i64,
    pub kind: String,
    pub caller_key: String,
    pub source: String,
    pub idempotency_key: String,
    pub event_json: String,
    /// Failed attempts so far.
    pub attempts: i64,
    /// Times the job has been claimed, this one included: more than one means an earlier
    /// run may have written to HubSpot before it failed or its worker died.
    pub claims: i64,
}

/// What happens to a job that failed.
/// An activity to record: which HubSpot record a platform's call or booking became.
#[derive(Debug, Clone)]
pub struct ActivityRecord {
    pub source: String,
    pub key: String,
    pub kind: &'static str,
    pub activity: Activity,
    pub occurred_at_ms: i64,
}

/// What a batch of jobs did, recorded in one transaction with the jobs marked done.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pub activities: Vec<ActivityRecord>,
    /// (contact, call time): the newest call synced to each contact.
    pub last_calls: Vec<(u64, i64)>,
    pub done: Vec<i64>,
}

#[derive(Debug, Clone, Copy)]
pub enum Failure {
    RetryAt(i64),
    Dead,
}

/// An inbox row with its job's state, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub source: String,
    pub idempotency_key: String,
    pub received_at_ms: i64,
    pub kind: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
}

/// A HubSpot activity made from an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub hubspot_id: u64,
    pub contact_id: Option<u64>,
    /// `v3` or `v1` (legacy engagements).
    pub via: String,
    /// The latest stage of the call written to it (0 for meetings).
    pub stage: i64,
}

#[derive(Debug, Clone)]
pub struct StoredTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at_ms: i64,
    pub hub_id: Option<u64>,
    pub scopes: Vec<String>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a delivery and enqueues its job in one durable transaction.
    async fn ingest(&self, delivery: NewDelivery) -> Result<Ingested>;
    /// Claims runnable jobs: up to `max` callers' oldest (if none of theirs runs) and, for
    /// `max` above one, up to `max` more queued behind them that are due, so a batch can
    /// land a caller's jobs together. A caller's jobs come back in order (by id).
    async fn claim_many(&self, worker: &str, lease: Duration, max: usize) -> Result<Vec<Job>>;
    /// Claims the next runnable job, if any.
    async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Job>> {
        Ok(self.claim_many(worker, lease, 1).await?.pop())
    }
    /// Extends running jobs' leases at once; returns the ids the worker still holds.
    async fn renew_many(&self, job_ids: &[i64], worker: &str, lease: Duration) -> Result<Vec<i64>>;
    /// Extends a running job's lease; false when the worker no longer holds it.
    async fn renew(&self, job_id: i64, worker: &str, lease: Duration) -> Result<bool> {
        Ok(!self.renew_many(&[job_id], worker, lease).await?.is_empty())
    }
    async fn complete(&self, job_id: i64) -> Result<()>;
    async fn fail(&self, job_id: i64, error: &str, failure: Failure) -> Result<()>;
    /// Queues an event's job again (dead or done); false when there is no such event.
    async fn replay(&self, inbox_id: i64) -> Result<bool>;
    async fn events(&self, status: Option<&str>, limit: i64) -> Result<Vec<EventRow>>;
    async fn counts(&self) -> Result<JobCounts>;
    /// The earliest time a queued job becomes runnable, if any is waiting.
    async fn next_run_at(&self) -> Result<Option<i64>>;

    /// The contact callbridge last saw under any of these keys.
    async fn known_contact(&self, keys: &[String]) -> Result<Option<u64>>;
    async fn remember_contact(&self, keys: &[String], contact_id: u64) -> Result<()> {
        self.remember_contacts(&[(keys.to_vec(), contact_id)]).await
    }
    /// Remembers many callers' contacts in one transaction.
    async fn remember_contacts(&self, entries: &[(Vec<String>, u64)]) -> Result<()>;
    async fn forget_contact(&self, contact_id: u64) -> Result<()>;

    async fn last_call_at(&self, contact_id: u64) -> Result<Option<i64>>;
    /// Records the newest call synced to a contact (keeps the later of old and new).
    async fn set_last_call_at(&self, contact_id: u64, at_ms: i64) -> Result<()>;

    async fn activity(&self, source: &str, key: &str, kind: &str) -> Result<Option<Activity>>;
    async fn record_activity(
        &self,
        source: &str,
        key: &str,
        kind: &str,
        activity: &Activity,
        occurred_at_ms: i64,
    ) -> Result<()>;
    /// Records a batch's activities and newest calls and marks its jobs done, all at once.
    async fn settle(&self, settlement: &Settlement) -> Result<()>;
    /// Every activity recorded, for the demo's table and tests: (source, key, kind, activity).
    async fn activities(&self) -> Result<Vec<(String, String, String, Activity)>>;

    async fn load_tokens(&self) -> Result<Option<StoredTokens>>;
    async fn save_tokens(&self, tokens: &StoredTokens) -> Result<()>;

    /// Takes the named exclusive lock if no one (in any instance) holds it.
    async fn try_exclusive(&self, name: &str) -> Result<Option<Exclusive>>;

    /// Whether this store can count HubSpot's windows for several instances.
    fn shares_budget(&self) -> bool {
        false
    }

    /// Takes a slot of a shared window when fewer than `max` are held (in flight, or finished
    /// less than `interval_ms` ago); otherwise `Err(wait_ms)`. Stores that do not share a
    /// budget never hand out slots.
    async fn budget_take(&self, bucket: &str, max: u32, interval_ms: i64) -> Result<std::result::Result<i64, i64>> {
        let _ = (bucket, max, interval_ms);
        Err(StoreError::Unsupported("a shared budget needs PostgreSQL"))
    }

    async fn budget_release(&self, bucket: &str, slot: i64) -> Result<()> {
        let _ = (bucket, slot);
        Err(StoreError::Unsupported("a shared budget needs PostgreSQL"))
    }

    async fn budget_block(&self, bucket: &str, until_ms: i64) -> Result<()> {
        let _ = (bucket, until_ms);
        Err(StoreError::Unsupported("a shared budget needs PostgreSQL"))
    }

    /// Wakes `wake` when another process enqueues a job (PostgreSQL `LISTEN`); workers poll
    /// regardless, so a store without notifications does nothing here.
    fn subscribe(&self, wake: Arc<tokio::sync::Notify>) {
        let _ = wake;
    }
}

/// Opens the store a URL names: `sqlite://callbridge.db`, `sqlite::memory:`, or
/// `postgres://user@host/db` for several instances sharing work.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// Held while work that must run once at a time runs (a poll, a dedup sweep, property
/// setup); released when dropped.
pub struct Exclusive {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Exclusive {
    pub fn new(release: impl FnOnce() + Send + 'static) -> Exclusive {
        Exclusive { release: Some(Box::new(release)) }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// Test support: a new, empty PostgreSQL database on the server `admin_url` points at;
/// returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> Result<String> {
    use sqlx::Connection;
    let name = format!("callbridge_test_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    conn.close().await?;
    let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| StoreError::UnsupportedUrl(admin_url.to_string()))?;
    Ok(format!("{base}/{name}"))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
