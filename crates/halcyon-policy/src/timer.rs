//! The delayed fallback timer: the next time at or after a moment when a
//! recurrence (daily, weekly, monthly, yearly, or one date) fires. UTC.

use halcyon_config::FallbackTimer;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// The first time `>= after` at which the timer fires; `None` if it never will
/// (a date-only timer always returns its date, even when past: the failback it
/// allows is then due at once).
pub fn next_occurrence(timer: &FallbackTimer, after: Timestamp) -> Option<Timestamp> {
    let start: DateTime = TimeZone::UTC.to_datetime(after);
    let at = |date: Date, hour: i8, minute: i8| -> Option<Timestamp> {
        let dt = date.at(hour, minute, 0, 0);
        let ts = TimeZone::UTC.to_timestamp(dt).ok()?;
        (ts >= after).then_some(ts)
    };
    match *timer {
        FallbackTimer::Date { at } => Some(at),
        FallbackTimer::Daily { hour, minute } => (0..2)
            .filter_map(|d| start.date().checked_add(d.days()).ok())
            .find_map(|date| at(date, hour, minute)),
        FallbackTimer::Weekly {
            weekday,
            hour,
            minute,
        } => (0..8)
            .filter_map(|d| start.date().checked_add(d.days()).ok())
            .filter(|date| date.weekday().to_monday_one_offset() == weekday)
            .find_map(|date| at(date, hour, minute)),
        FallbackTimer::Monthly { day, hour, minute } => (0..49)
            .filter_map(|m| start.date().first_of_month().checked_add(m.months()).ok())
            .filter_map(|first| Date::new(first.year(), first.month(), day).ok())
            .find_map(|date| at(date, hour, minute)),
        FallbackTimer::Yearly {
            month,
            day,
            hour,
            minute,
        } => (0..9)
            .filter_map(|y| Date::new(start.year() + y, month, day).ok())
            .find_map(|date| at(date, hour, minute)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn daily_fires_today_or_tomorrow() {
        let t = FallbackTimer::Daily { hour: 2, minute: 0 };
        assert_eq!(
            next_occurrence(&t, ts("2026-03-01T01:00:00Z")),
            Some(ts("2026-03-01T02:00:00Z"))
        );
        assert_eq!(
            next_occurrence(&t, ts("2026-03-01T02:00:00Z")),
            Some(ts("2026-03-01T02:00:00Z"))
        );
        assert_eq!(
            next_occurrence(&t, ts("2026-03-01T02:00:01Z")),
            Some(ts("2026-03-02T02:00:00Z"))
        );
    }

    #[test]
    fn weekly_finds_the_weekday() {
        // 2026-03-01 is a Sunday.
        let t = FallbackTimer::Weekly {
            weekday: 7,
            hour: 3,
            minute: 30,
        };
        assert_eq!(
            next_occurrence(&t, ts("2026-03-01T04:00:00Z")),
            Some(ts("2026-03-08T03:30:00Z"))
        );
        let monday = FallbackTimer::Weekly {
            weekday: 1,
            hour: 0,
            minute: 0,
        };
        assert_eq!(
            next_occurrence(&monday, ts("2026-03-01T04:00:00Z")),
            Some(ts("2026-03-02T00:00:00Z"))
        );
    }

    #[test]
    fn monthly_skips_months_without_the_day() {
        let t = FallbackTimer::Monthly {
            day: 31,
            hour: 1,
            minute: 0,
        };
        assert_eq!(
            next_occurrence(&t, ts("2026-04-01T00:00:00Z")),
            Some(ts("2026-05-31T01:00:00Z"))
        );
    }

    #[test]
    fn yearly_waits_for_a_leap_day() {
        let t = FallbackTimer::Yearly {
            month: 2,
            day: 29,
            hour: 0,
            minute: 0,
        };
        assert_eq!(
            next_occurrence(&t, ts("2026-03-01T00:00:00Z")),
            Some(ts("2028-02-29T00:00:00Z"))
        );
    }
}
