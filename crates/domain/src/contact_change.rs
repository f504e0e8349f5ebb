//! A change HubSpot reports about one of a portal's contacts (its own app webhooks), as
//! callbridge acts on it: which of callbridge's records about that contact it touches.

use serde::{Deserialize, Serialize};

/// One contact change, as HubSpot delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactChange {
    /// HubSpot's account id (`portalId`): which portal the change belongs to.
    pub hub_id: u64,
    /// The contact (`objectId`).
    pub contact_id: u64,
    /// When it happened in HubSpot (`occurredAt`, ms).
    pub occurred_at_ms: i64,
    pub what: ContactChangeKind,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContactChangeKind {
    /// Contacts merged: `merged` now answer as `survivor`.
    Merge { survivor: u64, merged: Vec<u64> },
    /// The contact was deleted (it may be restored).
    Deletion,
    /// The contact was deleted for privacy (GDPR): nothing of it may be kept.
    PrivacyDeletion,
    /// One of the properties callers are known by (`phone`, `mobilephone`, `email`) changed.
    IdentityChange { property: String },
}

/// The contact properties a caller is known by: a change to one re-indexes its contact.
pub const IDENTITY_PROPERTIES: [&str; 5] =
    ["phone", "mobilephone", "email", "hs_additional_emails", crate::plan::PROP_PHONE_E164];
