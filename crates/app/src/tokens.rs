//! OAuth tokens kept in callbridge's store, for the HubSpot client.

use std::sync::Arc;

use async_trait::async_trait;
use callbridge_domain::PortalId;
use callbridge_hubspot::{OAuthTokens, TokenStore};
use callbridge_store::{Store, StoredTokens};
use secrecy::{ExposeSecret, SecretString};

/// A portal's tokens, kept in the store.
pub struct StoreTokens {
    pub store: Arc<dyn Store>,
    pub portal: PortalId,
}

#[async_trait]
impl TokenStore for StoreTokens {
    async fn load(&self) -> anyhow::Result<Option<OAuthTokens>> {
        Ok(self.store.load_tokens(&self.portal).await?.map(|t| OAuthTokens {
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
        Ok(self.store.save_tokens(&self.portal, &stored).await?)
    }
}
