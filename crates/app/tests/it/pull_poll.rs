//! Runs of a pulled source against a fake receptionist that pages its calls, checks the
//! session cookie and `Origin`, and throws a 429 and a 500 midway: every call is stored once,
//! a record without an id is rejected and counted, an overlapping re-poll stores nothing new,
//! and a run that stops midway resumes from its mark.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use callbridge::pull::{Credential, ListRequest, Paging, PullSource, SessionConfig, SessionKeeper, Strategy, run};
use callbridge_domain::{DefaultRegion, PortalId};
use callbridge_sources::pulled::{CallMap, TimeFormat};
use callbridge_store::Store;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Notify;

const ORIGIN: &str = "https://ai.receptionist.example";
const TOKEN: &str = "session-token";
const NOW_MS: i64 = 1_780_000_000_000;
const CALLS: usize = 25;
const PAGE: usize = 10;

#[derive(Default)]
pub(crate) struct Fake {
    requests: AtomicU64,
    /// Page numbers asked for, in order.
    pages: parking_lot::Mutex<Vec<u64>>,
    throttled: AtomicBool,
    failed_once: AtomicBool,
    /// Page 2 always fails while set.
    page_two_down: AtomicBool,
    /// Each answer waits this long.
    delay_ms: AtomicU64,
}

/// The receptionist's calls, oldest first, one a minute before `NOW_MS`, and one record
/// without an id.
fn all_calls() -> Vec<Value> {
    let mut calls: Vec<Value> = (0..CALLS)
        .map(|i| {
            let started = callbridge_domain::time::iso_ms(NOW_MS - (CALLS - i) as i64 * 60_000);
            json!({"id": format!("gc-{i}"), "started_at": started, "caller": {"phone": format!("(571) 830-{:04}", 8500 + i)},
                   "summary": "Asked about a quote", "qa": [{"question": "Address", "answer": format!("{i} Elm St")}]})
        })
        .collect();
    calls.insert(12, json!({"started_at": callbridge_domain::time::iso_ms(NOW_MS - 60_000), "summary": "no id"}));
    calls
}

async fn calls(State(fake): State<Arc<Fake>>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(fake.delay_ms.load(Ordering::SeqCst))).await;
    let cookie_ok = headers.get("cookie").and_then(|v| v.to_str().ok()) == Some(&format!("token={TOKEN}"));
    if !cookie_ok || headers.get("origin").and_then(|v| v.to_str().ok()) != Some(ORIGIN) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let page: u64 = get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let from = get("from").and_then(|f| f.parse::<jiff::Timestamp>().ok()).map(|t| t.as_millisecond()).unwrap();
    fake.pages.lock().push(page);
    if page == 2 && (fake.page_two_down.load(Ordering::SeqCst) || !fake.throttled.swap(true, Ordering::SeqCst)) {
        return if fake.page_two_down.load(Ordering::SeqCst) {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response()
        };
    }
    if page == 3 && !fake.failed_once.swap(true, Ordering::SeqCst) {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    let in_window: Vec<Value> = all_calls()
        .into_iter()
        .filter(|c| {
            let at = c["started_at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_millisecond();
            at >= from
        })
        .collect();
    let start = ((page - 1) as usize * PAGE).min(in_window.len());
    let end = (start + PAGE).min(in_window.len());
    Json(json!({"data": {"calls": in_window[start..end]}, "total": in_window.len()})).into_response()
}

pub(crate) async fn fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new().route("/v0/calls", get(calls)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, fake)
}

fn source(base: &str, store: Arc<dyn Store>) -> PullSource {
    let session = SessionConfig {
        source: "receptionist".into(),
        portal: PortalId::default(),
        base_url: base.to_string(),
        origin: Some(ORIGIN.into()),
        strategy: Strategy::Static(SecretString::from(TOKEN)),
        send_as: Credential::Cookie("token".into()),
        refresh_window: Duration::from_secs(7 * 86_400),
        cooldown: Duration::from_secs(3600),
    };
    let path = |p: &str| Some(p.to_string());
    PullSource {
        name: "receptionist".into(),
        portal: PortalId::default(),
        base_url: base.to_string(),
        list: ListRequest {
            post: false,
            path: "/v0/calls".into(),
            start_param: "from".into(),
            end_param: Some("to".into()),
            time_format: TimeFormat::Rfc3339,
            paging: Paging::Page { param: "page".into(), first: 1 },
            page_size: Some(("limit".into(), PAGE as u64)),
            records: "data.calls".into(),
        },
        map: CallMap {
            id: "id".into(),
            started_at: "started_at".into(),
            time_format: TimeFormat::Rfc3339,
            caller_phone: path("caller.phone"),
            caller_name: None,
            email: None,
            duration: None,
            direction: None,
            our_number: None,
            summary: path("summary"),
            transcript: None,
            turn_speaker: None,
            turn_text: None,
            recording_url: None,
            outcome: None,
            answers: path("qa"),
            question: path("question"),
            answer: path("answer"),
        },
        overlap: Duration::from_secs(3600),
        first_window: Duration::from_secs(2 * 3600),
        max_records: 100,
        tries: 4,
        session: SessionKeeper::new(session, reqwest::Client::new(), store),
    }
}

#[tokio::test]
async fn a_run_reads_every_page_through_a_429_and_a_500_and_stores_each_call_once() {
    let (base, fake) = fake().await;
    let store = crate::helpers::fresh_store().await;
    let source = source(&base, store.clone());
    let wake = Notify::new();
    let report = run(&source, &store, &wake, DefaultRegion::default(), NOW_MS).await.unwrap();
    assert_eq!((report.pages, report.seen, report.new, report.rejected), (3, 26, 25, 1), "{report:?}");
    assert_eq!(report.failed, None);
    assert_eq!(*fake.pages.lock(), vec![1, 2, 2, 3, 3], "each page once more after its 429 or 500, none skipped");
    assert_eq!(store.counts().await.unwrap().queued, 25, "one job per call");
    let recorded = store.events(Some("recorded"), 10).await.unwrap();
    assert_eq!(recorded.len(), 1, "the record without an id is kept where an operator sees it");

    // The next run overlaps the last: it sees the same calls and stores nothing new.
    let again = run(&source, &store, &wake, DefaultRegion::default(), NOW_MS + 300_000).await.unwrap();
    assert_eq!((again.new, again.known), (0, 26), "{again:?}");
    assert_eq!(store.counts().await.unwrap().queued, 25);
}

#[tokio::test]
async fn a_run_that_stops_midway_resumes_from_its_mark_and_skips_nothing() {
    let (base, fake) = fake().await;
    fake.page_two_down.store(true, Ordering::SeqCst);
    let store = crate::helpers::fresh_store().await;
    let source = source(&base, store.clone());
    let wake = Notify::new();
    let first = run(&source, &store, &wake, DefaultRegion::default(), NOW_MS).await.unwrap();
    assert_eq!((first.pages, first.new), (1, 10), "{first:?}");
    assert!(first.failed.as_deref().is_some_and(|f| f.contains("failed 4 times")), "{first:?}");
    let mark = store.load_mark(&PortalId::default(), "receptionist").await.unwrap().unwrap();
    assert_eq!(mark, NOW_MS - 16 * 60_000, "the mark is the newest call of the stored page");

    fake.page_two_down.store(false, Ordering::SeqCst);
    let second = run(&source, &store, &wake, DefaultRegion::default(), NOW_MS + 60_000).await.unwrap();
    assert_eq!(second.failed, None, "{second:?}");
    assert_eq!(
        store.counts().await.unwrap().queued,
        25,
        "every call once: the resumed run overlapped, it skipped none"
    );
}

#[tokio::test]
async fn a_configured_source_is_polled_at_start_lands_in_hubspot_once_and_answers_sync_now() {
    let (base, _fake) = fake().await;
    let mut resolved = resolved(&base);
    resolved.map.summary = Some("summary".into());
    (resolved.map.answers, resolved.map.question, resolved.map.answer) =
        (Some("qa".into()), Some("question".into()), Some("answer".into()));
    let app = crate::helpers::TestApp::start_with(callbridge_sandbox::SandboxConfig::default(), |c| {
        c.pull_sources = vec![resolved];
    })
    .await;
    app.settle().await;
    let wait = std::time::Instant::now();
    while app.records("calls").len() < CALLS && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.settle().await;
    }
    let calls = app.records("calls");
    assert_eq!(calls.len(), CALLS, "every polled call lands once");
    let body = crate::helpers::prop(&calls[0], "hs_call_body").unwrap_or_default().to_string();
    assert!(body.contains("<strong>Address:</strong>"), "the receptionist's answers are in the body: {body}");

    // The run's outcome is recorded as it returns, which may be just after its calls landed.
    let mut health = app.health().await;
    let wait = std::time::Instant::now();
    while !health["sources"][0]["last_success_at_ms"].is_i64() && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        health = app.health().await;
    }
    assert_eq!(health["sources"][0]["source"], "receptionist", "{health}");
    assert!(health["sources"][0]["last_success_at_ms"].is_i64(), "{health}");

    let r = app
        .http
        .post(format!("{}/sync-now?source=receptionist", app.base))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["report"]["new"], 0, "a re-poll lands nothing new: {report}");
    app.settle().await;
    assert_eq!(app.records("calls").len(), CALLS);
    let (status, tokens) = app.admin_get("/token/status").await;
    assert_eq!(status, 200);
    assert_eq!(tokens["sources"][0]["strategy"], "static_token");
    assert!(!tokens.to_string().contains(TOKEN), "the status never shows the token");
    app.stop().await;
}

pub(crate) fn resolved(base: &str) -> callbridge::pull::settings::Resolved {
    let settings: callbridge::pull::settings::PullSettings = toml::from_str(&settings_toml(base)).unwrap();
    let vars = std::collections::HashMap::from([("RECEPTIONIST_TOKEN".to_string(), TOKEN.to_string())]);
    let mut resolved = settings.resolve("receptionist", &vars).unwrap();
    resolved.first_window = Duration::from_secs(((callbridge_store::now_ms() - NOW_MS) / 1000 + 7200) as u64);
    resolved
}

fn settings_toml(base: &str) -> String {
    format!(
        r#"base_url = "{base}"
           origin = "{ORIGIN}"
           auth.token_env = "RECEPTIONIST_TOKEN"
           auth.send_as = "cookie:token"
           list.path = "/v0/calls"
           list.start_param = "from"
           list.end_param = "to"
           list.page_size_param = "limit"
           list.page_size = {PAGE}
           list.records = "data.calls"
           map.id = "id"
           map.started_at = "started_at"
           map.caller_phone = "caller.phone""#
    )
}

#[tokio::test]
async fn sync_now_during_a_run_waits_for_it_and_answers_its_report() {
    let (base, fake) = fake().await;
    fake.delay_ms.store(150, Ordering::SeqCst);
    let store = crate::helpers::fresh_store().await;
    let runner = Arc::new(callbridge::pull::runner::Runner::new(resolved(&base), store.clone()));
    let wake = Arc::new(Notify::new());
    let scheduled = tokio::spawn({
        let (runner, store, wake) = (runner.clone(), store.clone(), wake.clone());
        async move { runner.run_now(&store, &wake, DefaultRegion::default()).await.unwrap() }
    });
    // Once the scheduled run holds the source, ask for one.
    while fake.requests.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = runner.run_now(&store, &wake, DefaultRegion::default()).await.unwrap();
    let ran = scheduled.await.unwrap();
    assert_eq!(asked, ran, "sync-now answered the report of the run it waited for");
    assert_eq!(asked.new, 25);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 5, "one run's requests, not two");
}

#[tokio::test]
async fn backfill_walks_a_past_window_and_a_second_backfill_stores_nothing_new() {
    let (base, _fake) = fake().await;
    let db = crate::helpers::temp_db();
    let url = crate::helpers::database_url(&db).await;
    drop(callbridge_store::open(&url).await.unwrap());
    let config = std::env::temp_dir().join(format!("callbridge-backfill-{:x}.toml", fastrand::u64(..)));
    std::fs::write(&config, format!("[pull.receptionist]\n{}", settings_toml(&base))).unwrap();
    let since = callbridge_domain::time::iso_ms(NOW_MS - 3 * 3_600_000);
    let until = callbridge_domain::time::iso_ms(NOW_MS + 60_000);
    // The fake answers on this test's runtime: the command is awaited, never blocked on.
    let (config_ref, since_ref, until_ref, url_ref) = (&config, &since, &until, &url);
    let backfill = |replace: bool| async move {
        let (config, since, until, url) = (config_ref, since_ref, until_ref, url_ref);
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "backfill",
                "--source",
                "receptionist",
                "--since",
                since,
                "--until",
                until,
            ])
            .args(replace.then_some("--replace-activities"))
            .env("CALLBRIDGE_DATABASE_URL", url)
            .env("RECEPTIONIST_TOKEN", TOKEN)
            .env("CALLBRIDGE_LOG", "warn")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("the backfill ends").unwrap()
    };
    let first = backfill(false).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["report"]["new"], 25, "{report}");
    assert_eq!(report["report"]["rejected"], 1, "{report}");
    let second = backfill(false).await;
    let report: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!((report["report"]["new"].as_u64(), report["report"]["known"].as_u64()), (Some(0), Some(26)), "{report}");
    assert_eq!(report["report"]["replaced"], 0, "{report}");
    // Asked to replace, the calls' jobs take today's reading of each call (not yet run here).
    let third = backfill(true).await;
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    let report: Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(
        (report["report"]["new"].as_u64(), report["report"]["replaced"].as_u64()),
        (Some(0), Some(25)),
        "{report}"
    );
    let store = callbridge_store::open(&url).await.unwrap();
    assert_eq!(store.counts().await.unwrap().queued, 25, "never a second job");
}

#[tokio::test]
async fn replacing_activities_renders_each_call_again_in_place_and_never_twice() {
    let (base, _fake) = fake().await;
    let app = crate::helpers::TestApp::start_with(callbridge_sandbox::SandboxConfig::default(), |_| {}).await;
    let source = source(&base, app.store.clone());
    let window = |replace| callbridge::pull::Window {
        from_ms: NOW_MS - 3 * 3_600_000,
        to_ms: NOW_MS + 60_000,
        max_records: usize::MAX,
        replace,
    };
    let wake = Notify::new();
    let first =
        callbridge::pull::run_window(&source, &app.store, &wake, DefaultRegion::default(), window(false), &|_| {})
            .await
            .unwrap();
    assert_eq!(first.new, CALLS as u64, "{first:?}");
    assert_eq!((first.earliest_ms, first.latest_ms), (Some(NOW_MS - 25 * 60_000), Some(NOW_MS - 60_000)));
    app.settle().await;
    let calls = app.records("calls");
    assert_eq!(calls.len(), CALLS);
    // An activity as an older release rendered it.
    let id = calls[0]["id"].as_str().unwrap().to_string();
    let rendered = crate::helpers::prop(&calls[0], "hs_call_body").unwrap().to_string();
    let r = app
        .http
        .patch(format!("{}/crm/v3/objects/calls/{id}", app.sandbox.base_url()))
        .bearer_auth(app.sandbox.token())
        .json(&json!({"properties": {"hs_call_body": "an older format"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Without the flag a backfill changes nothing; with it, every known call runs again.
    let plain =
        callbridge::pull::run_window(&source, &app.store, &wake, DefaultRegion::default(), window(false), &|_| {})
            .await
            .unwrap();
    assert_eq!((plain.known, plain.replaced), (CALLS as u64 + 1, 0), "{plain:?}");
    app.settle().await;
    let body = |app: &crate::helpers::TestApp| {
        let calls = app.records("calls");
        let call = calls.iter().find(|c| c["id"] == id.as_str()).cloned().unwrap();
        crate::helpers::prop(&call, "hs_call_body").unwrap().to_string()
    };
    assert_eq!(body(&app), "an older format");
    let replaced =
        callbridge::pull::run_window(&source, &app.store, &wake, DefaultRegion::default(), window(true), &|_| {})
            .await
            .unwrap();
    assert_eq!((replaced.new, replaced.replaced), (0, CALLS as u64), "{replaced:?}");
    app.settle().await;
    assert_eq!(app.records("calls").len(), CALLS, "updated in place: never a second activity");
    assert_eq!(body(&app), rendered, "rendered again in today's format");
    assert_eq!(app.store.activities().await.unwrap().len(), CALLS);
    app.stop().await;
}
