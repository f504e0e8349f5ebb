//! A receptionist platform of our own for the backfill benchmark: it serves a burst's calls as
//! records, oldest first, a page at a time (`?from=&to=&page=&limit=`), behind a static token
//! cookie, and counts the requests it answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use callbridge_sandbox::scenario::Burst;
use serde_json::{Value, json};

pub const TOKEN: &str = "bench-receptionist-token";

pub struct Receptionist {
    records: Vec<(i64, Value)>,
    pub requests: AtomicU64,
}

/// The burst's calls as the receptionist's records, sorted by start.
fn records(b: &Burst) -> Vec<(i64, Value)> {
    let mut out: Vec<(i64, Value)> = b
        .calls
        .iter()
        .map(|call| {
            let caller = &b.callers[call.caller];
            let started = call.ended_at_ms - 95_000;
            let record = json!({"id": call.id, "started_at": started, "duration": 95,
                "caller": {"phone": caller.phone, "email": caller.email, "name": format!("{} {}", caller.first_name, caller.last_name)},
                "summary": "Caller asked to book a visit.",
                "qa": [{"question": "Reason for calling", "answer": "Book a visit"}]});
            (started, record)
        })
        .collect();
    out.sort_by_key(|(at, _)| *at);
    out
}

async fn calls(
    State(r): State<Arc<Receptionist>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    r.requests.fetch_add(1, Ordering::Relaxed);
    if headers.get("cookie").and_then(|v| v.to_str().ok()) != Some(&format!("token={TOKEN}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let get = |k: &str| q.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.parse::<i64>().ok());
    let (from, to) = (get("from").unwrap_or(0), get("to").unwrap_or(i64::MAX));
    let (page, limit) = (get("page").unwrap_or(1).max(1) as usize, get("limit").unwrap_or(100).clamp(1, 500) as usize);
    let lo = r.records.partition_point(|(at, _)| *at < from);
    let hi = r.records.partition_point(|(at, _)| *at <= to);
    let start = (lo + (page - 1) * limit).min(hi);
    let end = (start + limit).min(hi);
    let page: Vec<&Value> = r.records[start..end].iter().map(|(_, v)| v).collect();
    // What a hosted platform costs a page, roughly.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Json(json!({"calls": page})).into_response()
}

/// Serves `b` on a free port: its base URL and the counters.
pub async fn serve(b: &Burst) -> anyhow::Result<(String, Arc<Receptionist>)> {
    let state = Arc::new(Receptionist { records: records(b), requests: AtomicU64::new(0) });
    let app = Router::new().route("/calls", get(calls)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, state))
}

/// The pull source that reads it, as a configuration would declare it.
pub fn source(base: &str) -> anyhow::Result<callbridge::pull::settings::Resolved> {
    let settings: callbridge::pull::settings::PullSettings = toml::from_str(&format!(
        r#"base_url = "{base}"
           auth.token_env = "BENCH_RECEPTIONIST_TOKEN"
           auth.send_as = "cookie:token"
           list.path = "/calls"
           list.start_param = "from"
           list.end_param = "to"
           list.time_format = "epoch_ms"
           list.page_size_param = "limit"
           list.page_size = 100
           list.records = "calls"
           map.id = "id"
           map.started_at = "started_at"
           map.time_format = "epoch_ms"
           map.caller_phone = "caller.phone"
           map.email = "caller.email"
           map.caller_name = "caller.name"
           map.duration = "duration"
           map.summary = "summary"
           map.answers = "qa"
           map.question = "question"
           map.answer = "answer""#
    ))?;
    let vars = std::collections::HashMap::from([("BENCH_RECEPTIONIST_TOKEN".to_string(), TOKEN.to_string())]);
    settings.resolve("receptionist", &vars).map_err(|e| anyhow::anyhow!(e))
}
