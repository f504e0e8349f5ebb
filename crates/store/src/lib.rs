//! callbridge's storage: the inbox of deliveries (one row per idempotency key and portal), the
//! job queue with leases and retries, the caller index (phone/email → contact), the record of
//! which HubSpot activity each call became, per-contact sync state and OAuth tokens. Every row
//! that belongs to a HubSpot portal says which ([`PortalId`]).
//!
//! The seams are focused traits — [`Queue`], [`CallerIndex`], [`Activities`], [`Credentials`]
//! and [`Coordination`] — and [`Store`] is all of them. [`sqlite::SqliteStore`] is the embedded
//! default, [`postgres::PgStore`] serves several instances; the backend is chosen by the
//! database URL's scheme. Schema changes are `.sql` files under `migrations/<backend>/`,
//! applied in order, each in its own transaction, and recorded in `schema_version`.
//!
//! ## The job queue
//! A job is enqueued in the same transaction as its inbox row, so a delivery acknowledged is
//! a delivery that will be worked. Jobs are named by stable snake_case kinds (`sync_call`,
//! `sync_booking`) stored in rows. A job for a caller is claimable only when no other job of
//! that caller (in its portal) is running and no older one is waiting, which keeps each
//! caller's writes in order and never concurrent. A claimed job holds a lease; a worker that
//! dies leaves it to be claimed again when the lease runs out. Failed jobs retry at a time the
//! worker gives; after the last attempt they are dead, listed, and replayable. Live updates
//! of one call coalesce into one queued job ([`Coalesce`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use bookings::{Booked, Booking, BookingChange, BookingStatus, Bookings};
pub use callbridge_domain::{IdempotencyKey, PortalId};
use serde::Serialize;

mod body;
pub mod bookings;
mod group;
mod migrate;
pub mod postgres;
mod rows;
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod test_support;

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
    pub portal: PortalId,
    pub source: String,
    pub idempotency_key: IdempotencyKey,
    pub raw_body: Vec<u8>,
    /// The job's payload (the canonical event as JSON), or `null` for a delivery only recorded.
    pub event_json: String,
    /// The job to run (its stable name: `sync_call`, `sync_booking`), or `None` to record only.
    pub job_kind: Option<&'static str>,
    pub caller_key: String,
    pub received_at_ms: i64,
    /// A live update that coalesces with the others of its call (see [`Coalesce`]).
    pub coalesce: Option<Coalesce>,
}

/// How a live update joins the others of its call: while a job for `key` (in its portal) is
/// still queued, a newer update takes that job over (it will run with the newest state, and
/// the older delivery is listed as `coalesced`); otherwise it gets a job of its own, due
/// `window_ms` after it arrived, so the updates of that window gather behind it. Either way a
/// call's updates cost at most one run per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coalesce {
    pub key: String,
    pub window_ms: i64,
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
    pub portal: PortalId,
    /// The job's stable name, as stored.
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

/// An activity to record: which HubSpot record a platform's call or booking became.
#[derive(Debug, Clone)]
pub struct ActivityRecord {
    pub source: String,
    pub key: String,
    pub kind: &'static str,
    pub activity: Activity,
    pub occurred_at_ms: i64,
}

/// What jobs of one portal did, recorded in one transaction with the jobs marked done.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pub portal: PortalId,
    pub activities: Vec<ActivityRecord>,
    /// (contact, call time): the newest call synced to each contact.
    pub last_calls: Vec<(u64, i64)>,
    pub done: Vec<i64>,
}

impl Settlement {
    /// The same settlement as a sequence of short ones, each of at most `size` rows of a
    /// kind, to record in order: a big round's bookkeeping then never holds the writer (or
    /// the jobs table) for long, and acknowledgements get their turns between the parts.
    /// What was written comes first and the jobs are marked done last, so a crash between two
    /// parts leaves jobs that run again and find their activities recorded (no second write),
    /// never a job marked done whose activity is not.
    pub fn parts(&self, size: usize) -> Vec<Settlement> {
        let size = size.max(1);
        let empty = || Settlement { portal: self.portal.clone(), ..Settlement::default() };
        let part = |i: usize| Settlement {
            activities: self.activities.iter().skip(i * size).take(size).cloned().collect(),
            last_calls: self.last_calls.iter().skip(i * size).take(size).copied().collect(),
            ..empty()
        };
        let written = self.activities.len().max(self.last_calls.len()).div_ceil(size);
        let mut parts: Vec<Settlement> = (0..written).map(part).collect();
        for d in self.done.chunks(size) {
            parts.push(Settlement { done: d.to_vec(), ..empty() });
        }
        parts
    }
}

/// What happens to a job that failed.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    RetryAt(i64),
    Dead,
}

/// One event as `/events/{id}` shows it: its row, what was received, the canonical event its
/// job runs, when it runs next, and each attempt that failed.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub row: EventRow,
    pub raw_body: Vec<u8>,
    pub event_json: String,
    /// When its job runs next, while it is queued.
    pub run_at_ms: Option<i64>,
    pub attempts: Vec<AttemptRow>,
}

/// A failed attempt of an event's job.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptRow {
    pub attempt: i64,
    pub at_ms: i64,
    pub error_kind: String,
    pub error: String,
    /// When it was to be tried again; `None`: it went dead.
    pub retry_at_ms: Option<i64>,
}

/// An inbox row with its job's state, for the admin API.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventRow {
    pub id: i64,
    pub portal: String,
    pub source: String,
    pub idempotency_key: String,
    pub received_at_ms: i64,
    pub kind: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// What happened over a span of time ([`Queue::tally`]).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub received: i64,
    pub landed: i64,
    pub dead: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
    /// When the oldest queued job was made (epoch ms), if any is queued.
    pub oldest_queued_at_ms: Option<i64>,
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

/// An activity as listed for the demo and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedActivity {
    pub portal: PortalId,
    pub source: String,
    pub key: String,
    pub kind: String,
    pub activity: Activity,
}

#[derive(Debug, Clone)]
pub struct StoredTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at_ms: i64,
    pub hub_id: Option<u64>,
    pub scopes: Vec<String>,
}

/// A pulled source's session: the token it sends (a JWT, most often), when that expires (from
/// the JWT's `exp`, when it has one) and when it was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSession {
    pub token: String,
    pub expires_at_ms: Option<i64>,
    pub logged_in_at_ms: i64,
}

/// The inbox and the job queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Stores a delivery and enqueues its job in one durable transaction.
    async fn ingest(&self, delivery: NewDelivery) -> Result<Ingested>;
    /// The state of a delivery's job (`queued`, `running`, `done`, `dead`), if it has one.
    async fn job_status(&self, inbox_id: i64) -> Result<Option<String>>;
    /// The newest events (as stored) queued for any of these callers, newest first: what
    /// callbridge itself knows of a caller, without asking HubSpot.
    async fn caller_events(&self, portal: &PortalId, caller_keys: &[String], limit: i64) -> Result<Vec<String>>;
    /// Claims runnable jobs of any portal: up to `max` callers' oldest (if none of theirs
    /// runs) and, for `max` above one, up to `max` more queued behind them that are due, so a
    /// batch can land a caller's jobs together. A caller's jobs come back in order (by id).
    async fn claim_many(&self, worker: &str, lease: Duration, max: usize) -> Result<Vec<Job>>;
    /// Claims the due jobs queued behind callers whose running jobs `worker` holds (a round
    /// takes the calls that arrived for its callers after it began), in order, behind no job
    /// that waits for a retry, up to `max`; none for a caller `worker` holds nothing of.
    async fn claim_followers(
        &self,
        worker: &str,
        lease: Duration,
        portal: &PortalId,
        caller_keys: &[String],
        max: usize,
    ) -> Result<Vec<Job>>;
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
    /// Hands the running jobs these workers hold back to the queue at once (a graceful
    /// shutdown): runnable now, not an attempt; their claim count stays, so the next run looks
    /// up what this one may have written. Returns how many were handed back.
    async fn release(&self, workers: &[String]) -> Result<u64>;
    /// Puts claimed jobs back to wait until `run_at` without counting an attempt or a claim:
    /// their portal cannot take work yet (setup pending, token refused).
    async fn defer(&self, job_ids: &[i64], run_at: i64) -> Result<()>;
    /// Records what jobs of one portal wrote and marks them done, all in one transaction.
    async fn settle(&self, settlement: &Settlement) -> Result<()>;
    /// Records a failed attempt (`kind`: the error's kind, `error`: its message) and what
    /// follows: a retry at a time, or dead.
    async fn fail(&self, job_id: i64, kind: &str, error: &str, failure: Failure) -> Result<()>;
    /// Queues an event's job again (dead or done); false when there is no such event. With
    /// `event_json`, the job's payload becomes it first (a re-read of the same call in today's
    /// format), also for a job still queued; true then when the job will run with it (a
    /// running job keeps what it read).
    async fn replay(&self, inbox_id: i64, event_json: Option<&str>) -> Result<bool>;
    async fn events(&self, status: Option<&str>, limit: i64) -> Result<Vec<EventRow>>;
    /// One event with what was received and its failed attempts.
    async fn event(&self, id: i64) -> Result<Option<EventDetail>>;
    async fn counts(&self) -> Result<JobCounts>;
    /// What happened since `since_ms`: deliveries received, jobs landed and gone dead.
    async fn tally(&self, since_ms: i64) -> Result<Tally>;
    /// The earliest time a queued job becomes runnable, if any is waiting.
    async fn next_run_at(&self) -> Result<Option<i64>>;
}

/// What callbridge knows of callers: their normalised phones and emails → contact id, per portal.
#[async_trait]
pub trait CallerIndex: Send + Sync {
    /// The contact callbridge last saw under any of these keys (the first key known wins).
    async fn known_contact(&self, portal: &PortalId, keys: &[String]) -> Result<Option<u64>> {
        Ok(self.known_contacts(portal, &[keys.to_vec()]).await?.pop().flatten())
    }
    /// [`CallerIndex::known_contact`] for many callers at once, in their order: one look-up
    /// for a round's callers, not one per caller and key.
    async fn known_contacts(&self, portal: &PortalId, callers: &[Vec<String>]) -> Result<Vec<Option<u64>>> {
        let keys: Vec<&str> = callers.iter().flatten().map(String::as_str).collect();
        let known = self.contacts_by_key(portal, &keys).await?;
        Ok(callers.iter().map(|keys| keys.iter().find_map(|k| known.get(k.as_str()).copied())).collect())
    }
    /// The contacts the index holds under any of `keys` (keys it does not hold are absent).
    async fn contacts_by_key(&self, portal: &PortalId, keys: &[&str]) -> Result<HashMap<String, u64>>;
    async fn remember_contact(&self, portal: &PortalId, keys: &[String], contact_id: u64) -> Result<()> {
        self.remember_contacts(portal, &[(keys.to_vec(), contact_id)]).await
    }
    /// Remembers many callers' contacts; a key named twice keeps its last contact. Each key is
    /// its own fact, so a backend may write them in several short transactions.
    async fn remember_contacts(&self, portal: &PortalId, entries: &[(Vec<String>, u64)]) -> Result<()>;
    /// The contact is no longer looked up by its callers' keys (its next caller is searched
    /// for again); what it was known by is kept aside for [`CallerIndex::erase_contact`].
    async fn forget_contact(&self, portal: &PortalId, contact_id: u64) -> Result<()>;
    /// Contact `merged` was merged into `survivor` in HubSpot: what pointed at it (its callers'
    /// numbers and emails, the activities made on it, its newest call) points at the survivor.
    async fn merged_contact(&self, portal: &PortalId, merged: u64, survivor: u64) -> Result<()>;
    /// The contact's numbers and emails are now `keys` (as HubSpot holds them): what pointed
    /// at it under other keys no longer does.
    async fn reindex_contact(&self, portal: &PortalId, contact_id: u64, keys: &[String]) -> Result<()> {
        self.forget_contact(portal, contact_id).await?;
        if keys.is_empty() { Ok(()) } else { self.remember_contacts(portal, &[(keys.to_vec(), contact_id)]).await }
    }
    /// A privacy deletion: everything kept about the contact that arrived before `before_ms`
    /// goes, in one transaction — the deliveries of its callers' numbers and emails (raw
    /// bodies, events, jobs) and of HubSpot's changes to it (`extra_keys`), their bookings, the
    /// activities made on it, its newest call and its index entries (those forgotten too). While a job of one of its
    /// callers is running nothing is erased and [`Erased::waiting`] says how many run.
    async fn erase_contact(
        &self,
        portal: &PortalId,
        contact_id: u64,
        extra_keys: &[String],
        before_ms: i64,
    ) -> Result<Erased>;
}

/// The entries of [`CallerIndex::remember_contacts`] as one (key, contact) each, the last
/// contact named for a key winning, in a stable order.
pub(crate) fn latest_contact_per_key(entries: &[(Vec<String>, u64)]) -> Vec<(&str, i64)> {
    let mut latest = std::collections::BTreeMap::new();
    for (keys, id) in entries {
        for key in keys {
            latest.insert(key.as_str(), *id as i64);
        }
    }
    latest.into_iter().collect()
}

/// What a privacy deletion erased.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub deliveries: u64,
    pub bookings: u64,
    pub activities: u64,
    pub index_entries: u64,
    /// Jobs of the contact's callers running now: nothing was erased; try again after them.
    pub waiting: u64,
}

/// Activities found by `(source, external key, kind)`.
pub type ActivitiesByKey = HashMap<(String, String, String), Activity>;

/// Which HubSpot activity each call or booking became, and the newest call synced to each contact.
#[async_trait]
pub trait Activities: Send + Sync {
    async fn last_call_at(&self, portal: &PortalId, contact_id: u64) -> Result<Option<i64>> {
        Ok(self.last_calls_at(portal, &[contact_id]).await?.remove(&contact_id))
    }
    /// [`Activities::last_call_at`] for many contacts in one look-up (those with no call
    /// synced are absent).
    async fn last_calls_at(&self, portal: &PortalId, contact_ids: &[u64]) -> Result<HashMap<u64, i64>>;
    async fn activity(&self, portal: &PortalId, source: &str, key: &str, kind: &str) -> Result<Option<Activity>> {
        Ok(self.activities_by_key(portal, &[(source, key, kind)]).await?.into_values().next())
    }
    /// [`Activities::activity`] for many `(source, external key, kind)` at once, in one
    /// look-up: a round plans its jobs against what their earlier runs made without a query
    /// each. Keys with nothing recorded are absent.
    async fn activities_by_key(&self, portal: &PortalId, keys: &[(&str, &str, &str)]) -> Result<ActivitiesByKey>;
    /// Every activity recorded, for the demo's table and tests.
    async fn activities(&self) -> Result<Vec<ListedActivity>>;
}

/// OAuth tokens, per portal.
#[async_trait]
pub trait Credentials: Send + Sync {
    async fn load_tokens(&self, portal: &PortalId) -> Result<Option<StoredTokens>>;
    async fn save_tokens(&self, portal: &PortalId, tokens: &StoredTokens) -> Result<()>;
    /// The session a pulled source last logged in to.
    async fn load_session(&self, portal: &PortalId, source: &str) -> Result<Option<SourceSession>>;
    async fn save_session(&self, portal: &PortalId, source: &str, session: &SourceSession) -> Result<()>;
    /// Keeps an OAuth install's state until `expires_at_ms` for the browser `browser` names
    /// (a hash of its cookie); states expired a day ago are dropped.
    async fn save_oauth_state(&self, state: &str, browser: &str, expires_at_ms: i64) -> Result<()>;
    /// Takes a state, once: any instance sees a state taken by another as used.
    async fn take_oauth_state(&self, state: &str) -> Result<OAuthState>;
}

/// What [`Credentials::take_oauth_state`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthState {
    /// Never issued (or dropped long after it expired).
    Unknown,
    /// Taken before.
    Used,
    /// Taken now: the browser it was issued to, and when it expires.
    Issued { browser: String, expires_at_ms: i64 },
}

/// What instances sharing one database coordinate through: exclusive work, HubSpot's
/// windows, and wake-ups when work is enqueued.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Takes the named exclusive lock if no one (in any instance) holds it.
    async fn try_exclusive(&self, name: &str) -> Result<Option<Exclusive>>;

    /// Whether this store can count HubSpot's windows for several instances.
    fn shares_budget(&self) -> bool {
        false
    }

    /// Takes a slot of a portal's shared window when fewer than `max` are held (in flight, or
    /// finished less than `interval_ms` ago); otherwise `Err(wait_ms)`. Stores that do not
    /// share a budget never hand out slots.
    async fn budget_take(
        &self,
        portal: &PortalId,
        bucket: &str,
        max: u32,
        interval_ms: i64,
    ) -> Result<std::result::Result<i64, i64>> {
        let _ = (portal, bucket, max, interval_ms);
        Err(StoreError::Unsupported("a shared budget needs PostgreSQL"))
    }

    async fn budget_release(&self, portal: &PortalId, bucket: &str, slot: i64) -> Result<()> {
        let _ = (portal, bucket, slot);
        Err(StoreError::Unsupported("a shared budget needs PostgreSQL"))
    }

    async fn budget_block(&self, portal: &PortalId, bucket: &str, until_ms: i64) -> Result<()> {
        let _ = (portal, bucket, until_ms);
        Err(StoreError::Unsupported("a shared budget needs PostgreSQL"))
    }

    /// Wakes `wake` when another process enqueues a job (PostgreSQL `LISTEN`); workers poll
    /// regardless, so a store without notifications does nothing here.
    fn subscribe(&self, wake: Arc<tokio::sync::Notify>) {
        let _ = wake;
    }
}

/// Everything callbridge stores; what the app holds as `Arc<dyn Store>`.
pub trait Store:
    Queue + CallerIndex + Activities + Credentials + Coordination + Marks + Bookings + DedupRuns + Rejections
{
}

impl<T: Queue + CallerIndex + Activities + Credentials + Coordination + Marks + Bookings + DedupRuns + Rejections> Store
    for T
{
}

/// How many rejected deliveries are kept: the newest.
pub const REJECTIONS_KEPT: i64 = 10_000;

/// A delivery refused before it was stored: where it came, why, how big, from whom — never
/// its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    /// Its number once kept (0 before).
    pub id: i64,
    /// The portal its route names, if any.
    pub portal: Option<String>,
    /// The route it was sent to, as configured (`/webhooks/vapi`, `/tools/retell/{name}`).
    pub route: String,
    /// `unauthorized`, `invalid_payload`, `payload_too_large` or `request_timeout`.
    pub reason: String,
    /// What the sender was told.
    pub detail: String,
    pub status: i64,
    /// The body's declared length, when it declared one.
    pub size: Option<i64>,
    /// The sending address.
    pub peer: Option<String>,
    pub at_ms: i64,
}

/// Rejected deliveries, newest kept ([`REJECTIONS_KEPT`]), readable from any instance.
#[async_trait]
pub trait Rejections: Send + Sync {
    /// Keeps one; every hundredth drops those older than the newest `keep`
    /// ([`REJECTIONS_KEPT`]), so at most `keep` + 99 are ever kept.
    async fn record_rejection(&self, rejection: &Rejection, keep: i64) -> Result<()>;
    /// The newest first.
    async fn rejections(&self, limit: i64) -> Result<Vec<Rejection>>;
}

/// A duplicate sweep started through the admin API, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DedupRun {
    pub id: i64,
    pub portal: String,
    /// The options it runs with (JSON).
    pub options: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// The final report (JSON), once done.
    pub report: Option<String>,
    pub error: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// Duplicate sweeps' records, readable from any instance.
#[async_trait]
pub trait DedupRuns: Send + Sync {
    /// Records a sweep starting; its id.
    async fn start_dedup_run(&self, portal: &PortalId, options: &str) -> Result<i64>;
    /// Records how it ended: a report (done) or an error (failed).
    async fn finish_dedup_run(&self, id: i64, report: std::result::Result<&str, &str>) -> Result<()>;
    async fn dedup_run(&self, id: i64) -> Result<Option<DedupRun>>;
    /// The newest sweeps, newest first.
    async fn dedup_runs(&self, limit: i64) -> Result<Vec<DedupRun>>;
}

/// How far each pulled source has been read (its high-water mark, epoch milliseconds).
#[async_trait]
pub trait Marks: Send + Sync {
    async fn load_mark(&self, portal: &PortalId, source: &str) -> Result<Option<i64>>;
    /// Moves the mark to `ms` if that is later; never back.
    async fn advance_mark(&self, portal: &PortalId, source: &str, ms: i64) -> Result<()>;
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
/// setup). [`Exclusive::release`] gives it back and returns once another taker can have it;
/// dropping it gives it back in the background (on a database, a moment later).
pub struct Exclusive {
    release: Option<Release>,
}

type Release = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

impl Exclusive {
    pub fn new<F>(release: impl FnOnce() -> F + Send + 'static) -> Exclusive
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        Exclusive { release: Some(Box::new(move || Box::pin(release()))) }
    }

    /// Gives the lock back; once this returns, the next `try_exclusive` can take it.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            release().await;
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(release());
                }
                // No runtime left: a lock held in memory goes now; one held by a database
                // connection goes when the connection closes.
                Err(_) => drop(release()),
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A delivery of a call needing a job, for this crate's unit tests.
#[cfg(test)]
pub(crate) fn test_delivery(portal: &str, key: &str) -> NewDelivery {
    NewDelivery {
        portal: PortalId::parse(portal).unwrap(),
        source: "vapi".into(),
        idempotency_key: IdempotencyKey::of("vapi", key),
        raw_body: b"{}".to_vec(),
        event_json: "{}".into(),
        job_kind: Some("sync_call"),
        caller_key: "c".into(),
        received_at_ms: now_ms(),
        coalesce: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(n: u64) -> ActivityRecord {
        ActivityRecord {
            source: "vapi".into(),
            key: format!("call-{n}"),
            kind: "call",
            activity: Activity { hubspot_id: n, contact_id: Some(n), via: "v3".into(), stage: 0 },
            occurred_at_ms: 0,
        }
    }

    #[test]
    fn a_settlement_in_parts_records_every_row_once_and_marks_jobs_done_only_after_every_write() {
        let whole = Settlement {
            portal: PortalId::default(),
            activities: (0..250).map(activity).collect(),
            last_calls: (0..120).map(|c| (c, 1)).collect(),
            done: (0..260).collect(),
        };
        let parts = whole.parts(100);
        assert!(parts.iter().all(|p| p.activities.len() <= 100 && p.last_calls.len() <= 100 && p.done.len() <= 100));
        let keys: Vec<String> = parts.iter().flat_map(|p| p.activities.iter().map(|a| a.key.clone())).collect();
        assert_eq!(keys, whole.activities.iter().map(|a| a.key.clone()).collect::<Vec<_>>());
        assert_eq!(parts.iter().flat_map(|p| p.last_calls.clone()).collect::<Vec<_>>(), whole.last_calls);
        assert_eq!(parts.iter().flat_map(|p| p.done.clone()).collect::<Vec<_>>(), whole.done);
        let first_done = parts.iter().position(|p| !p.done.is_empty()).expect("jobs are marked done");
        assert!(
            parts[first_done..].iter().all(|p| p.activities.is_empty() && p.last_calls.is_empty()),
            "nothing is written after the first job is marked done"
        );
        assert_eq!(parts.len(), 3 + 3, "three parts of writes, three of jobs done");
    }
}
