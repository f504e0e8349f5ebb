//! callbridge's domain: canonical events, parse-don't-validate types for what comes from
//! outside (phones, emails), and the planner that turns an event plus what is known of a
//! contact into the CRM writes to make. No I/O.

pub mod availability;
pub mod contact_change;
pub mod dedup;
pub mod email;
pub mod event;
pub mod ids;
pub mod phone;
pub mod plan;
pub mod sentiment;
pub mod time;

pub use contact_change::{ContactChange, ContactChangeKind};
pub use email::Email;
pub use event::{BookingEvent, CallEvent, CallStage, Caller, Direction, Event, Intent, Sentiment, Source};
pub use ids::{IdempotencyKey, PortalId};
pub use phone::{DefaultRegion, PhoneE164};
