//! Open slots from business hours: the days and hours a business takes meetings, in its time
//! zone, cut into slots, minus what is booked (with a buffer around each booking), from the
//! minimum notice to the horizon. Times are epoch milliseconds; days and hours are civil times
//! in the business's zone, so a slot at 9:00 stays at 9:00 across a daylight-saving change.
//! Also how a slot is said to a caller, in the caller's zone. No I/O.

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

/// When meetings can be booked.
#[derive(Debug, Clone)]
pub struct BusinessHours {
    pub zone: TimeZone,
    pub days: Vec<Weekday>,
    pub open: Time,
    pub close: Time,
    /// Slots start this far apart from opening time.
    pub slot_minutes: i64,
    /// Kept free before and after every booking.
    pub buffer_minutes: i64,
    /// How far ahead slots are offered.
    pub horizon_days: i64,
    /// How soon a slot may start from now.
    pub min_notice_minutes: i64,
}

impl BusinessHours {
    /// Monday to Friday, 9:00 to 17:00 in `zone`, 30-minute slots, no buffer, two weeks ahead,
    /// an hour's notice.
    pub fn weekdays(zone: TimeZone) -> BusinessHours {
        BusinessHours {
            zone,
            days: vec![Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday, Weekday::Thursday, Weekday::Friday],
            open: Time::constant(9, 0, 0, 0),
            close: Time::constant(17, 0, 0, 0),
            slot_minutes: 30,
            buffer_minutes: 0,
            horizon_days: 14,
            min_notice_minutes: 60,
        }
    }

    /// Whether a meeting of `duration_ms` may start at `start_ms` by these hours (a slot's
    /// start inside opening hours, on a business day, ending by closing time), ignoring
    /// bookings, notice and horizon.
    pub fn admits(&self, start_ms: i64, duration_ms: i64) -> bool {
        let Ok(at) = Timestamp::from_millisecond(start_ms) else { return false };
        let local = at.to_zoned(self.zone.clone());
        let date = local.date();
        self.day_slots(date, duration_ms).contains(&start_ms)
    }

    /// The slot starts of one civil day that fit `duration_ms` before closing.
    fn day_slots(&self, date: Date, duration_ms: i64) -> Vec<i64> {
        if !self.days.contains(&date.weekday()) || self.slot_minutes <= 0 {
            return Vec::new();
        }
        let at = |t: Time| {
            self.zone.to_ambiguous_zoned(date.to_datetime(t)).compatible().ok().map(|z| z.timestamp().as_millisecond())
        };
        let (Some(open), Some(close)) = (at(self.open), at(self.close)) else { return Vec::new() };
        let mut out = Vec::new();
        let mut minutes = 0i64;
        loop {
            let Ok(t) = self.open.checked_add(jiff::SignedDuration::from_mins(minutes)) else { break };
            if t < self.open {
                break; // wrapped past midnight
            }
            let Some(start) = at(t) else { break };
            if start < open || start + duration_ms > close {
                break;
            }
            out.push(start);
            minutes += self.slot_minutes;
        }
        out
    }
}

/// Up to `limit` open slot starts for a meeting of `duration_ms` within [from, to) (each
/// bounded by the notice and the horizon from `now_ms`), skipping `busy` (start, end) ranges
/// widened by the buffer.
pub fn open_slots(
    hours: &BusinessHours,
    busy: &[(i64, i64)],
    now_ms: i64,
    range: (Option<i64>, Option<i64>),
    duration_ms: i64,
    limit: usize,
) -> Vec<i64> {
    let earliest = (now_ms + hours.min_notice_minutes * 60_000).max(range.0.unwrap_or(i64::MIN));
    let latest = (now_ms + hours.horizon_days * 86_400_000).min(range.1.unwrap_or(i64::MAX));
    let buffer = hours.buffer_minutes * 60_000;
    let (Ok(first), Ok(last)) = (Timestamp::from_millisecond(earliest), Timestamp::from_millisecond(latest)) else {
        return Vec::new();
    };
    let (mut day, last_day) = (first.to_zoned(hours.zone.clone()).date(), last.to_zoned(hours.zone.clone()).date());
    let mut out = Vec::new();
    while day <= last_day && out.len() < limit {
        for start in hours.day_slots(day, duration_ms) {
            let end = start + duration_ms;
            let clear = busy.iter().all(|(b0, b1)| !(b0 - buffer < end && start < b1 + buffer));
            if start >= earliest && end <= latest && clear {
                out.push(start);
                if out.len() == limit {
                    break;
                }
            }
        }
        let Ok(next) = day.tomorrow() else { break };
        day = next;
    }
    out
}

/// How a time is said to a caller in `zone`: "Thursday, December 3 at 10:30 AM".
pub fn speakable(ms: i64, zone: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_zoned(zone.clone()).strftime("%A, %B %-d at %-I:%M %p").to_string(),
        Err(_) => "an unknown time".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn slots_follow_business_hours_and_skip_what_is_booked_with_its_buffer() {
        let hours = BusinessHours { buffer_minutes: 15, ..BusinessHours::weekdays(ny()) };
        // Thursday 2026-12-03 08:00 New York (13:00 UTC); an hour's notice.
        let now = ms("2026-12-03T13:00:00Z");
        let booked = [(ms("2026-12-03T15:00:00Z"), ms("2026-12-03T15:30:00Z"))]; // 10:00–10:30 local
        let slots = open_slots(&hours, &booked, now, (None, None), 30 * 60_000, 4);
        let said: Vec<String> = slots.iter().map(|s| speakable(*s, &ny())).collect();
        // 9:00, 9:30 and 10:30 clash with the 10:00 booking and its 15 minutes either side.
        assert_eq!(
            said,
            [
                "Thursday, December 3 at 9:00 AM",
                "Thursday, December 3 at 11:00 AM",
                "Thursday, December 3 at 11:30 AM",
                "Thursday, December 3 at 12:00 PM"
            ]
        );
        assert!(!said.iter().any(|s| s.contains("9:30")));
    }

    #[test]
    fn the_last_slot_ends_by_closing_and_weekends_are_skipped() {
        let hours = BusinessHours::weekdays(ny());
        let now = ms("2026-12-04T21:00:00Z"); // Friday 16:00 local
        let slots = open_slots(&hours, &[], now, (None, None), 60 * 60_000, 1);
        // Friday is over (an hour's notice, closing at 17:00); Saturday and Sunday are shut.
        assert_eq!(speakable(slots[0], &ny()), "Monday, December 7 at 9:00 AM");
    }

    #[test]
    fn opening_time_holds_across_a_daylight_saving_change() {
        let hours = BusinessHours { days: vec![Weekday::Friday, Weekday::Monday], ..BusinessHours::weekdays(ny()) };
        // US clocks go back on Sunday 2026-11-01: 9:00 is 13:00 UTC before, 14:00 UTC after.
        let now = ms("2026-10-29T12:00:00Z");
        let slots = open_slots(&hours, &[], now, (Some(ms("2026-10-30T00:00:00Z")), None), 30 * 60_000, 17);
        assert_eq!(slots[0], ms("2026-10-30T13:00:00Z"), "Friday 9:00 EDT");
        assert_eq!(slots[16], ms("2026-11-02T14:00:00Z"), "Monday 9:00 EST");
        assert!(hours.admits(ms("2026-11-02T14:00:00Z"), 30 * 60_000));
        assert!(!hours.admits(ms("2026-11-02T13:00:00Z"), 30 * 60_000), "8:00 EST is before opening");
        assert!(!hours.admits(ms("2026-11-02T14:10:00Z"), 30 * 60_000), "not a slot's start");
    }

    #[test]
    fn a_range_and_the_horizon_bound_the_slots() {
        let hours = BusinessHours { horizon_days: 1, ..BusinessHours::weekdays(ny()) };
        let now = ms("2026-12-03T13:00:00Z");
        let slots = open_slots(&hours, &[], now, (None, None), 30 * 60_000, 100);
        assert_eq!(slots.len(), 16, "Thursday's sixteen half hours; Friday is past the horizon at 8:00");
        let afternoon = open_slots(&hours, &[], now, (Some(ms("2026-12-03T19:00:00Z")), None), 30 * 60_000, 100);
        assert_eq!(speakable(afternoon[0], &ny()), "Thursday, December 3 at 2:00 PM");
        assert!(open_slots(&hours, &[], now, (None, Some(now)), 30 * 60_000, 5).is_empty());
    }
}
