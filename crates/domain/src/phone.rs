//! Phone numbers in E.164, parsed the way libphonenumber does (through `rlibphonenumber`,
//! which matched Google's library on every probe we ran; the usual `phonenumber` crate drops
//! digits on some inputs). Everything behind the edge holds a [`PhoneE164`] and never
//! re-checks it.

use std::fmt;
use std::str::FromStr;

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};
use serde::{Deserialize, Serialize};

/// A region code (`US`, `GB`, …) used for numbers typed without a country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRegion(Region);

impl DefaultRegion {
    /// A region the phone library has numbering data for; any other code would make every
    /// number typed without a country code unparseable.
    pub fn parse(code: &str) -> Result<DefaultRegion, String> {
        let unknown = || format!("unknown region code {code:?}: use a two-letter country code such as US, GB or DE");
        let region = Region::from_str(&code.to_ascii_uppercase()).map_err(|_| unknown())?;
        if !rlibphonenumber::PHONE_NUMBER_UTIL.get_supported_regions().any(|r| r == region) {
            return Err(unknown());
        }
        Ok(DefaultRegion(region))
    }
}

impl Default for DefaultRegion {
    fn default() -> Self {
        DefaultRegion(Region::US)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is not a phone number")]
    Unparseable,
    #[error("is not a valid phone number")]
    Invalid,
}

/// A valid phone number in E.164 form (`+14155550100`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneE164 {
    e164: String,
    /// Digits of the national significant number (what HubSpot's phone search matches).
    national: String,
}

impl PhoneE164 {
    pub fn parse(raw: &str, region: DefaultRegion) -> Result<PhoneE164, PhoneError> {
        let n = PhoneNumber::parse(raw.trim(), Some(region.0)).map_err(|_| PhoneError::Unparseable)?;
        if !n.is_valid() {
            return Err(PhoneError::Invalid);
        }
        Ok(PhoneE164 {
            e164: n.format_as(PhoneNumberFormat::E164).into_owned(),
            national: n.get_national_significant_number(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The national significant number's digits (`4155550100`).
    pub fn national(&self) -> &str {
        &self.national
    }

    /// Values to search HubSpot's `phone`/`mobilephone` with: HubSpot matches phones on
    /// the national number, so that comes first; the E.164 form catches portals whose
    /// numbers were stored verbatim.
    pub fn search_values(&self) -> Vec<String> {
        vec![self.national.clone(), self.e164.clone()]
    }

    /// The last four digits, for logs that must not carry the number.
    pub fn masked(&self) -> String {
        let tail: String = self.e164.chars().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect();
        format!("***{tail}")
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

impl TryFrom<String> for PhoneE164 {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        // Stored values are already E.164; the region only matters for national input.
        PhoneE164::parse(&s, DefaultRegion::default())
    }
}

impl From<PhoneE164> for String {
    fn from(p: PhoneE164) -> String {
        p.e164
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> Result<String, PhoneError> {
        PhoneE164::parse(s, DefaultRegion::default()).map(|p| p.as_str().to_string())
    }

    #[test]
    fn formats_typed_by_hand_normalise_to_one_e164() {
        for raw in
            ["(415) 555-0100", "+1 415-555-0100", "415.555.0100", "1-415-555-0100", "+14155550100", " 415 555 0100 "]
        {
            assert_eq!(us(raw).as_deref(), Ok("+14155550100"), "{raw}");
        }
        let gb = DefaultRegion::parse("gb").unwrap();
        assert_eq!(PhoneE164::parse("020 7946 0958", gb).unwrap().as_str(), "+442079460958");
        assert_eq!(PhoneE164::parse("+33 1 42 76 49 78", gb).unwrap().national(), "142764978");
    }

    #[test]
    fn numbers_libphonenumber_rejects_are_rejected() {
        assert_eq!(us("hello"), Err(PhoneError::Unparseable));
        assert_eq!(us("+97233142764978"), Err(PhoneError::Invalid));
        assert_eq!(us("555-0100"), Err(PhoneError::Invalid));
        assert!(DefaultRegion::parse("Atlantis").is_err());
        assert!(DefaultRegion::parse("QQ").is_err(), "a code the phone library has no numbering data for");
    }

    #[test]
    fn masking_keeps_only_the_last_two_digits() {
        assert_eq!(PhoneE164::parse("+14155550100", DefaultRegion::default()).unwrap().masked(), "***00");
    }
}
