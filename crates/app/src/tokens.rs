//! OAuth tokens kept in callbridge's store for the HubSpot client, sealed at rest
//! ([`crate::sealing`]): the database alone gives neither the access nor the refresh token.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use callbridge_domain::PortalId;
use callbridge_hubspot::{OAuthTokens, TokenStore};
use callbridge_store::{Store, StoredTokens};
use secrecy::{ExposeSecret, SecretString};

use crate::sealing::SealingKey;

/// A portal's tokens, kept in the store, sealed with `key`.
pub struct StoreTokens {
    pub store: Arc<dyn Store>,
    pub portal: PortalId,
    pub key: SealingKey,
}

impl StoreTokens {
    fn context(&self, field: &str) -> String {
        format!("oauth:{}:{field}", self.portal)
    }

    /// A stored token: opened, or taken as it is when an older release kept it in the clear
    /// (it is sealed at the next save).
    fn open(&self, stored: &str, field: &str) -> anyhow::Result<SecretString> {
        if !SealingKey::is_sealed(stored) {
            return Ok(SecretString::from(stored.to_string()));
        }
        self.key.open(stored, &self.context(field)).with_context(|| format!("the stored OAuth {field}"))
    }
}

#[async_trait]
impl TokenStore for StoreTokens {
    async fn load(&self) -> anyhow::Result<Option<OAuthTokens>> {
        let Some(t) = self.store.load_tokens(&self.portal).await? else { return Ok(None) };
        Ok(Some(OAuthTokens {
            access_token: self.open(&t.access_token, "access_token")?,
            refresh_token: self.open(&t.refresh_token, "refresh_token")?,
            expires_at_ms: t.expires_at_ms,
            hub_id: t.hub_id,
            scopes: t.scopes,
        }))
    }

    async fn save(&self, t: &OAuthTokens) -> anyhow::Result<()> {
        let stored = StoredTokens {
            access_token: self.key.seal(t.access_token.expose_secret(), &self.context("access_token")),
            refresh_token: self.key.seal(t.refresh_token.expose_secret(), &self.context("refresh_token")),
            expires_at_ms: t.expires_at_ms,
            hub_id: t.hub_id,
            scopes: t.scopes.clone(),
        };
        Ok(self.store.save_tokens(&self.portal, &stored).await?)
    }

    async fn refresh_turn(&self) -> anyhow::Result<Option<Box<dyn std::any::Any + Send>>> {
        let name = format!("oauth-refresh:{}", self.portal);
        let started = tokio::time::Instant::now();
        loop {
            if let Some(turn) = self.store.try_exclusive(&name).await? {
                return Ok(Some(Box::new(turn)));
            }
            // Another instance is refreshing; its tokens are read once it is done. A turn
            // held far longer than a refresh takes is not waited on for ever.
            if started.elapsed() > TURN_WAIT {
                tracing::warn!(portal.id = %self.portal, "another instance held the OAuth refresh for 10 s; refreshing anyway");
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// How long an instance waits for another's refresh of the same portal.
const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
