//! Rows to values, once for both backends: the columns are named and typed alike in the
//! SQLite and PostgreSQL schemas.

use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use crate::{
    Activity, AttemptRow, DedupRun, EventDetail, EventRow, Job, JobCounts, ListedActivity, PortalId, Rejection, Result,
    StoreError, StoredTokens, Tally,
};

fn get<'r, R, T>(r: &'r R, column: &str) -> Result<T>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(r.try_get(column)?)
}

/// An event's detail (its row's columns plus `raw_body` unpacked, `event`, `run_at`) and its
/// attempts' rows (`attempt`, `at`, `error_kind`, `error`, `retry_at`): the same on every backend.
pub(crate) fn event_detail<R, DB>(r: &R, attempts: &[R]) -> Result<EventDetail>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
    for<'a> Vec<u8>: Decode<'a, DB> + Type<DB>,
{
    let attempts = attempts
        .iter()
        .map(|a| {
            Ok(AttemptRow {
                attempt: get(a, "attempt")?,
                at_ms: get(a, "at")?,
                error_kind: get(a, "error_kind")?,
                error: get(a, "error")?,
                retry_at_ms: get(a, "retry_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let codec: Option<String> = get(r, "raw_codec")?;
    Ok(EventDetail {
        row: event(r)?,
        raw_body: crate::body::unpack(get(r, "raw_body")?, codec.as_deref())?,
        event_json: get(r, "event")?,
        run_at_ms: get(r, "run_at")?,
        attempts,
    })
}

/// The statement reading one event's detail, with the backend's placeholder for its id.
macro_rules! event_detail_sql {
    ($id:literal) => {
        concat!(
            "SELECT i.id, i.portal, i.source, i.idempotency_key, i.received_at, i.raw_body, i.raw_codec, i.event, j.kind,
                COALESCE(j.status, CASE WHEN i.coalesced_into IS NULL THEN 'recorded' ELSE 'coalesced' END) AS status,
                COALESCE(j.attempts, 0) AS attempts, j.last_error, CASE WHEN j.status = 'queued' THEN j.run_at END AS run_at
             FROM inbox i LEFT JOIN jobs j ON j.inbox_id = i.id WHERE i.id = ",
            $id
        )
    };
}
pub(crate) use event_detail_sql;

/// The statement reading one event's failed attempts, oldest first.
macro_rules! event_attempts_sql {
    ($id:literal) => {
        concat!(
            "SELECT attempt, at, error_kind, error, retry_at FROM job_attempts WHERE inbox_id = ",
            $id,
            " ORDER BY id"
        )
    };
}
pub(crate) use event_attempts_sql;

pub(crate) fn event<R, DB>(r: &R) -> Result<EventRow>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    Ok(EventRow {
        id: get(r, "id")?,
        portal: get(r, "portal")?,
        source: get(r, "source")?,
        idempotency_key: get(r, "idempotency_key")?,
        received_at_ms: get(r, "received_at")?,
        kind: get(r, "kind")?,
        status: get(r, "status")?,
        attempts: get(r, "attempts")?,
        last_error: get(r, "last_error")?,
    })
}

/// Jobs by status: the same statement on every backend.
pub(crate) async fn job_counts<'c, DB, E>(db: E) -> Result<JobCounts>
where
    DB: Database,
    E: sqlx::Executor<'c, Database = DB>,
    <DB as Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    let rows = sqlx::query::<DB>("SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs GROUP BY status")
        .fetch_all(db)
        .await?;
    counts(&rows)
}

/// What happened since a time, with the backend's placeholder for it: deliveries received,
/// and jobs finished by status.
macro_rules! tally_sql {
    ($since:literal) => {
        concat!(
            "SELECT 'received' AS status, COUNT(*) AS n FROM inbox WHERE received_at >= ",
            $since,
            " UNION ALL SELECT status, COUNT(*) AS n FROM jobs WHERE updated_at >= ",
            $since,
            " AND status IN ('done', 'dead') GROUP BY status"
        )
    };
}
pub(crate) use tally_sql;

/// The rows of [`tally_sql`] as a [`Tally`].
pub(crate) fn tally<R, DB>(rows: &[R]) -> Result<Tally>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    let mut t = Tally::default();
    for r in rows {
        let n: i64 = get(r, "n")?;
        match get::<R, String>(r, "status")?.as_str() {
            "received" => t.received = n,
            "done" => t.landed = n,
            "dead" => t.dead = n,
            _ => {}
        }
    }
    Ok(t)
}

/// When the next queued job is due: the same statement on every backend.
pub(crate) async fn next_run_at<'c, DB, E>(db: E) -> Result<Option<i64>>
where
    DB: Database,
    E: sqlx::Executor<'c, Database = DB>,
    <DB as Database>::Arguments: sqlx::IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> Option<i64>: Decode<'a, DB> + Type<DB>,
{
    Ok(sqlx::query_scalar::<DB, Option<i64>>("SELECT MIN(run_at) FROM jobs WHERE status = 'queued'")
        .fetch_one(db)
        .await?)
}

/// `SELECT status, COUNT(*) AS n FROM jobs GROUP BY status`, summed up.
fn counts<R, DB>(rows: &[R]) -> Result<JobCounts>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    let mut c = JobCounts::default();
    for r in rows {
        let n: i64 = get(r, "n")?;
        match get::<R, String>(r, "status")?.as_str() {
            "queued" => (c.queued, c.oldest_queued_at_ms) = (n, Some(get(r, "oldest")?)),
            "running" => c.running = n,
            "done" => c.done = n,
            "dead" => c.dead = n,
            _ => {}
        }
    }
    Ok(c)
}

pub(crate) fn activity<R, DB>(r: &R) -> Result<Activity>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    Ok(Activity {
        hubspot_id: get::<R, i64>(r, "hubspot_id")? as u64,
        contact_id: get::<R, Option<i64>>(r, "contact_id")?.map(|c| c as u64),
        via: get(r, "via")?,
        stage: get(r, "stage")?,
    })
}

/// An activity with the key it was found by: `(source, external key, kind)`.
pub(crate) fn keyed_activity<R, DB>(r: &R) -> Result<((String, String, String), Activity)>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    Ok(((get(r, "source")?, get(r, "external_key")?, get(r, "kind")?), activity(r)?))
}

/// A portal name as a row holds it; a row the migrations wrote holds a valid one.
fn portal<R>(r: &R) -> Result<PortalId>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
{
    let name: String = get(r, "portal")?;
    PortalId::parse(&name).map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
}

pub(crate) fn listed_activity<R, DB>(r: &R) -> Result<ListedActivity>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    Ok(ListedActivity {
        portal: portal(r)?,
        source: get(r, "source")?,
        key: get(r, "external_key")?,
        kind: get(r, "kind")?,
        activity: activity(r)?,
    })
}

pub(crate) fn tokens<R, DB>(r: &R) -> Result<StoredTokens>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    let scopes: String = get(r, "scopes")?;
    Ok(StoredTokens {
        access_token: get(r, "access_token")?,
        refresh_token: get(r, "refresh_token")?,
        expires_at_ms: get(r, "expires_at")?,
        hub_id: get::<R, Option<i64>>(r, "hub_id")?.map(|h| h as u64),
        scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(String::from).collect(),
    })
}

/// Claimed jobs, in id order, from their `jobs` rows (`RETURNING id, inbox_id, portal, kind,
/// caller_key, attempts, claims`) and their inbox rows (`id, source, idempotency_key, event`).
pub(crate) fn jobs<R, DB>(jobs: &[R], inbox: &[R]) -> Result<Vec<Job>>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    let inbox: std::collections::HashMap<i64, &R> =
        inbox.iter().map(|r| Ok((get::<R, i64>(r, "id")?, r))).collect::<Result<_>>()?;
    let mut out = jobs
        .iter()
        .map(|job| {
            let row = inbox[&get::<R, i64>(job, "inbox_id")?];
            Ok(Job {
                id: get(job, "id")?,
                inbox_id: get(job, "inbox_id")?,
                portal: portal(job)?,
                kind: get(job, "kind")?,
                caller_key: get(job, "caller_key")?,
                attempts: get(job, "attempts")?,
                claims: get(job, "claims")?,
                source: get(row, "source")?,
                idempotency_key: get(row, "idempotency_key")?,
                event_json: get(row, "event")?,
            })
        })
        .collect::<Result<Vec<Job>>>()?;
    out.sort_by_key(|j| j.id);
    Ok(out)
}

pub(crate) fn dedup_run<R, DB>(r: &R) -> Result<DedupRun>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    Ok(DedupRun {
        id: get(r, "id")?,
        portal: get(r, "portal")?,
        options: get(r, "options")?,
        status: get(r, "status")?,
        report: get(r, "report")?,
        error: get(r, "error")?,
        started_at_ms: get(r, "started_at")?,
        finished_at_ms: get(r, "finished_at")?,
    })
}

pub(crate) fn rejection<R, DB>(r: &R) -> Result<Rejection>
where
    DB: Database,
    R: Row<Database = DB>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    Ok(Rejection {
        id: get(r, "id")?,
        portal: get(r, "portal")?,
        route: get(r, "route")?,
        reason: get(r, "reason")?,
        detail: get(r, "detail")?,
        status: get(r, "status")?,
        size: get(r, "size")?,
        peer: get(r, "peer")?,
        at_ms: get(r, "at")?,
    })
}
