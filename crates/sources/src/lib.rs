//! The sources callbridge takes calls and bookings from. One module per platform owns how its
//! deliveries prove themselves (a shared secret, or a signature over the raw body) and how its
//! payload becomes a canonical event; all of them meet the HTTP layer through [`Platform`].
//! Adding a platform is its module here, a route, and a configuration section.
//!
//! | module | platform | credential |
//! |---|---|---|
//! | [`vapi`] | Vapi server messages | `X-Vapi-Secret` / Bearer, or its HMAC credential |
//! | [`retell`] | Retell webhooks | `x-retell-signature` over the body |
//! | [`elevenlabs`] | ElevenLabs Agents post-call webhooks | `ElevenLabs-Signature` over the body |
//! | [`generic`] | the booking webhook (Zapier, custom agents) | Bearer |
//! | [`hubspot`] | HubSpot's own app webhooks (contact changes) | `X-HubSpot-Signature-v3` over method, URI, body and time |
//! | [`pulled`] | call records polled from a receptionist's web app, by a configured mapping | the poller's session |
//!
//! Shared pieces: [`fields`] reads payloads naming every problem by its field, [`call`] is
//! the one constructor of a call event, [`signature`] and [`credential`] check credentials in
//! constant time.

pub mod call;
pub mod credential;
pub mod elevenlabs;
pub mod fields;
pub mod generic;
pub mod hubspot;
pub mod pulled;
pub mod retell;
pub mod signature;
pub mod vapi;

use callbridge_domain::{DefaultRegion, Event, IdempotencyKey};
use http::HeaderMap;
use serde_json::Value;

pub use credential::{SharedSecret, Unauthorized};
pub use elevenlabs::ElevenLabs;
pub use fields::{CallerNumber, FieldError, Fields, Unit};
pub use generic::Generic;
pub use retell::Retell;
pub use vapi::Vapi;

/// What a delivery is to callbridge.
#[derive(Debug)]
pub enum Parsed {
    /// An event to land, under the key that makes a repeat of it a duplicate.
    Event(Box<Event>, IdempotencyKey),
    /// A delivery to keep without work; `kept` replaces the raw body when that is large and
    /// of no use (audio), else the body is kept as received.
    Record { key: IdempotencyKey, kept: Option<Value> },
    /// A call with nothing to attach it to in HubSpot (no usable phone, no email): kept and
    /// listed as recorded, not synced.
    Unattached(IdempotencyKey),
    /// Acknowledged and not stored: the message's type.
    Ignored(String),
}

/// A short, stable name for content (the first 16 bytes of its SHA-256, hex): keys a delivery
/// that has no id of its own, so a redelivery of the same content is a duplicate.
pub fn content_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A JSON body, or the 400 that says it is not one.
pub fn decode_json(body: &[u8]) -> Result<Value, Fields> {
    serde_json::from_slice(body).map_err(|e| {
        let mut f = Fields::default();
        f.error("body", format!("is not valid JSON ({e})"));
        f
    })
}

/// What a request must prove before callbridge acts on it: every platform's webhook
/// credentials, and the shared secret of an endpoint that is not a webhook (an ElevenLabs
/// server tool).
pub trait Guard: Send + Sync + 'static {
    fn check_headers(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), Unauthorized>;
    fn check_body(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), Unauthorized>;
}

impl<P: Platform> Guard for P {
    fn check_headers(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), Unauthorized> {
        Platform::check_headers(self, headers, now_ms)
    }
    fn check_body(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), Unauthorized> {
        Platform::check_body(self, headers, body, now_ms)
    }
}

/// A platform whose webhooks callbridge takes.
pub trait Platform: Send + Sync + 'static {
    /// The platform's name in routes, rows and idempotency keys.
    const NAME: &'static str;

    /// What the headers alone prove, checked before the body is read: a shared secret, or a
    /// signature header that is present, well-formed and fresh.
    fn check_headers(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), Unauthorized>;

    /// What needs the raw body too (a signature over it), checked before it is parsed.
    fn check_body(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), Unauthorized>;

    /// The body as JSON (the default), or as whatever else the platform's senders send.
    fn decode(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Value, Fields> {
        decode_json(body)
    }

    /// The payload as a canonical event, or every problem with it.
    fn parse(&self, headers: &HeaderMap, body: &Value, region: DefaultRegion) -> Result<Parsed, Fields>;

    /// Where the platform names the assistant or agent that took the call (which may map it to
    /// a portal), first found wins.
    const AGENT_PATHS: &'static [&'static str] = &[];
}
