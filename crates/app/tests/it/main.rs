//! Integration tests: the real app on port 0 with the HubSpot sandbox in-process.

mod answers;
mod bookings;
mod bounds;
mod burst;
mod dedup;
mod doctor;
mod fuzz_regressions;
mod helpers;
mod hubspot_webhooks;
mod live;
mod logs;
mod notify;
mod oauth;
mod outage_logs;
mod pipeline;
mod platforms;
mod portals;
mod pull_poll;
mod pull_session;
mod readiness;
mod rejections;
mod restart;
mod shared;
mod tools;
mod upgrade;
mod validation;
