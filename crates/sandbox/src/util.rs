//! Small helpers: ids, clocks and HubSpot's time formats.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random UUID (version 4 layout), as HubSpot uses for correlation ids.
pub fn correlation_id() -> String {
    let v = fastrand::u128(..);
    let v = (v & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Formats epoch milliseconds as HubSpot does: `2024-08-15T17:09:13.610Z`.
pub fn iso(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => String::new(),
    }
}

/// Parses a HubSpot datetime value: epoch milliseconds or ISO-8601 with an offset.
pub fn parse_datetime_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    // A date alone is midnight UTC.
    s.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().as_millisecond())
}

/// A random token of `n` lowercase hex characters.
pub fn random_hex(n: usize) -> String {
    (0..n).map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0')).collect()
}

/// Digits of a phone number as HubSpot's calculated search properties keep them: the
/// national number, without country code, trunk prefix, punctuation or extension
/// (DOC:search "refrain from including the country code").
pub fn national_digits(raw: &str) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    let cut = ["ext", "x", "#"].iter().filter_map(|m| lower.find(m)).min().unwrap_or(lower.len());
    let body = lower[..cut].trim();
    let international = body.starts_with('+') || body.starts_with("00");
    let mut digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    if international {
        if body.starts_with("00") {
            digits.drain(..2);
        }
        let cc = country_code_len(&digits);
        digits.drain(..cc.min(digits.len()));
    } else if (digits.len() == 11 && digits.starts_with('1')) || (digits.starts_with('0') && digits.len() > 6) {
        // A NANP number typed with its leading 1, or a national trunk prefix.
        digits.remove(0);
    }
    (!digits.is_empty()).then_some(digits)
}

/// Length of the ITU country calling code at the start of `digits`.
fn country_code_len(digits: &str) -> usize {
    const TWO: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
        "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84",
        "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO.iter().any(|cc| digits.starts_with(cc)) {
        2
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_digits_drop_country_code_punctuation_and_extension() {
        assert_eq!(national_digits("+1 (415) 555-0100").as_deref(), Some("4155550100"));
        assert_eq!(national_digits("(415) 555-0100").as_deref(), Some("4155550100"));
        assert_eq!(national_digits("1-415-555-0100 ext. 12").as_deref(), Some("4155550100"));
        assert_eq!(national_digits("+44 20 7946 0958").as_deref(), Some("2079460958"));
        assert_eq!(national_digits("020 7946 0958").as_deref(), Some("2079460958"));
        assert_eq!(national_digits("0044 20 7946 0958").as_deref(), Some("2079460958"));
        assert_eq!(national_digits("+353 1 234 5678").as_deref(), Some("12345678"));
        assert_eq!(national_digits("n/a"), None);
    }

    #[test]
    fn iso_round_trips_through_parse() {
        let ms = 1_723_741_753_610;
        assert_eq!(iso(ms), "2024-08-15T17:09:13.610Z");
        assert_eq!(parse_datetime_ms(&iso(ms)), Some(ms));
        assert_eq!(parse_datetime_ms("1723741753610"), Some(ms));
        assert_eq!(parse_datetime_ms("2015-05-01"), Some(1_430_438_400_000));
        assert_eq!(parse_datetime_ms("yesterday"), None);
    }

    #[test]
    fn correlation_ids_look_like_uuids() {
        let id = correlation_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
