//! A pulled source's session. Two strategies ([`Strategy`]):
//!
//! - **A static token**, sent as a cookie or a header ([`Credential`]).
//! - **A CSRF login** ([`CsrfLogin`]): GET the CSRF endpoint and take its token from a cookie
//!   or a JSON path; POST the login (JSON, field names configurable) with the token in the
//!   configured header and the CSRF answer's cookies; take the session from a cookie of the
//!   answer (httpOnly or not) or from a JSON path. The configured `Origin` (and `Referer`) goes
//!   on every request.
//!
//! The session's expiry is the JWT's `exp` (read, not verified: it is not ours to verify). A
//! login happens when there is no session, when less than the refresh window remains, or once
//! after the platform refused the session ([`SessionKeeper::rejected`]) — however many callers
//! wait, one of them logs in and the others get its session. After a failed login nothing is
//! tried until the cooldown ends (a still-valid old session is used meanwhile), so a credential
//! outage never hammers the login endpoint. Sessions are kept in the store, so a restart does
//! not log in again. Tokens and passwords appear in no log and no error.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use callbridge_domain::PortalId;
use callbridge_sources::Fields;
use callbridge_store::{SourceSession, Store};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

/// How the session token is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// As a cookie of this name.
    Cookie(String),
    /// As this header's value.
    Header(String),
}

/// The two-step login of a single-page app.
#[derive(Debug, Clone)]
pub struct CsrfLogin {
    /// GET, relative to the base URL (`/v0/csrf`).
    pub csrf_path: String,
    /// The cookie of the CSRF answer that holds the token, if it is in a cookie…
    pub csrf_cookie: Option<String>,
    /// …else the path of the answer's JSON that holds it.
    pub csrf_json: Option<String>,
    /// The header the token goes back in (`X-CSRF-Token`, `X-CSRFToken`, `X-XSRF-TOKEN`).
    pub csrf_header: String,
    /// POST, relative to the base URL (`/v0/users/login`).
    pub login_path: String,
    pub user_field: String,
    pub password_field: String,
    pub user: String,
    pub password: SecretString,
    /// The cookie of the login answer that holds the session, if it is in a cookie…
    pub session_cookie: Option<String>,
    /// …else the path of the answer's JSON that holds it.
    pub session_json: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Strategy {
    Static(SecretString),
    Login(Box<CsrfLogin>),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The source's name (its session's key in the store).
    pub source: String,
    pub portal: PortalId,
    /// The platform's API, `https://api.example.com`.
    pub base_url: String,
    /// Sent as `Origin`, and with a `/` as `Referer`, on every request.
    pub origin: Option<String>,
    pub strategy: Strategy,
    pub send_as: Credential,
    /// Log in again when less than this remains of the session (default 7 days).
    pub refresh_window: Duration,
    /// After a failed login, how long before the next attempt (default 1 hour).
    pub cooldown: Duration,
}

/// Why there is no session to use. The texts name the step, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the last login failed; the next attempt is allowed at {until_ms} (epoch ms)")]
    Cooldown { until_ms: i64 },
    #[error("the login was refused: {0}")]
    Refused(String),
    #[error("the platform could not be reached: {0}")]
    Unreachable(String),
}

/// What `/token/status` shows of a source's session: never the token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionStatus {
    pub source: String,
    pub strategy: &'static str,
    pub logged_in: bool,
    pub expires_at_ms: Option<i64>,
    pub next_refresh_at_ms: Option<i64>,
    pub last_login_at_ms: Option<i64>,
    pub last_failure_at_ms: Option<i64>,
    pub last_failure: Option<String>,
    pub cooldown_until_ms: Option<i64>,
    pub logins: u64,
}

#[derive(Default)]
struct State {
    loaded: bool,
    session: Option<SourceSession>,
    last_failure_at_ms: Option<i64>,
    last_failure: Option<String>,
    cooldown_until_ms: Option<i64>,
    logins: u64,
}

/// Keeps one source's session.
pub struct SessionKeeper {
    config: SessionConfig,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    state: Mutex<State>,
}

impl SessionKeeper {
    pub fn new(config: SessionConfig, http: reqwest::Client, store: Arc<dyn Store>) -> SessionKeeper {
        SessionKeeper { config, http, store, state: Mutex::new(State::default()) }
    }

    /// The token to send now, logging in first when there is none or it is about to expire.
    pub async fn token(&self, now_ms: i64) -> Result<SecretString, SessionError> {
        let login = match &self.config.strategy {
            Strategy::Static(token) => return Ok(token.clone()),
            Strategy::Login(login) => login,
        };
        let mut state = self.state.lock().await;
        self.load(&mut state).await;
        if let Some(s) = state.session.as_ref().filter(|s| valid_at(s, now_ms + self.window_ms())) {
            return Ok(SecretString::from(s.token.clone()));
        }
        self.renew(&mut state, login, now_ms).await
    }

    /// The platform refused `token` (a 401): log in once, unless another caller already has
    /// or a cooldown is on. A refused static token is the operator's to fix.
    pub async fn rejected(&self, token: &SecretString, now_ms: i64) -> Result<SecretString, SessionError> {
        let login = match &self.config.strategy {
            Strategy::Static(_) => return Err(SessionError::Refused("the static token was refused".into())),
            Strategy::Login(login) => login,
        };
        let mut state = self.state.lock().await;
        self.load(&mut state).await;
        if let Some(s) = &state.session
            && s.token != token.expose_secret()
        {
            return Ok(SecretString::from(s.token.clone()));
        }
        state.session = None;
        self.renew(&mut state, login, now_ms).await
    }

    /// Logs in now (a static token: nothing to do). Inside a cooldown only when `force`d.
    pub async fn refresh(&self, now_ms: i64, force: bool) -> Result<(), SessionError> {
        let Strategy::Login(login) = &self.config.strategy else { return Ok(()) };
        let mut state = self.state.lock().await;
        self.load(&mut state).await;
        if let Some(until_ms) = state.cooldown_until_ms.filter(|&c| c > now_ms) {
            if !force {
                return Err(SessionError::Cooldown { until_ms });
            }
            state.cooldown_until_ms = None;
        }
        // Without the old session, a failed login is an error here; the old one is kept.
        let had = state.session.take();
        match self.renew(&mut state, login, now_ms).await {
            Ok(_) => Ok(()),
            Err(e) => {
                state.session = had;
                Err(e)
            }
        }
    }

    /// The client the platform is reached with (its connections are kept between requests).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `request` with the credential and the origin headers.
    pub fn authorize(&self, request: reqwest::RequestBuilder, token: &SecretString) -> reqwest::RequestBuilder {
        let request = match &self.config.send_as {
            Credential::Cookie(name) => request.header("cookie", format!("{name}={}", token.expose_secret())),
            Credential::Header(name) => request.header(name.as_str(), token.expose_secret()),
        };
        self.with_origin(request)
    }

    pub async fn status(&self, now_ms: i64) -> SessionStatus {
        let mut state = self.state.lock().await;
        self.load(&mut state).await;
        let is_static = matches!(self.config.strategy, Strategy::Static(_));
        let session = state.session.as_ref();
        SessionStatus {
            source: self.config.source.clone(),
            strategy: if is_static { "static_token" } else { "csrf_login" },
            logged_in: is_static || session.is_some_and(|s| valid_at(s, now_ms)),
            expires_at_ms: session.and_then(|s| s.expires_at_ms),
            next_refresh_at_ms: session.and_then(|s| s.expires_at_ms).map(|e| e - self.window_ms()),
            last_login_at_ms: session.map(|s| s.logged_in_at_ms),
            last_failure_at_ms: state.last_failure_at_ms,
            last_failure: state.last_failure.clone(),
            cooldown_until_ms: state.cooldown_until_ms.filter(|&c| c > now_ms),
            logins: state.logins,
        }
    }

    /// How long before its expiry a session is renewed, in milliseconds.
    fn window_ms(&self) -> i64 {
        self.config.refresh_window.as_millis() as i64
    }

    /// The stored session, read once.
    async fn load(&self, state: &mut State) {
        if state.loaded {
            return;
        }
        match self.store.load_session(&self.config.portal, &self.config.source).await {
            Ok(session) => {
                state.session = session;
                state.loaded = true;
            }
            // Logging in again is the fallback; the next call reads again.
            Err(e) => tracing::warn!(source = %self.config.source, error = %e, "a stored session could not be read"),
        }
    }

    /// Logs in (outside a cooldown) and keeps the session; after a failure, the old session
    /// while it lasts.
    async fn renew(&self, state: &mut State, login: &CsrfLogin, now_ms: i64) -> Result<SecretString, SessionError> {
        if let Some(until_ms) = state.cooldown_until_ms.filter(|&c| c > now_ms) {
            return match state.session.as_ref().filter(|s| valid_at(s, now_ms)) {
                Some(s) => Ok(SecretString::from(s.token.clone())),
                None => Err(SessionError::Cooldown { until_ms }),
            };
        }
        state.logins += 1;
        match self.login(login).await {
            Ok(token) => {
                let session = SourceSession { expires_at_ms: jwt_expiry_ms(&token), token, logged_in_at_ms: now_ms };
                if let Err(e) = self.store.save_session(&self.config.portal, &self.config.source, &session).await {
                    tracing::warn!(source = %self.config.source, error = %e, "a new session could not be stored");
                }
                tracing::info!(source = %self.config.source, expires_at_ms = session.expires_at_ms, "logged in");
                let token = SecretString::from(session.token.clone());
                state.session = Some(session);
                state.cooldown_until_ms = None;
                Ok(token)
            }
            Err(e) => {
                let until_ms = now_ms + self.config.cooldown.as_millis() as i64;
                tracing::warn!(source = %self.config.source, error = %e, cooldown_until_ms = until_ms, "login failed; waiting out the cooldown");
                state.last_failure_at_ms = Some(now_ms);
                state.last_failure = Some(e.to_string());
                state.cooldown_until_ms = Some(until_ms);
                match state.session.as_ref().filter(|s| valid_at(s, now_ms)) {
                    Some(s) => Ok(SecretString::from(s.token.clone())),
                    None => Err(e),
                }
            }
        }
    }

    fn with_origin(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.origin {
            Some(origin) => {
                request.header("origin", origin).header("referer", format!("{}/", origin.trim_end_matches('/')))
            }
            None => request,
        }
    }

    /// The CSRF step and the login; the session token.
    async fn login(&self, login: &CsrfLogin) -> Result<String, SessionError> {
        let base = self.config.base_url.trim_end_matches('/');
        let unreachable = |e: reqwest::Error| SessionError::Unreachable(e.without_url().to_string());
        let csrf =
            self.with_origin(self.http.get(format!("{base}{}", login.csrf_path))).send().await.map_err(unreachable)?;
        if !csrf.status().is_success() {
            return Err(SessionError::Refused(format!("the CSRF endpoint answered {}", csrf.status().as_u16())));
        }
        let jar = cookies(csrf.headers());
        let body: Value = csrf.json().await.unwrap_or(Value::Null);
        let token = match (&login.csrf_cookie, &login.csrf_json) {
            (Some(name), _) => jar.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()),
            (None, Some(path)) => Fields::at(&body, path).and_then(Value::as_str).map(str::to_string),
            (None, None) => None,
        }
        .ok_or_else(|| SessionError::Refused("the CSRF answer held no token where configured".into()))?;

        let cookie_header = jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
        let credentials = serde_json::json!({
            login.user_field.as_str(): login.user,
            login.password_field.as_str(): login.password.expose_secret(),
        });
        let mut request = self
            .http
            .post(format!("{base}{}", login.login_path))
            .header(login.csrf_header.as_str(), token)
            .json(&credentials);
        if !cookie_header.is_empty() {
            request = request.header("cookie", cookie_header);
        }
        let answer = self.with_origin(request).send().await.map_err(unreachable)?;
        if !answer.status().is_success() {
            return Err(SessionError::Refused(format!("the login answered {}", answer.status().as_u16())));
        }
        let jar = cookies(answer.headers());
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        match (&login.session_cookie, &login.session_json) {
            (Some(name), _) => jar.into_iter().find(|(n, _)| n == name).map(|(_, v)| v),
            (None, Some(path)) => Fields::at(&body, path).and_then(Value::as_str).map(str::to_string),
            (None, None) => None,
        }
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SessionError::Refused("the login answer held no session where configured".into()))
    }
}

/// Whether `session` is still good at `at_ms` (one without a known expiry always is).
fn valid_at(session: &SourceSession, at_ms: i64) -> bool {
    session.expires_at_ms.is_none_or(|e| e > at_ms)
}

/// The cookies an answer sets: each `Set-Cookie`'s name and value (attributes dropped).
fn cookies(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .map(|(n, v)| (n.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

/// The `exp` of a JWT, in epoch milliseconds; `None` for a token that is not a JWT or has none.
pub fn jwt_expiry_ms(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64().filter(|e| e.is_finite() && *e > 0.0 && *e < 1e11)?;
    Some((exp * 1000.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_comes_from_a_jwt_and_nothing_else() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(r#"{"exp":1780000000}"#));
        assert_eq!(jwt_expiry_ms(&token), Some(1_780_000_000_000));
        assert_eq!(jwt_expiry_ms("opaque-session-id"), None);
        assert_eq!(jwt_expiry_ms(&format!("a.{}.c", b64(r#"{"sub":"x"}"#))), None, "no exp");
        assert_eq!(jwt_expiry_ms(&format!("a.{}.c", b64(r#"{"exp":1e300}"#))), None, "an absurd exp");
        assert_eq!(jwt_expiry_ms("a.!!!.c"), None);
    }

    #[test]
    fn set_cookie_headers_give_names_and_values_without_attributes() {
        let mut h = reqwest::header::HeaderMap::new();
        h.append(reqwest::header::SET_COOKIE, "token=abc.def; Path=/; HttpOnly; Secure".parse().unwrap());
        h.append(reqwest::header::SET_COOKIE, "csrftoken=\"x1\"; SameSite=Strict".parse().unwrap());
        h.append(reqwest::header::SET_COOKIE, "=nameless".parse().unwrap());
        assert_eq!(cookies(&h), vec![("token".into(), "abc.def".into()), ("csrftoken".into(), "x1".into())]);
    }
}
