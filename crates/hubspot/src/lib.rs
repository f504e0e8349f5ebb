//! The one place callbridge talks to HubSpot: authentication (private-app token or OAuth
//! with single-flight refresh), the portal's rate budget, retries, batch endpoints, the
//! capability probe, and typed errors. Nothing here is business logic.

pub mod api;
pub mod auth;
pub mod budget;
pub mod client;
pub mod error;
pub mod types;

pub use api::HubSpotApi;
pub use auth::{Credentials, MemoryTokenStore, OAuthApp, OAuthTokens, TokenStore};
pub use budget::{Priority, SharedWindow};
pub use client::{ApiVersion, ClientConfig, ClientStats, HubSpotClient, Identity, Paths, RetryPolicy};
pub use error::{HubSpotError, PropertyIssue};
pub use types::*;

/// Requests per 10 seconds for a tier name (`free`, `starter`, `professional`,
/// `enterprise`, `limit_increase`) or `oauth` (per installed portal).
pub fn ten_second_max_for(tier: &str) -> Option<u32> {
    Some(match tier {
        "free" | "starter" => 100,
        "professional" | "enterprise" => 190,
        "limit_increase" => 250,
        "oauth" => 110,
        _ => return None,
    })
}
