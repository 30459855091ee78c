//! Where a poll falls in local time, without a time-zone lookup per poll.
//!
//! [`moment`] asks the zone for the poll's date, its start and the next day's
//! start: three conversions. All polls of a day share the answer, so [`Clock`]
//! keeps the last two local days it worked out: their dates and bounds in Unix
//! seconds. A day is kept only when the zone has no transition within it: then
//! the day is one unbroken run of seconds at one offset and every second in it
//! has that date. A day with a DST change (two a year) is worked out per poll as
//! before, so the figures are the same either way.

use std::time::SystemTime;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::meter::Moment;
use super::unix;

/// Where a poll falls in local time: [`Clock::moment`] without the cache.
pub(crate) fn moment(tz: &TimeZone, t: SystemTime, last: Option<f64>) -> Option<Moment> {
    let ts = Timestamp::try_from(t).ok()?;
    let zoned = ts.to_zoned_datetime(tz.clone());
    let date = zoned.date();
    let start = zoned.start_of_day().ok()?;
    let next = start.tomorrow().ok()?;
    let since_start = (ts.as_second() - start.timestamp().as_second()) as f64;
    let to_next = (next.timestamp().as_second() - ts.as_second()) as f64;
    let midnights = match last.and_then(|l| Timestamp::from_second(l.floor() as i64).ok()) {
        Some(l) => midnights(date, l.to_zoned_datetime(tz.clone()).date()),
        None => 0,
    };
    Some(Moment {
        t: unix(t),
        date,
        midnights,
        near_midnight: since_start < 3600.0 || to_next < 3600.0,
        settled: since_start >= 3600.0,
    })
}

fn midnights(date: Date, prev: Date) -> u32 {
    if date == prev {
        return 0;
    }
    u32::try_from((date - prev).get_days().max(0)).unwrap_or(0)
}

/// A local day without a zone transition in it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LocalDay {
    date: Date,
    /// Its first second (Unix).
    start: i64,
    /// The first second of the next date: the day is `start..end`.
    end: i64,
    /// Where [`moment`] puts the next midnight: the start plus one calendar day.
    next: i64,
}

/// The local days of one zone, the last two worked out.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    tz: TimeZone,
    days: [Option<LocalDay>; 2],
}

impl Clock {
    pub(crate) fn new(tz: TimeZone) -> Self {
        Clock { tz, days: [None; 2] }
    }

    #[cfg(test)]
    pub(crate) fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The same as [`moment`] with this clock's zone.
    pub(crate) fn moment(&mut self, t: SystemTime, last: Option<f64>) -> Option<Moment> {
        let Ok(ts) = Timestamp::try_from(t) else {
            return None;
        };
        let s = ts.as_second();
        let Some(day) = self.day(s) else {
            return moment(&self.tz, t, last);
        };
        let since_start = (s - day.start) as f64;
        let to_next = (day.next - s) as f64;
        let midnights = match last.and_then(|l| Timestamp::from_second(l.floor() as i64).ok()) {
            Some(l) => {
                let prev = match self.find(l.as_second()) {
                    Some(d) => d.date,
                    None => l.to_zoned_datetime(self.tz.clone()).date(),
                };
                midnights(day.date, prev)
            }
            None => 0,
        };
        Some(Moment {
            t: unix(t),
            date: day.date,
            midnights,
            near_midnight: since_start < 3600.0 || to_next < 3600.0,
            settled: since_start >= 3600.0,
        })
    }

    fn find(&self, s: i64) -> Option<LocalDay> {
        self.days.iter().flatten().find(|d| d.start <= s && s < d.end).copied()
    }

    /// The local day of second `s`, worked out and kept if it has no
    /// transition; `None` on a day with one (or at the end of time).
    fn day(&mut self, s: i64) -> Option<LocalDay> {
        if let Some(d) = self.find(s) {
            return Some(d);
        }
        let ts = Timestamp::from_second(s).ok()?;
        let zoned = ts.to_zoned_datetime(self.tz.clone());
        let start = zoned.start_of_day().ok()?;
        let next = start.tomorrow().ok()?;
        let end = zoned
            .date()
            .tomorrow()
            .ok()?
            .to_zoned_datetime(self.tz.clone())
            .ok()?
            .start_of_day()
            .ok()?;
        let day = LocalDay {
            date: zoned.date(),
            start: start.timestamp().as_second(),
            end: end.timestamp().as_second(),
            next: next.timestamp().as_second(),
        };
        let transition = self.tz.following(start.timestamp()).next();
        if transition.is_some_and(|tr| tr.timestamp().as_second() < day.end) || !(day.start <= s && s < day.end) {
            return None;
        }
        // The older of the two makes way.
        self.days = [Some(day), self.days[0]];
        Some(day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64)
    }

    #[test]
    fn the_cached_moment_equals_the_zones_answer_across_dst_changes_and_odd_zones() {
        // Polls every 7 to 3,000 s (and jumps of days) through 2026's DST changes.
        for zone in [
            "Europe/London",
            "America/New_York",
            "Australia/Lord_Howe",
            "America/Santiago",
            "UTC",
        ] {
            let tz = TimeZone::get(zone).unwrap();
            let mut clock = Clock::new(tz.clone());
            let mut rng = fastrand::Rng::with_seed(7);
            let mut s: i64 = 1_767_225_600; // 2026-01-01T00:00Z
            let mut last: Option<f64> = None;
            let mut kept = 0;
            while s < 1_798_761_600 {
                let t = at(s);
                let cached = clock.moment(t, last);
                assert_eq!(cached, moment(&tz, t, last), "{zone} at {s}");
                kept += usize::from(clock.find(s).is_some());
                last = Some(s as f64 + 0.25);
                s += if rng.u32(..200) == 0 {
                    rng.i64(86_400..5 * 86_400)
                } else {
                    rng.i64(7..3000)
                };
            }
            assert!(kept > 0, "{zone}: days are kept");
        }
    }

    #[test]
    fn a_day_with_a_dst_change_is_not_kept() {
        let tz = TimeZone::get("Europe/London").unwrap();
        let mut clock = Clock::new(tz);
        // 2026-03-29: clocks go forward at 01:00 UTC.
        assert_eq!(clock.day(1_774_749_600), None);
        assert!(clock.day(1_774_749_600 + 86_400).is_some());
    }
}
