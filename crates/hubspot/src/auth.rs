//! Credentials: a private-app token, or OAuth access and refresh tokens kept in a
//! [`TokenStore`] (callbridge's database) and refreshed ahead of expiry. Refreshes are
//! single-flight: however many callers find the token stale, one refresh is made and the
//! rest wait for it. A refresh token HubSpot rejects is remembered as
//! [`HubSpotError::RefreshRejected`] until the app is installed again — never retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::HubSpotError;

/// OAuth tokens as stored.
#[derive(Clone, Debug)]
pub struct OAuthTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    /// Epoch milliseconds.
    pub expires_at_ms: i64,
    pub hub_id: Option<u64>,
    pub scopes: Vec<String>,
}

/// An OAuth portal's connection, as `/token/status` and `/portals` show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OAuthStatus {
    pub installed: bool,
    pub hub_id: Option<u64>,
    pub scopes: Vec<String>,
    pub expires_at_ms: Option<i64>,
    /// When the access token is refreshed (ahead of its expiry).
    pub refresh_at_ms: Option<i64>,
    /// HubSpot rejected the refresh token: why, until the portal is installed again.
    pub reconnect_needed: Option<String>,
    pub refreshes: u64,
}

/// Where OAuth tokens live between restarts.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn load(&self) -> anyhow::Result<Option<OAuthTokens>>;
    async fn save(&self, tokens: &OAuthTokens) -> anyhow::Result<()>;
    /// This process's turn to refresh, among every process sharing the store: held (the
    /// guard) while it refreshes, so a portal is refreshed once however many instances wait.
    /// A store only this process uses has nothing to take turns over.
    async fn refresh_turn(&self) -> anyhow::Result<Option<Box<dyn std::any::Any + Send>>> {
        Ok(None)
    }
}

/// Keeps tokens in memory (tests and the demo).
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<Option<OAuthTokens>>,
}

impl MemoryTokenStore {
    pub fn new(tokens: Option<OAuthTokens>) -> MemoryTokenStore {
        MemoryTokenStore { tokens: Mutex::new(tokens) }
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self) -> anyhow::Result<Option<OAuthTokens>> {
        Ok(self.tokens.lock().clone())
    }

    async fn save(&self, tokens: &OAuthTokens) -> anyhow::Result<()> {
        *self.tokens.lock() = Some(tokens.clone());
        Ok(())
    }
}

/// An OAuth app's identity.
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
}

#[derive(Clone)]
pub enum Credentials {
    PrivateApp(SecretString),
    OAuth { app: OAuthApp, store: Arc<dyn TokenStore> },
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    #[serde(default)]
    pub hub_id: Option<u64>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl TokenResponse {
    pub fn into_tokens(self, now_ms: i64) -> OAuthTokens {
        OAuthTokens {
            access_token: SecretString::from(self.access_token),
            refresh_token: SecretString::from(self.refresh_token),
            expires_at_ms: now_ms + self.expires_in * 1000,
            hub_id: self.hub_id,
            scopes: self.scopes,
        }
    }
}

/// Turns credentials into a bearer token for each request.
pub struct TokenSource {
    credentials: Credentials,
    http: reqwest::Client,
    token_url: String,
    cache: Mutex<Option<OAuthTokens>>,
    refresh_lock: tokio::sync::Mutex<()>,
    rejected: Mutex<Option<String>>,
    /// Refresh this long before expiry.
    margin: Duration,
    refreshes: AtomicU64,
}

/// A token for one request; `stale_marker` identifies it if HubSpot says it expired.
pub struct Bearer {
    pub token: SecretString,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl TokenSource {
    pub fn new(credentials: Credentials, http: reqwest::Client, token_url: String, margin: Duration) -> TokenSource {
        TokenSource {
            credentials,
            http,
            token_url,
            cache: Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            rejected: Mutex::new(None),
            margin,
            refreshes: AtomicU64::new(0),
        }
    }

    pub fn is_oauth(&self) -> bool {
        matches!(self.credentials, Credentials::OAuth { .. })
    }

    /// The OAuth app these credentials belong to, if they are OAuth's.
    pub fn oauth_app(&self) -> Option<&OAuthApp> {
        match &self.credentials {
            Credentials::OAuth { app, .. } => Some(app),
            Credentials::PrivateApp(_) => None,
        }
    }

    /// Where an OAuth portal stands, never its tokens (`None` for a private-app token).
    pub async fn status(&self) -> Option<OAuthStatus> {
        if !self.is_oauth() {
            return None;
        }
        let tokens = self.current().await.ok().flatten();
        Some(OAuthStatus {
            installed: tokens.is_some(),
            hub_id: tokens.as_ref().and_then(|t| t.hub_id),
            scopes: tokens.as_ref().map(|t| t.scopes.clone()).unwrap_or_default(),
            expires_at_ms: tokens.as_ref().map(|t| t.expires_at_ms),
            refresh_at_ms: tokens.as_ref().map(|t| t.expires_at_ms - self.margin.as_millis() as i64),
            reconnect_needed: self.rejection(),
            refreshes: self.refresh_count(),
        })
    }

    /// How many refreshes this source has made.
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The current OAuth tokens, loaded from the store if need be.
    pub async fn current(&self) -> Result<Option<OAuthTokens>, HubSpotError> {
        let Credentials::OAuth { store, .. } = &self.credentials else { return Ok(None) };
        if let Some(t) = self.cache.lock().clone() {
            return Ok(Some(t));
        }
        let loaded = store.load().await.map_err(|e| HubSpotError::Decode(format!("token store: {e:#}")))?;
        *self.cache.lock() = loaded.clone();
        Ok(loaded)
    }

    /// A token fresh enough to send.
    pub async fn bearer(&self) -> Result<Bearer, HubSpotError> {
        match &self.credentials {
            Credentials::PrivateApp(t) => Ok(Bearer { token: t.clone() }),
            Credentials::OAuth { .. } => {
                if let Some(message) = self.rejected.lock().clone() {
                    return Err(HubSpotError::RefreshRejected { message });
                }
                let tokens = self.current().await?.ok_or_else(|| HubSpotError::Unauthorized {
                    category: "NOT_INSTALLED: no OAuth tokens stored; install the app first".into(),
                })?;
                if tokens.expires_at_ms - self.margin.as_millis() as i64 > now_ms() {
                    return Ok(Bearer { token: tokens.access_token });
                }
                self.refresh(Some(tokens.access_token.expose_secret())).await.map(|t| Bearer { token: t.access_token })
            }
        }
    }

    /// Refreshes unless someone else already replaced `stale`. Single-flight.
    pub async fn refresh(&self, stale: Option<&str>) -> Result<OAuthTokens, HubSpotError> {
        let Credentials::OAuth { app, store } = &self.credentials else {
            return Err(HubSpotError::Unauthorized { category: "private-app tokens cannot be refreshed".into() });
        };
        let _guard = self.refresh_lock.lock().await;
        if let Some(message) = self.rejected.lock().clone() {
            return Err(HubSpotError::RefreshRejected { message });
        }
        let store_error = |e: anyhow::Error| HubSpotError::Decode(format!("token store: {e:#}"));
        let _turn = store.refresh_turn().await.map_err(store_error)?;
        // Read again in our turn: another instance may have refreshed while we waited.
        let current = store.load().await.map_err(store_error)?;
        if current.is_some() {
            self.cache.lock().clone_from(&current);
        }
        if let Some(t) = &current {
            let replaced = stale.is_some_and(|s| s != t.access_token.expose_secret());
            let fresh = t.expires_at_ms - self.margin.as_millis() as i64 > now_ms();
            if replaced && fresh {
                return Ok(t.clone());
            }
        }
        let refresh_token = current
            .as_ref()
            .map(|t| t.refresh_token.expose_secret().to_string())
            .ok_or_else(|| HubSpotError::Unauthorized { category: "NOT_INSTALLED".into() })?;
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("refresh_token", refresh_token.as_str()),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| HubSpotError::Transport { attempts: 1, message: crate::error::describe(&e) })?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status == 400 || status == 401 {
            let message = body
                .get("error_description")
                .or_else(|| body.get("message"))
                .and_then(|v| v.as_str())
                .unwrap_or("refresh token rejected")
                .to_string();
            tracing::error!(
                oauth.status = status,
                "HubSpot rejected the refresh token; the app must be installed again"
            );
            *self.rejected.lock() = Some(message.clone());
            return Err(HubSpotError::RefreshRejected { message });
        }
        if status != 200 {
            return Err(HubSpotError::Unavailable { status, attempts: 1, message: "token refresh failed".into() });
        }
        let parsed: TokenResponse =
            serde_json::from_value(body).map_err(|e| HubSpotError::Decode(format!("token response: {e}")))?;
        let mut tokens = parsed.into_tokens(now_ms());
        if tokens.scopes.is_empty()
            && let Some(old) = &current
        {
            tokens.scopes = old.scopes.clone();
        }
        store.save(&tokens).await.map_err(|e| HubSpotError::Decode(format!("token store: {e:#}")))?;
        *self.cache.lock() = Some(tokens.clone());
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            oauth.expires_in_s = (tokens.expires_at_ms - now_ms()) / 1000,
            "refreshed the HubSpot access token"
        );
        Ok(tokens)
    }

    /// Adopts tokens from an install (code exchange) and clears a past rejection.
    pub async fn install(&self, tokens: OAuthTokens) -> Result<(), HubSpotError> {
        if let Credentials::OAuth { store, .. } = &self.credentials {
            store.save(&tokens).await.map_err(|e| HubSpotError::Decode(format!("token store: {e:#}")))?;
        }
        *self.cache.lock() = Some(tokens);
        *self.rejected.lock() = None;
        Ok(())
    }

    /// The rejection an operator must act on, if any.
    pub fn rejection(&self) -> Option<String> {
        self.rejected.lock().clone()
    }
}
