//! Compressor starts and runs, defrosts, and short cycling, from the polled
//! on/off states.
//!
//! A start is an off → on flip between two polls; a run ends at the first poll
//! that sees the compressor off, so run times have the poll interval's
//! resolution. A state first seen on (hpflow just started) is not a start and
//! its run has no known length. Short cycling holds while more than
//! `max_starts_per_hour` starts fell in the last hour, or while the last run
//! that ended within the last hour was shorter than `min_run_time`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

const HOUR: f64 = 3600.0;

/// The thresholds of short cycling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_starts_per_hour: u32,
    /// Seconds.
    pub min_run_time: f64,
}

/// An on/off state's runs: the compressor's or the defrost's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Runs {
    /// Last state seen.
    on: Option<bool>,
    /// When the current run started, if it was seen starting (Unix seconds).
    since: Option<f64>,
    pub starts: u64,
    /// Seconds of runs whose start and end were seen.
    pub seconds: f64,
    /// Length of the last run whose start and end were seen, and when it ended.
    pub last: Option<(f64, f64)>,
    /// Start times within the last hour.
    recent: VecDeque<f64>,
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Flip {
    pub started: bool,
    /// A run that ended, and its length in seconds (if its start was seen).
    pub ended: Option<Option<f64>>,
}

impl Runs {
    pub fn observe(&mut self, on: bool, t: f64) -> Flip {
        let mut flip = Flip::default();
        match self.on {
            Some(false) if on => {
                self.starts += 1;
                self.since = Some(t);
                self.recent.push_back(t);
                flip.started = true;
            }
            Some(true) if !on => {
                let run = self.since.take().map(|s| (t - s).max(0.0));
                if let Some(r) = run {
                    self.seconds += r;
                    self.last = Some((r, t));
                }
                flip.ended = Some(run);
            }
            None if on => self.since = None,
            _ => {}
        }
        self.on = Some(on);
        while self.recent.front().is_some_and(|&s| t - s > HOUR) {
            self.recent.pop_front();
        }
        flip
    }

    /// Starts within the hour before `t`.
    pub fn starts_last_hour(&self, t: f64) -> u32 {
        self.recent.iter().filter(|&&s| t - s <= HOUR).count() as u32
    }

    /// True while the compressor short-cycles by `limits`.
    pub fn short_cycling(&self, t: f64, limits: Limits) -> bool {
        let too_many = self.starts_last_hour(t) > limits.max_starts_per_hour;
        let too_short = self
            .last
            .is_some_and(|(run, ended)| t - ended <= HOUR && run < limits.min_run_time);
        too_many || too_short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_starts_per_hour: 3,
        min_run_time: 600.0,
    };

    #[test]
    fn a_run_first_seen_on_is_not_a_start_and_has_no_length() {
        let mut r = Runs::default();
        assert_eq!(r.observe(true, 0.0), Flip::default());
        let f = r.observe(false, 100.0);
        assert_eq!(f.ended, Some(None));
        assert_eq!((r.starts, r.seconds, r.last), (0, 0.0, None));
        assert!(r.observe(true, 200.0).started);
        assert_eq!(r.observe(false, 1400.0).ended, Some(Some(1200.0)));
        assert_eq!((r.starts, r.seconds, r.last), (1, 1200.0, Some((1200.0, 1400.0))));
        assert!(!r.short_cycling(1400.0, LIMITS));
    }

    #[test]
    fn four_starts_in_an_hour_or_a_short_run_is_short_cycling_until_the_hour_passes() {
        let mut r = Runs::default();
        r.observe(false, 0.0);
        for k in 0..4 {
            let t = f64::from(k) * 900.0;
            r.observe(true, t + 10.0);
            r.observe(false, t + 800.0);
        }
        assert_eq!(r.starts_last_hour(2710.0), 4);
        assert!(r.short_cycling(2710.0, LIMITS));
        // Every run was 790 s, over the minimum: only the count made it short cycling.
        assert!(!r.short_cycling(2710.0 + 3600.0, LIMITS));

        let mut r = Runs::default();
        r.observe(false, 0.0);
        r.observe(true, 10.0);
        r.observe(false, 310.0);
        assert!(r.short_cycling(400.0, LIMITS), "a 300 s run is under 600 s");
        assert!(!r.short_cycling(310.0 + 3601.0, LIMITS));
    }
}
