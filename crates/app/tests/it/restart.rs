//! Crash safety: the `callbridge` binary killed with SIGKILL while jobs are queued or while a
//! pulled source is being paged, or stopped with SIGTERM while jobs run, then started again on
//! the same database, ends with every event written exactly once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callbridge_sandbox::{Faults, Sandbox, SandboxConfig};
use serde_json::Value;

use crate::helpers::*;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where the callbridge serving on `port` writes its log (every start on that port appends).
fn child_log_path(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("callbridge-test-{}-{port}.log", std::process::id()))
}

/// The last lines the callbridge on `port` logged, for a failure's message.
pub fn child_log(port: u16) -> String {
    let log = std::fs::read_to_string(child_log_path(port)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub fn spawn(sandbox_url: &str, token: &str, database_url: &str, port: u16) -> Child {
    spawn_with(sandbox_url, token, database_url, port, &[])
}

/// `callbridge serve` on `port`, with `extra` settings over the test's.
pub fn spawn_with(sandbox_url: &str, token: &str, database_url: &str, port: u16, extra: &[(&str, &str)]) -> Child {
    serve_command(sandbox_url, token, database_url, port, extra).spawn().expect("start callbridge")
}

/// The command [`spawn_with`] starts, for a drill that adds to it.
fn serve_command(sandbox_url: &str, token: &str, database_url: &str, port: u16, extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    command
        .arg("serve")
        .env("CALLBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CALLBRIDGE_DATABASE_URL", database_url)
        .env("CALLBRIDGE_HUBSPOT_BASE_URL", sandbox_url)
        .env("CALLBRIDGE_HUBSPOT_TOKEN", token)
        .env("CALLBRIDGE_HUBSPOT_TIER", "limit_increase")
        .env("CALLBRIDGE_VAPI_SECRET", VAPI_SECRET)
        .env("CALLBRIDGE_GENERIC_TOKEN", GENERIC_TOKEN)
        .env("CALLBRIDGE_LEASE_SECS", "2")
        .env("CALLBRIDGE_WORKERS", "4")
        .env("CALLBRIDGE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(child_log_path(port)).unwrap());
    for (k, v) in extra {
        command.env(k, v);
    }
    command
}

pub async fn wait_healthy(http: &reqwest::Client, base: &str) -> Value {
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && let Ok(v) = r.json::<Value>().await
        {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "callbridge did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A slow HubSpot sandbox (every request `latency_ms`, limits out of the way) and a database
/// for drills against the real binary.
async fn drill_sandbox(latency_ms: u64) -> (callbridge_sandbox::RunningSandbox, std::path::PathBuf, String) {
    let sandbox = Sandbox::spawn(SandboxConfig {
        tier: callbridge_sandbox::Tier::LimitIncrease,
        faults: Faults { latency_ms, jitter_ms: latency_ms.min(5), ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sandbox.set_ten_second_max(Some(100_000));
    let db = temp_db();
    let url = database_url(&db).await;
    (sandbox, db, url)
}

/// Waits until `/health` counts `done` jobs, within `limit`.
async fn wait_done(http: &reqwest::Client, base: &str, done: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let health = wait_healthy(http, base).await;
        if health["jobs"]["done"] == done {
            return;
        }
        assert!(started.elapsed() < limit, "not all jobs finished: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every call in the sandbox, once each: how many there are.
fn calls_once(sandbox: &callbridge_sandbox::RunningSandbox) -> usize {
    sandbox.with_db(|db| {
        let mut ids: Vec<String> = db
            .live_records(callbridge_sandbox::model::Kind::Call)
            .filter_map(|r| r.get("hs_call_external_id").map(String::from))
            .collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(n, ids.len(), "no call was written twice");
        n
    })
}

#[tokio::test]
async fn a_process_killed_with_500_jobs_queued_ends_with_every_event_written_once() {
    // Slow HubSpot so that the kill lands while work is queued and in flight.
    let (sandbox, db, url) = drill_sandbox(5).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn(&sandbox.base_url(), sandbox.token(), &url, port);
    wait_healthy(&http, &base).await;

    // 500 events from 100 callers, five calls each.
    for i in 0..500 {
        let report = vapi_report(
            &format!("kill-{i}"),
            &format!("+1415555{:04}", 1000 + i % 100),
            &format!("2026-01-06T14:{:02}:{:02}Z", i / 60, i % 60),
        );
        let r = http
            .post(format!("{base}/webhooks/vapi"))
            .header("x-vapi-secret", VAPI_SECRET)
            .json(&report)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Kill once some have landed and most have not.
    let started = Instant::now();
    while sandbox.with_db(|db| db.count(callbridge_sandbox::model::Kind::Call)) < 30 {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let landed_before = sandbox.with_db(|db| db.count(callbridge_sandbox::model::Kind::Call));
    assert!(landed_before < 500, "the kill came too late to test anything ({landed_before} landed)");

    let mut child = spawn(&sandbox.base_url(), sandbox.token(), &url, port);
    wait_done(&http, &base, 500, Duration::from_secs(180)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(calls_once(&sandbox), 500, "calls in HubSpot");
    sandbox.with_db(|db| {
        assert_eq!(db.count(callbridge_sandbox::model::Kind::Contact), 100, "one contact per caller");
    });
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(child_log_path(port));
}

#[tokio::test]
async fn sigterm_with_jobs_running_hands_them_back_and_a_restart_finishes_them_at_once_exactly_once() {
    let (sandbox, db, url) = drill_sandbox(300).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Leases far longer than the test: only the hand-back can make the jobs runnable again. No
    // grace: the rounds running are stopped at once and their jobs handed back.
    let settings = [("CALLBRIDGE_LEASE_SECS", "600"), ("CALLBRIDGE_SHUTDOWN_GRACE_SECS", "0")];
    let mut child = spawn_with(&sandbox.base_url(), sandbox.token(), &url, port, &settings);
    wait_healthy(&http, &base).await;
    for i in 0..200 {
        let report = vapi_report(&format!("term-{i}"), &format!("+1415556{:04}", i), "2026-01-06T14:05:00Z");
        let r = http.post(format!("{base}/webhooks/vapi")).header("x-vapi-secret", VAPI_SECRET).json(&report).send();
        assert_eq!(r.await.unwrap().status(), 200);
    }
    let started = Instant::now();
    loop {
        let health = wait_healthy(&http, &base).await;
        if health["jobs"]["running"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no job started: {health}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = Instant::now();
    let term = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(term.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(stopping.elapsed() < Duration::from_secs(20), "callbridge did not stop within its grace period");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    let store = callbridge_store::open(&url).await.unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.running, 0, "every job held was handed back: {counts:?}\n{}", child_log(port));
    assert!(counts.done < 200, "the stop came too late to test anything: {counts:?}");
    drop(store);

    let mut child = spawn_with(&sandbox.base_url(), sandbox.token(), &url, port, &settings);
    // Well inside a lease: only the hand-back made them runnable.
    wait_done(&http, &base, 200, Duration::from_secs(60)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(calls_once(&sandbox), 200, "every call once");
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(child_log_path(port));
}

/// A receptionist for the pull drill: `PULLED` calls over the last three hours, oldest first,
/// ten a page, each page answered after `PAGE_DELAY_MS`; it notes each request's window start.
#[derive(Default)]
struct Receptionist {
    now_ms: i64,
    requests: std::sync::atomic::AtomicUsize,
    froms: parking_lot::Mutex<Vec<i64>>,
}

const PULLED: usize = 120;
const PULLED_EVERY_MS: i64 = 90_000;
const PAGE_DELAY_MS: u64 = 150;

impl Receptionist {
    fn started_at(&self, i: usize) -> i64 {
        self.now_ms - (PULLED - i) as i64 * PULLED_EVERY_MS
    }
}

async fn receptionist_calls(
    axum::extract::State(r): axum::extract::State<std::sync::Arc<Receptionist>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    r.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let from = q["from"].parse::<jiff::Timestamp>().unwrap().as_millisecond();
    r.froms.lock().push(from);
    tokio::time::sleep(Duration::from_millis(PAGE_DELAY_MS)).await;
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let in_window: Vec<Value> = (0..PULLED)
        .filter(|i| r.started_at(*i) >= from)
        .map(|i| {
            serde_json::json!({"id": format!("pulled-{i}"), "started_at": callbridge_domain::time::iso_ms(r.started_at(i)),
                               "caller": {"phone": format!("(415) 555-{:04}", 3000 + i)}})
        })
        .collect();
    let start = ((page - 1) * 10).min(in_window.len());
    axum::Json(serde_json::json!({"calls": in_window[start..(start + 10).min(in_window.len())]}))
}

#[tokio::test]
async fn a_process_killed_while_paging_a_pulled_source_resumes_from_its_mark_and_lands_every_call_once() {
    use std::sync::atomic::Ordering;
    let receptionist = std::sync::Arc::new(Receptionist { now_ms: callbridge_store::now_ms(), ..Default::default() });
    let app =
        axum::Router::new().route("/v0/calls", axum::routing::get(receptionist_calls)).with_state(receptionist.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receptionist_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = std::env::temp_dir().join(format!("callbridge-pull-drill-{:x}.toml", fastrand::u64(..)));
    std::fs::write(
        &config,
        format!(
            r#"[pull.receptionist]
               base_url = "{receptionist_url}"
               overlap_secs = 600
               first_window_secs = 14400
               auth.token_env = "RECEPTIONIST_TOKEN"
               auth.send_as = "header:authorization"
               list.path = "/v0/calls"
               list.start_param = "from"
               list.page_size_param = "limit"
               list.page_size = 10
               list.records = "calls"
               map.id = "id"
               map.started_at = "started_at"
               map.caller_phone = "caller.phone""#
        ),
    )
    .unwrap();
    let (sandbox, db, url) = drill_sandbox(5).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = || {
        serve_command(&sandbox.base_url(), sandbox.token(), &url, port, &[("RECEPTIONIST_TOKEN", "Bearer t")])
            .arg("--config")
            .arg(&config)
            .spawn()
            .expect("start callbridge")
    };

    // The first run pages the receptionist at start; kill it once some pages are in.
    let mut child = start();
    let started = Instant::now();
    while receptionist.requests.load(Ordering::SeqCst) < 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "no pages asked for\n{}", child_log(port));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pages_before = receptionist.requests.load(Ordering::SeqCst);
    assert!(pages_before < PULLED / 10, "the kill came after the run ended ({pages_before} pages)");
    let store = callbridge_store::open(&url).await.unwrap();
    let mark = store.load_mark(&callbridge_domain::PortalId::default(), "receptionist").await.unwrap();
    let stored_before = store.counts().await.unwrap();
    drop(store);
    let mark = mark.expect("the pages stored before the kill moved the mark");
    assert!(mark >= receptionist.started_at(0) && mark < receptionist.started_at(PULLED - 1), "a mark midway");

    // Started again: the run at start resumes from the mark (less the overlap), not from the
    // first window, and every call lands once.
    let mut child = start();
    wait_done(&http, &base, PULLED as i64, Duration::from_secs(120)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Every request of a run names the run's window start: the first run's, then the resumed one's.
    let froms = receptionist.froms.lock().clone();
    let first_from = froms[0];
    assert!(first_from <= receptionist.started_at(0), "the first run read its first window");
    assert!(froms.contains(&(mark - 600_000)), "the second run starts at the mark less the overlap: {froms:?}");
    assert!(froms.iter().all(|f| *f == first_from || *f == mark - 600_000), "no other window: {froms:?}");
    assert_eq!(calls_once(&sandbox), PULLED, "every pulled call in HubSpot, once ({stored_before:?} stored before)");
    let store = callbridge_store::open(&url).await.unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.done, PULLED as i64, "one job per call: {counts:?}");
    drop(store);
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(child_log_path(port));
}
