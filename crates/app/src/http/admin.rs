//! The admin API behind its Bearer token ([`require_admin`], a middleware on every route
//! here): deliveries and their jobs, replay, the HubSpot probe, property setup, metrics, and
//! pull sources (`sync-now`, their sessions' status and a login on demand), and duplicate
//! sweeps (`POST /dedup`, `GET /dedup/{id}`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use callbridge_sources::credential::check_shared_secret;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::portals::Portal;

pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check_shared_secret(state.admin_token.as_ref(), req.headers(), &[]) {
        Ok(()) => next.run(req).await,
        Err(u) => ApiError::Unauthorized(u.0).into_response(),
    }
}

#[derive(Deserialize)]
pub struct EventsQuery {
    status: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/events", tag = "admin", security(("admin" = [])),
    params(("status" = Option<String>, Query, description = "queued, running, done, dead, recorded, coalesced or rejected"),
           ("limit" = Option<i64>, Query, description = "at most this many, newest first (1–1000, default 100)")),
    responses((status = 200, description = "`{\"events\": [...]}`: events, or refused deliveries with status=rejected", body = EventList),
              (status = 400, description = "an unknown status", body = crate::http::error::ErrorBody)))]
pub async fn events(State(state): State<AppState>, Query(q): Query<EventsQuery>) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if q.status.as_deref() == Some("rejected") {
        let events = state.store.rejections(limit).await.map_err(|_| ApiError::Unavailable)?;
        return Ok(Json(EventList::Rejections { events }).into_response());
    }
    if let Some(s) = &q.status
        && !matches!(s.as_str(), "queued" | "running" | "done" | "dead" | "recorded" | "coalesced")
    {
        return Err(ApiError::field("status", "must be queued, running, done, dead, recorded, coalesced or rejected"));
    }
    let events = state.store.events(q.status.as_deref(), limit).await.map_err(|_| ApiError::Unavailable)?;
    Ok(Json(EventList::Events { events }).into_response())
}

/// `GET /events`: events with their jobs' state, or with `status=rejected` the deliveries
/// refused before they were stored.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventList {
    Events { events: Vec<callbridge_store::EventRow> },
    Rejections { events: Vec<callbridge_store::Rejection> },
}

#[derive(Deserialize)]
pub struct EventQuery {
    /// Show personal values (numbers, emails, names, transcripts) instead of masking them.
    #[serde(default)]
    reveal: bool,
}

/// `GET /events/{id}[?reveal=true]`: the event's detail ([`crate::events`]).
#[utoipa::path(get, path = "/events/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = i64, Path, description = "the event's id"),
           ("reveal" = Option<bool>, Query, description = "show personal values instead of masking them (logged)")),
    responses((status = 200, description = "the event: times, each failed attempt, what it wrote to HubSpot, raw body and canonical event", body = Object),
              (status = 404, description = "no such event", body = crate::http::error::ErrorBody)))]
pub async fn event(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<EventQuery>,
) -> Result<Response, ApiError> {
    let detail = crate::events::detail(state.store.as_ref(), &state.portals, id, q.reveal).await.map_err(|e| {
        tracing::error!(error = %e, "reading an event failed");
        ApiError::Unavailable
    })?;
    let detail = detail.ok_or(ApiError::NotFound("no event with this id"))?;
    if q.reveal {
        tracing::info!(event.id = id, "an event's personal values were shown to an admin");
    }
    Ok(Json(detail).into_response())
}

#[utoipa::path(post, path = "/events/{id}/replay", tag = "admin", security(("admin" = [])),
    params(("id" = i64, Path, description = "a dead or finished event's id")),
    responses((status = 200, description = "queued again", body = Object), (status = 404, description = "no dead or finished event with this id", body = crate::http::error::ErrorBody)))]
pub async fn replay(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    if !state.store.replay(id, None).await.map_err(|_| ApiError::Unavailable)? {
        return Err(ApiError::NotFound("no finished or dead event with this id"));
    }
    state.wake.notify_one();
    Ok(Json(json!({"status": "queued", "event_id": id})).into_response())
}

/// The portal an admin request is about (today: the configuration's only one).
fn portal(state: &AppState) -> Result<&Arc<Portal>, ApiError> {
    state.portals.default_portal().ok_or(ApiError::NotFound("no portal is configured"))
}

#[utoipa::path(get, path = "/probe", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "what the token may do: v3 calls or v1 engagements, scheduler, missing scopes", body = Object),
              (status = 502, description = "HubSpot refused or failed", body = crate::http::error::ErrorBody)))]
pub async fn probe(State(state): State<AppState>) -> Result<Response, ApiError> {
    let c = portal(&state)?.hubspot.probe().await.map_err(|e| ApiError::Upstream(e.to_string()))?;
    Ok(Json(json!({"capabilities": c})).into_response())
}

#[utoipa::path(post, path = "/setup-properties", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "callbridge's property group and properties, created where missing", body = Object),
              (status = 502, description = "HubSpot refused or failed", body = crate::http::error::ErrorBody)))]
pub async fn setup_properties(State(state): State<AppState>) -> Result<Response, ApiError> {
    let report = crate::properties::setup(portal(&state)?.hubspot.as_ref())
        .await
        .map_err(|e| ApiError::Upstream(e.to_string()))?;
    Ok(Json(json!(report)).into_response())
}

#[derive(Deserialize)]
pub struct SourceQuery {
    source: Option<String>,
    #[serde(default)]
    force: bool,
}

/// The pulled source a request names (or the only one).
fn runner<'a>(state: &'a AppState, q: &SourceQuery) -> Result<&'a Arc<crate::pull::runner::Runner>, ApiError> {
    match &q.source {
        Some(name) => {
            state.pulls.iter().find(|r| r.name() == name).ok_or(ApiError::NotFound("no pull source of this name"))
        }
        None if state.pulls.len() == 1 => Ok(&state.pulls[0]),
        None if state.pulls.is_empty() => Err(ApiError::NotFound("no pull source is configured")),
        None => Err(ApiError::field("source", "names the pull source (several are configured)")),
    }
}

/// `POST /sync-now?source=`: a run now, or the one going; its report.
#[utoipa::path(post, path = "/sync-now", tag = "admin", security(("admin" = [])),
    params(("source" = Option<String>, Query, description = "the pulled source (needed when several are configured)")),
    responses((status = 200, description = "the run's report", body = Object), (status = 404, description = "no such pulled source", body = crate::http::error::ErrorBody),
              (status = 502, description = "a run is still going", body = crate::http::error::ErrorBody)))]
pub async fn sync_now(State(state): State<AppState>, Query(q): Query<SourceQuery>) -> Result<Response, ApiError> {
    let runner = runner(&state, &q)?;
    match runner.run_now(&state.store, &state.wake, state.region).await {
        Ok(report) => Ok(Json(json!({"source": runner.name(), "report": report})).into_response()),
        Err(crate::pull::PullError::AlreadyRunning) => {
            Err(ApiError::Upstream("a run is still going after two minutes; ask again later".into()))
        }
        Err(crate::pull::PullError::Store(_)) => Err(ApiError::Unavailable),
    }
}

/// `GET /token/status`: each pulled source's session, never its token.
#[utoipa::path(get, path = "/token/status", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "each pulled source's session and each portal's OAuth connection, never a token", body = Object)))]
pub async fn token_status(State(state): State<AppState>) -> Response {
    let mut sources = Vec::new();
    for r in state.pulls.iter() {
        sources.push(r.source.session.status(callbridge_store::now_ms()).await);
    }
    let mut hubspot = Vec::new();
    for portal in state.portals.iter() {
        if let Some(oauth) = portal.hubspot.oauth_status().await {
            hubspot.push(json!({"portal": portal.id(), "oauth": oauth}));
        }
    }
    Json(json!({"sources": sources, "hubspot": hubspot})).into_response()
}

/// `GET /portals`: each portal served, its HubSpot account, whether it can take work (and why
/// not) and its OAuth connection — never a token.
#[utoipa::path(get, path = "/portals", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "each portal served: account id, readiness, scheduler link, OAuth connection", body = Object)))]
pub async fn portals(State(state): State<AppState>) -> Response {
    let mut portals = Vec::new();
    for portal in state.portals.iter() {
        portals.push(json!({
            "id": portal.id(),
            "hub_id": portal.hub_id(),
            "ready": portal.readiness.is_ready(),
            "readiness": portal.readiness.status(),
            "scheduler_link": portal.scheduler.is_some(),
            "oauth": portal.hubspot.oauth_status().await,
        }));
    }
    Json(json!({"portals": portals})).into_response()
}

/// `POST /token/refresh?source=[&force=true]`: log in now; during a cooldown only when forced.
#[utoipa::path(post, path = "/token/refresh", tag = "admin", security(("admin" = [])),
    params(("source" = Option<String>, Query, description = "the pulled source"), ("force" = Option<bool>, Query, description = "log in even during a cooldown")),
    responses((status = 200, description = "the session after logging in", body = Object), (status = 400, description = "in a cooldown (pass force)", body = crate::http::error::ErrorBody),
              (status = 502, description = "the login failed", body = crate::http::error::ErrorBody)))]
pub async fn token_refresh(State(state): State<AppState>, Query(q): Query<SourceQuery>) -> Result<Response, ApiError> {
    let runner = runner(&state, &q)?;
    let session = &runner.source.session;
    let now = callbridge_store::now_ms();
    match session.refresh(now, q.force).await {
        Ok(()) => Ok(Json(json!({"source": runner.name(), "status": session.status(now).await})).into_response()),
        Err(crate::pull::SessionError::Cooldown { until_ms }) => Err(ApiError::field(
            "force",
            format!(
                "a login failed recently; the cooldown ends in {} s (pass force=true to try now)",
                (until_ms - now).max(0) / 1000
            ),
        )),
        Err(e) => Err(ApiError::Upstream(e.to_string())),
    }
}

#[derive(Deserialize)]
pub struct DedupQuery {
    /// A dry run unless `false`.
    dry_run: Option<bool>,
    max_passes: Option<u32>,
    #[serde(default)]
    merge_shared_numbers: bool,
    portal: Option<String>,
}

/// `POST /dedup[?dry_run=false&max_passes=&merge_shared_numbers=&portal=]`: starts a duplicate
/// sweep (a dry run unless `dry_run=false`) and answers its run id at once; one sweep per portal
/// at a time (409 while one runs, on any instance).
#[utoipa::path(post, path = "/dedup", tag = "admin", security(("admin" = [])),
    params(("dry_run" = Option<bool>, Query, description = "plan only (the default) or merge with false"),
           ("max_passes" = Option<u32>, Query, description = "passes at most"),
           ("merge_shared_numbers" = Option<bool>, Query, description = "merge contacts sharing a number used by several names"),
           ("portal" = Option<String>, Query, description = "the portal to sweep")),
    responses((status = 202, description = "the sweep started: its run id", body = Object), (status = 409, description = "a sweep of that portal is running", body = crate::http::error::ErrorBody)))]
pub async fn dedup_start(State(state): State<AppState>, Query(q): Query<DedupQuery>) -> Result<Response, ApiError> {
    let portal = match &q.portal {
        Some(p) => callbridge_domain::PortalId::parse(p).map_err(|e| ApiError::field("portal", e.to_string()))?,
        None => callbridge_domain::PortalId::default(),
    };
    let Some(target) = state.portals.get(&portal).cloned() else {
        return Err(ApiError::field("portal", "no such portal is configured"));
    };
    let max_passes = q.max_passes.unwrap_or(8);
    if !(1..=50).contains(&max_passes) {
        return Err(ApiError::field("max_passes", "must be 1 to 50"));
    }
    let options = crate::dedup::Options {
        dry_run: q.dry_run.unwrap_or(true),
        max_passes,
        merge_shared_numbers: q.merge_shared_numbers,
    };
    let exclusive = match crate::dedup::claim(state.store.as_ref(), &portal).await {
        Ok(e) => e,
        Err(crate::dedup::SweepError::Busy(_)) => {
            return Err(ApiError::Conflict("a duplicate sweep is already running for this portal".into()));
        }
        Err(_) => return Err(ApiError::Unavailable),
    };
    let options_json = serde_json::to_string(&options).map_err(|_| ApiError::Internal)?;
    let id = state.store.start_dedup_run(&portal, &options_json).await.map_err(|_| ApiError::Unavailable)?;
    let (store, region) = (state.store.clone(), state.region);
    tokio::spawn(async move {
        let out = crate::dedup::run_held(
            exclusive,
            store.as_ref(),
            target.hubspot.as_ref(),
            &portal,
            region,
            options,
            &|_| {},
        )
        .await;
        let recorded = match &out {
            Ok(report) => store.finish_dedup_run(id, Ok(&serde_json::to_string(report).unwrap_or_default())).await,
            Err(e) => store.finish_dedup_run(id, Err(&e.to_string())).await,
        };
        if let Err(e) = recorded {
            tracing::error!(error = %e, "recording a duplicate sweep's outcome failed");
        }
    });
    Ok((axum::http::StatusCode::ACCEPTED, Json(json!({"run_id": id.to_string(), "status": "running"}))).into_response())
}

/// `GET /dedup/{id}`: a sweep's state, options and (once done) its report.
#[utoipa::path(get, path = "/dedup/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = i64, Path, description = "the run id")),
    responses((status = 200, description = "the sweep's status and report", body = Object), (status = 404, description = "no such run", body = crate::http::error::ErrorBody)))]
pub async fn dedup_get(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let Some(run) = state.store.dedup_run(id).await.map_err(|_| ApiError::Unavailable)? else {
        return Err(ApiError::NotFound("no duplicate sweep with this id"));
    };
    let parse = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    Ok(Json(json!({
        "run_id": run.id.to_string(), "portal": run.portal, "status": run.status,
        "options": parse(&Some(run.options.clone())), "report": parse(&run.report), "error": run.error,
        "started_at_ms": run.started_at_ms, "finished_at_ms": run.finished_at_ms,
    }))
    .into_response())
}
