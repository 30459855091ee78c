//! Daily energy and compressor figures per device.
//!
//! The `efficiency` transform keeps them (and persists them in its data_dir);
//! it publishes each device's last days here after every poll, and the
//! dashboard's efficiency view reads them. A pipeline without the transform has
//! no days: the view says so.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use jiff::civil::Date;

/// One local calendar day of one device. Energy in kWh; `None` where the map
/// lacks the register, or the figure could not be trusted (a counter that went
/// backwards, an implausible jump, a gap across the day's end).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Day {
    pub date: Date,
    /// Heat the compressor produced for space heating.
    pub heat_heating: Option<f64>,
    /// Heat the compressor produced for hot water.
    pub heat_dhw: Option<f64>,
    /// Heat (= electricity) of the electric booster heater, for heating and hot water.
    pub booster_heating: Option<f64>,
    pub booster_dhw: Option<f64>,
    /// Electricity the compressor used for heating and for hot water.
    pub electricity_heating: Option<f64>,
    pub electricity_dhw: Option<f64>,
    /// Mean of the outdoor temperature over the day's polls.
    pub outdoor_mean: Option<f64>,
    /// Compressor starts, and the run time of runs that ended this day (seconds).
    pub compressor_starts: u32,
    pub compressor_run_seconds: f64,
    pub defrosts: u32,
    pub defrost_seconds: f64,
    /// One of the day's figures the device has is unknown: the combined heat,
    /// electricity and COP are unknown too (the parts that are known stay).
    #[serde(default)]
    pub partial: bool,
}

impl Day {
    pub fn new(date: Date) -> Self {
        Day {
            date,
            heat_heating: None,
            heat_dhw: None,
            booster_heating: None,
            booster_dhw: None,
            electricity_heating: None,
            electricity_dhw: None,
            outdoor_mean: None,
            compressor_starts: 0,
            compressor_run_seconds: 0.0,
            defrosts: 0,
            defrost_seconds: 0.0,
            partial: false,
        }
    }

    /// Heat for heating, the booster's share included.
    pub fn heat_for_heating(&self) -> Option<f64> {
        sum([self.heat_heating, self.booster_heating])
    }

    pub fn heat_for_dhw(&self) -> Option<f64> {
        sum([self.heat_dhw, self.booster_dhw])
    }

    pub fn electricity_for_heating(&self) -> Option<f64> {
        sum([self.electricity_heating, self.booster_heating])
    }

    pub fn electricity_for_dhw(&self) -> Option<f64> {
        sum([self.electricity_dhw, self.booster_dhw])
    }

    /// All heat delivered: compressor and booster, heating and hot water.
    pub fn heat(&self) -> Option<f64> {
        sum([self.heat_for_heating(), self.heat_for_dhw()]).filter(|_| !self.partial)
    }

    pub fn electricity(&self) -> Option<f64> {
        sum([self.electricity_for_heating(), self.electricity_for_dhw()]).filter(|_| !self.partial)
    }

    pub fn cop(&self) -> Option<f64> {
        cop(self.heat(), self.electricity())
    }

    pub fn cop_heating(&self) -> Option<f64> {
        cop(self.heat_for_heating(), self.electricity_for_heating())
    }

    pub fn cop_dhw(&self) -> Option<f64> {
        cop(self.heat_for_dhw(), self.electricity_for_dhw())
    }
}

/// The sum of the parts that are known; `None` when none is.
pub fn sum<const N: usize>(parts: [Option<f64>; N]) -> Option<f64> {
    parts.into_iter().flatten().reduce(|a, b| a + b)
}

/// Heat ÷ electricity; `None` (never 0, never infinite) when either is unknown or
/// no electricity was used.
pub fn cop(heat: Option<f64>, electricity: Option<f64>) -> Option<f64> {
    let (h, e) = (heat?, electricity?);
    (e > 0.0 && h >= 0.0 && h.is_finite() && e.is_finite()).then(|| h / e)
}

/// The days each device's `efficiency` transform published, oldest first.
#[derive(Debug, Default)]
pub struct EfficiencyBoard {
    devices: RwLock<BTreeMap<String, Published>>,
}

/// A device's days as published: the older ones shared with the transform
/// (they seldom change, so a publish every few seconds copies only the last
/// few), then the recent ones.
#[derive(Debug)]
struct Published {
    older: Arc<[Day]>,
    recent: Box<[Day]>,
}

impl EfficiencyBoard {
    pub fn publish(&self, device: &str, days: Arc<[Day]>) {
        self.publish_split(device, days, Vec::new());
    }

    /// Publishes `older` followed by `recent`.
    pub fn publish_split(&self, device: &str, older: Arc<[Day]>, recent: Vec<Day>) {
        let published = Published {
            older,
            recent: recent.into_boxed_slice(),
        };
        let mut map = self.devices.write().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(device) {
            Some(p) => *p = published,
            None => {
                map.insert(device.to_string(), published);
            }
        }
    }

    /// The device's days, oldest first; `None` if no `efficiency` transform saw it.
    pub fn days(&self, device: &str) -> Option<Arc<[Day]>> {
        let map = self.devices.read().unwrap_or_else(|p| p.into_inner());
        let p = map.get(device)?;
        if p.recent.is_empty() {
            return Some(p.older.clone());
        }
        Some(p.older.iter().chain(p.recent.iter()).cloned().collect())
    }

    pub fn forget(&self, device: &str) {
        let mut map = self.devices.write().unwrap_or_else(|p| p.into_inner());
        map.remove(device);
    }

    /// True once any device's days were published.
    pub fn is_empty(&self) -> bool {
        self.devices.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cop_is_absent_without_electricity_and_counts_the_booster_on_both_sides() {
        let mut d = Day::new(jiff::civil::date(2026, 1, 15));
        assert_eq!(d.cop(), None);
        d.heat_heating = Some(30.0);
        assert_eq!(d.cop(), None, "no electricity register");
        d.electricity_heating = Some(0.0);
        assert_eq!(d.cop(), None, "no electricity used");
        d.electricity_heating = Some(10.0);
        assert_eq!(d.cop(), Some(3.0));
        d.booster_heating = Some(2.0);
        assert_eq!(d.cop_heating(), Some(32.0 / 12.0));
        assert_eq!(d.cop_dhw(), None, "no hot-water register");
        assert_eq!(d.heat(), Some(32.0));
        d.partial = true;
        assert_eq!((d.heat(), d.cop()), (None, None), "a part is unknown");
        assert_eq!(d.cop_heating(), Some(32.0 / 12.0), "the known parts stay");
    }
}
