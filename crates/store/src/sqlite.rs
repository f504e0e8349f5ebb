//! The embedded SQLite store: WAL, every write a client is answered about on disk before the
//! answer (`synchronous=FULL`; ingest's group commit syncs on a thread of its own, below; the
//! worker's bookkeeping is the exception, below), and write transactions that `BEGIN
//! IMMEDIATE` so they never fail on a read-to-write upgrade. SQLite has one writer at a time;
//! writers of this process take turns ([`Turn`]) before they begin, instead of SQLite's busy
//! handler, which polls with sleeps growing to 100 ms and let a writer that lost a few races
//! (the worker recording a round an agent waits on) wait hundreds of milliseconds behind
//! ingest. The turns are fair among the worker's writes, and ingest's group commit goes before
//! every write still waiting: an acknowledgement waits for at most the one write under way.
//!
//! Ingest uses group commit: one writer, on a thread and a connection of its own (held for
//! as long as it writes, so it never waits for a pool or behind the service's tasks), takes
//! every delivery and every booking waiting in its channel and commits them in one transaction,
//! so a burst of webhooks or of agents booking pays for one fsync, not one each; a group of
//! deliveries is two round trips to SQLite (`BEGIN` rides on the first statement, `COMMIT` on
//! the last, [`Ends`]). The fsync is not the writer's to wait for: its commits do not sync
//! (`synchronous=NORMAL`), and a thread of its own ([`sync_then_answer`]) syncs the WAL after
//! them — one sync for every group committed meanwhile — and only then answers their callers,
//! while the writer is already committing the next group. Each caller is still answered only
//! once the commit that holds its write is on disk. A delivery's body is packed
//! ([`crate::body`]) on its own task before it joins the group.
//!
//! The worker's queue bookkeeping (claims, leases, settlements, failures, the caller index)
//! commits on a connection of its own with `synchronous=NORMAL`: its commits do not wait for
//! a sync of their own, and the next acknowledgement's commit syncs them with it (the WAL is
//! synced in order). One lost to a power cut only runs its job again, and a job that ran
//! before looks for what it wrote before it writes.
//!
//! The worker's writes stay short so acknowledgements get the writer between them: a
//! settlement and a round's caller-index entries are one statement per table (the worker
//! settles in parts, the caller index goes in parts of [`REMEMBER_PART`] keys, each its own
//! transaction), and a claim finds its jobs with reads, claims them by id in parts of
//! [`CLAIM_PART`] (each its own transaction, each job re-checked) and reads their events after.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{OwnedMutexGuard, mpsc, oneshot};

use crate::body::Packed;
use crate::group::{Group, Key};
use crate::{
    Activities, ActivitiesByKey, ActivityRecord, CallerIndex, Coordination, Credentials, Erased, EventDetail, EventRow,
    Failure, Ingested, Job, JobCounts, ListedActivity, NewDelivery, OAuthState, PortalId, Queue, Result, Settlement,
    SourceSession, StoreError, StoredTokens, now_ms,
};

/// Writes a single group commit takes at most.
const GROUP_COMMIT_MAX: usize = 512;

/// A write waiting for the group commit, with where its answer goes.
enum Pending {
    Ingest(Packed, oneshot::Sender<Result<Ingested>>),
    /// A booking with its delivery: checked against the bookings (those earlier in the same
    /// group included) and written with it.
    Book(Box<crate::Booking>, Packed, oneshot::Sender<Result<crate::Booked>>),
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// Where the worker's queue bookkeeping writes (see the module docs).
    bookkeeping: SqlitePool,
    /// Whose turn it is to write (see the module docs).
    turn: Arc<Turn>,
    ingest_tx: mpsc::Sender<Pending>,
    /// Names of exclusive locks held: one process owns an SQLite database.
    held: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Held by a claim from its read to its commit, so the loops' claims see each other's and
    /// never read the same callers at once (the second would find them taken and claim nothing).
    claiming: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Checkpoints run in the background (below), not inside a webhook's commit.
            .pragma("wal_autocheckpoint", "0");
        let in_memory = url.contains(":memory:");
        // An in-memory database lives in one connection.
        let max = if in_memory { 1 } else { 8 };
        // A connection to a file on this machine does not go stale: no ping before each use
        // (a round trip to the connection's thread per statement's acquire).
        let pooled =
            |max: u32| SqlitePoolOptions::new().max_connections(max).min_connections(1).test_before_acquire(false);
        let pool = pooled(max).connect_with(options.clone()).await?;
        migrate(&pool).await?;
        // Writes take turns, so one connection serves each writer: the group commit has its own,
        // never waiting for one of the readers' to free, and so does the bookkeeping.
        let (ingest, bookkeeping) = if in_memory {
            (Writer::Shared(pool.clone()), pool.clone())
        } else {
            // Neither syncs at its commit: ingest's commits are synced before they are
            // answered ([`sync_then_answer`]), the bookkeeping's with them.
            let unsynced = options.clone().synchronous(SqliteSynchronous::Normal);
            let writer = unsynced.connect().await?;
            (Writer::Own(writer, Box::new(unsynced.clone())), pooled(1).connect_with(unsynced).await?)
        };
        let (ingest_tx, rx) = mpsc::channel(4096);
        let (committed, to_sync) = mpsc::channel(SYNCS_BEHIND);
        let turn = Arc::new(Turn::default());
        // SQLite keeps the WAL beside the database's real file.
        let wal = (!in_memory)
            .then(|| std::fs::canonicalize(options.get_filename()))
            .transpose()
            .map_err(sqlx::Error::Io)?
            .map(|db| std::path::PathBuf::from(format!("{}-wal", db.display())));
        // The writer and the sync each have a thread of their own: on the service's runtime
        // the writer's task waited behind every webhook's task after each statement.
        let writer = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(sqlx::Error::Io)?;
        let writer_turn = turn.clone();
        std::thread::Builder::new()
            .name("sqlite-ingest".into())
            .spawn(move || writer.block_on(group_commit(ingest, writer_turn, rx, committed)))
            .map_err(sqlx::Error::Io)?;
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || sync_then_answer(wal, to_sync))
            .map_err(sqlx::Error::Io)?;
        if !in_memory {
            tokio::spawn(checkpoint(pool.clone()));
        }
        Ok(SqliteStore { pool, bookkeeping, turn, ingest_tx, held: Default::default(), claiming: Default::default() })
    }

    async fn write(&self) -> Result<Tx> {
        Tx::begin(&self.pool, self.turn.other().await).await
    }

    /// A write of the worker's queue bookkeeping, committed without a sync of its own.
    async fn bookkeeping(&self) -> Result<Tx> {
        Tx::begin(&self.bookkeeping, self.turn.other().await).await
    }
}

/// Whose turn it is to write in this process: ingest's group commit first, then the other
/// writers in the order they asked.
#[derive(Default)]
struct Turn {
    /// Held by the write under way.
    writing: Arc<tokio::sync::Mutex<()>>,
    /// The other writers queue here first, so at most one of them waits for `writing` and
    /// the group commit is never queued behind more than that one.
    others: tokio::sync::Mutex<()>,
    /// The group commit waits for `writing`: a writer that gets it then hands it on.
    ingest_waiting: AtomicBool,
}

impl Turn {
    /// The group commit's turn: next after the write under way.
    async fn ingest(&self) -> OwnedMutexGuard<()> {
        self.ingest_waiting.store(true, Ordering::SeqCst);
        let turn = self.writing.clone().lock_owned().await;
        self.ingest_waiting.store(false, Ordering::SeqCst);
        turn
    }

    /// Another writer's turn: after the writers that asked before it, and after the group
    /// commit whenever it waits.
    async fn other(&self) -> OwnedMutexGuard<()> {
        let _queued = self.others.lock().await;
        loop {
            let turn = self.writing.clone().lock_owned().await;
            if !self.ingest_waiting.load(Ordering::SeqCst) {
                return turn;
            }
            // Released to the waiting group commit (the lock is fair: it is first in line).
            drop(turn);
            tokio::task::yield_now().await;
        }
    }
}

/// A write transaction, begun in this process's turn to write and holding it until it ends.
struct Tx {
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl Tx {
    async fn begin(pool: &SqlitePool, turn: OwnedMutexGuard<()>) -> Result<Tx> {
        Ok(Tx { tx: pool.begin_with("BEGIN IMMEDIATE").await?, _turn: turn })
    }

    async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl std::ops::Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// Marks jobs done, in one statement.
async fn done(tx: &mut Tx, job_ids: &[i64]) -> Result<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE jobs SET status = 'done', locked_by = NULL, lease_until = NULL, last_error = NULL, updated_at = ?1
         WHERE id IN (SELECT value FROM json_each(?2))",
    )
    .bind(now_ms())
    .bind(serde_json::to_string(job_ids).unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records each contact's newest synced call (contact, call time), in one statement.
async fn set_last_calls(tx: &mut Tx, portal: &PortalId, last_calls: &[(u64, i64)]) -> Result<()> {
    if last_calls.is_empty() {
        return Ok(());
    }
    // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT, not a join.
    sqlx::query(
        "INSERT INTO contact_sync (portal, contact_id, last_call_at)
         SELECT ?1, value ->> 0, value ->> 1 FROM json_each(?2) WHERE true
         ON CONFLICT (portal, contact_id) DO UPDATE SET last_call_at = MAX(last_call_at, excluded.last_call_at)",
    )
    .bind(portal.as_str())
    .bind(serde_json::to_string(last_calls).unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records activities written to HubSpot, in one statement (a row named twice: the later wins,
/// its stage never going back).
async fn record(tx: &mut Tx, portal: &PortalId, records: &[ActivityRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let a = &r.activity;
            serde_json::json!([
                r.source,
                r.key,
                r.kind,
                a.hubspot_id as i64,
                a.contact_id.map(|c| c as i64),
                a.via,
                a.stage,
                r.occurred_at_ms
            ])
        })
        .collect();
    sqlx::query(
        "INSERT INTO activities (portal, source, external_key, kind, hubspot_id, contact_id, via, stage, occurred_at, created_at)
         SELECT ?1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, ?2
         FROM json_each(?3) WHERE true
         ON CONFLICT (portal, source, external_key, kind) DO UPDATE SET hubspot_id = excluded.hubspot_id, contact_id = excluded.contact_id,
           via = excluded.via, stage = MAX(stage, excluded.stage)",
    )
    .bind(portal.as_str())
    .bind(now_ms())
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn migrate(pool: &SqlitePool) -> Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .execute(pool)
        .await?;
    for m in crate::migrate::SQLITE {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version WHERE version = ?")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await?;
        if applied.is_none() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql)).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)")
                .bind(m.version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// How often the WAL is copied into the database. A page written by many commits in between
/// (a table's or an index's hot pages) is copied once per checkpoint, so a longer interval
/// copies less while acknowledgements compete for the cores (BENCHMARKS.md, "The WAL copied
/// every 5 s"); the WAL holds that much more meanwhile.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Every this many checkpoints, the WAL file is truncated (about every 30 s).
const TRUNCATE_EVERY: u64 = 6;

/// Copies the WAL into the database every [`CHECKPOINT_EVERY`] without blocking writers
/// (PASSIVE), and truncates it every [`TRUNCATE_EVERY`]th time, when nothing is reading.
async fn checkpoint(pool: SqlitePool) {
    let mut ticks = 0u64;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        ticks += 1;
        let mode = if ticks.is_multiple_of(TRUNCATE_EVERY) {
            "PRAGMA wal_checkpoint(TRUNCATE)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(mode)).execute(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Groups committed and not yet synced, at most, before the writer waits for the sync.
const SYNCS_BEHIND: usize = 64;

/// A group's writes and what its commit gave each (or the error that undid it).
type Outcome = Result<(Vec<Result<Ingested>>, Vec<crate::Booked>)>;

/// The group commit's connection: its own, held for as long as it writes (taking one from a
/// pool for each group cost a third of a group's time under load), or the pool's only one for a
/// database in memory.
enum Writer {
    Own(SqliteConnection, Box<SqliteConnectOptions>),
    Shared(SqlitePool),
}

/// The ingest writer: drains the channel into one transaction per batch and hands each
/// committed batch to [`sync_then_answer`]; a batch whose transaction failed wrote nothing and
/// is answered at once.
async fn group_commit(
    mut writer: Writer,
    turn: Arc<Turn>,
    mut rx: mpsc::Receiver<Pending>,
    committed: mpsc::Sender<(Vec<Pending>, Outcome)>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(GROUP_COMMIT_MAX);
    while rx.recv_many(&mut batch, GROUP_COMMIT_MAX).await > 0 {
        let outcome = commit_group(&mut writer, &turn, &batch).await;
        let batch = std::mem::replace(&mut batch, Vec::with_capacity(GROUP_COMMIT_MAX));
        if outcome.is_err() {
            answer(batch, outcome);
        } else if let Err(mpsc::error::SendError((batch, outcome))) = committed.send((batch, outcome)).await {
            answer(batch, outcome.and(Err(StoreError::Closed)));
        }
    }
}

/// Makes committed groups durable, then answers them: one `fdatasync` of the WAL covers every
/// group committed before it began (the WAL is one file, appended in commit order), so groups
/// that commit while a sync runs share the next one. A database in memory has nothing to sync.
/// Runs on a thread of its own, blocking, until the writer is gone.
fn sync_then_answer(wal: Option<std::path::PathBuf>, mut committed: mpsc::Receiver<(Vec<Pending>, Outcome)>) {
    let mut groups = Vec::with_capacity(SYNCS_BEHIND);
    while committed.blocking_recv_many(&mut groups, SYNCS_BEHIND) > 0 {
        let synced = match &wal {
            None => Ok(()),
            Some(wal) => std::fs::File::open(wal).and_then(|f| f.sync_data()),
        };
        for (batch, outcome) in groups.drain(..) {
            let outcome = match &synced {
                Ok(()) => outcome,
                Err(e) => Err(StoreError::Database(sqlx::Error::Protocol(format!("syncing the WAL: {e}")))),
            };
            answer(batch, outcome);
        }
    }
}

/// Answers every write of a batch, in order, with what its group's commit gave it.
fn answer(batch: Vec<Pending>, outcome: Outcome) {
    match outcome {
        Ok((ingested, booked)) => {
            let (mut ingested, mut booked) = (ingested.into_iter(), booked.into_iter());
            for pending in batch {
                match pending {
                    Pending::Ingest(_, reply) => {
                        let _ = reply.send(ingested.next().unwrap_or(Err(StoreError::Closed)));
                    }
                    Pending::Book(_, _, reply) => {
                        let _ = reply.send(booked.next().ok_or(StoreError::Closed));
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batch.size = batch.len(), "ingest group not stored");
            let message = e.to_string();
            let failed = || StoreError::Database(sqlx::Error::Protocol(message.clone()));
            for pending in batch {
                match pending {
                    Pending::Ingest(_, reply) => {
                        let _ = reply.send(Err(failed()));
                    }
                    Pending::Book(_, _, reply) => {
                        let _ = reply.send(Err(failed()));
                    }
                }
            }
        }
    }
}

/// One group: the deliveries in a few multi-row statements, then each booking in turn (so
/// a booking sees those before it), in one transaction. Each statement is a round trip to
/// SQLite's thread, and under load each waits for a core, so the transaction's `BEGIN` goes
/// with the first statement and its `COMMIT` with the last ([`Ends`]): a group of deliveries is
/// two round trips. A group that fails is rolled back before the connection is used again.
async fn commit_group(
    writer: &mut Writer,
    turn: &Turn,
    batch: &[Pending],
) -> Result<(Vec<Result<Ingested>>, Vec<crate::Booked>)> {
    let _turn = turn.ingest().await;
    let (written, ended) = match writer {
        Writer::Own(conn, _) => in_group(conn, batch).await,
        Writer::Shared(pool) => {
            let mut conn = pool.acquire().await?;
            let (written, ended) = in_group(&mut conn, batch).await;
            if !ended {
                conn.close_on_drop();
            }
            (written, true)
        }
    };
    if !ended && let Writer::Own(conn, options) = writer {
        // A transaction that would not end must not greet the next group: a new connection.
        *conn = options.connect().await?;
    }
    written
}

/// A group written on `conn`, and whether its transaction ended (committed, or rolled back
/// after a failure).
async fn in_group(
    conn: &mut SqliteConnection,
    batch: &[Pending],
) -> (Result<(Vec<Result<Ingested>>, Vec<crate::Booked>)>, bool) {
    let written = write_group(conn, batch).await;
    let ended = written.is_ok() || sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok();
    (written, ended)
}

async fn write_group(
    conn: &mut SqliteConnection,
    batch: &[Pending],
) -> Result<(Vec<Result<Ingested>>, Vec<crate::Booked>)> {
    let deliveries: Vec<&Packed> = batch
        .iter()
        .filter_map(|p| match p {
            Pending::Ingest(d, _) => Some(d),
            Pending::Book(..) => None,
        })
        .collect();
    let bookings = batch.len() - deliveries.len();
    // The deliveries' last statement carries the `COMMIT` only when no booking follows them.
    let mut ends = Ends { begin: true, commit: bookings == 0 };
    let ingested = commit_batch(conn, &deliveries, &mut ends).await?;
    // What the deliveries' statements did not carry (a group of bookings only has none).
    if std::mem::take(&mut ends.begin) {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    let mut booked = Vec::with_capacity(bookings);
    for pending in batch {
        if let Pending::Book(booking, delivery, _) = pending {
            booked.push(book_in(conn, booking, delivery).await?);
        }
    }
    if bookings > 0 || ends.commit {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    }
    Ok((ingested, booked))
}

/// Caller index keys per transaction in [`CallerIndex::remember_contacts`].
const REMEMBER_PART: usize = 500;

/// Rows per multi-row INSERT (SQLite allows 32,766 bound values; six per row here).
const ROWS_PER_STATEMENT: usize = 256;

/// What the statements a transaction sends still owe it: `BEGIN IMMEDIATE` goes ahead of the
/// first and `COMMIT` after the last, in the same round trip (SQLite runs a string's
/// statements in turn and stops at the first that fails, so a `COMMIT` after a statement that
/// failed never runs). What no statement carried, the transaction's owner sends on its own.
struct Ends {
    begin: bool,
    commit: bool,
}

impl Ends {
    /// Within a transaction begun and ended by the caller.
    fn inside() -> Ends {
        Ends { begin: false, commit: false }
    }

    /// `sql` with the `BEGIN` still owed, and with the `COMMIT` still owed when it is the last.
    fn around(&mut self, sql: String, last: bool) -> String {
        let begin = if std::mem::take(&mut self.begin) { "BEGIN IMMEDIATE; " } else { "" };
        let commit = if last && std::mem::take(&mut self.commit) { "; COMMIT" } else { "" };
        format!("{begin}{sql}{commit}")
    }
}

/// Writes a batch with a few multi-row statements, not two per delivery (the statements cross
/// to SQLite's thread one by one, so fewer is faster); which delivery is stored and which
/// answers as a duplicate is [`Group`]'s rule. Its statements carry what `ends` owes.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &[&Packed],
    ends: &mut Ends,
) -> Result<Vec<Result<Ingested>>> {
    use std::collections::HashMap;
    let group = Group::new(batch);
    let mut new_ids: HashMap<Key, i64> = HashMap::new();
    let row = format!("(?, ?, ?, ?, ?, '{}', ?)", crate::body::LZ4);
    for chunk in group.candidates().chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO inbox (portal, source, idempotency_key, received_at, raw_body, raw_codec, event) VALUES {}
             ON CONFLICT (portal, idempotency_key) DO NOTHING RETURNING id, portal, idempotency_key",
            vec![row.as_str(); chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(ends.around(sql, false)));
        for d in chunk {
            q = q
                .bind(d.portal.as_str())
                .bind(&d.source)
                .bind(d.idempotency_key.as_str())
                .bind(d.received_at_ms)
                .bind(&d.raw_body)
                .bind(&d.event_json);
        }
        for row in q.fetch_all(&mut *conn).await? {
            new_ids.insert((row.try_get("portal")?, row.try_get("idempotency_key")?), row.try_get("id")?);
        }
    }
    let queued = group.queued(&new_ids);
    for (d, id) in queued.coalescing {
        enqueue_coalesced(conn, d, id).await?;
    }
    let seen_before = group.seen_before(&new_ids);
    let (jobs, seen) = (queued.jobs.chunks(ROWS_PER_STATEMENT), seen_before.chunks(ROWS_PER_STATEMENT));
    // The `COMMIT` rides on the last statement: the last look-up of earlier deliveries, or the
    // last insert of jobs when there is none.
    let (last_job, last_seen) = (jobs.len(), seen.len());
    for (i, chunk) in jobs.enumerate() {
        let sql = format!(
            "INSERT INTO jobs (inbox_id, portal, kind, caller_key, run_at, created_at, updated_at) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(ends.around(sql, last_seen == 0 && i + 1 == last_job)));
        for (d, id) in chunk {
            let at = d.received_at_ms;
            q = q
                .bind(*id)
                .bind(d.portal.as_str())
                .bind(d.job_kind.unwrap_or_default())
                .bind(&d.caller_key)
                .bind(at)
                .bind(at)
                .bind(at);
        }
        q.execute(&mut *conn).await?;
    }
    let mut old_ids: HashMap<Key, i64> = HashMap::new();
    for (i, chunk) in seen.enumerate() {
        let sql = format!(
            "SELECT id, portal, idempotency_key FROM inbox WHERE (portal, idempotency_key) IN (VALUES {})",
            vec!["(?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(ends.around(sql, i + 1 == last_seen)));
        for (portal, key) in chunk {
            q = q.bind(portal.as_str()).bind(key.as_str());
        }
        for row in q.fetch_all(&mut *conn).await? {
            old_ids.insert((row.try_get("portal")?, row.try_get("idempotency_key")?), row.try_get("id")?);
        }
    }
    Ok(group.answers(&new_ids, &old_ids))
}

/// A queued job `j` is its caller's next to run: nothing of the caller's runs, and no job of
/// theirs queued before it waits.
const CALLERS_NEXT: &str = "NOT EXISTS (SELECT 1 FROM jobs r WHERE r.portal = j.portal AND r.caller_key = j.caller_key AND r.status = 'running')
    AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.portal = j.portal AND e.caller_key = j.caller_key AND e.status = 'queued' AND e.id < j.id)";

/// A queued job `j` may join the round of `?1`, the worker running its caller's job: it is
/// behind no job of the caller's that waits for a retry (`?3` now).
const BEHIND_WORKERS: &str = "EXISTS (SELECT 1 FROM jobs r WHERE r.portal = j.portal AND r.caller_key = j.caller_key AND r.status = 'running' AND r.locked_by = ?1)
    AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.portal = j.portal AND e.caller_key = j.caller_key AND e.status = 'queued' AND e.run_at > ?3 AND e.id < j.id)";

/// Jobs claimed by id per write transaction: each part holds SQLite's writer for a few
/// milliseconds, so a group commit of acknowledgements waits at most that long behind a claim.
const CLAIM_PART: usize = 250;

impl SqliteStore {
    /// Claims the jobs `ids` (found by a read, off the writer) for `worker`, each only if it
    /// is still queued, due and `still` holds for it (another loop may have claimed it since
    /// the read, a job may have come back to the queue ahead of it), in parts of
    /// [`CLAIM_PART`]. A part that fails after others committed ends the claim with what they
    /// took; their jobs are this worker's to run.
    async fn claim_ids(
        &self,
        worker: &str,
        lease: Duration,
        now: i64,
        ids: &[i64],
        still: &str,
    ) -> Result<Vec<SqliteRow>> {
        // `?1` worker, `?2` lease end, `?3` now, `?4` the part's ids; the columns returned are
        // those [`crate::rows::jobs`] reads. The `+` keeps SQLite on the ids: without it, it
        // walks every due queued job and tests each against the list.
        let sql = format!(
            "UPDATE jobs SET status = 'running', claims = claims + 1, locked_by = ?1, lease_until = ?2, updated_at = ?3
             WHERE id IN (SELECT j.id FROM jobs j
                          WHERE j.id IN (SELECT value FROM json_each(?4)) AND +j.status = 'queued' AND +j.run_at <= ?3 AND {still})
             RETURNING id, inbox_id, portal, kind, caller_key, attempts, claims"
        );
        let mut rows = Vec::new();
        for part in ids.chunks(CLAIM_PART) {
            let claimed = async {
                let mut tx = self.bookkeeping().await?;
                let claimed = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(worker)
                    .bind(now + lease.as_millis() as i64)
                    .bind(now)
                    .bind(serde_json::to_string(part).unwrap_or_default())
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, StoreError>(claimed)
            }
            .await;
            match claimed {
                Ok(claimed) => rows.extend(claimed),
                Err(e) if rows.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, claimed = rows.len(), "a claim stopped part-way; running what it took");
                    break;
                }
            }
        }
        Ok(rows)
    }

    /// Claims the due jobs queued behind `callers` (portal, caller key) whose running jobs
    /// `worker` holds, in order and behind no job that waits for a retry, up to `max`: a
    /// claim's callers bring their next jobs, and a running round takes the calls that
    /// arrived since. Found with a read, claimed by id.
    async fn claim_behind(
        &self,
        worker: &str,
        lease: Duration,
        now: i64,
        callers: &[(&str, &str)],
        max: usize,
    ) -> Result<Vec<SqliteRow>> {
        // `+j.run_at`: the callers' jobs are found through the caller index, one lookup per
        // caller; without it SQLite walks every due queued job and tests each against the list.
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT j.id FROM jobs j
             WHERE j.status = 'queued' AND +j.run_at <= ?3
               AND (j.portal, j.caller_key) IN
                   (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))
               AND {BEHIND_WORKERS}
             ORDER BY j.id LIMIT ?4"
        )))
        .bind(worker)
        .bind(serde_json::to_string(callers).unwrap_or_default())
        .bind(now)
        .bind(max as i64)
        .fetch_all(&self.pool)
        .await?;
        self.claim_ids(worker, lease, now, &ids, BEHIND_WORKERS).await
    }

    /// Claimed jobs with their events, read after the claim commits, off the writer: a running
    /// job's delivery does not change (a replay rewrites only one not running, an erase waits
    /// for it).
    async fn with_events(&self, rows: Vec<SqliteRow>) -> Result<Vec<Job>> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.try_get("inbox_id")).collect::<std::result::Result<_, _>>()?;
        let inbox = sqlx::query(
            "SELECT id, source, idempotency_key, event FROM inbox WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        crate::rows::jobs(&rows, &inbox)
    }
}

#[async_trait]
impl Queue for SqliteStore {
    async fn ingest(&self, delivery: NewDelivery) -> Result<Ingested> {
        let (tx, rx) = oneshot::channel();
        self.ingest_tx.send(Pending::Ingest(Packed::new(delivery), tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn job_status(&self, inbox_id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT status FROM jobs WHERE inbox_id = ?")
            .bind(inbox_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn caller_events(&self, portal: &PortalId, caller_keys: &[String], limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT i.event FROM jobs j JOIN inbox i ON i.id = j.inbox_id
             WHERE j.portal = ? AND j.caller_key IN (SELECT value FROM json_each(?)) ORDER BY j.id DESC LIMIT ?",
        )
        .bind(portal.as_str())
        .bind(serde_json::to_string(caller_keys).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn claim_many(&self, worker: &str, lease: Duration, max: usize) -> Result<Vec<Job>> {
        let claiming = self.claiming.lock().await;
        let now = now_ms();
        // Leases that ran out belong to workers that died: their jobs are queued again. Looked
        // for with a read first, so a claim writes for them only when there are some.
        let expired: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND lease_until < ?)")
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        if expired {
            let mut tx = self.bookkeeping().await?;
            sqlx::query("UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, updated_at = ? WHERE status = 'running' AND lease_until < ?")
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        // What to claim is looked for with a read, off the writer: each caller's oldest job, if
        // nothing of theirs runs. Over a long queue whose callers mostly run, that scan is the
        // claim's cost, and acknowledgements never wait behind it.
        let candidates: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.run_at <= ?1 AND {CALLERS_NEXT}
             ORDER BY j.run_at, j.id LIMIT ?2"
        )))
        .bind(now)
        .bind(max as i64)
        .fetch_all(&self.pool)
        .await?;
        if candidates.is_empty() {
            return Ok(vec![]);
        }
        let mut rows = self.claim_ids(worker, lease, now, &candidates, CALLERS_NEXT).await?;
        // The callers' next jobs come along (up to `max` more), so a batch lands a caller's
        // calls together, in order.
        if max > 1 && !rows.is_empty() {
            let callers: Vec<(&str, &str)> = rows
                .iter()
                .map(|r| Ok((r.try_get("portal")?, r.try_get("caller_key")?)))
                .collect::<std::result::Result<_, sqlx::Error>>()?;
            // The callers' first jobs are claimed already: a failure here leaves their next ones
            // queued for a later claim rather than losing the round.
            match self.claim_behind(worker, lease, now, &callers, max).await {
                Ok(behind) => rows.extend(behind),
                Err(e) => tracing::warn!(error = %e, "claiming the jobs behind a claim's callers failed; they wait"),
            }
        }
        drop(claiming);
        self.with_events(rows).await
    }

    async fn claim_followers(
        &self,
        worker: &str,
        lease: Duration,
        portal: &PortalId,
        caller_keys: &[String],
        max: usize,
    ) -> Result<Vec<Job>> {
        let callers: Vec<(&str, &str)> = caller_keys.iter().map(|k| (portal.as_str(), k.as_str())).collect();
        let rows = self.claim_behind(worker, lease, now_ms(), &callers, max).await?;
        self.with_events(rows).await
    }

    async fn renew_many(&self, job_ids: &[i64], worker: &str, lease: Duration) -> Result<Vec<i64>> {
        let mut tx = self.bookkeeping().await?;
        let now = now_ms();
        let held = sqlx::query_scalar(
            "UPDATE jobs SET lease_until = ?, updated_at = ?
             WHERE id IN (SELECT value FROM json_each(?)) AND locked_by = ? AND status = 'running' RETURNING id",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(serde_json::to_string(job_ids).unwrap_or_default())
        .bind(worker)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held)
    }

    async fn release(&self, workers: &[String]) -> Result<u64> {
        let mut tx = self.bookkeeping().await?;
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, run_at = MIN(run_at, ?1), updated_at = ?1
             WHERE status = 'running' AND locked_by IN (SELECT value FROM json_each(?2))",
        )
        .bind(now)
        .bind(serde_json::to_string(workers).unwrap_or_default())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn defer(&self, job_ids: &[i64], run_at: i64) -> Result<()> {
        let mut tx = self.bookkeeping().await?;
        sqlx::query(
            "UPDATE jobs SET status = 'queued', locked_by = NULL, lease_until = NULL, run_at = ?1, claims = MAX(claims - 1, 0), updated_at = ?2
             WHERE id IN (SELECT value FROM json_each(?3)) AND status = 'running'",
        )
        .bind(run_at)
        .bind(now_ms())
        .bind(serde_json::to_string(job_ids).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn settle(&self, s: &Settlement) -> Result<()> {
        let mut tx = self.bookkeeping().await?;
        record(&mut tx, &s.portal, &s.activities).await?;
        set_last_calls(&mut tx, &s.portal, &s.last_calls).await?;
        done(&mut tx, &s.done).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fail(&self, job_id: i64, kind: &str, error: &str, failure: Failure) -> Result<()> {
        let (status, run_at, retry_at) = match failure {
            Failure::RetryAt(at) => ("queued", at, Some(at)),
            Failure::Dead => ("dead", now_ms(), None),
        };
        let mut tx = self.bookkeeping().await?;
        sqlx::query(
            "UPDATE jobs SET status = ?, run_at = ?, attempts = attempts + 1, last_error = ?, locked_by = NULL, lease_until = NULL, updated_at = ?
             WHERE id = ?",
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
             SELECT inbox_id, attempts, ?, ?, ?, ? FROM jobs WHERE id = ?",
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
        let mut tx = self.write().await?;
        let mut rewritten = 0;
        if let Some(event) = event_json {
            rewritten = sqlx::query(
                "UPDATE inbox SET event = ? WHERE id = ?
                   AND EXISTS (SELECT 1 FROM jobs WHERE inbox_id = inbox.id AND status IN ('queued', 'dead', 'done'))",
            )
            .bind(event)
            .bind(inbox_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        let changed = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = 0, claims = 0, run_at = ?, last_error = NULL, updated_at = ?
             WHERE inbox_id = ? AND status IN ('dead', 'done')",
        )
        .bind(now_ms())
        .bind(now_ms())
        .bind(inbox_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(changed > 0 || rewritten > 0)
    }

    async fn events(&self, status: Option<&str>, limit: i64) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT i.id, i.portal, i.source, i.idempotency_key, i.received_at, j.kind, COALESCE(j.status, CASE WHEN i.coalesced_into IS NULL THEN 'recorded' ELSE 'coalesced' END) AS status,
                    COALESCE(j.attempts, 0) AS attempts, j.last_error
             FROM inbox i LEFT JOIN jobs j ON j.inbox_id = i.id
             WHERE ?1 IS NULL OR COALESCE(j.status, CASE WHEN i.coalesced_into IS NULL THEN 'recorded' ELSE 'coalesced' END) = ?1
             ORDER BY i.id DESC LIMIT ?2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::event).collect()
    }

    async fn event(&self, id: i64) -> Result<Option<EventDetail>> {
        let detail = crate::rows::event_detail_sql!("?1");
        let Some(row) = sqlx::query(detail).bind(id).fetch_optional(&self.pool).await? else { return Ok(None) };
        let attempts = sqlx::query(crate::rows::event_attempts_sql!("?1")).bind(id).fetch_all(&self.pool).await?;
        crate::rows::event_detail(&row, &attempts).map(Some)
    }

    async fn counts(&self) -> Result<JobCounts> {
        crate::rows::job_counts(&self.pool).await
    }

    async fn tally(&self, since_ms: i64) -> Result<crate::Tally> {
        let rows = sqlx::query(crate::rows::tally_sql!("?1")).bind(since_ms).fetch_all(&self.pool).await?;
        crate::rows::tally(&rows)
    }

    async fn next_run_at(&self) -> Result<Option<i64>> {
        crate::rows::next_run_at(&self.pool).await
    }
}

#[async_trait]
impl CallerIndex for SqliteStore {
    async fn contacts_by_key(
        &self,
        portal: &PortalId,
        keys: &[&str],
    ) -> Result<std::collections::HashMap<String, u64>> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT key, contact_id FROM caller_index WHERE portal = ?1 AND key IN (SELECT value FROM json_each(?2))",
        )
        .bind(portal.as_str())
        .bind(serde_json::to_string(keys).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(k, id)| (k, id as u64)).collect())
    }

    async fn remember_contacts(&self, portal: &PortalId, entries: &[(Vec<String>, u64)]) -> Result<()> {
        // A round's callers in parts of a few hundred keys, a statement and a short
        // transaction each, so acknowledgements get the writer between them.
        for part in crate::latest_contact_per_key(entries).chunks(REMEMBER_PART) {
            let mut tx = self.bookkeeping().await?;
            sqlx::query(
                "INSERT INTO caller_index (portal, key, contact_id, updated_at)
                 SELECT ?1, value ->> 0, value ->> 1, ?2 FROM json_each(?3) WHERE true
                 ON CONFLICT (portal, key) DO UPDATE SET contact_id = excluded.contact_id, updated_at = excluded.updated_at",
            )
            .bind(portal.as_str())
            .bind(now_ms())
            .bind(serde_json::to_string(part).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn forget_contact(&self, portal: &PortalId, contact_id: u64) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO forgotten_callers (portal, key, contact_id, forgotten_at)
             SELECT portal, key, contact_id, ?3 FROM caller_index WHERE portal = ?1 AND contact_id = ?2
             ON CONFLICT DO NOTHING",
        )
        .bind(portal.as_str())
        .bind(contact_id as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM caller_index WHERE portal = ? AND contact_id = ?")
            .bind(portal.as_str())
            .bind(contact_id as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn merged_contact(&self, portal: &PortalId, merged: u64, survivor: u64) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE caller_index SET contact_id = ?2 WHERE portal = ?1 AND contact_id = ?3")
            .bind(portal.as_str())
            .bind(survivor as i64)
            .bind(merged as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE activities SET contact_id = ?2 WHERE portal = ?1 AND contact_id = ?3")
            .bind(portal.as_str())
            .bind(survivor as i64)
            .bind(merged as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO contact_sync (portal, contact_id, last_call_at)
             SELECT portal, ?2, last_call_at FROM contact_sync WHERE portal = ?1 AND contact_id = ?3
             ON CONFLICT (portal, contact_id) DO UPDATE SET last_call_at = MAX(contact_sync.last_call_at, excluded.last_call_at)")
            .bind(portal.as_str())
            .bind(survivor as i64)
            .bind(merged as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM contact_sync WHERE portal = ?1 AND contact_id = ?3")
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
        let mut tx = self.write().await?;
        let p = portal.as_str();
        let callers: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM caller_index WHERE portal = ?1 AND contact_id = ?2
             UNION SELECT key FROM forgotten_callers WHERE portal = ?1 AND contact_id = ?2",
        )
        .bind(p)
        .bind(contact_id as i64)
        .fetch_all(&mut *tx)
        .await?;
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE portal = ? AND status = 'running'
             AND caller_key IN (SELECT value FROM json_each(?))",
        )
        .bind(p)
        .bind(serde_json::to_string(&callers).unwrap_or_default())
        .fetch_one(&mut *tx)
        .await?;
        if waiting > 0 {
            return Ok(Erased { waiting: waiting as u64, ..Erased::default() });
        }
        let keys = serde_json::to_string(&callers.iter().chain(extra_keys).collect::<Vec<_>>()).unwrap_or_default();
        let inbox: Vec<i64> = sqlx::query_scalar(
            "SELECT i.id FROM jobs j JOIN inbox i ON i.id = j.inbox_id
             WHERE j.portal = ? AND j.caller_key IN (SELECT value FROM json_each(?)) AND j.status != 'running'
             AND i.received_at <= ?",
        )
        .bind(p)
        .bind(&keys)
        .bind(before_ms)
        .fetch_all(&mut *tx)
        .await?;
        let inbox = serde_json::to_string(&inbox).unwrap_or_default();
        sqlx::query("DELETE FROM job_attempts WHERE inbox_id IN (SELECT value FROM json_each(?))")
            .bind(&inbox)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs WHERE inbox_id IN (SELECT value FROM json_each(?))")
            .bind(&inbox)
            .execute(&mut *tx)
            .await?;
        let deliveries = sqlx::query(
            "DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?1))
             OR coalesced_into IN (SELECT value FROM json_each(?1))",
        )
        .bind(&inbox)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let bookings = sqlx::query(
            "DELETE FROM bookings WHERE portal = ? AND caller_key IN (SELECT value FROM json_each(?)) AND created_at <= ?",
        )
        .bind(p)
        .bind(&keys)
        .bind(before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut removed = [0; 4];
        let statements = [
            "DELETE FROM activities WHERE portal = ? AND contact_id = ?",
            "DELETE FROM contact_sync WHERE portal = ? AND contact_id = ?",
            "DELETE FROM caller_index WHERE portal = ? AND contact_id = ?",
            "DELETE FROM forgotten_callers WHERE portal = ? AND contact_id = ?",
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
impl Activities for SqliteStore {
    async fn last_calls_at(
        &self,
        portal: &PortalId,
        contact_ids: &[u64],
    ) -> Result<std::collections::HashMap<u64, i64>> {
        if contact_ids.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT contact_id, last_call_at FROM contact_sync
             WHERE portal = ?1 AND contact_id IN (SELECT value FROM json_each(?2))",
        )
        .bind(portal.as_str())
        .bind(serde_json::to_string(contact_ids).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(c, at)| (c as u64, at)).collect())
    }

    async fn activities_by_key(&self, portal: &PortalId, keys: &[(&str, &str, &str)]) -> Result<ActivitiesByKey> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        // `CROSS JOIN` keeps the keys outside: each is one look-up in the primary key.
        let rows = sqlx::query(
            "SELECT a.source, a.external_key, a.kind, a.hubspot_id, a.contact_id, a.via, a.stage
             FROM json_each(?2) AS k CROSS JOIN activities AS a
             WHERE a.portal = ?1 AND a.source = k.value ->> 0 AND a.external_key = k.value ->> 1
               AND a.kind = k.value ->> 2",
        )
        .bind(portal.as_str())
        .bind(serde_json::to_string(keys).unwrap_or_default())
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
impl Credentials for SqliteStore {
    async fn load_tokens(&self, portal: &PortalId) -> Result<Option<StoredTokens>> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, expires_at, hub_id, scopes FROM oauth_tokens WHERE portal = ?",
        )
        .bind(portal.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::tokens).transpose()
    }

    async fn save_tokens(&self, portal: &PortalId, t: &StoredTokens) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO oauth_tokens (portal, access_token, refresh_token, expires_at, hub_id, scopes) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (portal) DO UPDATE SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
               expires_at = excluded.expires_at, hub_id = excluded.hub_id, scopes = excluded.scopes",
        )
        .bind(portal.as_str())
        .bind(&t.access_token)
        .bind(&t.refresh_token)
        .bind(t.expires_at_ms)
        .bind(t.hub_id.map(|h| h as i64))
        .bind(t.scopes.join(" "))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_session(&self, portal: &PortalId, source: &str) -> Result<Option<SourceSession>> {
        let row =
            sqlx::query("SELECT token, expires_at, logged_in_at FROM source_sessions WHERE portal = ? AND source = ?")
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
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO source_sessions (portal, source, token, expires_at, logged_in_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (portal, source) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at,
               logged_in_at = excluded.logged_in_at",
        )
        .bind(portal.as_str())
        .bind(source)
        .bind(&session.token)
        .bind(session.expires_at_ms)
        .bind(session.logged_in_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_oauth_state(&self, state: &str, browser: &str, expires_at_ms: i64) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < ?")
            .bind(now_ms() - 86_400_000)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO oauth_states (state, browser, expires_at) VALUES (?, ?, ?)")
            .bind(state)
            .bind(browser)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_oauth_state(&self, state: &str) -> Result<OAuthState> {
        let mut tx = self.write().await?;
        let taken: Option<(String, i64)> = sqlx::query_as(
            "UPDATE oauth_states SET used_at = ? WHERE state = ? AND used_at IS NULL RETURNING browser, expires_at",
        )
        .bind(now_ms())
        .bind(state)
        .fetch_optional(&mut *tx)
        .await?;
        let found = match taken {
            Some((browser, expires_at_ms)) => OAuthState::Issued { browser, expires_at_ms },
            None => {
                let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM oauth_states WHERE state = ?")
                    .bind(state)
                    .fetch_optional(&mut *tx)
                    .await?;
                if known.is_some() { OAuthState::Used } else { OAuthState::Unknown }
            }
        };
        tx.commit().await?;
        Ok(found)
    }
}

#[async_trait]
impl Coordination for SqliteStore {
    async fn try_exclusive(&self, name: &str) -> Result<Option<crate::Exclusive>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(name.to_string()) {
            return Ok(None);
        }
        let (set, name) = (self.held.clone(), name.to_string());
        Ok(Some(crate::Exclusive::new(move || {
            set.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            std::future::ready(())
        })))
    }
}

#[async_trait]
impl crate::Marks for SqliteStore {
    async fn load_mark(&self, portal: &PortalId, source: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT high_water FROM source_marks WHERE portal = ? AND source = ?")
            .bind(portal.as_str())
            .bind(source)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("high_water")))
    }

    async fn advance_mark(&self, portal: &PortalId, source: &str, ms: i64) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO source_marks (portal, source, high_water) VALUES (?, ?, ?)
             ON CONFLICT (portal, source) DO UPDATE SET high_water = MAX(source_marks.high_water, excluded.high_water)",
        )
        .bind(portal.as_str())
        .bind(source)
        .bind(ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Stores one delivery (and its job) inside `tx`: the path of work that must commit with
/// other rows (a booking and its job).
async fn insert_delivery(conn: &mut SqliteConnection, d: &Packed) -> Result<crate::Ingested> {
    commit_batch(conn, &[d], &mut Ends::inside()).await?.pop().unwrap_or(Err(StoreError::Closed))
}

/// A booking, unless one with its key exists or another holds its time; with its delivery.
async fn book_in(tx: &mut SqliteConnection, booking: &crate::Booking, delivery: &Packed) -> Result<crate::Booked> {
    if let Some(existing) = booking_in(tx, &booking.portal, &booking.key).await? {
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
        return Ok(crate::Booked::Taken(taken));
    }
    insert_booking(tx, booking).await?;
    let ingested = insert_delivery(tx, delivery).await?;
    Ok(crate::Booked::New(ingested.inbox_id))
}

/// Enqueues a live update stored as inbox row `id` ([`crate::Coalesce`]): it takes over its
/// call's queued job, or gets one of its own due a window from now.
async fn enqueue_coalesced(tx: &mut SqliteConnection, d: &NewDelivery, id: i64) -> Result<()> {
    let (Some(kind), Some(c)) = (d.job_kind, &d.coalesce) else { return Ok(()) };
    // The transaction holds SQLite's write lock: nothing claims the job between these.
    let queued: Option<(i64, i64)> = sqlx::query_as(
        "SELECT id, inbox_id FROM jobs WHERE portal = ? AND coalesce_key = ? AND status = 'queued' LIMIT 1",
    )
    .bind(d.portal.as_str())
    .bind(&c.key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((job, previous)) = queued {
        sqlx::query("UPDATE jobs SET inbox_id = ?, updated_at = ? WHERE id = ?")
            .bind(id)
            .bind(d.received_at_ms)
            .bind(job)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE inbox SET coalesced_into = ? WHERE id = ?")
            .bind(id)
            .bind(previous)
            .execute(&mut *tx)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO jobs (inbox_id, portal, kind, caller_key, coalesce_key, run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(d.portal.as_str())
    .bind(kind)
    .bind(&d.caller_key)
    .bind(&c.key)
    .bind(d.received_at_ms + c.window_ms)
    .bind(d.received_at_ms)
    .bind(d.received_at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// One booking by its key (portal, key).
fn booking_by_key_sql() -> String {
    format!("SELECT {} FROM bookings WHERE portal = ? AND booking_key = ?", crate::bookings::COLUMNS)
}

/// Bookings not cancelled overlapping a range (portal, range end, range start).
fn bookings_overlapping_sql() -> String {
    format!(
        "SELECT {} FROM bookings WHERE portal = ? AND status != 'CANCELED' AND start_ms < ? AND end_ms > ? ORDER BY start_ms",
        crate::bookings::COLUMNS
    )
}

async fn insert_booking(tx: &mut SqliteConnection, b: &crate::Booking) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO bookings (portal, booking_key, source, phone, email, caller_name, meeting_type, notes, start_ms, end_ms, status, history, caller_key, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (portal, booking_key) DO NOTHING",
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
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn booking_in(tx: &mut SqliteConnection, portal: &PortalId, key: &str) -> Result<Option<crate::Booking>> {
    let sql = booking_by_key_sql();
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(portal.as_str()).bind(key).fetch_optional(&mut *tx).await?;
    row.as_ref().map(crate::bookings::from_row).transpose()
}

#[async_trait]
impl crate::Bookings for SqliteStore {
    async fn book(&self, booking: &crate::Booking, delivery: NewDelivery) -> Result<crate::Booked> {
        // Through the group commit: agents booking at once share one fsync.
        let (tx, rx) = oneshot::channel();
        self.ingest_tx
            .send(Pending::Book(Box::new(booking.clone()), Packed::new(delivery), tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn record_booking(&self, booking: &crate::Booking) -> Result<()> {
        let mut tx = self.write().await?;
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
            "SELECT {} FROM bookings WHERE portal = ? AND status != 'CANCELED' AND end_ms > ? AND (phone = ? OR email = ?) ORDER BY start_ms",
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
        let mut tx = self.write().await?;
        let Some(mut booking) = booking_in(&mut tx, portal, key).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        if !insert_delivery(&mut tx, &delivery).await?.duplicate {
            booking.start_ms = change.start_ms;
            booking.end_ms = change.end_ms;
            booking.status = change.status;
            booking.history.push(change.line.clone());
            sqlx::query("UPDATE bookings SET start_ms = ?, end_ms = ?, status = ?, history = ?, updated_at = ? WHERE portal = ? AND booking_key = ?")
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
        Ok(Some(booking))
    }
}

#[async_trait]
impl crate::DedupRuns for SqliteStore {
    async fn start_dedup_run(&self, portal: &PortalId, options: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO dedup_runs (portal, options, status, started_at) VALUES (?, ?, 'running', ?) RETURNING id",
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
        let mut tx = self.write().await?;
        sqlx::query("UPDATE dedup_runs SET status = ?, report = ?, error = ?, finished_at = ? WHERE id = ?")
            .bind(status)
            .bind(report)
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn dedup_run(&self, id: i64) -> Result<Option<crate::DedupRun>> {
        let row = sqlx::query(
            "SELECT id, portal, options, status, report, error, started_at, finished_at FROM dedup_runs WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::dedup_run).transpose()
    }

    async fn dedup_runs(&self, limit: i64) -> Result<Vec<crate::DedupRun>> {
        let rows = sqlx::query(
            "SELECT id, portal, options, status, report, error, started_at, finished_at FROM dedup_runs ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::dedup_run).collect()
    }
}

#[async_trait]
impl crate::Rejections for SqliteStore {
    async fn record_rejection(&self, r: &crate::Rejection, keep: i64) -> Result<()> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rejections (portal, route, reason, detail, status, size, peer, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            sqlx::query("DELETE FROM rejections WHERE id <= ?").bind(id - keep).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn rejections(&self, limit: i64) -> Result<Vec<crate::Rejection>> {
        let rows = sqlx::query(
            "SELECT id, portal, route, reason, detail, status, size, peer, at FROM rejections ORDER BY id DESC LIMIT ?",
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

    /// Runs the spawned tasks on this thread until each waits.
    async fn let_them_queue() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_group_commit_writes_next_after_the_write_under_way_before_every_other_writer_waiting() {
        let turn = Arc::new(Turn::default());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let under_way = turn.other().await;
        let mut waiting = Vec::new();
        for who in ["worker 1", "worker 2"] {
            let (turn, order) = (turn.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = turn.other().await;
                order.lock().unwrap().push(who);
            }));
            let_them_queue().await;
        }
        let (ingest_turn, ingest_order) = (turn.clone(), order.clone());
        waiting.push(tokio::spawn(async move {
            let _turn = ingest_turn.ingest().await;
            ingest_order.lock().unwrap().push("group commit");
        }));
        let_them_queue().await;
        drop(under_way);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["group commit", "worker 1", "worker 2"]);
    }

    #[tokio::test]
    async fn an_acknowledgement_waits_for_the_wals_sync_and_the_workers_bookkeeping_is_synced_with_it() {
        let path = std::env::temp_dir().join(format!("callbridge-sync-{:x}.db", fastrand::u64(..)));
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
        let synchronous = async |pool: &SqlitePool| -> i64 {
            sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap()
        };
        // 2 is FULL (the WAL is synced at each commit), 1 is NORMAL (at the next sync).
        assert_eq!(synchronous(&store.pool).await, 2);
        assert_eq!(synchronous(&store.bookkeeping).await, 1);
        let delivery = |key: &str| crate::test_delivery(PortalId::default().as_str(), key);
        store.ingest(delivery("synced")).await.unwrap();
        // The ingest writer's commits do not sync; with the WAL gone from its directory there
        // is nothing to sync, and the delivery is not acknowledged.
        std::fs::remove_file(format!("{}-wal", path.display())).unwrap();
        let unsynced = store.ingest(delivery("unsynced")).await;
        assert!(matches!(unsynced, Err(StoreError::Database(_))), "{unsynced:?}");
    }

    #[tokio::test]
    async fn a_group_whose_job_cannot_be_written_leaves_no_delivery_behind_and_the_next_group_is_stored() {
        let path = std::env::temp_dir().join(format!("callbridge-rollback-{:x}.db", fastrand::u64(..)));
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
        // The group's `BEGIN` goes with its inbox rows and its `COMMIT` with its jobs: a job
        // refused after the inbox rows were written must take them back with it.
        sqlx::query(
            "CREATE TRIGGER refuse_poisoned BEFORE INSERT ON jobs WHEN NEW.caller_key = 'poisoned'
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let portal = PortalId::default();
        let poisoned =
            NewDelivery { caller_key: "poisoned".into(), ..crate::test_delivery(portal.as_str(), "poisoned") };
        assert!(store.ingest(poisoned).await.is_err());
        let inbox =
            async || -> i64 { sqlx::query_scalar("SELECT COUNT(*) FROM inbox").fetch_one(&store.pool).await.unwrap() };
        assert_eq!(inbox().await, 0);
        let stored = store.ingest(crate::test_delivery(portal.as_str(), "after")).await.unwrap();
        assert!(!stored.duplicate);
        assert_eq!(inbox().await, 1);
        assert_eq!(store.counts().await.unwrap().queued, 1);
    }
}
