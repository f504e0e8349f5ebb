//! The operators' dashboard at `/ui`, server-rendered from templates compiled into the binary
//! (`templates/`, askama), usable without JavaScript: an overview (ingest rate, queue, what
//! landed and died today, each portal's budgets, 429s and token, the pulled sources), the
//! events (filtered by status, source, portal, age and call id), one event ([`crate::events`]:
//! attempts, what it wrote, the body masked unless asked), dead letters replayed one by one or
//! together, and the duplicate sweeps with their reports.
//!
//! Signing in takes the admin token once; the session is a cookie (HttpOnly, SameSite=Strict,
//! Secure behind https, 8 hours) that is the expiry signed with the admin token, so any
//! instance accepts it and changing the token signs everyone out. Every form carries a CSRF
//! token derived from the session.

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use callbridge_sources::credential::same_secret;
use callbridge_sources::signature::hmac_sha256_hex;
use callbridge_store::{EventRow, Rejection, now_ms};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use crate::http::AppState;

const COOKIE: &str = "callbridge_session";
const SESSION_LIFE_MS: i64 = 8 * 3_600_000;
/// Events a list page looks through, newest first.
const SCANNED: i64 = 1000;

/// The dashboard's routes; all but sign-in need a session.
pub fn routes(state: &AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/ui", get(overview))
        .route("/ui/events", get(events))
        .route("/ui/events/{id}", get(event))
        .route("/ui/dead", get(dead))
        .route("/ui/dedup", get(dedup))
        .route("/ui/replay", post(replay))
        .route("/ui/logout", post(logout))
        .route_layer(from_fn_with_state(state.clone(), require_session));
    Router::new().route("/ui/login", get(login_page).post(login)).merge(signed_in)
}

/// The signed-in session: its cookie, from which the forms' CSRF token is derived.
#[derive(Clone)]
struct Session {
    csrf: String,
}

fn key(state: &AppState) -> Option<&str> {
    state.admin_token.as_ref().map(|t| t.expose_secret())
}

fn session_value(key: &str, expires_ms: i64) -> String {
    format!("{expires_ms}.{}", hmac_sha256_hex(key, &[b"session.", expires_ms.to_string().as_bytes()]))
}

fn csrf_of(key: &str, session: &str) -> String {
    hmac_sha256_hex(key, &[b"csrf.", session.as_bytes()])
}

/// A valid, unexpired session cookie signed with `key`.
fn valid(key: &str, value: &str) -> bool {
    let Some((expires, _)) = value.split_once('.') else { return false };
    let Ok(expires) = expires.parse::<i64>() else { return false };
    expires > now_ms() && same_secret(value, &session_value(key, expires))
}

async fn require_session(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(key) = key(&state) else {
        return (StatusCode::NOT_FOUND, "the dashboard needs admin_token to be set").into_response();
    };
    match crate::http::cookie(request.headers(), COOKIE).filter(|v| valid(key, v)) {
        Some(value) => {
            let session = Session { csrf: csrf_of(key, value) };
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None => Redirect::to("/ui/login").into_response(),
    }
}

/// What a page answers when the database cannot be read.
fn unreadable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the database cannot be read").into_response()
}

/// Renders a page, or says it could not.
fn page(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    signed_in: bool,
    csrf: String,
    problem: Option<&'static str>,
}

async fn login_page() -> Response {
    page(LoginPage { signed_in: false, csrf: String::new(), problem: None })
}

#[derive(Deserialize)]
struct Credentials {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<Credentials>) -> Response {
    let Some(key) = key(&state) else {
        return (StatusCode::NOT_FOUND, "the dashboard needs admin_token to be set").into_response();
    };
    if !same_secret(form.token.trim(), key) {
        let refused =
            LoginPage { signed_in: false, csrf: String::new(), problem: Some("That is not the admin token.") };
        return (StatusCode::UNAUTHORIZED, page(refused)).into_response();
    }
    let value = session_value(key, now_ms() + SESSION_LIFE_MS);
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={value}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{secure}", SESSION_LIFE_MS / 1000);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui")).into_response()
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn logout(axum::Extension(session): axum::Extension<Session>, Form(form): Form<CsrfOnly>) -> Response {
    if !same_secret(&form.csrf, &session.csrf) {
        return (StatusCode::FORBIDDEN, "the form is stale: reload the page").into_response();
    }
    let cookie = format!("{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response()
}

/// Epoch milliseconds as the pages show them (UTC, to the second).
fn when(ms: i64) -> String {
    let text = callbridge_domain::time::iso_ms(ms);
    format!("{} {} UTC", &text[..10], &text[11..19])
}

/// A span as the pages show it.
fn span(ms: i64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

struct PortalLine {
    id: String,
    ready: bool,
    readiness: String,
    ten_second: String,
    search: String,
    daily: String,
    rate_limited: String,
    token: String,
}

struct SourceLine {
    name: String,
    last_success: String,
    last_error: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    signed_in: bool,
    csrf: String,
    ingest_per_minute: String,
    queued: i64,
    running: i64,
    dead: i64,
    oldest: String,
    landed_today: i64,
    dead_today: i64,
    portals: Vec<PortalLine>,
    sources: Vec<SourceLine>,
}

async fn overview(State(state): State<AppState>, axum::Extension(session): axum::Extension<Session>) -> Response {
    let now = now_ms();
    let (Ok(counts), Ok(recent), Ok(today)) = (
        state.store.counts().await,
        state.store.tally(now - 300_000).await,
        state.store.tally(now - now.rem_euclid(86_400_000)).await,
    ) else {
        return unreadable();
    };
    let mut portals = Vec::new();
    for p in state.portals.iter() {
        let left: std::collections::HashMap<&str, u64> = p.hubspot.budget_remaining().into_iter().collect();
        let shown = |w: &str| left.get(w).map_or("—".to_string(), u64::to_string);
        let status = p.readiness.status();
        let token = match p.hubspot.oauth_status().await {
            None => "private app".to_string(),
            Some(s) if s.reconnect_needed.is_some() => "reconnect needed: /oauth/login".to_string(),
            Some(s) => {
                s.expires_at_ms.map_or("not installed".into(), |e| format!("OAuth, expires in {}", span(e - now)))
            }
        };
        portals.push(PortalLine {
            id: p.id().to_string(),
            ready: p.readiness.is_ready(),
            readiness: status.reason.unwrap_or_else(|| "ready".into()),
            ten_second: shown("ten_second"),
            search: shown("search"),
            daily: shown("daily"),
            rate_limited: match p.hubspot.stats() {
                s if s.rate_limited == 0 => "0".into(),
                s => format!("{} (last {})", s.rate_limited, s.last_rate_limited_at_ms.map_or("—".into(), when)),
            },
            token,
        });
    }
    let sources = state
        .pulls
        .iter()
        .map(|r| {
            let h = r.health();
            SourceLine {
                name: r.name().to_string(),
                last_success: h["last_success_at_ms"].as_i64().map_or("never".into(), when),
                last_error: h["last_error"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect();
    page(OverviewPage {
        signed_in: true,
        csrf: session.csrf,
        ingest_per_minute: format!("{:.1}", recent.received as f64 / 5.0),
        queued: counts.queued,
        running: counts.running,
        dead: counts.dead,
        oldest: counts.oldest_queued_at_ms.map_or("—".into(), |at| span(now - at)),
        landed_today: today.landed,
        dead_today: today.dead,
        portals,
        sources,
    })
}

/// An event (or a refused delivery) as the lists show it.
struct EventLine {
    id: i64,
    /// It has a page of its own (a refused delivery was never stored).
    link: bool,
    received: String,
    portal: String,
    source: String,
    key: String,
    status: String,
    attempts: i64,
    last_error: String,
}

impl From<Rejection> for EventLine {
    fn from(r: Rejection) -> EventLine {
        EventLine {
            id: r.id,
            link: false,
            received: when(r.at_ms),
            portal: r.portal.unwrap_or_default(),
            source: r.route,
            key: format!("{} from {}", r.reason, r.peer.unwrap_or_else(|| "?".into())),
            status: "rejected".into(),
            attempts: 0,
            last_error: r.detail,
        }
    }
}

impl From<EventRow> for EventLine {
    fn from(e: EventRow) -> EventLine {
        EventLine {
            id: e.id,
            link: true,
            received: when(e.received_at_ms),
            portal: e.portal,
            source: e.source,
            key: e.idempotency_key,
            status: e.status,
            attempts: e.attempts,
            last_error: e.last_error.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Filter {
    status: String,
    source: String,
    portal: String,
    hours: String,
    q: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    signed_in: bool,
    csrf: String,
    statuses: [&'static str; 8],
    filter: Filter,
    rows: Vec<EventLine>,
    scanned: i64,
}

async fn events(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(filter): Query<Filter>,
) -> Response {
    const STATUSES: [&str; 8] = ["", "queued", "running", "done", "dead", "recorded", "coalesced", "rejected"];
    let status = Some(filter.status.as_str()).filter(|s| STATUSES[1..].contains(s));
    if status == Some("rejected") {
        // Refused deliveries: the route stands for the source.
        let Ok(refused) = state.store.rejections(SCANNED).await else {
            return unreadable();
        };
        let rows = refused
            .into_iter()
            .map(EventLine::from)
            .filter(|e| filter.portal.is_empty() || e.portal == filter.portal)
            .filter(|e| filter.source.is_empty() || e.source.contains(&filter.source))
            .collect();
        return page(EventsPage {
            signed_in: true,
            csrf: session.csrf,
            statuses: STATUSES,
            filter,
            rows,
            scanned: SCANNED,
        });
    }
    let Ok(rows) = state.store.events(status, SCANNED).await else {
        return unreadable();
    };
    let since = filter.hours.trim().parse::<f64>().ok().map(|h| now_ms() - (h * 3_600_000.0) as i64);
    let rows = rows
        .into_iter()
        .filter(|e| filter.source.is_empty() || e.source == filter.source)
        .filter(|e| filter.portal.is_empty() || e.portal == filter.portal)
        .filter(|e| since.is_none_or(|s| e.received_at_ms >= s))
        .filter(|e| filter.q.trim().is_empty() || e.idempotency_key.contains(filter.q.trim()))
        .map(EventLine::from)
        .collect();
    page(EventsPage { signed_in: true, csrf: session.csrf, statuses: STATUSES, filter, rows, scanned: SCANNED })
}

struct AttemptLine {
    attempt: i64,
    at: String,
    kind: String,
    error: String,
    then: String,
}

struct WrittenLine {
    object: String,
    id: String,
    api: String,
    url: Option<String>,
    contact: String,
    contact_url: Option<String>,
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    signed_in: bool,
    csrf: String,
    notice: Option<String>,
    id: i64,
    status: String,
    portal: String,
    source: String,
    key: String,
    received: String,
    attempts: i64,
    next_run: String,
    last_error: String,
    replayable: bool,
    history: Vec<AttemptLine>,
    written: Vec<WrittenLine>,
    masked: bool,
    raw_body: String,
    event: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EventQuery {
    reveal: bool,
    replayed: Option<u64>,
}

async fn event(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Path(id): Path<i64>,
    Query(q): Query<EventQuery>,
) -> Response {
    let d = match crate::events::detail(state.store.as_ref(), &state.portals, id, q.reveal).await {
        Ok(Some(d)) => d,
        Ok(None) => return (StatusCode::NOT_FOUND, "no event with this id").into_response(),
        Err(_) => return unreadable(),
    };
    if q.reveal {
        tracing::info!(event.id = id, "an event's personal values were shown on the dashboard");
    }
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_default();
    let history = d["history"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| AttemptLine {
                    attempt: a["attempt"].as_i64().unwrap_or(0),
                    at: a["at_ms"].as_i64().map(when).unwrap_or_default(),
                    kind: text(&a["error_kind"]),
                    error: text(&a["error"]),
                    then: a["retry_at_ms"].as_i64().map_or("dead".into(), |t| format!("retry at {}", when(t))),
                })
                .collect()
        })
        .unwrap_or_default();
    let written = d["written"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|w| WrittenLine {
                    object: text(&w["object"]),
                    id: text(&w["hubspot_id"]),
                    api: text(&w["api"]),
                    url: w["url"].as_str().map(str::to_string),
                    contact: text(&w["contact_id"]),
                    contact_url: w["contact_url"].as_str().map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    let status = text(&d["status"]);
    page(EventPage {
        signed_in: true,
        csrf: session.csrf,
        notice: q.replayed.map(|n| format!("{n} event queued again.")),
        id,
        replayable: matches!(status.as_str(), "dead" | "done"),
        status,
        portal: text(&d["portal"]),
        source: text(&d["source"]),
        key: text(&d["idempotency_key"]),
        received: d["received_at_ms"].as_i64().map(when).unwrap_or_default(),
        attempts: d["attempts"].as_i64().unwrap_or(0),
        next_run: d["next_run_at_ms"].as_i64().map_or("—".into(), when),
        last_error: text(&d["last_error"]),
        history,
        written,
        masked: d["masked"].as_bool().unwrap_or(true),
        raw_body: serde_json::to_string_pretty(&d["raw_body"]).unwrap_or_default(),
        event: serde_json::to_string_pretty(&d["event"]).unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "dead.html")]
struct DeadPage {
    signed_in: bool,
    csrf: String,
    notice: Option<String>,
    rows: Vec<EventLine>,
}

async fn dead(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(q): Query<EventQuery>,
) -> Response {
    let Ok(rows) = state.store.events(Some("dead"), SCANNED).await else {
        return unreadable();
    };
    let notice = q.replayed.map(|n| format!("{n} events queued again."));
    page(DeadPage {
        signed_in: true,
        csrf: session.csrf,
        notice,
        rows: rows.into_iter().map(EventLine::from).collect(),
    })
}

/// `POST /ui/replay`: the events checked (`id`, repeated), or with `all` every dead one; then
/// back where the form was.
async fn replay(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if !field("csrf").is_some_and(|c| same_secret(c, &session.csrf)) {
        return (StatusCode::FORBIDDEN, "the form is stale: reload the page").into_response();
    }
    let mut ids: Vec<i64> = fields.iter().filter(|(k, _)| k == "id").filter_map(|(_, v)| v.parse().ok()).collect();
    if field("all") == Some("true") {
        match state.store.events(Some("dead"), SCANNED).await {
            Ok(rows) => ids = rows.iter().map(|e| e.id).collect(),
            Err(_) => return unreadable(),
        }
    }
    let mut replayed = 0;
    for id in ids {
        match state.store.replay(id, None).await {
            Ok(true) => replayed += 1,
            Ok(false) => {}
            Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "the database cannot be written").into_response(),
        }
    }
    if replayed > 0 {
        state.wake.notify_one();
        tracing::info!(events = replayed, "events replayed from the dashboard");
    }
    let back = field("back").filter(|b| b.starts_with("/ui/") && !b.contains("//")).unwrap_or("/ui/dead");
    Redirect::to(&format!("{back}?replayed={replayed}")).into_response()
}

struct RunLine {
    id: i64,
    portal: String,
    status: String,
    started: String,
    finished: String,
    options: String,
    report: String,
}

#[derive(Template)]
#[template(path = "dedup.html")]
struct DedupPage {
    signed_in: bool,
    csrf: String,
    runs: Vec<RunLine>,
}

async fn dedup(State(state): State<AppState>, axum::Extension(session): axum::Extension<Session>) -> Response {
    let Ok(runs) = state.store.dedup_runs(50).await else {
        return unreadable();
    };
    let runs = runs
        .into_iter()
        .map(|r| RunLine {
            id: r.id,
            portal: r.portal,
            status: r.status,
            started: when(r.started_at_ms),
            finished: r.finished_at_ms.map_or("—".into(), when),
            options: r.options,
            report: r
                .report
                .as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
                .or(r.error)
                .unwrap_or_default(),
        })
        .collect();
    page(DedupPage { signed_in: true, csrf: session.csrf, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_only_signed_with_the_key_and_before_it_expires() {
        let later = now_ms() + 60_000;
        let value = session_value("admin-key", later);
        assert!(valid("admin-key", &value));
        assert!(!valid("another-key", &value), "a changed token signs everyone out");
        assert!(!valid("admin-key", &session_value("admin-key", now_ms() - 1)), "expired");
        let forged = format!("{}.{}", later + 1, value.split_once('.').unwrap().1);
        assert!(!valid("admin-key", &forged), "the expiry cannot be moved");
        assert!(!valid("admin-key", "garbage"));
        assert_ne!(csrf_of("admin-key", &value), csrf_of("admin-key", &session_value("admin-key", later + 1)));
    }

    fn line(id: i64, status: &str) -> EventLine {
        EventLine {
            id,
            link: true,
            received: when(1_767_708_329_000),
            portal: "default".into(),
            source: "vapi".into(),
            key: format!("vapi:call-{id}:end-of-call-report"),
            status: status.into(),
            attempts: 2,
            last_error: "HubSpot kept answering 423".into(),
        }
    }

    // The pages' HTML, from fixed data: any change to a template is a visible diff.
    #[test]
    fn the_pages_render_as_snapshotted() {
        let csrf = || "csrf-token".to_string();
        insta::assert_snapshot!(
            "login",
            LoginPage { signed_in: false, csrf: String::new(), problem: Some("That is not the admin token.") }
                .render()
                .unwrap()
        );
        let overview = OverviewPage {
            signed_in: true,
            csrf: csrf(),
            ingest_per_minute: "12.4".into(),
            queued: 3,
            running: 1,
            dead: 2,
            oldest: "40 s".into(),
            landed_today: 120,
            dead_today: 1,
            portals: vec![PortalLine {
                id: "acme".into(),
                ready: true,
                readiness: "ready".into(),
                ten_second: "150".into(),
                search: "5".into(),
                daily: "249000".into(),
                rate_limited: "2 (last 2026-01-06 14:05:29 UTC)".into(),
                token: "OAuth, expires in 25 min".into(),
            }],
            sources: vec![SourceLine {
                name: "receptionist".into(),
                last_success: when(1_767_708_329_000),
                last_error: String::new(),
            }],
        };
        insta::assert_snapshot!("overview", overview.render().unwrap());
        let filter = Filter { status: "dead".into(), q: "call-7".into(), ..Filter::default() };
        let statuses = ["", "queued", "running", "done", "dead", "recorded", "coalesced", "rejected"];
        let events =
            EventsPage { signed_in: true, csrf: csrf(), statuses, filter, rows: vec![line(7, "dead")], scanned: 1000 };
        insta::assert_snapshot!("events", events.render().unwrap());
        let dead = DeadPage {
            signed_in: true,
            csrf: csrf(),
            notice: Some("1 events queued again.".into()),
            rows: vec![line(7, "dead"), line(9, "dead")],
        };
        insta::assert_snapshot!("dead", dead.render().unwrap());
        let event = EventPage {
            signed_in: true,
            csrf: csrf(),
            notice: None,
            id: 7,
            status: "done".into(),
            portal: "default".into(),
            source: "vapi".into(),
            key: "vapi:call-7:end-of-call-report".into(),
            received: when(1_767_708_329_000),
            attempts: 2,
            next_run: "—".into(),
            last_error: String::new(),
            replayable: true,
            history: vec![AttemptLine {
                attempt: 1,
                at: when(1_767_708_330_000),
                kind: "transient".into(),
                error: "HubSpot kept answering 423 <locked>".into(),
                then: "dead".into(),
            }],
            written: vec![WrittenLine {
                object: "call".into(),
                id: "200000001".into(),
                api: "v3".into(),
                url: Some("https://app.hubspot.com/contacts/1/record/0-48/200000001".into()),
                contact: "100000001".into(),
                contact_url: None,
            }],
            masked: true,
            raw_body: "{\n  \"number\": \"[masked]\"\n}".into(),
            event: "{}".into(),
        };
        let html = event.render().unwrap();
        assert!(
            html.contains("423 &#60;locked&#62;") || html.contains("423 &lt;locked&gt;"),
            "text is escaped: {html}"
        );
        insta::assert_snapshot!("event", html);
        let runs = vec![RunLine {
            id: 3,
            portal: "default".into(),
            status: "done".into(),
            started: when(1_767_708_329_000),
            finished: when(1_767_708_339_000),
            options: "{\"dry_run\":true}".into(),
            report: "{\"merged\": []}".into(),
        }];
        insta::assert_snapshot!("dedup", DedupPage { signed_in: true, csrf: csrf(), runs }.render().unwrap());
    }
}
