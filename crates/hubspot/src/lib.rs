//! The one place callbridge talks to HubSpot: authentication (private-app token or OAuth
//! with single-flight refresh), the portal's rate budget, retries, batch endpoints, the
//! capability probe, and typed errors. Nothing here is business logic.
//!
//! [`transport`] owns the request path (budget, auth, retries, the circuit breaker; with
//! [`auth`], [`budget`] and [`breaker`]);
//! `endpoints` owns the shapes of each endpoint group; [`HubSpotApi`] is what the rest of
//! callbridge may ask.

pub mod api;
pub mod auth;
pub mod breaker;
pub mod budget;
mod endpoints;
pub mod error;
pub mod transport;
pub mod types;

pub use api::HubSpotApi;
pub use auth::{Credentials, MemoryTokenStore, OAuthApp, OAuthStatus, OAuthTokens, TokenStore};
pub use breaker::{BreakerPolicy, patient};
pub use budget::{Priority, SharedWindow, bulk, interactive};
pub use endpoints::scheduler::{LinkAvailability, LinkBooked, LinkBooking};
pub use error::{HubSpotError, PropertyIssue};
pub use transport::{ApiVersion, ClientConfig, ClientStats, HubSpotClient, Identity, Paths, RetryPolicy};
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
