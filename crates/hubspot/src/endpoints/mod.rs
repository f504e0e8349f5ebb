//! HubSpot's endpoints, one module per group, each an `impl` block on
//! [`HubSpotClient`](crate::HubSpotClient) over the transport's one request path. The
//! scheduler's endpoints (availability, booking) join when the mid-call tools use them.

mod account;
mod associations;
mod engagements;
mod objects;
mod properties;
