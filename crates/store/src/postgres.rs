//! The PostgreSQL store, for several callbridge instances sharing one queue. Jobs are
//! claimed with `FOR UPDATE SKIP LOCKED` (instances never take the same job), keep each
//! caller's order across instances (a job is claimable only when no job of its caller is
//! running and none older waits), and announce themselves with `NOTIFY` so idle workers on
//! every instance wake at once — sent after their commit, by a task of its own ([`Announcer`]);
//! polling remains the fallback. Deliveries are stored by group commit ([`committer`], on
//! connections of its own): acknowledged after their commit, sharing it with those that
//! arrived meanwhile.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{PgExecutor, Postgres, Row, Transaction};
use tokio::sync::Notify;

use crate::body::Packed;
use crate::group::{Group, Key};
use crate::{
    Activities, ActivitiesByKey, ActivityRecord, CallerIndex, Coordination, Credentials, Erased, EventDetail, EventRow,
    Failure, Ingested, Job, JobCounts, ListedActivity, NewDelivery, OAuthState, PortalId, Queue, Result, Settlement,
    SourceSession, StoreError, StoredTokens, now_ms,
};

/// The channel new jobs are announced on.
const CHANNEL: &str = "callbridge_jobs";

/// Slack for millisecond truncation and clocks of instances that are not quite in step.
const SLOT_MARGIN_MS: i64 = 20;

/// A slot still in flight after this long belonged to an instance that died.
const STALE_SLOT_MS: i64 = 120_000;

pub struct PgStore {
    pool: PgPool,
    /// Deliveries on their way to a group commit ([`committer`]).
    ingest: tokio::sync::mpsc::Sender<Pending>,
    announcer: Announcer,
    /// One budget decision at a time per portal's bucket from this instance: the others wait
    /// here, not on the database's lock holding a pooled connection each.
    budget_turns: std::sync::Mutex<std::collections::HashMap<(PortalId, String), Turn>>,
}

/// Whose turn it is to decide on one portal's budget bucket, within this instance.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// A delivery waiting to be committed, and who waits for the outcome.
type Pending = (Packed, tokio::sync::oneshot::Sender<Result<Ingested>>);

/// Committers running side by side, each committing the deliveries that queued while the
/// others were busy, up to [`GROUP_MAX`] in one transaction. They have connections of their
/// own, so acknowledgements never wait for one the worker's bookkeeping holds.
const COMMITTERS: usize = 2;
const GROUP_MAX: usize = 256;

impl PgStore {
    pub async fn open(url: &str) -> Result<PgStore> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?;
        migrate(&pool).await?;
        let committing = PgPoolOptions::new()
            .max_connections(COMMITTERS as u32)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(pool.connect_options().as_ref().clone())
            .await?;
        let (ingest, queued) = tokio::sync::mpsc::channel(4096);
        let queued = Arc::new(tokio::sync::Mutex::new(queued));
        let announcer = Announcer::spawn(pool.clone());
        for _ in 0..COMMITTERS {
            tokio::spawn(committer(committing.clone(), queued.clone(), announcer.clone()));
        }
        Ok(PgStore { pool, ingest, announcer, budget_turns: Default::default() })
    }

    async fn tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

async fn done<'e>(db: impl PgExecutor<'e>, job_ids: &[i64]) -> Result<()> {
    sqlx::query("UPDATE jobs SET status = 'done', locked_by = NULL, lease_until = NULL, last_error = NULL, updated_at = $1 WHERE id = ANY($2)")
        .bind(now_ms())
        .bind(job_ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Keeps the later of the stored and the given time per contact (one row per contact, as
/// one statement may not touch a row twice).
async fn set_last_calls<'e>(db: impl PgExecutor<'e>, portal: &PortalId, calls: &[(u64, i64)]) -> Result<()> {
    let mut latest = std::collections::HashMap::new();
    for &(c, at) in calls {
        let e = latest.entry(c as i64).or_insert(at);
        *e = (*e).max(at);
    }
    let (ids, ats): (Vec<i64>, Vec<i64>) = latest.into_iter().unzip();
    sqlx::query(
        "INSERT INTO contact_sync (portal, contact_id, last_call_at)
         SELECT $3, c, t FROM UNNEST($1::bigint[], $2::bigint[]) AS u(c, t)
         ON CONFLICT (portal, contact_id) DO UPDATE SET last_call_at = GREATEST(contact_sync.last_call_at, excluded.last_call_at)",
    )
    .bind(&ids)
    .bind(&ats)
    .bind(portal.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// Records a settlement's activities with one statement. One statement may not touch a row
/// twice, so records of the same activity are folded first, as one after the other would be:
/// the last's id, contact and route, the highest stage, the first's time.
async fn record<'e>(db: impl PgExecutor<'e>, portal: &PortalId, records: &[ActivityRecord]) -> Result<()> {
    use std::collections::{HashMap, hash_map::Entry};
    if records.is_empty() {
        return Ok(());
    }
    /// One activity's records: the first and the last of them, and the highest stage.
    struct Folded<'a> {
        first: &'a ActivityRecord,
        last: &'a ActivityRecord,
        stage: i64,
    }
    let mut rows: Vec<Folded<'_>> = Vec::with_capacity(records.len());
    let mut at: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for r in records {
        match at.entry((r.source.as_str(), r.key.as_str(), r.kind)) {
            Entry::Occupied(e) => {
                let row = &mut rows[*e.get()];
                row.last = r;
                row.stage = row.stage.max(r.activity.stage);
            }
            Entry::Vacant(e) => {
                e.insert(rows.len());
                rows.push(Folded { first: r, last: r, stage: r.activity.stage });
            }
        }
    }
    let texts = |f: for<'r> fn(&'r Folded<'r>) -> &'r str| rows.iter().map(f).collect::<Vec<&str>>();
    let numbers = |f: fn(&Folded<'_>) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(
        "INSERT INTO activities (portal, source, external_key, kind, hubspot_id, contact_id, via, stage, occurred_at, created_at)
         SELECT $1, u.source, u.key, u.kind, u.hubspot_id, u.contact_id, u.via, u.stage, u.occurred_at, $2
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[])
           AS u(source, key, kind, hubspot_id, contact_id, via, stage, occurred_at)
         ON CONFLICT (portal, source, external_key, kind) DO UPDATE SET hubspot_id = excluded.hubspot_id, contact_id = excluded.contact_id,
           via = excluded.via, stage = GREATEST(activities.stage, excluded.stage)",
    )
    .bind(portal.as_str())
    .bind(now_ms())
    .bind(texts(|r| &r.first.source))
    .bind(texts(|r| &r.first.key))
    .bind(texts(|r| r.first.kind))
    .bind(numbers(|r| r.last.activity.hubspot_id as i64))
    .bind(rows.iter().map(|r| r.last.activity.contact_id.map(|c| c as i64)).collect::<Vec<Option<i64>>>())
    .bind(texts(|r| &r.last.activity.via))
    .bind(numbers(|r| r.stage))
    .bind(numbers(|r| r.first.occurred_at_ms))
    .execute(db)
    .await?;
    Ok(())
}

async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    // One migrator at a time across instances.
    sqlx::query("SELECT pg_advisory_xact_lock(7310001)").execute(&mut *tx).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    for m in crate::migrate::POSTGRES {
        let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await?;
        if applied.is_none() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql)).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)")
                .bind(m.version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A claim of the jobs `candidates` selects (`$1` worker, `$2` lease end, `$3` now), skipping
/// rows another instance holds, returning the columns [`crate::rows::jobs`] reads.
fn claim_sql(candidates: &str) -> String {
    format!(
        "WITH candidate AS ({candidates} FOR UPDATE SKIP LOCKED)
         UPDATE jobs SET status = 'running', claims = jobs.claims + 1, locked_by = $1, lease_until = $2, updated_at = $3
         FROM candidate WHERE jobs.id = candidate.id
         RETURNING jobs.id, jobs.inbox_id, jobs.portal, jobs.kind, jobs.caller_key, jobs.attempts, jobs.claims"
    )
}

/// Claims each caller's oldest due job, if nothing of theirs runs, in the queue's order, up to
/// `max` — or, with `explain` (`"EXPLAIN "`), answers the claim's plan instead of running it.
///
/// The claim is planned by walking the ready index in the queue's order and stopping at the
/// limit, whatever the statistics say: the queue grows faster than autovacuum's `ANALYZE`
/// follows (an outage queues 100,000 jobs in a minute), and on statistics that still said the
/// queue was nearly empty PostgreSQL read and sorted every queued job instead: 1.7 s a claim on
/// 74,000 jobs (29 ms walking the index), 12–16 s while 24 loops claimed at once as HubSpot came
/// back. The planner's defaults are back for the rest of the transaction.
async fn claim_ready(
    tx: &mut PgTx,
    explain: &str,
    worker: &str,
    lease: Duration,
    now: i64,
    max: usize,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    sqlx::raw_sql("SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off").execute(&mut **tx).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{explain}{}",
        claim_sql(
            "SELECT j.id FROM jobs j
             WHERE j.status = 'queued' AND j.run_at <= $3
               AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.portal = j.portal AND r.caller_key = j.caller_key AND r.status = 'running')
               AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.portal = j.portal AND e.caller_key = j.caller_key AND e.status = 'queued' AND e.id < j.id)
             ORDER BY j.run_at, j.id
             LIMIT $4",
        )
    )))
    .bind(worker)
    .bind(now + lease.as_millis() as i64)
    .bind(now)
    .bind(max as i64)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::raw_sql("SET LOCAL enable_sort TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT")
        .execute(&mut **tx)
        .await?;
    Ok(rows)
}

/// Claims the due jobs queued behind these callers (`portals[i]`, `callers[i]`) whose running
/// jobs `worker` holds, in order and behind no job that waits for a retry, up to `max`: a
/// claim's callers bring their next jobs, and a running round takes the calls that arrived since.
async fn claim_behind(
    tx: &mut PgTx,
    worker: &str,
    lease: Duration,
    now: i64,
    portals: &[String],
    callers: &[String],
    max: usize,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(claim_sql(
        "SELECT j.id FROM jobs j
         WHERE j.status = 'queued' AND j.run_at <= $3
           AND (j.portal, j.caller_key) IN (SELECT * FROM UNNEST($4::text[], $5::text[]))
           AND EXISTS (SELECT 1 FROM jobs r WHERE r.portal = j.portal AND r.caller_key = j.caller_key AND r.status = 'running' AND r.locked_by = $1)
           AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.portal = j.portal AND e.caller_key = j.caller_key AND e.status = 'queued' AND e.run_at > $3 AND e.id < j.id)
         ORDER BY j.id
         LIMIT $6",
    )))
    .bind(worker)
    .bind(now + lease.as_millis() as i64)
    .bind(now)
    .bind(portals)
    .bind(callers)
    .bind(max as i64)
    .fetch_all(&mut **tx)
    .await?)
}

/// Claimed jobs with their events, read in the claim's transaction.
async fn with_events(tx: &mut PgTx, rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Job>> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.try_get("inbox_id")).collect::<std::result::Result<_, _>>()?;
    let inbox = sqlx::query("SELECT id, source, idempotency_key, event FROM inbox WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    crate::rows::jobs(&rows, &inbox)
}

/// Hands back the followers claimed past a gap in their caller's order. `SKIP LOCKED` skips a
/// job another transaction holds a lock on at that moment (a lease being expired, a renewal),
/// and would then take the jobs behind it: a caller's later booking could land before an
/// earlier one. Those behind a job of theirs this claim does not hold are queued again (not a
/// claim) for the next claim to take in order. Jobs `worker` already runs (the round a
/// follower joins) count as held.
async fn keep_callers_in_order(
    tx: &mut PgTx,
    worker: &str,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    use std::collections::{HashMap, HashSet};
    let mut claimed: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for r in &rows {
        claimed.entry((r.try_get("portal")?, r.try_get("caller_key")?)).or_default().push(r.try_get("id")?);
    }
    let (portals, callers): (Vec<String>, Vec<String>) = claimed.keys().cloned().unzip();
    let open: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT id, portal, caller_key FROM jobs
         WHERE (portal, caller_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
           AND (status = 'queued' OR (status = 'running' AND locked_by IS DISTINCT FROM $3))",
    )
    .bind(&portals)
    .bind(&callers)
    .bind(worker)
    .fetch_all(&mut **tx)
    .await?;
    let mut open_by: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for (id, portal, caller) in open {
        open_by.entry((portal, caller)).or_default().push(id);
    }
    let mut back: HashSet<i64> = HashSet::new();
    for (caller, ids) in &claimed {
        let held: HashSet<i64> = ids.iter().copied().collect();
        let mut all = open_by.remove(caller).unwrap_or_default();
        all.sort_unstable();
        // The first open job of the caller's that this worker does not hold: what follows waits.
        if let Some(gap) = all.iter().find(|id| !held.contains(id)) {
            back.extend(ids.iter().filter(|id| *id > gap));
        }
    }
    if back.is_empty() {
        return Ok(rows);
    }
    let back_ids: Vec<i64> = back.iter().copied().collect();
    sqlx::query(
        "UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, claims = GREATEST(claims - 1, 0) WHERE id = ANY($1)",
    )
    .bind(&back_ids)
    .execute(&mut **tx)
    .await?;
    let mut kept = Vec::with_capacity(rows.len());
    for r in rows {
        if !back.contains(&r.try_get::<i64, _>("id")?) {
            kept.push(r);
        }
    }
    Ok(kept)
}

#[async_trait]
impl Queue for PgStore {
    async fn ingest(&self, d: NewDelivery) -> Result<Ingested> {
        let (answer, outcome) = tokio::sync::oneshot::channel();
        self.ingest.send((Packed::new(d), answer)).await.map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    async fn job_status(&self, inbox_id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT status FROM jobs WHERE inbox_id = $1")
            .bind(inbox_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn caller_events(&self, portal: &PortalId, caller_keys: &[String], limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT i.event FROM jobs j JOIN inbox i ON i.id = j.inbox_id
             WHERE j.portal = $1 AND j.caller_key = ANY($2) ORDER BY j.id DESC LIMIT $3",
        )
        .bind(portal.as_str())
        .bind(caller_keys)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn claim_many(&self, worker: &str, lease: Duration, max: usize) -> Result<Vec<Job>> {
        let now = now_ms();
        sqlx::query("UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, updated_at = $1 WHERE status = 'running' AND lease_until < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let mut tx = self.tx().await?;
        let mut rows = claim_ready(&mut tx, "", worker, lease, now, max).await?;
        // The callers' next jobs come along (up to `max` more), so a batch lands a caller's
        // calls together, in order.
        if max > 1 && !rows.is_empty() {
            let portals: Vec<String> =
                rows.iter().map(|r| r.try_get("portal")).collect::<std::result::Result<_, _>>()?;
            let callers: Vec<String> =
                rows.iter().map(|r| r.try_get("caller_key")).collect::<std::result::Result<_, _>>()?;
            let behind = claim_behind(&mut tx, worker, lease, now, &portals, &callers, max).await?;
            rows.extend(behind);
            rows = keep_callers_in_order(&mut tx, worker, rows).await?;
        }
        let jobs = with_events(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    async fn claim_followers(
        &self,
        worker: &str,
        lease: Duration,
        portal: &PortalId,
        caller_keys: &[String],
        max: usize,
    ) -> Result<Vec<Job>> {
        let portals = vec![portal.as_str().to_string(); caller_keys.len()];
        let mut tx = self.tx().await?;
        let rows = claim_behind(&mut tx, worker, lease, now_ms(), &portals, caller_keys, max).await?;
        let rows = keep_callers_in_order(&mut tx, worker, rows).await?;
        let jobs = with_events(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    async fn renew_many(&self, job_ids: &[i64], worker: &str, lease: Duration) -> Result<Vec<i64>> {
        let now = now_ms();
        Ok(sqlx::query_scalar(
            "UPDATE jobs SET lease_until = $1, updated_at = $2 WHERE id = ANY($3) AND locked_by = $4 AND status = 'running' RETURNING id",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(job_ids)
        .bind(worker)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release(&self, workers: &[String]) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, run_at = LEAST(run_at, $1), updated_at = $1
             WHERE status = 'running' AND locked_by = ANY($2)",
        )
        .bind(now_ms())
        .bind(workers)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            self.announcer.announce();
        }
        Ok(n)
    }

    async fn defer(&self, job_ids: &[i64], run_at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, run_at = $1, claims = GREATEST(claims - 1, 0), updated_at = $2
             WHERE id = ANY($3) AND status = 'running'",
        )
        .bind(run_at)
        .bind(now_ms())
        .bind(job_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn settle(&self, s: &Settlement) -> Result<()> {
        let mut tx = self.tx().await?;
        record(&mut *tx, &s.portal, &s.activities).await?;
        set_last_calls(&mut *tx, &s.portal, &s.last_calls).await?;
        done(&mut *tx, &s.done).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fail(&self, job_id: i64, kind: &str, error: &str, failure: Failure) -> Result<()> {
        let (status, run_at, retry_at) = match failure {
            Failure::RetryAt(at) => ("queued", at, Some(at)),
            Failure::Dead => ("dead", now_ms(), None),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE jobs SET status = $1, run_at = $2, attempts = attempts + 1, last_error = $3, locked_by = NULL, lease_until = NULL, updated_at = $4
             WHERE id = $5",
        )
        .bind(status)
        .bind(run_at)
        .bind(error)
        .bind(now_ms())
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO job_attempts (inbox_id, attempt, at, error_kind, error, retry_at)
             SELECT inbox_id, attempts, $1, $2, $3, $4 FROM jobs WHERE id = $5",
        )
        .bind(now_ms())
        .bind(kind)
        .bind(error)
        .bind(retry_at)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replay(&self, inbox_id: i64, event_json: Option<&str>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let mut rewritten = 0;
        if let Some(event) = event_json {
            rewritten = sqlx::query(
                "UPDATE inbox SET event = $1 WHERE id = $2
                   AND EXISTS (SELECT 1 FROM jobs WHERE inbox_id = inbox.id AND status IN ('queued', 'dead', 'done'))",
            )
            .bind(event)
            .bind(inbox_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        let changed = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = 0, claims = 0, run_at = $1, last_error = NULL, updated_at = $1
             WHERE inbox_id = $2 AND status IN ('dead', 'done')",
        )
        .bind(now_ms())
        .bind(inbox_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if changed > 0 {
            self.announcer.announce();
        }
        Ok(changed > 0 || rewritten > 0)
    }

    async fn events(&self, status: Option<&str>, limit: i64) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT i.id, i.portal, i.source, i.idempotency_key, i.received_at, j.kind, COALESCE(j.status, CASE WHEN i.coalesced_into IS NULL THEN 'recorded' ELSE 'coalesced' END) AS status,
                    COALESCE(j.attempts, 0) AS attempts, j.last_error
             FROM inbox i LEFT JOIN jobs j ON j.inbox_id = i.id
             WHERE $1::TEXT IS NULL OR COALESCE(j.status, CASE WHEN i.coalesced_into IS NULL THEN 'recorded' ELSE 'coalesced' END) = $1
             ORDER BY i.id DESC LIMIT $2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::event).collect()
    }

    async fn event(&self, id: i64) -> Result<Option<EventDetail>> {
        let detail = crate::rows::event_detail_sql!("$1");
        let Some(row) = sqlx::query(detail).bind(id).fetch_optional(&self.pool).await? else { return Ok(None) };
        let attempts = sqlx::query(crate::rows::event_attempts_sql!("$1")).bind(id).fetch_all(&self.pool).await?;
        crate::rows::event_detail(&row, &attempts).map(Some)
    }

    async fn counts(&self) -> Result<JobCounts> {
        crate::rows::job_counts(&self.pool).await
    }

    async fn tally(&self, since_ms: i64) -> Result<crate::Tally> {
        let rows = sqlx::query(crate::rows::tally_sql!("$1")).bind(since_ms).fetch_all(&self.pool).await?;
        crate::rows::tally(&rows)
    }

    async fn next_run_at(&self) -> Result<Option<i64>> {
        crate::rows::next_run_at(&self.pool).await
    }
}

#[async_trait]
impl CallerIndex for PgStore {
    async fn contacts_by_key(
        &self,
        portal: &PortalId,
        keys: &[&str],
    ) -> Result<std::collections::HashMap<String, u64>> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key, contact_id FROM caller_index WHERE portal = $1 AND key = ANY($2::text[])")
                .bind(portal.as_str())
                .bind(keys)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(k, id)| (k, id as u64)).collect())
    }

    async fn remember_contacts(&self, portal: &PortalId, entries: &[(Vec<String>, u64)]) -> Result<()> {
        // One statement for all.
        let (keys, ids): (Vec<&str>, Vec<i64>) = crate::latest_contact_per_key(entries).into_iter().unzip();
        sqlx::query(
            "INSERT INTO caller_index (portal, key, contact_id, updated_at)
             SELECT $4, k, c, $3 FROM UNNEST($1::text[], $2::bigint[]) AS t(k, c)
             ON CONFLICT (portal, key) DO UPDATE SET contact_id = excluded.contact_id, updated_at = excluded.updated_at",
        )
        .bind(&keys)
        .bind(&ids)
        .bind(now_ms())
        .bind(portal.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_contact(&self, portal: &PortalId, contact_id: u64) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO forgotten_callers (portal, key, contact_id, forgotten_at)
             SELECT portal, key, contact_id, $3 FROM caller_index WHERE portal = $1 AND contact_id = $2
             ON CONFLICT DO NOTHING",
        )
        .bind(portal.as_str())
        .bind(contact_id as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM caller_index WHERE portal = $1 AND contact_id = $2")
            .bind(portal.as_str())
            .bind(contact_id as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn merged_contact(&self, portal: &PortalId, merged: u64, survivor: u64) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query("UPDATE caller_index SET contact_id = $2 WHERE portal = $1 AND contact_id = $3")
            .bind(portal.as_str())
            .bind(survivor as i64)
            .bind(merged as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE activities SET contact_id = $2 WHERE portal = $1 AND contact_id = $3")
            .bind(portal.as_str())
            .bind(survivor as i64)
            .bind(merged as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO contact_sync (portal, contact_id, last_call_at)
             SELECT portal, $2, last_call_at FROM contact_sync WHERE portal = $1 AND contact_id = $3
             ON CONFLICT (portal, contact_id) DO UPDATE SET last_call_at = GREATEST(contact_sync.last_call_at, excluded.last_call_at)")
            .bind(portal.as_str())
            .bind(survivor as i64)
            .bind(merged as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM contact_sync WHERE portal = $1 AND contact_id = $3")
            .bind(portal.as_str())
            .bind(survivor as i64)
            .bind(merged as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn erase_contact(
        &self,
        portal: &PortalId,
        contact_id: u64,
        extra_keys: &[String],
        before_ms: i64,
    ) -> Result<Erased> {
        let mut tx = self.tx().await?;
        let p = portal.as_str();
        let callers: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM caller_index WHERE portal = $1 AND contact_id = $2
             UNION SELECT key FROM forgotten_callers WHERE portal = $1 AND contact_id = $2",
        )
        .bind(p)
        .bind(contact_id as i64)
        .fetch_all(&mut *tx)
        .await?;
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE portal = $1 AND status = 'running' AND caller_key = ANY($2)",
        )
        .bind(p)
        .bind(&callers)
        .fetch_one(&mut *tx)
        .await?;
        if waiting > 0 {
            return Ok(Erased { waiting: waiting as u64, ..Erased::default() });
        }
        let keys: Vec<String> = callers.iter().chain(extra_keys).cloned().collect();
        let inbox: Vec<i64> = sqlx::query_scalar(
            "SELECT i.id FROM jobs j JOIN inbox i ON i.id = j.inbox_id
             WHERE j.portal = $1 AND j.caller_key = ANY($2) AND j.status != 'running' AND i.received_at <= $3",
        )
        .bind(p)
        .bind(&keys)
        .bind(before_ms)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM job_attempts WHERE inbox_id = ANY($1)").bind(&inbox).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM jobs WHERE inbox_id = ANY($1)").bind(&inbox).execute(&mut *tx).await?;
        let deliveries = sqlx::query("DELETE FROM inbox WHERE id = ANY($1) OR coalesced_into = ANY($1)")
            .bind(&inbox)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let bookings =
            sqlx::query("DELETE FROM bookings WHERE portal = $1 AND caller_key = ANY($2) AND created_at <= $3")
                .bind(p)
                .bind(&keys)
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let mut removed = [0; 4];
        let statements = [
            "DELETE FROM activities WHERE portal = $1 AND contact_id = $2",
            "DELETE FROM contact_sync WHERE portal = $1 AND contact_id = $2",
            "DELETE FROM caller_index WHERE portal = $1 AND contact_id = $2",
            "DELETE FROM forgotten_callers WHERE portal = $1 AND contact_id = $2",
        ];
        for (i, statement) in statements.into_iter().enumerate() {
            removed[i] =
                sqlx::query(statement).bind(p).bind(contact_id as i64).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(Erased { deliveries, bookings, activities: removed[0], index_entries: removed[2], waiting: 0 })
    }
}

#[async_trait]
impl Activities for PgStore {
    async fn last_calls_at(
        &self,
        portal: &PortalId,
        contact_ids: &[u64],
    ) -> Result<std::collections::HashMap<u64, i64>> {
        if contact_ids.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT contact_id, last_call_at FROM contact_sync WHERE portal = $1 AND contact_id = ANY($2::bigint[])",
        )
        .bind(portal.as_str())
        .bind(contact_ids.iter().map(|&c| c as i64).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(c, at)| (c as u64, at)).collect())
    }

    async fn activities_by_key(&self, portal: &PortalId, keys: &[(&str, &str, &str)]) -> Result<ActivitiesByKey> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let rows = sqlx::query(
            "SELECT a.source, a.external_key, a.kind, a.hubspot_id, a.contact_id, a.via, a.stage
             FROM UNNEST($2::text[], $3::text[], $4::text[]) AS k(source, external_key, kind)
             JOIN activities AS a ON a.portal = $1 AND a.source = k.source AND a.external_key = k.external_key
               AND a.kind = k.kind",
        )
        .bind(portal.as_str())
        .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::keyed_activity).collect()
    }

    async fn activities(&self) -> Result<Vec<ListedActivity>> {
        let rows = sqlx::query(
            "SELECT portal, source, external_key, kind, hubspot_id, contact_id, via, stage FROM activities
             ORDER BY created_at, external_key",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::listed_activity).collect()
    }
}

#[async_trait]
impl Credentials for PgStore {
    async fn load_tokens(&self, portal: &PortalId) -> Result<Option<StoredTokens>> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, expires_at, hub_id, scopes FROM oauth_tokens WHERE portal = $1",
        )
        .bind(portal.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::tokens).transpose()
    }

    async fn save_tokens(&self, portal: &PortalId, t: &StoredTokens) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_tokens (portal, access_token, refresh_token, expires_at, hub_id, scopes) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (portal) DO UPDATE SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
               expires_at = excluded.expires_at, hub_id = excluded.hub_id, scopes = excluded.scopes",
        )
        .bind(portal.as_str())
        .bind(&t.access_token)
        .bind(&t.refresh_token)
        .bind(t.expires_at_ms)
        .bind(t.hub_id.map(|h| h as i64))
        .bind(t.scopes.join(" "))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_session(&self, portal: &PortalId, source: &str) -> Result<Option<SourceSession>> {
        let row = sqlx::query(
            "SELECT token, expires_at, logged_in_at FROM source_sessions WHERE portal = $1 AND source = $2",
        )
        .bind(portal.as_str())
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| SourceSession {
            token: r.get("token"),
            expires_at_ms: r.get("expires_at"),
            logged_in_at_ms: r.get("logged_in_at"),
        }))
    }

    async fn save_session(&self, portal: &PortalId, source: &str, session: &SourceSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO source_sessions (portal, source, token, expires_at, logged_in_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (portal, source) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at,
               logged_in_at = excluded.logged_in_at",
        )
        .bind(portal.as_str())
        .bind(source)
        .bind(&session.token)
        .bind(session.expires_at_ms)
        .bind(session.logged_in_at_ms)
        .execute(&self.pool)
        .await?;

        Ok(())
    }

    async fn save_oauth_state(&self, state: &str, browser: &str, expires_at_ms: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
            .bind(now_ms() - 86_400_000)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO oauth_states (state, browser, expires_at) VALUES ($1, $2, $3)")
            .bind(state)
            .bind(browser)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_oauth_state(&self, state: &str) -> Result<OAuthState> {
        let taken: Option<(String, i64)> = sqlx::query_as(
            "UPDATE oauth_states SET used_at = $1 WHERE state = $2 AND used_at IS NULL RETURNING browser, expires_at",
        )
        .bind(now_ms())
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match taken {
            Some((browser, expires_at_ms)) => OAuthState::Issued { browser, expires_at_ms },
            None => {
                let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM oauth_states WHERE state = $1")
                    .bind(state)
                    .fetch_optional(&self.pool)
                    .await?;
                if known.is_some() { OAuthState::Used } else { OAuthState::Unknown }
            }
        })
    }
}

#[async_trait]
impl Coordination for PgStore {
    async fn try_exclusive(&self, name: &str) -> Result<Option<crate::Exclusive>> {
        // A session-level advisory lock lives as long as the connection holding it.
        let mut conn = self.pool.acquire().await?;
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))").bind(name).fetch_one(&mut *conn).await?;
        if !got {
            return Ok(None);
        }
        let name = name.to_string();
        Ok(Some(crate::Exclusive::new(move || async move {
            if let Err(e) = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))").bind(&name).execute(&mut *conn).await
            {
                tracing::warn!(error = %e, "releasing an advisory lock failed; it goes with the connection");
                conn.close_on_drop();
            }
        })))
    }

    fn shares_budget(&self) -> bool {
        true
    }

    async fn budget_take(
        &self,
        portal: &PortalId,
        bucket: &str,
        max: u32,
        interval_ms: i64,
    ) -> Result<std::result::Result<i64, i64>> {
        let turn = {
            let mut turns = self.budget_turns.lock().unwrap_or_else(|e| e.into_inner());
            turns.entry((portal.clone(), bucket.to_string())).or_default().clone()
        };
        let _turn = turn.lock().await;
        let now = now_ms();
        let mut tx = self.tx().await?;
        // One decision at a time per portal's bucket, across instances. The decision is not
        // waited for on disk (`synchronous_commit` off for it alone), so the lock is held for
        // its statements only: a slot lost to a database crash is a request HubSpot's own 429
        // would still catch, and no acknowledgement depends on it.
        sqlx::query(
            "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(hashtext($1 || '/' || $2))",
        )
        .bind(portal.as_str())
        .bind(bucket)
        .execute(&mut *tx)
        .await?;
        // Times are whole milliseconds: a slot is freed only once a full interval has surely
        // passed since its response, whatever was truncated.
        sqlx::query("DELETE FROM budget_slots WHERE portal = $1 AND bucket = $2 AND ((done_at IS NOT NULL AND done_at < $3) OR (done_at IS NULL AND taken_at <= $4))")
            .bind(portal.as_str())
            .bind(bucket)
            .bind(now - interval_ms - SLOT_MARGIN_MS)
            .bind(now - STALE_SLOT_MS)
            .execute(&mut *tx)
            .await?;
        let blocked: Option<i64> =
            sqlx::query_scalar("SELECT until_ms FROM budget_blocks WHERE portal = $1 AND bucket = $2")
                .bind(portal.as_str())
                .bind(bucket)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(until) = blocked.filter(|u| *u > now) {
            tx.commit().await?;
            return Ok(Err(until - now));
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS held, MIN(done_at) AS oldest FROM budget_slots WHERE portal = $1 AND bucket = $2",
        )
        .bind(portal.as_str())
        .bind(bucket)
        .fetch_one(&mut *tx)
        .await?;
        let held: i64 = row.try_get("held")?;
        if held < max as i64 {
            let slot: i64 = sqlx::query_scalar(
                "INSERT INTO budget_slots (portal, bucket, taken_at) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(portal.as_str())
            .bind(bucket)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Ok(slot));
        }
        let oldest: Option<i64> = row.try_get("oldest")?;
        tx.commit().await?;
        // Full: the oldest finished slot frees first; if all are in flight, look again soon.
        Ok(Err(oldest.map(|o| o + interval_ms + SLOT_MARGIN_MS + 1 - now).unwrap_or(20).max(1)))
    }

    async fn budget_release(&self, portal: &PortalId, bucket: &str, slot: i64) -> Result<()> {
        sqlx::query("UPDATE budget_slots SET done_at = $1 WHERE id = $2 AND portal = $3 AND bucket = $4")
            .bind(now_ms())
            .bind(slot)
            .bind(portal.as_str())
            .bind(bucket)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn budget_block(&self, portal: &PortalId, bucket: &str, until_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO budget_blocks (portal, bucket, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (portal, bucket) DO UPDATE SET until_ms = GREATEST(budget_blocks.until_ms, excluded.until_ms)",
        )
        .bind(portal.as_str())
        .bind(bucket)
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn subscribe(&self, wake: Arc<Notify>) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if listener.listen(CHANNEL).await.is_ok() {
                            while listener.recv().await.is_ok() {
                                wake.notify_waiters();
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot LISTEN for new jobs; polling"),
                }
                if pool.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

#[async_trait]
impl crate::Marks for PgStore {
    async fn load_mark(&self, portal: &PortalId, source: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT high_water FROM source_marks WHERE portal = $1 AND source = $2")
            .bind(portal.as_str())
            .bind(source)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("high_water")))
    }

    async fn advance_mark(&self, portal: &PortalId, source: &str, ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO source_marks (portal, source, high_water) VALUES ($1, $2, $3)
             ON CONFLICT (portal, source) DO UPDATE SET high_water = GREATEST(source_marks.high_water, excluded.high_water)",
        )
        .bind(portal.as_str())
        .bind(source)
        .bind(ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

type PgTx = Transaction<'static, Postgres>;

/// Wakes the workers of every instance (`NOTIFY` on [`CHANNEL`]) once jobs are committed, from
/// a task of its own instead of inside the transactions that queue them: a transaction that
/// notifies holds PostgreSQL's one notification lock from its commit until its flush to disk is
/// done, so commits that notify take turns — every instance's group commits, one after another.
/// Announcements asked for while one is on its way become one more after it (nothing committed
/// before an `announce` goes unannounced), and each is committed without waiting for the disk:
/// a wake lost to a crash costs only the workers' polling interval, and no acknowledgement
/// waits on it.
#[derive(Clone)]
struct Announcer(tokio::sync::mpsc::Sender<()>);

impl Announcer {
    fn spawn(pool: PgPool) -> Announcer {
        let (asked, mut asks) = tokio::sync::mpsc::channel(1);
        let sql = format!("SET LOCAL synchronous_commit = off; NOTIFY {CHANNEL}");
        tokio::spawn(async move {
            while asks.recv().await.is_some() {
                if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str())).execute(&pool).await {
                    tracing::warn!(error = %e, "cannot announce new jobs; the workers will poll");
                }
            }
        });
        Announcer(asked)
    }

    /// Asks for an announcement of what is committed by now.
    fn announce(&self) {
        // Full: one is already asked for, and it goes after everything committed so far.
        let _ = self.0.try_send(());
    }
}

/// PostgreSQL's group commit, done here: takes the deliveries that queued while the last
/// commit ran (at least one, at most [`GROUP_MAX`]), stores them together, and only then answers
/// each — an acknowledgement still follows a durable commit, and one commit's flush to disk is
/// shared by all in it. If the group fails, each is stored alone, so one bad delivery (or a
/// deadlock between groups) costs no other its answer.
async fn committer(
    pool: PgPool,
    queued: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Pending>>>,
    announcer: Announcer,
) {
    loop {
        let group = {
            let mut queued = queued.lock().await;
            let Some(first) = queued.recv().await else { return };
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match queued.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            group
        };
        let deliveries: Vec<&Packed> = group.iter().map(|(d, _)| d).collect();
        match commit_group(&pool, &announcer, &deliveries).await {
            Ok(stored) => {
                for ((_, answer), ingested) in group.into_iter().zip(stored) {
                    let _ = answer.send(ingested);
                }
            }
            Err(e) if group.len() == 1 => {
                let _ = group.into_iter().next().map(|(_, answer)| answer.send(Err(e)));
            }
            Err(_) => {
                for (d, answer) in group {
                    let alone = commit_group(&pool, &announcer, &[&d]).await;
                    let _ = answer.send(alone.and_then(|mut one| one.pop().unwrap_or(Err(StoreError::Closed))));
                }
            }
        }
    }
}

/// Commits a group on its own. Without live updates among them its rows and jobs are one
/// statement, committed as it ends: one round trip for the whole group (a transaction around it
/// would add two). Live updates need a transaction, as each takes its call's key in turn. Once
/// committed, the jobs it queued are announced.
async fn commit_group(pool: &PgPool, announcer: &Announcer, batch: &[&Packed]) -> Result<Vec<Result<Ingested>>> {
    let stored = if batch.iter().any(|d| d.coalesce.is_some()) {
        let mut tx = pool.begin().await?;
        let stored = commit_batch(&mut tx, batch).await?;
        tx.commit().await?;
        stored
    } else {
        commit_batch(&mut *pool.acquire().await?, batch).await?
    };
    if stored.queued {
        announcer.announce();
    }
    Ok(stored.answers)
}

/// Stores one delivery (and its job) inside `tx`: the path of work that must commit with
/// other rows (a booking and its job). Whoever commits `tx` announces its job.
async fn insert_delivery(tx: &mut PgTx, d: &Packed) -> Result<crate::Ingested> {
    commit_batch(tx, &[d]).await?.answers.into_iter().next().unwrap_or(Err(StoreError::Closed))
}

/// What a group's statements stored: every delivery's answer, in the group's order, and
/// whether a job was queued (for the [`Announcer`], once the group is committed).
struct Stored {
    answers: Vec<Result<Ingested>>,
    queued: bool,
}

/// Writes a group on `conn` (inside a transaction, or alone, when it is committed as its one
/// statement ends) whatever its size: one statement stores the inbox rows and the jobs of those
/// that need one from arrays (`UNNEST … WITH ORDINALITY`, so ids follow arrival and each
/// caller's jobs keep their order); live updates are enqueued after it, one by one, and keys
/// stored before are looked up by one more statement. Which delivery is stored and which
/// answers as a duplicate is [`Group`]'s rule.
async fn commit_batch(conn: &mut sqlx::PgConnection, batch: &[&Packed]) -> Result<Stored> {
    use std::collections::HashMap;
    let group = Group::new(batch);
    let candidates = group.candidates();
    let rows = sqlx::query(
        "WITH u AS (
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[], $6::text[], $7::text[], $8::text[])
             WITH ORDINALITY AS u(p, s, k, r, b, e, kind, c, n)),
         stored AS (
           INSERT INTO inbox (portal, source, idempotency_key, received_at, raw_body, raw_codec, event)
           SELECT p, s, k, r, b, $9, e FROM u ORDER BY n
           ON CONFLICT (portal, idempotency_key) DO NOTHING RETURNING id, portal, idempotency_key),
         queued AS (
           INSERT INTO jobs (inbox_id, portal, kind, caller_key, run_at, created_at, updated_at)
           SELECT stored.id, u.p, u.kind, u.c, u.r, u.r, u.r
             FROM u JOIN stored ON stored.portal = u.p AND stored.idempotency_key = u.k
             WHERE u.kind IS NOT NULL ORDER BY u.n
           RETURNING 1)
         SELECT id, portal, idempotency_key FROM stored",
    )
    .bind(candidates.iter().map(|d| d.portal.as_str()).collect::<Vec<_>>())
    .bind(candidates.iter().map(|d| d.source.as_str()).collect::<Vec<_>>())
    .bind(candidates.iter().map(|d| d.idempotency_key.as_str()).collect::<Vec<_>>())
    .bind(candidates.iter().map(|d| d.received_at_ms).collect::<Vec<_>>())
    .bind(candidates.iter().map(|d| d.raw_body.as_slice()).collect::<Vec<_>>())
    .bind(candidates.iter().map(|d| d.event_json.as_str()).collect::<Vec<_>>())
    .bind(candidates.iter().map(|d| crate::group::plain_job(d)).collect::<Vec<_>>())
    .bind(candidates.iter().map(|d| d.caller_key.as_str()).collect::<Vec<_>>())
    .bind(crate::body::LZ4)
    .fetch_all(&mut *conn)
    .await?;
    let mut new_ids: HashMap<Key, i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        new_ids.insert((row.try_get("portal")?, row.try_get("idempotency_key")?), row.try_get("id")?);
    }
    let queued = group.queued(&new_ids);
    for (d, id) in &queued.coalescing {
        enqueue_coalesced(conn, d, *id).await?;
    }
    let seen = group.seen_before(&new_ids);
    let mut old_ids: HashMap<Key, i64> = HashMap::with_capacity(seen.len());
    if !seen.is_empty() {
        let rows = sqlx::query(
            "SELECT id, portal, idempotency_key FROM inbox
             WHERE (portal, idempotency_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(seen.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())
        .bind(seen.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            old_ids.insert((row.try_get("portal")?, row.try_get("idempotency_key")?), row.try_get("id")?);
        }
    }
    Ok(Stored {
        answers: group.answers(&new_ids, &old_ids),
        queued: !queued.jobs.is_empty() || !queued.coalescing.is_empty(),
    })
}

/// Enqueues a live update stored as inbox row `id` ([`crate::Coalesce`]): it takes over its
/// call's queued job, or gets one of its own due a window from now. A job a worker claims
/// meanwhile is no longer queued, and the update gets a job of its own.
async fn enqueue_coalesced(tx: &mut sqlx::PgConnection, d: &NewDelivery, id: i64) -> Result<()> {
    let (Some(kind), Some(c)) = (d.job_kind, &d.coalesce) else { return Ok(()) };
    // Two updates of one call arriving together take turns on this call's key.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("coalesce:{}:{}", d.portal.as_str(), c.key))
        .execute(&mut *tx)
        .await?;
    let previous: Option<i64> = sqlx::query_scalar(
        "UPDATE jobs SET inbox_id = $1, updated_at = $2 FROM (SELECT id AS jid, inbox_id AS previous FROM jobs
           WHERE portal = $3 AND coalesce_key = $4 AND status = 'queued' LIMIT 1 FOR UPDATE) p
         WHERE jobs.id = p.jid AND jobs.status = 'queued' RETURNING p.previous",
    )
    .bind(id)
    .bind(d.received_at_ms)
    .bind(d.portal.as_str())
    .bind(&c.key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(previous) = previous {
        sqlx::query("UPDATE inbox SET coalesced_into = $1 WHERE id = $2")
            .bind(id)
            .bind(previous)
            .execute(&mut *tx)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO jobs (inbox_id, portal, kind, caller_key, coalesce_key, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(id)
    .bind(d.portal.as_str())
    .bind(kind)
    .bind(&d.caller_key)
    .bind(&c.key)
    .bind(d.received_at_ms + c.window_ms)
    .bind(d.received_at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// One booking by its key (portal, key).
fn booking_by_key_sql() -> String {
    format!("SELECT {} FROM bookings WHERE portal = $1 AND booking_key = $2", crate::bookings::COLUMNS)
}

/// Bookings not cancelled overlapping a range (portal, range end, range start).
fn bookings_overlapping_sql() -> String {
    format!(
        "SELECT {} FROM bookings WHERE portal = $1 AND status <> 'CANCELED' AND start_ms < $2 AND end_ms > $3 ORDER BY start_ms",
        crate::bookings::COLUMNS
    )
}

async fn insert_booking(tx: &mut PgTx, b: &crate::Booking) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO bookings (portal, booking_key, source, phone, email, caller_name, meeting_type, notes, start_ms, end_ms, status, history, caller_key, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (portal, booking_key) DO NOTHING",
    )
    .bind(b.portal.as_str())
    .bind(&b.key)
    .bind(&b.source)
    .bind(&b.phone)
    .bind(&b.email)
    .bind(&b.name)
    .bind(&b.meeting_type)
    .bind(&b.notes)
    .bind(b.start_ms)
    .bind(b.end_ms)
    .bind(b.status.as_str())
    .bind(serde_json::to_string(&b.history).unwrap_or_else(|_| "[]".into()))
    .bind(&b.caller_key)
    .bind(b.created_at_ms)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn booking_in(tx: &mut PgTx, portal: &PortalId, key: &str) -> Result<Option<crate::Booking>> {
    let sql = booking_by_key_sql();
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(portal.as_str()).bind(key).fetch_optional(&mut **tx).await?;
    row.as_ref().map(crate::bookings::from_row).transpose()
}

#[async_trait]
impl crate::Bookings for PgStore {
    async fn book(&self, booking: &crate::Booking, delivery: NewDelivery) -> Result<crate::Booked> {
        let delivery = Packed::new(delivery);
        let mut tx = self.tx().await?;
        if let Some(existing) = booking_in(&mut tx, &booking.portal, &booking.key).await? {
            tx.commit().await?;
            return Ok(crate::Booked::Existing(Box::new(existing)));
        }
        let sql = bookings_overlapping_sql();
        let taken = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(booking.portal.as_str())
            .bind(booking.end_ms)
            .bind(booking.start_ms)
            .fetch_all(&mut *tx)
            .await?;
        if !taken.is_empty() {
            let taken = taken.iter().map(crate::bookings::from_row).collect::<Result<Vec<_>>>()?;
            tx.commit().await?;
            return Ok(crate::Booked::Taken(taken));
        }
        insert_booking(&mut tx, booking).await?;
        let ingested = insert_delivery(&mut tx, &delivery).await?;
        tx.commit().await?;
        self.announcer.announce();
        Ok(crate::Booked::New(ingested.inbox_id))
    }

    async fn record_booking(&self, booking: &crate::Booking) -> Result<()> {
        let mut tx = self.tx().await?;
        insert_booking(&mut tx, booking).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn booking(&self, portal: &PortalId, key: &str) -> Result<Option<crate::Booking>> {
        let sql = booking_by_key_sql();
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(portal.as_str()).bind(key).fetch_optional(&self.pool).await?;
        row.as_ref().map(crate::bookings::from_row).transpose()
    }

    async fn bookings_between(&self, portal: &PortalId, from_ms: i64, to_ms: i64) -> Result<Vec<crate::Booking>> {
        let sql = bookings_overlapping_sql();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(portal.as_str())
            .bind(to_ms)
            .bind(from_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(crate::bookings::from_row).collect()
    }

    async fn caller_bookings(
        &self,
        portal: &PortalId,
        phone: Option<&str>,
        email: Option<&str>,
        from_ms: i64,
    ) -> Result<Vec<crate::Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE portal = $1 AND status <> 'CANCELED' AND end_ms > $2 AND (phone = $3 OR email = $4) ORDER BY start_ms",
            crate::bookings::COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(portal.as_str())
            .bind(from_ms)
            .bind(phone)
            .bind(email)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(crate::bookings::from_row).collect()
    }

    async fn change_booking(
        &self,
        portal: &PortalId,
        key: &str,
        change: &crate::BookingChange,
        delivery: NewDelivery,
    ) -> Result<Option<crate::Booking>> {
        let delivery = Packed::new(delivery);
        let mut tx = self.tx().await?;
        let Some(mut booking) = booking_in(&mut tx, portal, key).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        let stored = !insert_delivery(&mut tx, &delivery).await?.duplicate;
        if stored {
            booking.start_ms = change.start_ms;
            booking.end_ms = change.end_ms;
            booking.status = change.status;
            booking.history.push(change.line.clone());
            sqlx::query("UPDATE bookings SET start_ms = $1, end_ms = $2, status = $3, history = $4, updated_at = $5 WHERE portal = $6 AND booking_key = $7")
                .bind(booking.start_ms)
                .bind(booking.end_ms)
                .bind(booking.status.as_str())
                .bind(serde_json::to_string(&booking.history).unwrap_or_else(|_| "[]".into()))
                .bind(now_ms())
                .bind(portal.as_str())
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if stored {
            self.announcer.announce();
        }
        Ok(Some(booking))
    }
}

#[async_trait]
impl crate::DedupRuns for PgStore {
    async fn start_dedup_run(&self, portal: &PortalId, options: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO dedup_runs (portal, options, status, started_at) VALUES ($1, $2, 'running', $3) RETURNING id",
        )
        .bind(portal.as_str())
        .bind(options)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn finish_dedup_run(&self, id: i64, report: std::result::Result<&str, &str>) -> Result<()> {
        let (status, report, error) = match report {
            Ok(r) => ("done", Some(r), None),
            Err(e) => ("failed", None, Some(e)),
        };
        sqlx::query("UPDATE dedup_runs SET status = $1, report = $2, error = $3, finished_at = $4 WHERE id = $5")
            .bind(status)
            .bind(report)
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn dedup_run(&self, id: i64) -> Result<Option<crate::DedupRun>> {
        let row = sqlx::query(
            "SELECT id, portal, options, status, report, error, started_at, finished_at FROM dedup_runs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::dedup_run).transpose()
    }

    async fn dedup_runs(&self, limit: i64) -> Result<Vec<crate::DedupRun>> {
        let rows = sqlx::query(
            "SELECT id, portal, options, status, report, error, started_at, finished_at FROM dedup_runs ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::dedup_run).collect()
    }
}

#[async_trait]
impl crate::Rejections for PgStore {
    async fn record_rejection(&self, r: &crate::Rejection, keep: i64) -> Result<()> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rejections (portal, route, reason, detail, status, size, peer, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(r.portal.as_deref())
        .bind(&r.route)
        .bind(&r.reason)
        .bind(&r.detail)
        .bind(r.status)
        .bind(r.size)
        .bind(r.peer.as_deref())
        .bind(r.at_ms)
        .fetch_one(&self.pool)
        .await?;
        // Ids only grow: everything older than the newest `keep` goes, by the key.
        if id % 100 == 0 {
            sqlx::query("DELETE FROM rejections WHERE id <= $1").bind(id - keep).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn rejections(&self, limit: i64) -> Result<Vec<crate::Rejection>> {
        let rows = sqlx::query(
            "SELECT id, portal, route, reason, detail, status, size, peer, at FROM rejections ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::rejection).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IdempotencyKey, NewDelivery, Queue};

    /// A booking's delivery with its job.
    fn delivery(key: String, caller: String) -> NewDelivery {
        NewDelivery {
            portal: PortalId::default(),
            source: "generic".into(),
            idempotency_key: IdempotencyKey::from_stored(key),
            raw_body: b"{}".to_vec(),
            event_json: "{}".into(),
            job_kind: Some("sync_booking"),
            caller_key: caller,
            received_at_ms: now_ms(),
            coalesce: None,
        }
    }

    #[tokio::test]
    async fn a_claim_walks_a_long_queue_in_order_before_its_statistics_catch_up() {
        let Some((admin, url)) = crate::test_support::postgres_or_skip().await else { return };
        let store = Arc::new(PgStore::open(&url).await.unwrap());
        // A queue that grew at once, as after an outage: no ANALYZE has seen it.
        let deliveries = (0..5_000).map(|i| delivery(format!("k{i}"), format!("caller-{i}")));
        let mut storing = tokio::task::JoinSet::new();
        for d in deliveries {
            let store = store.clone();
            storing.spawn(async move { store.ingest(d).await });
        }
        while let Some(stored) = storing.join_next().await {
            stored.unwrap().unwrap();
        }

        let mut tx = store.tx().await.unwrap();
        let plan = claim_ready(&mut tx, "EXPLAIN ", "worker", Duration::from_secs(60), now_ms(), 2_000).await.unwrap();
        let plan = plan.iter().map(|line| line.get::<String, _>(0)).collect::<Vec<_>>().join("\n");
        assert!(plan.contains("Index Scan using jobs_ready on jobs j"), "{plan}");
        assert!(!plan.contains("Sort") && !plan.contains("Bitmap"), "{plan}");
        // The defaults are back for the rest of the claim's transaction.
        let sort: String = sqlx::query_scalar("SHOW enable_sort").fetch_one(&mut *tx).await.unwrap();
        assert_eq!(sort, "on");
        drop(tx);
        drop(store);
        crate::test_support::drop_postgres_database(&admin, &url).await.unwrap();
    }

    #[tokio::test]
    async fn deliveries_are_stored_while_the_workers_side_holds_every_pooled_connection() {
        let Some((admin, url)) = crate::test_support::postgres_or_skip().await else { return };
        let store = PgStore::open(&url).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..store.pool.options().get_max_connections() {
            held.push(store.pool.acquire().await.unwrap());
        }
        let stored = store.ingest(delivery("while-busy".into(), "caller".into())).await.unwrap();
        assert!(!stored.duplicate);
        // Stored for good: a pooled connection, once free, finds it.
        drop(held);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&store.pool).await.unwrap();
        assert_eq!(rows, 1);
        drop(store);
        crate::test_support::drop_postgres_database(&admin, &url).await.unwrap();
    }
}
