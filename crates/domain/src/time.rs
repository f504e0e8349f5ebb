//! Time formats at the edges: ISO-8601 with an offset in, epoch milliseconds inside,
//! HubSpot's `2026-01-06T14:02:11.020Z` out.

/// Formats epoch milliseconds as HubSpot does.
pub fn iso_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

/// Parses an ISO-8601 date-time that carries an offset (`Z` or `±hh:mm`).
pub fn parse_iso_with_offset(s: &str) -> Option<i64> {
    s.trim().parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
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
        assert_eq!(iso_ms(1_767_880_800_000), "2026-01-08T14:00:00.000Z");
    }
}
