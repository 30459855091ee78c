//! The month's and the year's energy of a device without adding up its days
//! each poll.
//!
//! A window's figure is the sum, in the order the days are kept, of the days in
//! it that have the figure; floating-point sums depend on their order, so the
//! cache keeps that order: [`Closed`] holds the sums of the days kept *before*
//! the day before today, worked out once a date (and again when one of those
//! days changes, which late data can do), and a poll goes on from them through
//! the few days left: yesterday, whose end may still arrive, and today. Adding
//! on to a partial sum is the very same sequence of additions as summing the
//! whole window, so the figures are bit for bit what summing every day gives.

use std::collections::VecDeque;

use jiff::civil::Date;
use jiff::ToSpan;

use super::SCOP_DAYS;
use crate::telemetry::{cop, Day};

/// The figures a window's COPs come from: all, heating, hot water; heat then electricity.
const FIGURES: [fn(&Day) -> Option<f64>; 6] = [
    Day::heat,
    Day::electricity,
    Day::heat_for_heating,
    Day::electricity_for_heating,
    Day::heat_for_dhw,
    Day::electricity_for_dhw,
];

/// The sums of a window's days, each `None` while no day had the figure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Window([Option<f64>; 6]);

impl Window {
    fn add(&mut self, day: &Day) {
        for (sum, figure) in self.0.iter_mut().zip(FIGURES) {
            if let Some(v) = figure(day) {
                *sum = Some(match *sum {
                    Some(s) => s + v,
                    None => v,
                });
            }
        }
    }

    /// COP, COP for heating, COP for hot water.
    pub(super) fn cops(&self) -> [Option<f64>; 3] {
        let s = &self.0;
        [cop(s[0], s[1]), cop(s[2], s[3]), cop(s[4], s[5])]
    }
}

/// The windows of one local date.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bounds {
    today: Date,
    /// The first day the year window (SCOP) covers.
    year_start: Date,
    /// Days before this one are summed ahead.
    split: Date,
}

impl Bounds {
    fn new(today: Date) -> Self {
        Bounds {
            today,
            year_start: today.checked_sub((SCOP_DAYS - 1).days()).unwrap_or(today),
            split: today.yesterday().unwrap_or(today),
        }
    }

    fn in_month(&self, d: &Day) -> bool {
        d.date.year() == self.today.year() && d.date.month() == self.today.month()
    }

    fn in_year(&self, d: &Day) -> bool {
        d.date >= self.year_start
    }
}

/// The month and year sums of a device's leading days, before `bounds.split`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Closed {
    bounds: Bounds,
    /// How many of the kept days (from the front) the sums cover.
    len: usize,
    month: Window,
    year: Window,
}

impl Closed {
    fn new(days: &VecDeque<Day>, bounds: Bounds) -> Self {
        let len = days.iter().position(|d| d.date >= bounds.split).unwrap_or(days.len());
        let mut c = Closed {
            bounds,
            len,
            month: Window::default(),
            year: Window::default(),
        };
        for d in days.range(..len) {
            c.add(d);
        }
        c
    }

    fn add(&mut self, d: &Day) {
        if self.bounds.in_month(d) {
            self.month.add(d);
        }
        if self.bounds.in_year(d) {
            self.year.add(d);
        }
    }

    /// Whether a change to the day at `index` of the kept days (or a day
    /// inserted there) changes these sums.
    pub(super) fn covers(&self, index: usize) -> bool {
        index < self.len
    }
}

/// This month's and the last 365 days' sums of `days` as of `today`, from the
/// `closed` sums when they are of `today` (made anew when not).
pub(super) fn windows(days: &VecDeque<Day>, today: Date, closed: &mut Option<Closed>) -> (Window, Window) {
    let c = match closed {
        Some(c) if c.bounds.today == today && c.len <= days.len() => c,
        _ => closed.insert(Closed::new(days, Bounds::new(today))),
    };
    let mut sums = c.clone();
    for d in days.range(c.len..) {
        sums.add(d);
    }
    (sums.month, sums.year)
}

#[cfg(test)]
pub(super) mod reference {
    //! The sums as the transform first computed them: every kept day, every poll.

    use super::*;

    fn sum_days(days: &[&Day], f: fn(&Day) -> Option<f64>) -> Option<f64> {
        days.iter().filter_map(|d| f(d)).reduce(|a, b| a + b)
    }

    fn window(days: &[&Day]) -> Window {
        let mut w = Window::default();
        for (sum, f) in w.0.iter_mut().zip(FIGURES) {
            *sum = sum_days(days, f);
        }
        w
    }

    pub(in super::super) fn windows(days: &VecDeque<Day>, today: Date) -> (Window, Window) {
        let month: Vec<&Day> = days
            .iter()
            .filter(|d| d.date.year() == today.year() && d.date.month() == today.month())
            .collect();
        let year_start = today.checked_sub((SCOP_DAYS - 1).days()).unwrap_or(today);
        let year: Vec<&Day> = days.iter().filter(|d| d.date >= year_start).collect();
        (window(&month), window(&year))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn day(date: Date, rng: &mut fastrand::Rng) -> Day {
        let mut d = Day::new(date);
        let mut v = || (rng.u8(..4) > 0).then(|| rng.f64() * 40.0);
        d.heat_heating = v();
        d.heat_dhw = v();
        d.electricity_heating = v();
        d.electricity_dhw = v();
        d.booster_heating = v();
        d.booster_dhw = v();
        d.partial = rng.u8(..10) == 0;
        d
    }

    #[test]
    fn sums_go_on_from_the_closed_days_bit_for_bit_as_summing_them_all() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let mut days = VecDeque::new();
            let mut d = date(2025, 1, 1);
            for _ in 0..rng.usize(0..420) {
                d = d.checked_add(rng.i32(1..3).days()).unwrap();
                days.push_back(day(d, &mut rng));
            }
            let mut closed = None;
            for _ in 0..5 {
                let today = days
                    .back()
                    .map_or(d, |x| x.date)
                    .checked_sub(rng.i32(0..3).days())
                    .unwrap();
                assert_eq!(windows(&days, today, &mut closed), reference::windows(&days, today));
            }
        }
    }
}
