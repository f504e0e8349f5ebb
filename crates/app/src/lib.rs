//! callbridge: lands voice-AI calls and meeting bookings in HubSpot.
//!
//! This crate wires the pieces together: configuration, the portals served, the HTTP service,
//! typed jobs and the worker, the sync engine and the command line. Domain rules live in `callbridge-domain`, HubSpot in `callbridge-hubspot`,
//! persistence in `callbridge-store`, and the simulator in `callbridge-sandbox`.

pub mod app;
pub mod budget;
pub mod cli;
mod cmd;
pub mod config;
pub mod dedup;
pub mod doctor;
pub mod events;
pub mod http;
pub mod hubspot_webhooks;
pub mod inbox;
pub mod invariants;
pub mod jobs;
pub mod meetings;
pub mod meters;
pub mod notify;
pub mod portals;
pub mod properties;
pub mod pull;
pub mod readiness;
pub mod rejections;
pub mod scheduler;
pub mod sealing;
pub mod sync;
pub mod telemetry;
pub mod tokens;
pub mod tools;
pub mod ui;
pub mod worker;

pub use app::App;
pub use config::Config;
