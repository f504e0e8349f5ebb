//! The HTTP surface: webhooks ([`webhooks`]; acknowledged only after the delivery is
//! committed), HubSpot's own webhooks ([`hubspot`]), liveness, and the admin API ([`admin`]) behind its token, served within the
//! bounds of [`serve`] (connections, headers) and [`intake`] (bodies). Handlers are thin:
//! check the credential, parse into a domain event, store, answer. Every error is an
//! [`ApiError`], whose module states what a 4xx says and that a 5xx shows no internals.

mod admin;
mod error;
pub mod hubspot;
pub mod intake;
pub mod oauth;
pub mod openapi;
pub mod serve;
mod tools;
mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use callbridge_domain::{DefaultRegion, PortalId};
use callbridge_sources::{ElevenLabs, Generic, Platform, Retell, Vapi};
use callbridge_store::Store;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Notify;

pub use error::{ApiError, RETRY_AFTER_SECS, Refused};
pub use intake::{BODY_LIMIT, Intake};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub portals: crate::portals::Portals,
    pub wake: Arc<Notify>,
    pub region: DefaultRegion,
    pub admin_token: Option<SecretString>,
    pub intake: Arc<Intake>,
    /// The pulled sources, with their schedules' last outcomes.
    pub pulls: Arc<Vec<Arc<crate::pull::runner::Runner>>>,
    /// The mid-call tools.
    pub tools: Arc<crate::tools::Tools>,
    /// The window live updates of one call coalesce in (`live_update_window_ms`).
    pub live_window_ms: i64,
    /// Installing the portal by OAuth, when configured.
    pub oauth: Option<Arc<oauth::OAuthInstall>>,
    /// Assistant or agent id → the portal its calls are, for deliveries to the deployment's routes.
    pub agents: Arc<std::collections::HashMap<String, PortalId>>,
    /// Deliveries refused, counted and recorded ([`crate::rejections`]).
    pub rejections: Arc<crate::rejections::RejectionLog>,
    /// Cookies are marked `Secure` (`public_url` is https).
    pub secure_cookies: bool,
}

impl AppState {
    /// The portal a request is for: the one its route names, else the one its assistant or
    /// agent id (found at `agent_paths`) maps to, else the portal served when there is one —
    /// or a 400 naming where the agent id belongs, since a call no portal takes would wait forever.
    pub fn portal_for(
        &self,
        routed: Option<&PortalId>,
        body: Option<&serde_json::Value>,
        agent_paths: &[&str],
    ) -> Result<PortalId, ApiError> {
        let agent = || {
            let body = body?;
            agent_paths.iter().find_map(|p| callbridge_sources::Fields::at(body, p).and_then(|v| v.as_str()))
        };
        routed
            .or_else(|| agent().and_then(|a| self.agents.get(a)))
            .or_else(|| self.portals.default_portal().map(|p| p.id()))
            .cloned()
            .ok_or_else(|| {
                let field = agent_paths.first().copied().unwrap_or("portal");
                ApiError::field(
                    field,
                    "names no portal's agent (`agent_ids`): post to this route with /{portal} at its end",
                )
            })
    }
}

/// The platforms whose webhooks are served, as configured.
#[derive(Clone)]
pub struct Sources {
    pub vapi: Vapi,
    pub retell: Retell,
    pub elevenlabs: ElevenLabs,
    pub generic: Generic,
    /// The named booking webhooks, each at `/webhooks/generic/{name}`.
    pub named: Vec<(String, Generic)>,
    /// The secret ElevenLabs server tools send.
    pub elevenlabs_tools: callbridge_sources::SharedSecret,
    /// HubSpot's own app webhooks.
    pub hubspot: hubspot::HubSpotWebhooks,
    /// Each `[portals.NAME]`'s own sources, at `/webhooks/{platform}/{portal}` and
    /// `/tools/{platform}/{portal}/…`.
    pub per_portal: Vec<(PortalId, Sources)>,
}

/// `POST {path}`, served by the one webhook handler with `platform` attached.
fn webhook_route_at<P: Platform>(path: &str, platform: P) -> Router<AppState> {
    Router::new().route(path, post(webhooks::webhook::<P>).layer(Extension(Arc::new(platform))))
}

/// The sources' webhook and tool routes: `/webhooks/vapi`, `/tools/retell/{name}`, … for the
/// portal served, or `/webhooks/vapi/{portal}`, `/tools/retell/{portal}/{name}`, … for a named
/// one (attached to each request), each with that portal's secrets; what they refuse is
/// recorded ([`crate::rejections`]).
fn source_routes(state: &AppState, sources: Sources, portal: Option<&PortalId>) -> Router<AppState> {
    let at = |base: &str| match portal {
        Some(p) => format!("{base}/{p}"),
        None => base.to_string(),
    };
    let mut router = Router::new();
    for (name, generic) in sources.named {
        router = router.merge(webhook_route_at(&format!("/webhooks/generic/{name}"), generic));
    }
    let router = router
        .merge(webhook_route_at(&at("/webhooks/generic"), sources.generic))
        .merge(webhook_route_at(&at("/webhooks/vapi"), sources.vapi.clone()))
        .merge(webhook_route_at(&at("/webhooks/retell"), sources.retell.clone()))
        .merge(webhook_route_at(&at("/webhooks/elevenlabs"), sources.elevenlabs))
        .route(&at("/tools/vapi"), post(tools::vapi).layer(Extension(Arc::new(sources.vapi))))
        .route(
            &format!("{}/{{name}}", at("/tools/retell")),
            post(tools::retell).layer(Extension(Arc::new(sources.retell))),
        )
        .route(
            &format!("{}/{{name}}", at("/tools/elevenlabs")),
            post(tools::elevenlabs).get(tools::elevenlabs).layer(Extension(Arc::new(sources.elevenlabs_tools))),
        )
        .route_layer(from_fn_with_state(state.clone(), crate::rejections::observe));
    match portal {
        Some(portal) => router.layer(Extension(portal.clone())),
        None => router,
    }
}

pub fn router(state: AppState, sources: Sources) -> Router {
    let admin = Router::new()
        .route("/events", get(admin::events))
        .route("/events/{id}", get(admin::event))
        .route("/events/{id}/replay", post(admin::replay))
        .route("/probe", get(admin::probe))
        .route("/setup-properties", post(admin::setup_properties))
        .route("/metrics", get(crate::meters::scrape))
        .route("/portals", get(admin::portals))
        .route("/sync-now", post(admin::sync_now))
        .route("/token/status", get(admin::token_status))
        .route("/token/refresh", post(admin::token_refresh))
        .route("/dedup", post(admin::dedup_start))
        .route("/dedup/{id}", get(admin::dedup_get))
        .route_layer(from_fn_with_state(state.clone(), admin::require_admin));
    let hubspot = Router::new()
        .route("/webhooks/hubspot", post(hubspot::receive).layer(Extension(Arc::new(sources.hubspot.clone()))))
        .route_layer(from_fn_with_state(state.clone(), crate::rejections::observe));
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(crate::ui::routes(&state))
        .route("/oauth/login", get(oauth::login))
        .route("/oauth/callback", get(oauth::callback))
        .merge(hubspot);
    for (portal, own) in sources.per_portal.clone() {
        router = router.merge(source_routes(&state, own, Some(&portal)));
    }
    router
        .merge(source_routes(&state, sources, None))
        .merge(admin)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::meters::observe))
        .with_state(state)
}

/// What a connection over the cap is served ([`serve`]): `/health`, and 503 for the rest.
pub fn overflow_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(|| async { ApiError::Overloaded })
        .layer(axum::middleware::from_fn(crate::meters::observe))
        .with_state(state)
}

/// Liveness (200 while the process serves) with readiness: each portal's, and `ready` when
/// every portal can take work.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "ready or not (and why), each portal, the queue, each pulled source", body = Object),
              (status = 503, description = "the store cannot be read", body = Object)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let portals: Vec<_> =
        state.portals.iter().map(|p| json!({"id": p.id(), "readiness": p.readiness.status()})).collect();
    let ready = state.portals.iter().all(|p| p.readiness.is_ready());
    match state.store.counts().await {
        Ok(c) => {
            let sources: Vec<_> = state.pulls.iter().map(|r| r.health()).collect();
            Json(json!({"status": "ok", "ready": ready, "portals": portals, "jobs": c, "sources": sources}))
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check cannot read the store");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "degraded", "store": "unavailable"})))
                .into_response()
        }
    }
}

/// A cookie's value from the request (`None` when absent or empty).
pub(crate) fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}
