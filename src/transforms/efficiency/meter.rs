//! One energy figure of one device (say, heat for heating) turned into a counter
//! that never goes back and never counts twice, plus the figure of each local day.
//!
//! The controller keeps two registers: a day counter (whole kWh since its
//! midnight) and a cumulative total. At midnight the day's whole kWh move into
//! the total and the day counter restarts; the device's energy is total + day.
//! A meter may have both parts, only the day (HPManager's map) or only the
//! total (the booster heater's).
//!
//! What a poll can show, and what the meter makes of it:
//! - total unchanged, day grown: the difference is new energy of the current day;
//! - day reset and total grown by at least the day's last value: the midnight
//!   move; the part of the move above the last day value is the old day's end,
//!   the new day value is the new day's start;
//! - day reset, total not grown yet (the two halves of the move seen apart): the
//!   new day value counts now, the old day's end when the total grows;
//! - total grown, day not reset yet: nothing moved in truth; the total is held
//!   back until the day resets, or taken as it is at the next poll (a device that
//!   never resets its day counter), or at once after a gap of polls;
//! - a day counter that drops by at most [`ROUNDING`]: ignored (the counter
//!   waits until it is passed again);
//! - a drop of the day counter to at most [`RESET_AT_MOST`], with the total
//!   grown, or by more than the rounding near local midnight: a reset (a
//!   midnight, or a device restart);
//! - any other drop, or a total that goes back: the figure is absent for this
//!   poll and reported; if the next poll confirms the lower value, the device
//!   counter was reset and counting goes on from it (the energy in between is
//!   unknowable, and the day's figure becomes unknown);
//! - a rise larger than plausible for the time since the last poll: absent,
//!   reported, counting goes on from the new value, the day's figure becomes
//!   unknown.
//!
//! Day figures go to the local date the device day belongs to: the day counter's
//! value to the date it counts for, the end of a day (found at the move) to the
//! date the day counter counted for before. A device day that closes within a
//! local date (a device restart, or a simulator at speed) adds to that date.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// A day counter may drop this much (kWh) without it being a reset: the
/// register's whole-kWh rounding.
pub const ROUNDING: f64 = 1.0;
/// A reset of the day counter shows a value at most this (kWh) unless it is near
/// local midnight.
const RESET_AT_MOST: f64 = 1.0;
/// After a day reset this long without the total growing, the reset was a
/// device restart, not half of a midnight move (seconds).
const PENDING_FOR: f64 = 3600.0;
/// A grown total that the day counter does not follow is taken at once after a
/// gap of polls this long (seconds).
const GAP: f64 = 900.0;

/// The registers of one meter as one poll read them (absent parts are `None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub day: Option<f64>,
    pub total: Option<f64>,
}

/// When a poll happened, as the meter needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    /// Unix seconds.
    pub t: f64,
    /// The poll's local date.
    pub date: Date,
    /// Local midnights passed since the meter's previous poll.
    pub midnights: u32,
    /// True within an hour of a local midnight (either side).
    pub near_midnight: bool,
    /// True one hour or more after the start of `date`.
    pub settled: bool,
}

/// Why a figure is absent.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The device's energy went back from `from` to `to` kWh.
    WentBack { from: f64, to: f64 },
    /// It rose by `kwh` in `seconds`, more than `limit`.
    Jump { kwh: f64, seconds: f64, limit: f64 },
}

impl Problem {
    /// A short name of the kind, for telling each kind once.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::WentBack { .. } => "went_back",
            Problem::Jump { .. } => "jump",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::WentBack { from, to } => write!(f, "went back from {from} kWh to {to} kWh"),
            Problem::Jump { kwh, seconds, limit } => {
                write!(
                    f,
                    "rose by {kwh} kWh in {seconds:.0} s, more than the plausible {limit} kWh"
                )
            }
        }
    }
}

/// What one poll did to the meter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// The counter after this poll; `None` when the figure is absent this poll.
    pub counter: Option<f64>,
    /// A finished local date and its figure (`None`: unknown).
    pub closed: Option<(Date, Option<f64>)>,
    /// The figure of the date being counted, so far (`None`: unknown).
    pub today: Option<(Date, Option<f64>)>,
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    /// The day counter's last value before it reset.
    last_day: f64,
    /// When the reset was seen (Unix seconds).
    at: f64,
    /// The date and the figure the closed day was given provisionally.
    date: Date,
    credited: f64,
    carried: f64,
    tainted: bool,
}

/// The meter's memory; persisted as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Meter {
    /// The counter, kWh: never goes down.
    pub counted: f64,
    /// Which parts the device showed when counting started: (day, total).
    shape: Option<(bool, bool)>,
    /// The total as of the current device day.
    total: Option<f64>,
    /// The day counter at the last poll.
    day: Option<f64>,
    /// Unix seconds of the last poll that updated the meter.
    last: f64,
    /// The local date the day counter counts for.
    counting: Option<Date>,
    /// Energy credited to `counting` from device days closed earlier on that date.
    base: f64,
    /// The part of the current device day credited to an earlier date.
    carried: f64,
    /// The figure of `counting` cannot be trusted (a reset or jump within it).
    tainted: bool,
    pending: Option<Pending>,
    /// A grown total the day counter has not followed yet.
    held: Option<f64>,
    /// A drop seen once: the lower device energy, waiting for the next poll.
    suspect: Option<f64>,
}

impl Meter {
    /// Takes one poll. `limit` is the largest rise that is plausible for the time
    /// since the last poll.
    pub fn observe(&mut self, r: Reading, now: Moment, limit: impl Fn(f64) -> f64) -> Outcome {
        let shape = (r.day.is_some(), r.total.is_some());
        if shape == (false, false) {
            return Outcome::default();
        }
        if self.shape != Some(shape) || self.counting.is_none() {
            return self.start(r, now, shape);
        }
        let mut out = Outcome::default();
        let elapsed = (now.t - self.last).max(0.0);
        self.last = now.t;
        let (day, total) = (r.day.unwrap_or(0.0), r.total.unwrap_or(0.0));
        let (d0, t0) = (self.day.unwrap_or(0.0), self.total.unwrap_or(0.0));

        // A pending day reset whose total never grew was a device restart.
        if self.pending.as_ref().is_some_and(|p| now.t - p.at > PENDING_FOR) {
            self.pending = None;
        }

        // Drops.
        if r.total.is_some() && total < t0 - ROUNDING || r.day.is_some() && day < d0 && !self.is_reset(r, now) {
            let device = total + day;
            if day < d0 && d0 - day <= ROUNDING && total >= t0 {
                // The day counter's rounding: wait until it is passed again.
                out.counter = Some(self.counted);
                out.today = self.today(Some(d0));
                return out;
            }
            match self.suspect {
                Some(s) if (device - s).abs() <= ROUNDING || device >= s && device - s <= limit(elapsed) => {
                    // Confirmed: the device's counter was reset. Go on from here.
                    self.suspect = None;
                    self.total = r.total;
                    self.day = r.day;
                    self.carried = 0.0;
                    self.base = 0.0;
                    self.pending = None;
                    self.held = None;
                    self.tainted = true;
                    out.counter = Some(self.counted);
                    out.today = self.today(r.day);
                }
                _ => {
                    self.suspect = Some(device);
                    out.problem = Some(Problem::WentBack {
                        from: t0 + d0,
                        to: device,
                    });
                }
            }
            return out;
        }
        self.suspect = None;

        let reset = r.day.is_some() && day < d0;
        let grown = r.total.is_some() && total > t0;
        let rise;
        match (reset, grown) {
            (false, false) => {
                rise = day - d0;
                self.held = None;
            }
            (true, true) => {
                let moved = total - t0;
                rise = moved - d0 + day;
                if self.check_rise(rise, elapsed, &limit, &mut out, r) {
                    return out;
                }
                self.close_device_day(Some(moved), now, &mut out);
                self.total = r.total;
            }
            (true, false) => {
                rise = day;
                if self.check_rise(rise, elapsed, &limit, &mut out, r) {
                    return out;
                }
                let counting = self.counting.unwrap_or(now.date);
                if r.total.is_some() {
                    // The move's total half may follow: remember what was credited.
                    self.pending = Some(Pending {
                        last_day: d0,
                        at: now.t,
                        date: counting,
                        credited: self.base + d0 - self.carried,
                        carried: self.carried,
                        tainted: self.tainted,
                    });
                }
                self.close_device_day(Some(d0), now, &mut out);
            }
            (false, true) => {
                let moved = total - t0;
                if let Some(p) = self.pending.take() {
                    // The total half of a move whose day half came first.
                    rise = moved - p.last_day + (day - d0);
                    if self.check_rise(rise, elapsed, &limit, &mut out, r) {
                        return out;
                    }
                    let figure = p.credited - (p.last_day - p.carried) + (moved - p.carried);
                    let corrected = (!p.tainted).then_some(figure);
                    if Some(p.date) == self.counting {
                        // Closed within the same date: the base holds the provisional figure.
                        self.base += moved - p.last_day;
                    } else {
                        out.closed = Some((p.date, corrected));
                    }
                    self.total = r.total;
                } else if r.day.is_none() {
                    // A total alone moves at the device's midnight.
                    rise = moved;
                    if self.check_rise(rise, elapsed, &limit, &mut out, r) {
                        return out;
                    }
                    self.close_device_day(Some(moved), now, &mut out);
                    self.total = r.total;
                } else if self.held == r.total || elapsed > GAP {
                    // Not half of a move: a gap of polls across midnight, or a
                    // device that does not reset its day counter.
                    rise = moved - d0 + day;
                    if self.check_rise(rise, elapsed, &limit, &mut out, r) {
                        return out;
                    }
                    if now.midnights > 0 || self.held.is_some() {
                        let figure = (now.midnights <= 1).then_some(moved);
                        self.close_device_day(figure, now, &mut out);
                    } else {
                        self.base += moved;
                    }
                    self.total = r.total;
                    self.held = None;
                } else {
                    // The total half came first: hold it until the day resets.
                    self.held = r.total;
                    rise = day - d0;
                }
            }
        }
        if self.check_rise(rise, elapsed, &limit, &mut out, r) {
            return out;
        }
        self.counted += rise.max(0.0);
        self.day = r.day;
        // A local date passed with no reset seen: close it with what the device showed.
        if out.closed.is_none() && self.counting.is_some_and(|c| c < now.date) && (now.settled || now.midnights > 1) {
            let shown = if r.day.is_some() { day - self.carried } else { 0.0 };
            let counting = self.counting.unwrap_or(now.date);
            let figure = (!self.tainted && now.midnights <= 1).then_some(self.base + shown);
            out.closed = Some((counting, figure));
            self.carried = if r.day.is_some() { day } else { 0.0 };
            self.base = 0.0;
            self.tainted = false;
            self.counting = Some(now.date);
        }
        out.counter = Some(self.counted);
        out.today = self.today(r.day);
        out
    }

    /// The first poll (or the device now shows other parts): counting starts here.
    fn start(&mut self, r: Reading, now: Moment, shape: (bool, bool)) -> Outcome {
        let fresh = self.shape.is_none() && self.counted == 0.0;
        if fresh {
            self.counted = r.total.unwrap_or(0.0) + r.day.unwrap_or(0.0);
        }
        // Today's figure is whole when the day counter shows it, or for a total
        // alone, which the controller moves only at its midnight.
        let whole_day = fresh || self.counting == Some(now.date) || r.day.is_none();
        *self = Meter {
            counted: self.counted,
            shape: Some(shape),
            total: r.total,
            day: r.day,
            last: now.t,
            counting: Some(now.date),
            base: 0.0,
            carried: 0.0,
            tainted: !whole_day,
            pending: None,
            held: None,
            suspect: None,
        };
        Outcome {
            counter: Some(self.counted),
            closed: None,
            today: self.today(r.day),
            problem: None,
        }
    }

    /// A day reset that is a midnight or a restart (not a glitch).
    fn is_reset(&self, r: Reading, now: Moment) -> bool {
        let (Some(day), Some(d0)) = (r.day, self.day) else {
            return false;
        };
        let near = now.near_midnight || now.midnights > 0;
        day < d0 && (day <= RESET_AT_MOST || r.total > self.total || near && d0 - day > ROUNDING)
    }

    /// Ends the current device day with `figure` (its whole energy, `None`: unknown).
    fn close_device_day(&mut self, figure: Option<f64>, now: Moment, out: &mut Outcome) {
        let counting = self.counting.unwrap_or(now.date);
        let credited = figure.map(|f| self.base + f - self.carried);
        if counting == now.date {
            // The device day ended within this date: the date goes on adding up.
            match credited {
                Some(c) => self.base = c,
                None => self.tainted = true,
            }
        } else {
            out.closed = Some((counting, credited.filter(|_| !self.tainted && now.midnights <= 1)));
            self.base = 0.0;
            self.tainted = false;
            self.counting = Some(now.date);
        }
        self.carried = 0.0;
        self.held = None;
    }

    /// Rejects an implausible rise: absent, reported, counting goes on from it.
    fn check_rise(
        &mut self,
        rise: f64,
        elapsed: f64,
        limit: &impl Fn(f64) -> f64,
        out: &mut Outcome,
        r: Reading,
    ) -> bool {
        let allowed = limit(elapsed);
        if rise <= allowed {
            return false;
        }
        out.problem = Some(Problem::Jump {
            kwh: rise,
            seconds: elapsed,
            limit: allowed,
        });
        self.total = r.total;
        self.day = r.day;
        self.carried = r.day.unwrap_or(0.0);
        self.pending = None;
        self.held = None;
        self.tainted = true;
        true
    }

    fn today(&self, day: Option<f64>) -> Option<(Date, Option<f64>)> {
        let counting = self.counting?;
        let so_far = self.base + day.map_or(0.0, |d| d - self.carried);
        Some((counting, (!self.tainted).then_some(so_far)))
    }
}

#[cfg(test)]
mod tests {
    //! The meter against a reference device: a true energy that grows with a
    //! random power, registers derived from it the way the controller keeps them
    //! (total = whole kWh at the last local midnight, day = whole kWh since), the
    //! two halves of each midnight move landing up to 20 s apart in either order,
    //! polls at random intervals with gaps of hours, and restarts (the meter
    //! written to JSON and read back) at random polls.

    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use jiff::tz::TimeZone;
    use jiff::Timestamp;

    use super::*;
    use crate::transforms::efficiency::clock::moment;

    const START: f64 = 1_767_222_000.0; // 2025-12-31 23:00 UTC

    /// The device: power changes every 10 minutes; each midnight's move has its
    /// own lag for the total and for the day counter.
    struct Device {
        tz: TimeZone,
        seed: u64,
        /// Energy at each 10-minute step from START (cumulative kWh).
        steps: Vec<f64>,
    }

    impl Device {
        fn new(seed: u64, days: usize, tz: &str) -> Device {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut steps = vec![123.4];
            for _ in 0..(days + 2) * 144 {
                let kw = if rng.f64() < 0.4 { 0.0 } else { 0.3 + 3.0 * rng.f64() };
                let last = *steps.last().unwrap();
                steps.push(last + kw / 6.0);
            }
            Device {
                tz: TimeZone::get(tz).unwrap(),
                seed,
                steps,
            }
        }

        fn energy(&self, t: f64) -> f64 {
            let x = (t - START) / 600.0;
            let i = x.floor() as usize;
            self.steps[i] + (self.steps[i + 1] - self.steps[i]) * (x - i as f64)
        }

        /// The last local midnight at or before `t`.
        fn midnight(&self, t: f64) -> f64 {
            let ts = Timestamp::from_second(t.floor() as i64).unwrap();
            let start = ts.to_zoned_datetime(self.tz.clone()).start_of_day().unwrap();
            start.timestamp().as_second() as f64
        }

        fn lags(&self, midnight: f64) -> (f64, f64) {
            let mut rng = fastrand::Rng::with_seed(self.seed ^ midnight as u64);
            (20.0 * rng.f64(), 20.0 * rng.f64())
        }

        /// The midnight whose move (total or day half) has happened by `t`.
        fn moved_midnight(&self, t: f64, day_half: bool) -> f64 {
            let m = self.midnight(t);
            let (lt, ld) = self.lags(m);
            let lag = if day_half { ld } else { lt };
            if t >= m + lag {
                m
            } else {
                self.midnight(m - 1.0)
            }
        }

        fn registers(&self, t: f64) -> Reading {
            let total = self.energy(self.moved_midnight(t, false).max(START)).floor();
            let day_base = self.energy(self.moved_midnight(t, true).max(START)).floor();
            Reading {
                day: Some(self.energy(t).floor() - day_base),
                total: Some(total),
            }
        }

        /// What the device says a local date's energy was.
        fn day_final(&self, date: Date) -> f64 {
            let start = date.to_zoned_datetime(self.tz.clone()).unwrap().timestamp().as_second() as f64;
            let end = date
                .tomorrow()
                .unwrap()
                .to_zoned_datetime(self.tz.clone())
                .unwrap()
                .timestamp()
                .as_second() as f64;
            self.energy(end).floor() - self.energy(start.max(START)).floor()
        }

        /// True away from a move's window, where total + day is the device's energy.
        fn consistent(&self, t: f64) -> bool {
            t - self.midnight(t) > 25.0
        }
    }

    fn at(t: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t)
    }

    fn limit(secs: f64) -> f64 {
        50.0 + 50.0 * secs / 3600.0
    }

    /// Runs the meter over `days` of polls; returns the figures it gave each date.
    fn run(seed: u64, days: usize, tz: &str, restarts: bool) -> (Device, BTreeMap<Date, Option<f64>>) {
        let dev = Device::new(seed, days, tz);
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(7919));
        let mut meter = Meter::default();
        let mut figures = BTreeMap::new();
        let mut t = START + 60.0;
        let mut last: Option<f64> = None;
        let mut previous_counter: Option<f64> = None;
        let mut first: Option<(f64, f64)> = None;
        let end = START + days as f64 * 86_400.0;
        while t < end {
            let now = moment(&dev.tz, at(t), last).unwrap();
            let r = dev.registers(t);
            let out = meter.observe(r, now, limit);
            assert_eq!(out.problem, None, "seed {seed}: no problem in a clean run at {t}");
            let counter = out.counter.expect("a counter at every poll");
            if let Some(p) = previous_counter {
                assert!(
                    counter >= p,
                    "seed {seed}: the counter went back at {t}: {p} -> {counter}"
                );
            }
            previous_counter = Some(counter);
            let device_energy = r.day.unwrap() + r.total.unwrap();
            let (c0, e0) = *first.get_or_insert((counter, device_energy));
            let true_rise = dev.energy(t).floor() - dev.energy(START + 60.0).floor();
            assert!(
                counter - c0 <= true_rise + 1e-9,
                "seed {seed}: counted twice at {t}: {} > {true_rise}",
                counter - c0
            );
            if dev.consistent(t) {
                assert!(
                    (counter - c0 - (device_energy - e0)).abs() < 1e-9,
                    "seed {seed}: at {t} counted {} but the device rose {}",
                    counter - c0,
                    device_energy - e0
                );
            }
            for (date, figure) in out.closed.into_iter().chain(out.today) {
                figures.insert(date, figure);
            }
            last = Some(t);
            if restarts && rng.f64() < 0.01 {
                meter = serde_json::from_str(&serde_json::to_string(&meter).unwrap()).unwrap();
            }
            // Polls every 5 s to 5 min, sometimes a few around midnight, and
            // now and then a gap of up to 3 hours.
            let step = if rng.f64() < 0.002 {
                600.0 + 10_000.0 * rng.f64()
            } else if dev.midnight(t + 300.0) > dev.midnight(t) && rng.bool() {
                1.0 + 9.0 * rng.f64()
            } else {
                5.0 + 295.0 * rng.f64()
            };
            t += step;
        }
        (dev, figures)
    }

    #[test]
    fn counters_and_days_match_the_device_over_seeded_runs() {
        let mut checked = 0;
        let mut unknown = 0;
        for seed in 1..=40 {
            let tz = if seed % 2 == 0 {
                "Europe/Berlin"
            } else {
                "America/New_York"
            };
            let (dev, figures) = run(seed, 20, tz, seed % 3 == 0);
            for (date, figure) in &figures {
                match figure {
                    Some(f) => {
                        let truth = dev.day_final(*date);
                        // The last date is still being counted.
                        if date != figures.keys().next_back().unwrap() {
                            assert!(
                                (f - truth).abs() < 1e-9,
                                "seed {seed} ({tz}): {date} counted {f} kWh, the device says {truth}"
                            );
                            checked += 1;
                        }
                    }
                    None => unknown += 1,
                }
            }
        }
        eprintln!("{checked} days equal the device's, {unknown} unknown");
        assert!(checked > 40 * 17, "only {checked} days checked");
        assert!(unknown < checked / 20, "{unknown} days unknown");
    }
}
