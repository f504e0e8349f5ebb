//! OAuth tokens kept in callbridge's store, for the HubSpot client.

use std::sync::Arc;

use async_trait::async_trait;
use callbridge_hubspot::{OAuthTokens, TokenStore};
use callbridge_store::{Store, StoredTokens};
use secrecy::{ExposeSecret, SecretString};

pub struct StoreTokens(pub Arc<dyn Store>);

#[async_trait]
impl TokenStore for StoreTokens {
    async fn load(&self) -> anyhow::Result<Option<OAuthTokens>> {
        Ok(self.0.load_tokens().await?.map(|t| OAuthTokens {
            access_token: SecretString::from(t.access_token),
            refresh_token: SecretString::from(t.refresh_token),
            expires_at_ms: t.expires_at_ms,
            hub_id: t.hub_id,
            scopes: t.scopes,
        }))
    }

    async fn save(&self, t: &OAuthTokens) -> anyhow::Result<()> {
        let stored = StoredTokens {
            access_token: t.access_token.expose_secret().to_string(),
            refresh_token: t.refresh_token.expose_secret().to_string(),
            expires_at_ms: t.expires_at_ms,
            hub_id: t.hub_id,
            scopes: t.scopes.clone(),
        };
        Ok(self.0.save_tokens(&stored).await?)
    }
}
