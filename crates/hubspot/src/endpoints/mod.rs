//! HubSpot's endpoints, one module per group, each an `impl` block on
//! [`HubSpotClient`](crate::HubSpotClient) over the transport's one request path.

mod account;
mod associations;
mod engagements;
mod objects;
mod properties;
pub mod scheduler;
