//! Email addresses: parsed strictly (no display names, no IP-literal domains, a TLD
//! required) and lower-cased, as HubSpot compares them.

use std::fmt;

use email_address::{EmailAddress, Options};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a valid email address")]
pub struct EmailError;

impl Email {
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let trimmed = raw.trim();
        let options = Options::default().with_required_tld().without_domain_literal().without_display_text();
        EmailAddress::parse_with_options(trimmed, options).map_err(|_| EmailError)?;
        Ok(Email(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_strict() {
        assert_eq!(Email::parse(" Dana.Reyes@Example.COM ").unwrap().as_str(), "dana.reyes@example.com");
        for bad in ["Dana <dana@example.com>", "dana@[127.0.0.1]", "dana@localhost", "dana", ""] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
