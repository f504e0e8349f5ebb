//! Time formats at the edges: ISO-8601 with an offset in, epoch milliseconds inside,
//! HubSpot's `2026-01-06T14:02:11.020Z` out.

/// Formats epoch milliseconds as HubSpot does.
pub fn iso_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

/// Parses an ISO-8601 date-time that carries an offset (`Z` or `±hh:mm`).
pub fn parse_iso_with_offset(s: &str) -> Option<i64> {
    let s = s.trim();
    // Real offsets lie within ±18:00 (what RFC 3339 readers accept); jiff takes up to ±25:59.
    if offset_minutes(s).is_some_and(|m| m.abs() > 18 * 60) {
        return None;
    }
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// The numeric UTC offset at the end of an ISO-8601 date-time (`+05:30`, `-0800`, `+09`), in
/// minutes; `None` for `Z` or none.
fn offset_minutes(s: &str) -> Option<i32> {
    let time = &s[s.find(['T', 't', ' '])? + 1..];
    let at = time.rfind(['+', '-'])?;
    let sign = if time[at..].starts_with('-') { -1 } else { 1 };
    let digits: String = time[at + 1..].chars().filter(char::is_ascii_digit).collect();
    let hours: i32 = digits.get(..2)?.parse().ok()?;
    let minutes: i32 = digits.get(2..4).and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(sign * (hours * 60 + minutes))
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_required_and_honoured() {
        assert_eq!(parse_iso_with_offset("2026-01-08T09:00:00-05:00"), Some(1_767_880_800_000));
        assert_eq!(parse_iso_with_offset("2026-01-08T14:00:00Z"), Some(1_767_880_800_000));
        assert_eq!(parse_iso_with_offset("2026-01-08T09:00:00"), None);
        assert_eq!(parse_iso_with_offset("2026-01-08T23:00:00+14:00"), Some(1_767_862_800_000));
        assert_eq!(parse_iso_with_offset("2026-01-08T09:00:00+18:30"), None, "no zone is that far from UTC");
        assert_eq!(parse_iso_with_offset("2026-01-08T09:00:00-19:00"), None);
        assert_eq!(iso_ms(1_767_880_800_000), "2026-01-08T14:00:00.000Z");
    }
}
