//! Identifiers that cross layers: which HubSpot portal a row belongs to, and what makes a
//! delivery the same delivery when a platform sends it again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A HubSpot portal callbridge serves, by the name the configuration gives it (a single-portal
/// setup is [`PortalId::DEFAULT`]). Every stored row that belongs to a portal says which.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortalId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a portal name is 1 to 64 letters, digits, '-' or '_'")]
pub struct InvalidPortal;

impl PortalId {
    /// The portal of a configuration that names none.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(s: &str) -> Result<PortalId, InvalidPortal> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok { Ok(PortalId(s.to_string())) } else { Err(InvalidPortal) }
    }

    pub fn default_portal() -> PortalId {
        PortalId(PortalId::DEFAULT.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PortalId {
    fn default() -> PortalId {
        PortalId::default_portal()
    }
}

impl fmt::Display for PortalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PortalId {
    type Error = InvalidPortal;
    fn try_from(s: String) -> Result<PortalId, InvalidPortal> {
        PortalId::parse(&s)
    }
}

impl From<PortalId> for String {
    fn from(p: PortalId) -> String {
        p.0
    }
}

/// What identifies a delivery across retries of it: the platform, the platform's id for the
/// thing delivered, and (for platforms that send several events about one call) the event.
/// Stored in the inbox under a unique constraint per portal; a second delivery with the same
/// key changes nothing. The text form (`platform:id[:event]`) is what rows hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// A platform's event about one of its calls (`retell`, `call-1`, `call_ended`).
    pub fn event(platform: &str, id: &str, event: &str) -> IdempotencyKey {
        IdempotencyKey(format!("{platform}:{id}:{event}"))
    }

    /// A delivery identified by its platform and one id (a booking's key, a polled call).
    pub fn of(platform: &str, id: &str) -> IdempotencyKey {
        IdempotencyKey(format!("{platform}:{id}"))
    }

    /// A key as a row holds it.
    pub fn from_stored(s: String) -> IdempotencyKey {
        IdempotencyKey(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_names_are_short_and_plain() {
        assert_eq!(PortalId::parse("acme-dental_2").unwrap().as_str(), "acme-dental_2");
        assert_eq!(PortalId::default().as_str(), "default");
        for bad in ["", "a b", "x/y", "é", &"p".repeat(65)] {
            assert_eq!(PortalId::parse(bad), Err(InvalidPortal), "{bad:?}");
        }
        assert!(serde_json::from_str::<PortalId>("\"no spaces\"").is_err());
    }

    #[test]
    fn keys_keep_the_stored_text_form() {
        assert_eq!(IdempotencyKey::event("retell", "c1", "call_ended").as_str(), "retell:c1:call_ended");
        assert_eq!(IdempotencyKey::of("generic", "key:abc").as_str(), "generic:key:abc");
    }
}
