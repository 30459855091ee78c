//! A heat pump in closed form: every value is a function of the seed and the
//! time, so the same seed at the same instant always serves the same registers,
//! whatever was asked before.
//!
//! The plant: the outdoor temperature follows a daily swing plus slow weather
//! drift; heating runs in 30-minute cycles whose on-time grows as it gets colder;
//! two hot-water charges a day (morning, evening) take over the compressor; some
//! cold cycles start with a defrost. Energy is the integral of the compressor's
//! power over those cycles, so counters only grow while the compressor runs.

use std::f64::consts::TAU;
use std::sync::Mutex;

/// Length of one heating cycle (compressor on, then off).
pub const CYCLE_SECS: f64 = 1800.0;
/// Length of a hot-water charge.
const DHW_SECS: f64 = 2400.0;
/// Length of a defrost.
const DEFROST_SECS: f64 = 300.0;
const DAY: f64 = 86_400.0;

/// Everything a simulated heat pump shows at one instant, in engineering units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Seconds since the Unix epoch.
    pub t: f64,
    pub outdoor: f64,
    pub flow: f64,
    pub flow_set: f64,
    pub ret: f64,
    pub buffer: f64,
    pub buffer_set: f64,
    pub hc1: f64,
    pub hc1_set: f64,
    pub dhw: f64,
    pub dhw_set: f64,
    pub hot_gas: f64,
    pub inlet: f64,
    pub low_pressure: f64,
    pub mean_pressure: f64,
    pub high_pressure: f64,
    /// l/min through the heat pump.
    pub water_flow: f64,
    /// Electrical power drawn now, kW.
    pub power_kw: f64,
    pub compressor: bool,
    pub heating: bool,
    pub dhw_mode: bool,
    pub defrost: bool,
    pub hc1_pump: bool,
    pub summer: bool,
    /// Energy since the simulator's origin, kWh (floating, not yet split).
    pub heat_heating: f64,
    pub heat_dhw: f64,
    pub el_heating: f64,
    pub el_dhw: f64,
    /// The same four at the last midnight (UTC) at or after the origin.
    pub heat_heating_midnight: f64,
    pub heat_dhw_midnight: f64,
    pub el_heating_midnight: f64,
    pub el_dhw_midnight: f64,
}

/// Energy of the four counters, kWh.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Energy {
    heat_heating: f64,
    heat_dhw: f64,
    el_heating: f64,
    el_dhw: f64,
}

impl Energy {
    fn add(&mut self, o: Energy) {
        self.heat_heating += o.heat_heating;
        self.heat_dhw += o.heat_dhw;
        self.el_heating += o.el_heating;
        self.el_dhw += o.el_dhw;
    }
}

/// The simulated plant of one device.
#[derive(Debug)]
pub struct Physics {
    seed: u64,
    /// Where counters start (Unix seconds): energy is integrated from here.
    origin: f64,
    base_outdoor: f64,
    phase1: f64,
    phase2: f64,
    /// Start of the morning and evening hot-water charge, seconds into the day.
    dhw_starts: [f64; 2],
    /// Energy from the origin to the start of each cycle since the origin's
    /// (`[k]` is cycle `c0 + k`), so any instant costs at most one new cycle.
    prefix: Mutex<Vec<Energy>>,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a seed and a key.
pub(crate) fn unit(seed: u64, key: u64) -> f64 {
    (mix(seed, key) >> 11) as f64 / (1u64 << 53) as f64
}

impl Physics {
    pub fn new(seed: u64, origin: f64) -> Self {
        Physics {
            seed,
            origin,
            base_outdoor: -2.0 + 8.0 * unit(seed, 1),
            phase1: TAU * unit(seed, 2),
            phase2: TAU * unit(seed, 3),
            dhw_starts: [
                5.0 * 3600.0 + 3600.0 * unit(seed, 4),
                17.0 * 3600.0 + 3600.0 * unit(seed, 5),
            ],
            prefix: Mutex::new(vec![Energy::default()]),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn outdoor(&self, t: f64) -> f64 {
        let hour = (t.rem_euclid(DAY)) / 3600.0;
        let daily = -4.0 * (TAU * (hour - 5.0) / 24.0).cos();
        let drift =
            3.0 * (TAU * t / (5.3 * DAY) + self.phase1).sin() + 1.5 * (TAU * t / (1.7 * DAY) + self.phase2).sin();
        self.base_outdoor + daily + drift
    }

    /// Heating demand 0..1 at an outdoor temperature (0 at 15 °C and above).
    fn demand(outdoor: f64) -> f64 {
        ((15.0 - outdoor) / 25.0).clamp(0.0, 1.0)
    }

    fn flow_set(outdoor: f64) -> f64 {
        (20.0 + (20.0 - outdoor) * 0.8).clamp(25.0, 55.0)
    }

    /// The hot-water charge running at `t`: its start, if any.
    fn dhw_charge(&self, t: f64) -> Option<f64> {
        let day_start = (t / DAY).floor() * DAY;
        self.dhw_starts
            .iter()
            .map(|s| day_start + s)
            .find(|s| t >= *s && t < s + DHW_SECS)
    }

    /// End of the last hot-water charge before `t`.
    fn last_dhw_end(&self, t: f64) -> f64 {
        let day_start = (t / DAY).floor() * DAY;
        let mut best = f64::NEG_INFINITY;
        for d in [day_start - DAY, day_start] {
            for s in self.dhw_starts {
                let end = d + s + DHW_SECS;
                if end <= t && end > best {
                    best = end;
                }
            }
        }
        best
    }

    /// Seconds the compressor heats in cycle `c` (from the cycle's start).
    fn on_secs(&self, c: i64) -> f64 {
        let start = c as f64 * CYCLE_SECS;
        let d = Self::demand(self.outdoor(start));
        if d <= 0.0 {
            0.0
        } else {
            CYCLE_SECS * (0.25 + 0.7 * d)
        }
    }

    fn defrosts(&self, c: i64) -> bool {
        let start = c as f64 * CYCLE_SECS;
        self.outdoor(start) < 5.0 && self.on_secs(c) > 2.0 * DEFROST_SECS && mix(self.seed, c as u64).is_multiple_of(4)
    }

    fn heating_kw(outdoor: f64) -> (f64, f64) {
        let d = Self::demand(outdoor);
        let el = 1.2 + 1.5 * d;
        let cop = (3.5 + 0.08 * outdoor).clamp(2.0, 5.0);
        (el, el * cop)
    }

    const DHW_EL_KW: f64 = 2.0;
    const DHW_COP: f64 = 2.8;

    /// Energy of cycle `c` between `from` and `to` seconds into the cycle.
    fn cycle_energy(&self, c: i64, from: f64, to: f64) -> Energy {
        let start = c as f64 * CYCLE_SECS;
        let mut e = Energy::default();
        if to <= from {
            return e;
        }
        // The hot-water charges and the heating on-time share the compressor:
        // step through the span in minutes, which is exact enough for counters.
        let (el_kw, heat_kw) = Self::heating_kw(self.outdoor(start));
        let on = self.on_secs(c);
        let defrost_end = if self.defrosts(c) { DEFROST_SECS } else { 0.0 };
        let mut s = from;
        while s < to {
            let next = ((s / 60.0).floor() + 1.0) * 60.0;
            let step = next.min(to) - s;
            let t = start + s;
            let h = step / 3600.0;
            if self.dhw_charge(t).is_some() {
                e.el_dhw += Self::DHW_EL_KW * h;
                e.heat_dhw += Self::DHW_EL_KW * Self::DHW_COP * h;
            } else if s < on && s >= defrost_end {
                e.el_heating += el_kw * h;
                e.heat_heating += heat_kw * h;
            } else if s < defrost_end {
                // Defrost draws power and takes heat back from the circuit.
                e.el_heating += el_kw * h;
            }
            s = next.min(to);
        }
        e
    }

    /// Energy from the origin to `t`.
    fn energy(&self, t: f64) -> Energy {
        if t <= self.origin {
            return Energy::default();
        }
        let c_now = (t / CYCLE_SECS).floor() as i64;
        let c0 = (self.origin / CYCLE_SECS).floor() as i64;
        let first_from = self.origin - c0 as f64 * CYCLE_SECS;
        let whole = |c: i64| {
            let from = if c == c0 { first_from } else { 0.0 };
            self.cycle_energy(c, from, CYCLE_SECS)
        };
        let k = usize::try_from(c_now - c0).unwrap_or(0);
        let mut prefix = self.prefix.lock().unwrap_or_else(|p| p.into_inner());
        while prefix.len() <= k {
            let c = c0 + prefix.len() as i64 - 1;
            let mut e = prefix[prefix.len() - 1];
            e.add(whole(c));
            prefix.push(e);
        }
        let mut total = prefix[k];
        drop(prefix);
        let from = if c_now == c0 { first_from } else { 0.0 };
        total.add(self.cycle_energy(c_now, from, t - c_now as f64 * CYCLE_SECS));
        total
    }

    /// The plant at Unix time `t` (seconds).
    pub fn at(&self, t: f64) -> State {
        let outdoor = self.outdoor(t);
        let c = (t / CYCLE_SECS).floor() as i64;
        let in_cycle = t - c as f64 * CYCLE_SECS;
        let on = self.on_secs(c);
        let summer = Self::demand(outdoor) <= 0.0 && Self::demand(self.outdoor(c as f64 * CYCLE_SECS)) <= 0.0;
        let dhw_charge = self.dhw_charge(t);
        let defrost = dhw_charge.is_none() && self.defrosts(c) && in_cycle < DEFROST_SECS;
        let heating = dhw_charge.is_none() && !defrost && in_cycle < on;
        let compressor = dhw_charge.is_some() || defrost || heating;

        let flow_set = Self::flow_set(outdoor);
        let since_on = in_cycle;
        let since_off = (in_cycle - on).max(0.0);
        let flow = if heating {
            flow_set - 4.0 + 6.0 * (1.0 - (-since_on / 240.0).exp())
        } else if defrost {
            flow_set - 6.0
        } else {
            (flow_set - 4.0).max(22.0) + 2.0 * (-since_off / 600.0).exp()
        };
        let ret = flow - if heating { 5.0 } else { 1.5 };
        let buffer = flow - 1.0;

        let dhw_set = 50.0;
        let dhw_cold = |since_end: f64| 40.0 + 12.0 * (-since_end / 72_000.0).exp();
        let dhw = match dhw_charge {
            Some(s) => {
                let start_value = dhw_cold(self.dhw_starts[1] - self.dhw_starts[0] - DHW_SECS);
                start_value + (52.0 - start_value) * ((t - s) / DHW_SECS)
            }
            None => {
                let end = self.last_dhw_end(t);
                dhw_cold(if end.is_finite() { t - end } else { 12.0 * 3600.0 })
            }
        };

        let run = if compressor {
            since_on.min(if heating { on } else { since_on })
        } else {
            0.0
        };
        let hot_gas = if compressor {
            60.0 + 25.0 * (1.0 - (-run / 180.0).exp())
        } else {
            25.0 + 35.0 * (-since_off / 900.0).exp()
        };
        let (low_p, high_p) = if compressor {
            (
                3.5 + 0.1 * outdoor,
                16.0 + 0.2 * (flow - 30.0).max(0.0) + if dhw_charge.is_some() { 4.0 } else { 0.0 },
            )
        } else {
            let eq = 9.5 + 0.05 * outdoor;
            (
                eq - 0.5 * (-since_off / 300.0).exp(),
                eq + 6.0 * (-since_off / 300.0).exp(),
            )
        };
        let power_kw = if dhw_charge.is_some() {
            Self::DHW_EL_KW
        } else if heating || defrost {
            Self::heating_kw(outdoor).0
        } else {
            0.0
        };

        let e = self.energy(t);
        let midnight = (t / DAY).floor() * DAY;
        let m = if midnight > self.origin {
            self.energy(midnight)
        } else {
            Energy::default()
        };

        State {
            t,
            outdoor,
            flow,
            flow_set,
            ret,
            buffer,
            buffer_set: flow_set,
            hc1: buffer - 0.5,
            hc1_set: flow_set,
            dhw,
            dhw_set,
            hot_gas,
            inlet: ret - 0.3,
            low_pressure: low_p,
            mean_pressure: (low_p + high_p) / 2.0,
            high_pressure: high_p,
            water_flow: if compressor || !summer {
                16.0 + 0.5 * (TAU * t / 97.0).sin()
            } else {
                0.0
            },
            power_kw,
            compressor,
            heating,
            dhw_mode: dhw_charge.is_some(),
            defrost,
            hc1_pump: !summer,
            summer,
            heat_heating: e.heat_heating,
            heat_dhw: e.heat_dhw,
            el_heating: e.el_heating,
            el_dhw: e.el_dhw,
            heat_heating_midnight: m.heat_heating,
            heat_dhw_midnight: m.heat_dhw,
            el_heating_midnight: m.el_heating,
            el_dhw_midnight: m.el_dhw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-15 00:00:00 UTC, a winter day.
    const T0: f64 = 1_768_435_200.0;

    #[test]
    fn the_same_seed_and_time_give_the_same_state_whatever_came_before() {
        let a = Physics::new(7, T0);
        let b = Physics::new(7, T0);
        let _ = a.at(T0 + 5.0 * DAY);
        assert_eq!(a.at(T0 + 3600.0), b.at(T0 + 3600.0));
        assert_ne!(Physics::new(8, T0).at(T0 + 3600.0), b.at(T0 + 3600.0));
    }

    #[test]
    fn the_compressor_cycles_and_counters_only_grow_while_it_runs() {
        let p = Physics::new(1, T0);
        let mut flips = 0;
        let mut last = p.at(T0);
        for m in 1..(24 * 60) {
            let s = p.at(T0 + f64::from(m) * 60.0);
            if s.compressor != last.compressor {
                flips += 1;
            }
            assert!(s.heat_heating + s.heat_dhw >= last.heat_heating + last.heat_dhw);
            if !last.compressor && !s.compressor {
                assert_eq!(s.el_heating + s.el_dhw, last.el_heating + last.el_dhw, "minute {m}");
            }
            last = s;
        }
        assert!(flips > 10, "compressor flipped {flips} times in a day");
    }

    #[test]
    fn a_day_has_two_hot_water_charges_and_cold_days_some_defrosts() {
        let mut dhw_minutes = 0;
        let mut defrost_minutes = 0;
        for seed in 0..4 {
            let p = Physics::new(seed, T0);
            for m in 0..(24 * 60) {
                let s = p.at(T0 + f64::from(m) * 60.0);
                dhw_minutes += usize::from(s.dhw_mode);
                defrost_minutes += usize::from(s.defrost);
            }
        }
        assert_eq!(dhw_minutes, 4 * 2 * 40);
        assert!(defrost_minutes > 0);
    }

    #[test]
    fn outdoor_temperature_drifts_slowly() {
        let p = Physics::new(3, T0);
        for m in 0..1000 {
            let a = p.outdoor(T0 + f64::from(m) * 60.0);
            let b = p.outdoor(T0 + f64::from(m + 1) * 60.0);
            assert!((a - b).abs() < 0.05);
        }
    }

    #[test]
    fn energy_is_the_same_counted_forward_or_from_scratch() {
        let p = Physics::new(5, T0);
        let _ = p.at(T0 + 2.0 * DAY);
        let late = p.at(T0 + 2.5 * DAY);
        let fresh = Physics::new(5, T0).at(T0 + 2.5 * DAY);
        assert!((late.heat_heating - fresh.heat_heating).abs() < 1e-9);
        assert!(late.heat_heating_midnight <= late.heat_heating);
    }
}
