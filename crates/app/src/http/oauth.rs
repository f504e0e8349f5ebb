//! Installing a portal by OAuth. `GET /oauth/login` (`?portal=NAME` when several are served)
//! sends the browser to HubSpot's authorize page with the configured scopes and a `state` that
//! names the portal and is random (32 bytes from the OS), valid for 10 minutes, single-use
//! across instances (kept in the store) and bound to this browser by a cookie (the store keeps
//! only its hash). `GET /oauth/callback` refuses a missing, unknown, reused, expired or other
//! browser's state with a 400 naming why and stores nothing; else it exchanges the code, keeps
//! the tokens sealed for that portal ([`crate::tokens`]), has the portal set up and probed at
//! once ([`crate::readiness`]) and answers a page naming the connected account. A portal HubSpot
//! stopped refreshing ("reconnect needed") resumes the same way.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use callbridge_domain::PortalId;
use callbridge_hubspot::OAuthApp;
use callbridge_store::{OAuthState, now_ms};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::portals::Portal;

/// How long an install may take from login to callback.
const STATE_LIFE_MS: i64 = 600_000;
const COOKIE: &str = "callbridge_oauth";
/// How long the callback waits for the portal's setup before answering.
const SETUP_WAIT: Duration = Duration::from_secs(15);

/// The OAuth install, as configured.
pub struct OAuthInstall {
    pub app: OAuthApp,
    pub authorize_url: String,
    pub scopes: String,
    pub optional_scopes: String,
}

fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| ApiError::Internal)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn configured(state: &AppState) -> Result<&Arc<OAuthInstall>, ApiError> {
    state.oauth.as_ref().ok_or(ApiError::NotFound("OAuth is not configured (hubspot_client_id)"))
}

#[derive(Deserialize)]
pub struct Login {
    portal: Option<String>,
}

/// The portal an install is for: the one named (`?portal=NAME`), else the only one served.
fn portal_named(state: &AppState, name: Option<&str>) -> Result<Arc<Portal>, ApiError> {
    let portal = match name {
        Some(name) => PortalId::parse(name).ok().and_then(|id| state.portals.get(&id)).cloned(),
        None => state.portals.default_portal().cloned(),
    };
    portal.ok_or_else(|| match name {
        Some(_) => ApiError::field("portal", "no such portal is served: see GET /portals"),
        None => ApiError::field("portal", "several portals are served: name one, /oauth/login?portal=NAME"),
    })
}

/// `GET /oauth/login[?portal=NAME]`.
#[utoipa::path(get, path = "/oauth/login", tag = "install",
    params(("portal" = Option<String>, Query, description = "the portal to install (when several are served)")),
    responses((status = 303, description = "to HubSpot's authorize page, with a state cookie"), (status = 400, description = "no such portal, or it uses a private-app token", body = crate::http::error::ErrorBody),
              (status = 404, description = "OAuth is not configured", body = crate::http::error::ErrorBody)))]
pub async fn login(State(state): State<AppState>, Query(q): Query<Login>) -> Result<Response, ApiError> {
    let install = configured(&state)?;
    let portal = portal_named(&state, q.portal.as_deref())?;
    if portal.hubspot.oauth_status().await.is_none() {
        return Err(ApiError::field("portal", "this portal uses a private-app token, not OAuth"));
    }
    // The state names its portal: it is looked up whole, so the name cannot be changed.
    let (oauth_state, browser) = (format!("{}.{}", portal.id(), random_hex()?), random_hex()?);
    state.store.save_oauth_state(&oauth_state, &digest(&browser), now_ms() + STATE_LIFE_MS).await.map_err(|e| {
        tracing::error!(error = %e, "keeping an OAuth state failed");
        ApiError::Unavailable
    })?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("client_id", &install.app.client_id)
        .append_pair("redirect_uri", &install.app.redirect_uri)
        .append_pair("scope", &install.scopes);
    if !install.optional_scopes.trim().is_empty() {
        query.append_pair("optional_scope", &install.optional_scopes);
    }
    query.append_pair("state", &oauth_state);
    let secure = if install.app.redirect_uri.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={browser}; Path=/oauth; Max-Age=600; HttpOnly; SameSite=Lax{secure}");
    let to = format!("{}?{}", install.authorize_url, query.finish());
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&to)).into_response())
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /oauth/callback`.
#[utoipa::path(get, path = "/oauth/callback", tag = "install",
    params(("code" = Option<String>, Query), ("state" = Option<String>, Query)),
    responses((status = 200, description = "a page naming the connected account", content_type = "text/html", body = String),
              (status = 400, description = "missing, unknown, reused, expired or another browser's state; or HubSpot refused the code", body = crate::http::error::ErrorBody)))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Result<Response, ApiError> {
    configured(&state)?;
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or(error);
        return Err(ApiError::field("error", format!("HubSpot did not authorize the install: {why}")));
    }
    let oauth_state = q.state.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::field("state", "missing state"))?;
    let browser = super::cookie(&headers, COOKIE).ok_or_else(|| {
        ApiError::field("state", "this browser did not start the install (no cookie): start at /oauth/login")
    })?;
    let taken = state.store.take_oauth_state(&oauth_state).await.map_err(|e| {
        tracing::error!(error = %e, "reading an OAuth state failed");
        ApiError::Unavailable
    })?;
    match taken {
        OAuthState::Unknown => return Err(ApiError::field("state", "unknown state: start at /oauth/login")),
        OAuthState::Used => return Err(ApiError::field("state", "state already used: start again at /oauth/login")),
        OAuthState::Issued { expires_at_ms, .. } if expires_at_ms < now_ms() => {
            return Err(ApiError::field("state", "expired state (10 minutes): start again at /oauth/login"));
        }
        OAuthState::Issued { browser: hash, .. } if hash != digest(browser) => {
            return Err(ApiError::field("state", "state issued to another browser: start at /oauth/login"));
        }
        OAuthState::Issued { .. } => {}
    }
    let code = q.code.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::field("code", "missing code"))?;
    let name = oauth_state.rsplit_once('.').map(|(portal, _)| portal);
    let portal = portal_named(&state, name)?;
    let tokens = portal.hubspot.install_oauth(&code).await.map_err(|e| match e {
        callbridge_hubspot::HubSpotError::Api { status: 400..=499, message, .. } => {
            ApiError::field("code", format!("HubSpot refused the code: {message}"))
        }
        other => ApiError::Upstream(format!("the code could not be exchanged: {}", crate::readiness::reason(&other))),
    })?;
    tracing::info!(portal.id = %portal.id(), hub.id = tokens.hub_id, "a HubSpot account was connected by OAuth");
    if let Some(hub_id) = tokens.hub_id {
        portal.installed_in(hub_id);
    }
    // Setup and the capability probe run now, not at the end of a backoff.
    portal.readiness.recheck();
    let started = tokio::time::Instant::now();
    while !portal.readiness.is_ready() && started.elapsed() < SETUP_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = portal.readiness.status();
    let account = tokens.hub_id.map(|h| h.to_string()).unwrap_or_else(|| "(not told)".into());
    let readiness = match &status.reason {
        None => "ready: properties in place, capabilities probed".to_string(),
        Some(why) => format!("not ready yet: {}", escape(why)),
    };
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>callbridge connected</title>\
         <h1>HubSpot account {account} is connected</h1>\
         <p>callbridge portal <code>{}</code> lands calls in it. Status: {readiness}.</p>",
        escape(portal.id().as_str())
    );
    Ok((StatusCode::OK, Html(page)).into_response())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
