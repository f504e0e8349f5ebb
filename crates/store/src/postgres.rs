//! The PostgreSQL store, for several callbridge instances sharing one queue. Jobs are
//! claimed with `FOR UPDATE SKIP LOCKED` (instances never take the same job), keep each
//! caller's order across instances (a job is claimable only when no job of its caller is
//! running and none older waits), and announce themselves with `NOTIFY` so idle workers on
//! every instance wake at once; polling remains the fallback.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{PgExecutor, Postgres, Row, Transaction};
use tokio::sync::Notify;

use crate::{
    Activity, EventRow, Failure, Ingested, Job, JobCounts, NewDelivery, Result, Settlement, Store, StoredTokens, now_ms,
};

/// The channel new jobs are announced on.
const CHANNEL: &str = "callbridge_jobs";

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE inbox (
        id BIGSERIAL PRIMARY KEY,
        source TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        received_at BIGINT NOT NULL,
        raw_body BYTEA NOT NULL,
        event TEXT NOT NULL
    );
    CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY,
        inbox_id BIGINT NOT NULL UNIQUE REFERENCES inbox(id),
        kind TEXT NOT NULL,
        caller_key TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued',
        attempts BIGINT NOT NULL DEFAULT 0,
        claims BIGINT NOT NULL DEFAULT 0,
        run_at BIGINT NOT NULL,
        locked_by TEXT,
        lease_until BIGINT,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX jobs_ready ON jobs (status, run_at, id);
    CREATE INDEX jobs_caller ON jobs (caller_key, status, id);
    CREATE TABLE caller_index (
        key TEXT PRIMARY KEY,
        contact_id BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX caller_index_contact ON caller_index (contact_id);
    CREATE TABLE contact_sync (
        contact_id BIGINT PRIMARY KEY,
        last_call_at BIGINT NOT NULL
    );
    CREATE TABLE activities (
        source TEXT NOT NULL,
        external_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        hubspot_id BIGINT NOT NULL,
        contact_id BIGINT,
        via TEXT NOT NULL,
        stage BIGINT NOT NULL DEFAULT 0,
        occurred_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (source, external_key, kind)
    );
    CREATE TABLE oauth_tokens (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        access_token TEXT NOT NULL,
        refresh_token TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        hub_id BIGINT,
        scopes TEXT NOT NULL
    );
    "#,
    ),
    (
        2,
        r#"
    CREATE TABLE budget_slots (
        id BIGSERIAL PRIMARY KEY,
        bucket TEXT NOT NULL,
        taken_at BIGINT NOT NULL,
        done_at BIGINT
    );
    CREATE INDEX budget_slots_bucket ON budget_slots (bucket, done_at);
    CREATE TABLE budget_blocks (
        bucket TEXT PRIMARY KEY,
        until_ms BIGINT NOT NULL
    );
    "#,
    ),
];

/// Slack for millisecond truncation and clocks of instances that are not quite in step.
const SLOT_MARGIN_MS: i64 = 20;

/// A slot still in flight after this long belonged to an instance that died.
const STALE_SLOT_MS: i64 = 120_000;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<PgStore> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?;
        migrate(&pool).await?;
        Ok(PgStore { pool })
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
async fn set_last_calls<'e>(db: impl PgExecutor<'e>, calls: &[(u64, i64)]) -> Result<()> {
    let mut latest = std::collections::HashMap::new();
    for &(c, at) in calls {
        let e = latest.entry(c as i64).or_insert(at);
        *e = (*e).max(at);
    }
    let (ids, ats): (Vec<i64>, Vec<i64>) = latest.into_iter().unzip();
    sqlx::query(
        "INSERT INTO contact_sync (contact_id, last_call_at) SELECT c, t FROM UNNEST($1::bigint[], $2::bigint[]) AS u(c, t)
         ON CONFLICT (contact_id) DO UPDATE SET last_call_at = GREATEST(contact_sync.last_call_at, excluded.last_call_at)",
    )
    .bind(&ids)
    .bind(&ats)
    .execute(db)
    .await?;
    Ok(())
}

async fn record<'e>(
    db: impl PgExecutor<'e>,
    source: &str,
    key: &str,
    kind: &str,
    a: &Activity,
    occurred_at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO activities (source, external_key, kind, hubspot_id, contact_id, via, stage, occurred_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (source, external_key, kind) DO UPDATE SET hubspot_id = excluded.hubspot_id, contact_id = excluded.contact_id,
           via = excluded.via, stage = GREATEST(activities.stage, excluded.stage)",
    )
    .bind(source)
    .bind(key)
    .bind(kind)
    .bind(a.hubspot_id as i64)
    .bind(a.contact_id.map(|c| c as i64))
    .bind(&a.via)
    .bind(a.stage)
    .bind(occurred_at_ms)
    .bind(now_ms())
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
    for (version, sql) in MIGRATIONS {
        let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
        if applied.is_none() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn ingest(&self, d: NewDelivery) -> Result<Ingested> {
        let mut tx = self.tx().await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO inbox (source, idempotency_key, received_at, raw_body, event) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(&d.source)
        .bind(&d.idempotency_key)
        .bind(d.received_at_ms)
        .bind(&d.raw_body)
        .bind(&d.event_json)
        .fetch_optional(&mut *tx)
        .await?;
        let out = match inserted {
            Some(id) => {
                if let Some(kind) = d.job_kind {
                    sqlx::query("INSERT INTO jobs (inbox_id, kind, caller_key, run_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4, $4)")
                        .bind(id)
                        .bind(kind)
                        .bind(&d.caller_key)
                        .bind(d.received_at_ms)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&mut *tx).await?;
                }
                Ingested { inbox_id: id, duplicate: false }
            }
            None => {
                let id: i64 = sqlx::query_scalar("SELECT id FROM inbox WHERE idempotency_key = $1")
                    .bind(&d.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await?;
                Ingested { inbox_id: id, duplicate: true }
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn claim_many(&self, worker: &str, lease: Duration, max: usize) -> Result<Vec<Job>> {
        let now = now_ms();
        sqlx::query("UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, updated_at = $1 WHERE status = 'running' AND lease_until < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let mut tx = self.tx().await?;
        // Each caller's oldest job, if nothing of theirs runs.
        let rows = sqlx::query(
            "WITH candidate AS (
                SELECT j.id FROM jobs j
                WHERE j.status = 'queued' AND j.run_at <= $3
                  AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.caller_key = j.caller_key AND r.status = 'running')
                  AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.caller_key = j.caller_key AND e.status = 'queued' AND e.id < j.id)
                ORDER BY j.run_at, j.id
                LIMIT $4
                FOR UPDATE SKIP LOCKED)
             UPDATE jobs SET status = 'running', claims = jobs.claims + 1, locked_by = $1, lease_until = $2, updated_at = $3
             FROM candidate WHERE jobs.id = candidate.id
             RETURNING jobs.id, jobs.inbox_id, jobs.kind, jobs.caller_key, jobs.attempts, jobs.claims",
        )
        .bind(worker)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(max as i64)
        .fetch_all(&mut *tx)
        .await?;
        // The callers' next jobs come along (those due now, behind no job that waits for a
        // retry; up to `max` more), so a batch lands a caller's calls together, in order.
        let mut rows = rows;
        if max > 1 && !rows.is_empty() {
            let callers: Vec<String> =
                rows.iter().map(|r| r.try_get("caller_key")).collect::<std::result::Result<_, _>>()?;
            let followers = sqlx::query(
                "WITH candidate AS (
                    SELECT j.id FROM jobs j
                    WHERE j.status = 'queued' AND j.run_at <= $3 AND j.caller_key = ANY($4)
                      AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.caller_key = j.caller_key AND e.status = 'queued' AND e.run_at > $3 AND e.id < j.id)
                    ORDER BY j.id
                    LIMIT $5
                    FOR UPDATE SKIP LOCKED)
                 UPDATE jobs SET status = 'running', claims = jobs.claims + 1, locked_by = $1, lease_until = $2, updated_at = $3
                 FROM candidate WHERE jobs.id = candidate.id
                 RETURNING jobs.id, jobs.inbox_id, jobs.kind, jobs.caller_key, jobs.attempts, jobs.claims",
            )
            .bind(worker)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(&callers)
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await?;
            rows.extend(followers);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.try_get("inbox_id")).collect::<std::result::Result<_, _>>()?;
        let inbox = sqlx::query("SELECT id, source, idempotency_key, event FROM inbox WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        crate::rows::jobs(&rows, &inbox)
    }

    async fn try_exclusive(&self, name: &str) -> Result<Option<crate::Exclusive>> {
        // A session-level advisory lock lives as long as the connection holding it.
        let mut conn = self.pool.acquire().await?;
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))").bind(name).fetch_one(&mut *conn).await?;
        if !got {
            return Ok(None);
        }
        let name = name.to_string();
        Ok(Some(crate::Exclusive::new(move || {
            tokio::spawn(async move {
                if let Err(e) =
                    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))").bind(&name).execute(&mut *conn).await
                {
                    tracing::warn!(error = %e, "releasing an advisory lock failed; it goes with the connection");
                    conn.close_on_drop();
                }
            });
        })))
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

    async fn complete(&self, job_id: i64) -> Result<()> {
        done(&self.pool, &[job_id]).await
    }

    async fn fail(&self, job_id: i64, error: &str, failure: Failure) -> Result<()> {
        let (status, run_at) = match failure {
            Failure::RetryAt(at) => ("queued", at),
            Failure::Dead => ("dead", now_ms()),
        };
        sqlx::query(
            "UPDATE jobs SET status = $1, run_at = $2, attempts = attempts + 1, last_error = $3, locked_by = NULL, lease_until = NULL, updated_at = $4
             WHERE id = $5",
        )
        .bind(status)
        .bind(run_at)
        .bind(error)
        .bind(now_ms())
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn replay(&self, inbox_id: i64) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = 0, claims = 0, run_at = $1, last_error = NULL, updated_at = $1
             WHERE inbox_id = $2 AND status IN ('dead', 'done')",
        )
        .bind(now_ms())
        .bind(inbox_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed > 0 {
            sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&self.pool).await?;
        }
        Ok(changed > 0)
    }

    async fn events(&self, status: Option<&str>, limit: i64) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT i.id, i.source, i.idempotency_key, i.received_at, j.kind, COALESCE(j.status, 'recorded') AS status,
                    COALESCE(j.attempts, 0) AS attempts, j.last_error
             FROM inbox i LEFT JOIN jobs j ON j.inbox_id = i.id
             WHERE $1::TEXT IS NULL OR COALESCE(j.status, 'recorded') = $1
             ORDER BY i.id DESC LIMIT $2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::event).collect()
    }

    async fn counts(&self) -> Result<JobCounts> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetch_all(&self.pool).await?;
        crate::rows::counts(&rows)
    }

    async fn next_run_at(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'queued'").fetch_one(&self.pool).await?)
    }

    async fn known_contact(&self, keys: &[String]) -> Result<Option<u64>> {
        for key in keys {
            let id: Option<i64> = sqlx::query_scalar("SELECT contact_id FROM caller_index WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(id) = id {
                return Ok(Some(id as u64));
            }
        }
        Ok(None)
    }

    async fn remember_contacts(&self, entries: &[(Vec<String>, u64)]) -> Result<()> {
        // One statement for all; a key named twice keeps its last contact.
        let mut latest = std::collections::HashMap::new();
        for (keys, id) in entries {
            for key in keys {
                latest.insert(key.as_str(), *id as i64);
            }
        }
        let (keys, ids): (Vec<&str>, Vec<i64>) = latest.into_iter().unzip();
        sqlx::query(
            "INSERT INTO caller_index (key, contact_id, updated_at) SELECT k, c, $3 FROM UNNEST($1::text[], $2::bigint[]) AS t(k, c)
             ON CONFLICT (key) DO UPDATE SET contact_id = excluded.contact_id, updated_at = excluded.updated_at",
        )
        .bind(&keys)
        .bind(&ids)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_contact(&self, contact_id: u64) -> Result<()> {
        sqlx::query("DELETE FROM caller_index WHERE contact_id = $1")
            .bind(contact_id as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn last_call_at(&self, contact_id: u64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT last_call_at FROM contact_sync WHERE contact_id = $1")
            .bind(contact_id as i64)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_last_call_at(&self, contact_id: u64, at_ms: i64) -> Result<()> {
        set_last_calls(&self.pool, &[(contact_id, at_ms)]).await
    }

    async fn activity(&self, source: &str, key: &str, kind: &str) -> Result<Option<Activity>> {
        let row = sqlx::query("SELECT hubspot_id, contact_id, via, stage FROM activities WHERE source = $1 AND external_key = $2 AND kind = $3")
            .bind(source)
            .bind(key)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(crate::rows::activity).transpose()
    }

    async fn record_activity(
        &self,
        source: &str,
        key: &str,
        kind: &str,
        a: &Activity,
        occurred_at_ms: i64,
    ) -> Result<()> {
        record(&self.pool, source, key, kind, a, occurred_at_ms).await
    }

    async fn settle(&self, s: &Settlement) -> Result<()> {
        let mut tx = self.tx().await?;
        for r in &s.activities {
            record(&mut *tx, &r.source, &r.key, r.kind, &r.activity, r.occurred_at_ms).await?;
        }
        set_last_calls(&mut *tx, &s.last_calls).await?;
        done(&mut *tx, &s.done).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn activities(&self) -> Result<Vec<(String, String, String, Activity)>> {
        let rows = sqlx::query("SELECT source, external_key, kind, hubspot_id, contact_id, via, stage FROM activities ORDER BY created_at, external_key")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((r.try_get("source")?, r.try_get("external_key")?, r.try_get("kind")?, crate::rows::activity(r)?))
            })
            .collect()
    }

    async fn load_tokens(&self) -> Result<Option<StoredTokens>> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, expires_at, hub_id, scopes FROM oauth_tokens WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::tokens).transpose()
    }

    async fn save_tokens(&self, t: &StoredTokens) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_tokens (id, access_token, refresh_token, expires_at, hub_id, scopes) VALUES (1, $1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
               expires_at = excluded.expires_at, hub_id = excluded.hub_id, scopes = excluded.scopes",
        )
        .bind(&t.access_token)
        .bind(&t.refresh_token)
        .bind(t.expires_at_ms)
        .bind(t.hub_id.map(|h| h as i64))
        .bind(t.scopes.join(" "))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn shares_budget(&self) -> bool {
        true
    }

    async fn budget_take(&self, bucket: &str, max: u32, interval_ms: i64) -> Result<std::result::Result<i64, i64>> {
        let now = now_ms();
        let mut tx = self.tx().await?;
        // One decision at a time per bucket, across instances.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(bucket).execute(&mut *tx).await?;
        // Times are whole milliseconds: a slot is freed only once a full interval has surely
        // passed since its response, whatever was truncated.
        sqlx::query("DELETE FROM budget_slots WHERE bucket = $1 AND ((done_at IS NOT NULL AND done_at < $2) OR (done_at IS NULL AND taken_at <= $3))")
            .bind(bucket)
            .bind(now - interval_ms - SLOT_MARGIN_MS)
            .bind(now - STALE_SLOT_MS)
            .execute(&mut *tx)
            .await?;
        let blocked: Option<i64> = sqlx::query_scalar("SELECT until_ms FROM budget_blocks WHERE bucket = $1")
            .bind(bucket)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(until) = blocked.filter(|u| *u > now) {
            tx.commit().await?;
            return Ok(Err(until - now));
        }
        let row = sqlx::query("SELECT COUNT(*) AS held, MIN(done_at) AS oldest FROM budget_slots WHERE bucket = $1")
            .bind(bucket)
            .fetch_one(&mut *tx)
            .await?;
        let held: i64 = row.try_get("held")?;
        if held < max as i64 {
            let slot: i64 =
                sqlx::query_scalar("INSERT INTO budget_slots (bucket, taken_at) VALUES ($1, $2) RETURNING id")
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

    async fn budget_release(&self, bucket: &str, slot: i64) -> Result<()> {
        sqlx::query("UPDATE budget_slots SET done_at = $1 WHERE id = $2 AND bucket = $3")
            .bind(now_ms())
            .bind(slot)
            .bind(bucket)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn budget_block(&self, bucket: &str, until_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO budget_blocks (bucket, until_ms) VALUES ($1, $2)
             ON CONFLICT (bucket) DO UPDATE SET until_ms = GREATEST(budget_blocks.until_ms, excluded.until_ms)",
        )
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
