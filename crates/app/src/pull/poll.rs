//! One run of a pulled source ([`run`]): the window [mark − overlap, now] is read page by page;
//! each page's records are stored (a call with its job, or a rejected record kept and counted)
//! before the next page is asked for, and the mark — the newest call start stored — is advanced
//! after every page, so a run that stops midway resumes where it stopped and never skips a page.
//! Re-polled calls change nothing (idempotency by source and call id). A 429 waits its
//! `Retry-After`, a 5xx backs off, a 401 logs in once; each page gets a bounded number of tries,
//! then the run stops with what it stored. One run at a time per source, across instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callbridge_domain::{DefaultRegion, IdempotencyKey, PortalId, Source};
use callbridge_sources::Fields;
use callbridge_sources::Parsed;
use callbridge_sources::pulled::{CallMap, TimeFormat, parse_record};
use callbridge_store::Store;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use super::SessionKeeper;

/// How pages follow one another.
#[derive(Debug, Clone)]
pub enum Paging {
    /// The next page's cursor is at `next` in the answer, sent back as `param`.
    Cursor { param: String, next: String },
    /// Pages are numbered from `first`, sent as `param`.
    Page { param: String, first: u64 },
    /// The records already read are skipped with `param`.
    Offset { param: String },
}

/// The list request.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub post: bool,
    /// Relative to the session's base URL.
    pub path: String,
    pub start_param: String,
    pub end_param: Option<String>,
    /// How the window's times are written.
    pub time_format: TimeFormat,
    pub paging: Paging,
    pub page_size: Option<(String, u64)>,
    /// Where the records are in an answer.
    pub records: String,
}

/// A pulled source, as configured.
pub struct PullSource {
    pub name: String,
    pub portal: PortalId,
    pub base_url: String,
    pub list: ListRequest,
    pub map: CallMap,
    pub overlap: Duration,
    /// The window of a first run (no mark yet).
    pub first_window: Duration,
    /// At most this many records a run.
    pub max_records: usize,
    /// Tries per page before the run stops.
    pub tries: u32,
    pub session: SessionKeeper,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RunReport {
    pub pages: u64,
    pub seen: u64,
    pub new: u64,
    pub known: u64,
    pub rejected: u64,
    /// Calls already stored whose activity is rendered again in place (a backfill with
    /// `--replace-activities`).
    pub replaced: u64,
    /// The earliest and the latest call start seen (epoch ms): how far through its window a
    /// run is, whichever way the platform pages.
    pub earliest_ms: Option<i64>,
    pub latest_ms: Option<i64>,
    /// Why the run stopped early, if it did.
    pub failed: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PullError {
    #[error("a run of this source is already going")]
    AlreadyRunning,
    #[error("the store is unavailable: {0}")]
    Store(String),
}

/// The span a run reads, and at most how many records.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    pub max_records: usize,
    /// Calls already stored are read again in today's format and their jobs queued again, so
    /// each activity is updated in place (found by the platform's call id), never doubled.
    pub replace: bool,
}

/// One run over [mark − overlap, now] (a first run: [now − first window, now]).
pub async fn run(
    source: &PullSource,
    store: &Arc<dyn Store>,
    wake: &Notify,
    region: DefaultRegion,
    now_ms: i64,
) -> Result<RunReport, PullError> {
    let mark = store.load_mark(&source.portal, &source.name).await.map_err(store_err)?;
    let from_ms = match mark {
        Some(m) => m - source.overlap.as_millis() as i64,
        None => now_ms - source.first_window.as_millis() as i64,
    };
    let window = Window { from_ms, to_ms: now_ms, max_records: source.max_records, replace: false };
    run_window(source, store, wake, region, window, &|_| {}).await
}

/// One run over `window` (a backfill names its own), telling `progress` after every page.
pub async fn run_window(
    source: &PullSource,
    store: &Arc<dyn Store>,
    wake: &Notify,
    region: DefaultRegion,
    window: Window,
    progress: &(dyn Fn(&RunReport) + Sync),
) -> Result<RunReport, PullError> {
    let lock = format!("pull:{}:{}", source.portal, source.name);
    let Some(exclusive) = store.try_exclusive(&lock).await.map_err(store_err)? else {
        return Err(PullError::AlreadyRunning);
    };
    let outcome = run_held(source, store, wake, region, window, progress).await;
    // Given back before the outcome is told, so a run asked for next can take the source.
    exclusive.release().await;
    outcome
}

/// The run itself, while this instance holds the source.
async fn run_held(
    source: &PullSource,
    store: &Arc<dyn Store>,
    wake: &Notify,
    region: DefaultRegion,
    window: Window,
    progress: &(dyn Fn(&RunReport) + Sync),
) -> Result<RunReport, PullError> {
    let started = Instant::now();
    let (from_ms, now_ms) = (window.from_ms, window.to_ms);
    let platform = Source::named(&source.name);
    let mut report = RunReport::default();
    let mut page = Page::First;
    loop {
        let answer = match fetch(source, &page, from_ms, now_ms, report.seen).await {
            Ok(answer) => answer,
            Err(why) => {
                report.failed = Some(why);
                break;
            }
        };
        report.pages += 1;
        let records = Fields::at(&answer, &source.list.records).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut newest = None;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            report.seen += 1;
            let raw = serde_json::to_vec(record).unwrap_or_default();
            let delivery = match parse_record(record, &source.map, platform, region) {
                Ok(Parsed::Event(event, key)) => {
                    let start = event_start(&event);
                    newest = newest.max(start);
                    report.earliest_ms = match (report.earliest_ms, start) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    report.latest_ms = report.latest_ms.max(start);
                    // A polled record is a call as it stands: nothing live to coalesce.
                    crate::inbox::with_job(source.portal.clone(), &source.name, key, raw, *event, None)
                        .map_err(|e| PullError::Store(e.to_string()))?
                }
                Ok(Parsed::Record { key, .. } | Parsed::Unattached(key)) => {
                    crate::inbox::recorded(source.portal.clone(), &source.name, key, raw)
                }
                Ok(Parsed::Ignored(_)) => continue,
                Err(fields) => {
                    // Kept where an operator can see it, under its content, and counted.
                    report.rejected += 1;
                    let names: Vec<&str> = fields.errors.iter().map(|e| e.field.as_str()).collect();
                    tracing::warn!(source = %source.name, fields = ?names, "a polled record was rejected");
                    let key = IdempotencyKey::of(
                        &source.name,
                        &format!("rejected:{}", callbridge_sources::content_digest(&raw)),
                    );
                    crate::inbox::recorded(source.portal.clone(), &source.name, key, raw)
                }
            };
            deliveries.push(delivery);
        }
        // The page is stored at once: one caller's calls in their order, callers side by side,
        // so the store's group commit takes the page in a few transactions, not one a record.
        let mut by_caller: Vec<Vec<callbridge_store::NewDelivery>> = Vec::new();
        let mut lane: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for d in deliveries {
            let i = *lane.entry(d.caller_key.clone()).or_insert_with(|| {
                by_caller.push(Vec::new());
                by_caller.len() - 1
            });
            by_caller[i].push(d);
        }
        let stored = futures_util::future::join_all(by_caller.into_iter().map(|list| async move {
            let mut outcomes = Vec::with_capacity(list.len());
            for d in list {
                let queued = d.job_kind.is_some();
                let event = (window.replace && queued).then(|| d.event_json.clone());
                let outcome = match store.ingest(d).await {
                    Ok(i) if i.duplicate => match event {
                        Some(event) => {
                            store.replay(i.inbox_id, Some(&event)).await.map(|r| Stored::Known { replaced: r })
                        }
                        None => Ok(Stored::Known { replaced: false }),
                    },
                    Ok(_) => Ok(if queued { Stored::New } else { Stored::Recorded }),
                    Err(e) => Err(e),
                };
                outcomes.push(outcome);
            }
            outcomes
        }))
        .await;
        for outcome in stored.into_iter().flatten() {
            match outcome.map_err(store_err)? {
                Stored::Known { replaced } => {
                    report.known += 1;
                    if replaced {
                        report.replaced += 1;
                        wake.notify_one();
                    }
                }
                Stored::New => {
                    report.new += 1;
                    wake.notify_one();
                }
                Stored::Recorded => {}
            }
        }
        if let Some(ms) = newest {
            store.advance_mark(&source.portal, &source.name, ms).await.map_err(store_err)?;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        progress(&report);
        // A short page is the last one; so is an empty one, or the run's cap.
        let short = source.list.page_size.as_ref().is_some_and(|(_, size)| (records.len() as u64) < *size);
        page = match next_page(&source.list.paging, &page, &answer, records.len()) {
            Some(next) if !records.is_empty() && !short && (report.seen as usize) < window.max_records => next,
            _ => break,
        };
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// What storing one record did.
enum Stored {
    /// A call with its job.
    New,
    /// A record kept without a job (rejected, or not a call).
    Recorded,
    /// Seen before; `replaced` when its job was queued again to render it anew.
    Known { replaced: bool },
}

fn store_err(e: callbridge_store::StoreError) -> PullError {
    PullError::Store(e.to_string())
}

fn event_start(event: &callbridge_domain::Event) -> Option<i64> {
    match event {
        callbridge_domain::Event::Call(c) => Some(c.started_at_ms.unwrap_or(c.occurred_at_ms)),
        callbridge_domain::Event::Booking(_) => None,
    }
}

/// Which page to ask for.
#[derive(Debug, Clone, PartialEq)]
enum Page {
    First,
    Cursor(String),
    Number(u64),
    Offset(u64),
}

fn next_page(paging: &Paging, page: &Page, answer: &Value, got: usize) -> Option<Page> {
    match paging {
        Paging::Cursor { next, .. } => match Fields::at(answer, next)? {
            Value::String(s) if !s.is_empty() => Some(Page::Cursor(s.clone())),
            Value::Number(n) => Some(Page::Cursor(n.to_string())),
            _ => None,
        },
        Paging::Page { first, .. } => Some(Page::Number(match page {
            Page::Number(n) => n + 1,
            _ => first + 1,
        })),
        Paging::Offset { .. } => Some(Page::Offset(match page {
            Page::Offset(n) => n + got as u64,
            _ => got as u64,
        })),
    }
}

fn format_time(ms: i64, format: TimeFormat) -> String {
    match format {
        TimeFormat::Rfc3339 => callbridge_domain::time::iso_ms(ms),
        TimeFormat::EpochSeconds => (ms / 1000).to_string(),
        TimeFormat::EpochMillis => ms.to_string(),
    }
}

/// One page, with its tries: a 429 waits `Retry-After` (at most a minute), a 5xx or a network
/// error backs off, a 401 logs in once.
async fn fetch(source: &PullSource, page: &Page, from_ms: i64, to_ms: i64, seen: u64) -> Result<Value, String> {
    let list = &source.list;
    let mut params: Vec<(String, String)> = vec![(list.start_param.clone(), format_time(from_ms, list.time_format))];
    if let Some(end) = &list.end_param {
        params.push((end.clone(), format_time(to_ms, list.time_format)));
    }
    if let Some((param, size)) = &list.page_size {
        params.push((param.clone(), size.to_string()));
    }
    match (&list.paging, page) {
        (Paging::Cursor { param, .. }, Page::Cursor(c)) => params.push((param.clone(), c.clone())),
        (Paging::Page { param, first }, Page::First) => params.push((param.clone(), first.to_string())),
        (Paging::Page { param, .. }, Page::Number(n)) => params.push((param.clone(), n.to_string())),
        (Paging::Offset { param }, Page::Offset(n)) => params.push((param.clone(), n.to_string())),
        (Paging::Offset { param }, Page::First) => params.push((param.clone(), seen.to_string())),
        _ => {}
    }
    let url = format!("{}{}", source.base_url.trim_end_matches('/'), list.path);
    let http = source.session.http();
    let mut relogged = false;
    let mut backoff = Duration::from_millis(200);
    let mut token = source.session.token(callbridge_store::now_ms()).await.map_err(|e| e.to_string())?;
    for _ in 0..source.tries.max(1) {
        let request = if list.post {
            let body: serde_json::Map<String, Value> =
                params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            http.post(&url).json(&body)
        } else {
            http.get(&url).query(&params)
        };
        let answer = match source.session.authorize(request, &token).send().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(source = %source.name, error = %e.without_url(), "a page could not be fetched");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        match answer.status().as_u16() {
            200..=299 => return answer.json::<Value>().await.map_err(|_| "a page was not JSON".to_string()),
            401 if !relogged => {
                relogged = true;
                token = source.session.rejected(&token, callbridge_store::now_ms()).await.map_err(|e| e.to_string())?;
            }
            429 => {
                let wait = answer
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(backoff)
                    .min(Duration::from_secs(60));
                tokio::time::sleep(wait).await;
            }
            500..=599 => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            status => return Err(format!("the list request answered {status}")),
        }
    }
    Err(format!("a page failed {} times", source.tries.max(1)))
}
