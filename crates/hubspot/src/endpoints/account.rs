//! The account: OAuth code exchange, the token's scopes, and the capability probe (v3 Calls
//! or v1 engagements, scheduler), cached after the first answer.

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::auth::{OAuthApp, OAuthTokens, TokenResponse, now_ms};
use crate::error::{HubSpotError, describe};
use crate::transport::{Call, HubSpotClient};
use crate::types::*;

impl HubSpotClient {
    /// Exchanges an authorization code and stores the tokens.
    pub async fn exchange_code(&self, app: &OAuthApp, code: &str) -> Result<OAuthTokens, HubSpotError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("redirect_uri", app.redirect_uri.as_str()),
            ("code", code),
        ];
        let r = self
            .http
            .post(self.paths.token())
            .form(&form)
            .send()
            .await
            .map_err(|e| HubSpotError::Transport { attempts: 1, message: describe(&e) })?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        if status != 200 {
            let message = body
                .get("error_description")
                .or_else(|| body.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("code exchange failed");
            return Err(HubSpotError::Api { status, category: "OAUTH".into(), message: message.to_string() });
        }
        let parsed: TokenResponse = serde_json::from_value(body).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        let tokens = parsed.into_tokens(now_ms());
        self.tokens.install(tokens.clone()).await?;
        Ok(tokens)
    }

    /// Scopes of the current OAuth access token (`None` for private-app tokens).
    pub async fn token_scopes(&self) -> Result<Option<Vec<String>>, HubSpotError> {
        if !self.tokens.is_oauth() {
            return Ok(None);
        }
        let bearer = self.tokens.bearer().await?;
        let url = format!("{}/oauth/v1/access-tokens/{}", self.paths.base(), bearer.token.expose_secret());
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| HubSpotError::Transport { attempts: 1, message: describe(&e) })?;
        let body: Value = r.json().await.map_err(|e| HubSpotError::Decode(describe(&e)))?;
        Ok(body
            .get("scopes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()))
    }

    /// Learns what the token may do: from the token's scopes for OAuth, else by harmless
    /// reads that answer 403 `MISSING_SCOPES` when a scope is missing. Cached.
    pub async fn capabilities(&self) -> Result<Capabilities, HubSpotError> {
        if let Some(c) = self.capabilities.lock().clone() {
            return Ok(c);
        }
        self.probe().await
    }

    pub async fn probe(&self) -> Result<Capabilities, HubSpotError> {
        let scopes = self.token_scopes().await?;
        let mut missing_scopes: Vec<String> = Vec::new();
        let mut allowed = |r: Result<Value, HubSpotError>| -> Result<bool, HubSpotError> {
            match r {
                Ok(_) => Ok(true),
                Err(HubSpotError::MissingScopes { scopes }) => {
                    for scope in scopes {
                        if !missing_scopes.contains(&scope) {
                            missing_scopes.push(scope);
                        }
                    }
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        };
        let calls_api = allowed(
            self.execute(Call::new(Method::GET, self.paths.objects(ObjectType::Calls)).query("limit", "1")).await,
        )?;
        let scheduler =
            allowed(self.execute(Call::new(Method::GET, self.paths.scheduler()).query("limit", "1")).await)?;
        let caps = Capabilities { calls_api, scheduler, scopes, missing_scopes };
        *self.capabilities.lock() = Some(caps.clone());
        tracing::info!(hubspot.calls_api = calls_api, hubspot.scheduler = scheduler, "probed HubSpot capabilities");
        Ok(caps)
    }
}
