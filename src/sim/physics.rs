//! A heat pump in closed form: every value is a function of the seed, the
//! time zone and the time, so the same seed at the same instant always serves
//! the same registers, whatever was asked before.
//!
//! The plant: the outdoor temperature follows a daily swing (on UTC, roughly
//! solar time) plus slow weather drift. Heating runs in 30-minute cycles: the
//! compressor starts with the cycle and runs for an on-time that grows as it
//! gets colder and is never shorter than [`MIN_RUN_SECS`]. Two hot-water
//! charges a day (morning and evening, at fixed local times of the device's
//! time zone) take over the compressor; some cold cycles start with a defrost.
//! Every edge of that schedule falls on a whole second.
//!
//! Energy: the compressor draws a constant electrical power through a cycle
//! (heating: more the colder it is; hot water: [`DHW_EL_KW`]) and makes
//! heat = COP × electricity, with the COP of [`cop`], a Carnot fraction of the
//! source (outdoor) and sink (flow) temperatures: heating at the cycle's flow
//! set temperature, hot water at [`DHW_FLOW`], so a kWh of hot water costs
//! more electricity than a kWh of heating. A defrost draws power and makes no
//! heat. The counters are the exact integral of that power, worked out
//! analytically per cycle, so they only grow while the compressor runs.
//!
//! Day counters: the energy at the last local midnight of the device's time
//! zone (a day with a daylight-saving change is 23 or 25 hours long) is what
//! the registers move into the cumulative counters (see `image.rs`).

use std::f64::consts::TAU;
use std::sync::Mutex;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Length of one heating cycle (compressor on, then off).
pub const CYCLE_SECS: f64 = 1800.0;
/// The shortest a compressor run lasts (10 minutes): a heating run is at
/// least this long, a hot-water charge ([`DHW_SECS`]) longer, and runs that
/// touch or overlap merge into one longer run.
pub const MIN_RUN_SECS: f64 = 600.0;
/// Heating on-time of a cycle at full demand.
const MAX_ON_SECS: f64 = 0.95 * CYCLE_SECS;
/// Length of a hot-water charge.
pub const DHW_SECS: f64 = 2400.0;
/// Length of a defrost (at the start of a cycle).
pub const DEFROST_SECS: f64 = 300.0;
/// Flow temperature of a hot-water charge, °C.
pub const DHW_FLOW: f64 = 55.0;
/// Electrical power of a hot-water charge, kW.
pub const DHW_EL_KW: f64 = 2.0;
/// Share of the Carnot COP the compressor reaches.
const CARNOT_FRACTION: f64 = 0.45;
/// The refrigerant condenses this much above the flow and evaporates this much
/// below the outdoor air, kelvin.
const SINK_ABOVE_FLOW: f64 = 5.0;
const SOURCE_BELOW_OUTDOOR: f64 = 5.0;
const DAY: f64 = 86_400.0;

/// The coefficient of performance at an outdoor (source) and a flow (sink)
/// temperature, °C: 45 % of the Carnot COP
/// `T_sink / (T_sink − T_source)` in kelvin, where the refrigerant condenses
/// 5 K above the flow and evaporates 5 K below the outdoor air; clamped to
/// 1.5..6. About 3.1 at 0 °C outdoor and a 36 °C flow, 2.3 at −10 °C and 44 °C,
/// 2.3 for hot water (55 °C) at 0 °C.
pub fn cop(outdoor: f64, flow: f64) -> f64 {
    let sink = flow + SINK_ABOVE_FLOW + 273.15;
    let source = outdoor - SOURCE_BELOW_OUTDOOR + 273.15;
    let lift = (sink - source).max(1.0);
    (CARNOT_FRACTION * sink / lift).clamp(1.5, 6.0)
}

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
    /// Heat made now, kW (0 in a defrost).
    pub heat_kw: f64,
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
    /// The same four at the last local midnight at or after the origin (0
    /// before the first one).
    pub heat_heating_midnight: f64,
    pub heat_dhw_midnight: f64,
    pub el_heating_midnight: f64,
    pub el_dhw_midnight: f64,
}

/// Energy of the four counters, kWh.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Energy {
    pub heat_heating: f64,
    pub heat_dhw: f64,
    pub el_heating: f64,
    pub el_dhw: f64,
}

impl Energy {
    fn add(&mut self, o: Energy) {
        self.heat_heating += o.heat_heating;
        self.heat_dhw += o.heat_dhw;
        self.el_heating += o.el_heating;
        self.el_dhw += o.el_dhw;
    }
}

/// Compressor runs over a span of time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Runs {
    /// Compressor starts (off → on) in the span.
    pub starts: u64,
    /// Defrosts starting in the span.
    pub defrosts: u64,
    /// Seconds the compressor ran within the span.
    pub run_secs: f64,
    /// Length of the shortest run starting in the span (all of it, also past
    /// the span's end); `None` without a start.
    pub shortest_run_secs: Option<f64>,
}

/// What the compressor does at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Heating,
    Defrost,
    HotWater,
}

/// The simulated plant of one device.
#[derive(Debug)]
pub struct Physics {
    seed: u64,
    /// Where counters start (Unix seconds): energy is integrated from here.
    origin: f64,
    /// Where the day counters' midnight and the hot-water schedule are.
    tz: TimeZone,
    base_outdoor: f64,
    phase1: f64,
    phase2: f64,
    /// Start of the morning and evening hot-water charge, whole seconds into
    /// the local day.
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

/// Length of `[a0, a1)` inside `[b0, b1)`.
fn overlap(a0: f64, a1: f64, b0: f64, b1: f64) -> f64 {
    (a1.min(b1) - a0.max(b0)).max(0.0)
}

fn cycle_of(t: f64) -> i64 {
    (t / CYCLE_SECS).floor() as i64
}

fn cycle_start(c: i64) -> f64 {
    c as f64 * CYCLE_SECS
}

impl Physics {
    pub fn new(seed: u64, origin: f64, tz: TimeZone) -> Self {
        Physics {
            seed,
            origin,
            tz,
            base_outdoor: -2.0 + 8.0 * unit(seed, 1),
            phase1: TAU * unit(seed, 2),
            phase2: TAU * unit(seed, 3),
            dhw_starts: [
                (5.0 * 3600.0 + 3600.0 * unit(seed, 4)).floor(),
                (17.0 * 3600.0 + 3600.0 * unit(seed, 5)).floor(),
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

    /// The local date at `t`.
    fn local_date(&self, t: f64) -> Option<Date> {
        let ts = Timestamp::from_second(t.floor() as i64).ok()?;
        Some(ts.to_zoned_datetime(self.tz.clone()).date())
    }

    /// Unix time of `secs` (whole, under a day) of local clock time on `date`;
    /// a clock time a daylight-saving change skips is taken as the time after.
    fn local_time(&self, date: Date, secs: f64) -> Option<f64> {
        let s = secs as i64;
        let dt = date.at((s / 3600) as i8, (s / 60 % 60) as i8, (s % 60) as i8, 0);
        let zoned = self.tz.to_zoned_datetime(dt).ok()?;
        Some(zoned.timestamp().as_second() as f64)
    }

    /// The last local midnight at or before `t` (Unix seconds): the start of
    /// the local day, 23, 24 or 25 hours before the next one.
    pub fn day_start(&self, t: f64) -> f64 {
        self.local_date(t)
            .and_then(|d| self.local_time(d, 0.0))
            .filter(|m| *m <= t)
            .unwrap_or_else(|| (t / DAY).floor() * DAY)
    }

    /// The hot-water charges (start, end) of the local days from `a`'s, the
    /// day before, to `b`'s.
    fn charges(&self, a: f64, b: f64) -> Vec<(f64, f64)> {
        let (Some(first), Some(last)) = (self.local_date(a), self.local_date(b)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut d = first.yesterday().unwrap_or(first);
        while d <= last {
            for s in self.dhw_starts {
                if let Some(start) = self.local_time(d, s) {
                    out.push((start, start + DHW_SECS));
                }
            }
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => break,
            }
        }
        out
    }

    /// The hot-water charges overlapping `[a, b)`.
    fn charges_between(&self, a: f64, b: f64) -> Vec<(f64, f64)> {
        self.charges(a, b)
            .into_iter()
            .filter(|(s, e)| *s < b && *e > a)
            .collect()
    }

    /// The hot-water charge running at `t`: its start, if any.
    fn dhw_charge(&self, t: f64) -> Option<f64> {
        self.charges(t, t)
            .into_iter()
            .find(|(s, e)| t >= *s && t < *e)
            .map(|(s, _)| s)
    }

    /// End of the last hot-water charge before `t`.
    fn last_dhw_end(&self, t: f64) -> f64 {
        self.charges(t, t)
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| *e <= t)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Seconds the compressor heats in cycle `c` (from the cycle's start): 0
    /// without demand, else from [`MIN_RUN_SECS`] at the least demand to 95 %
    /// of the cycle at the most, in whole seconds.
    fn on_secs(&self, c: i64) -> f64 {
        let d = Self::demand(self.outdoor(cycle_start(c)));
        if d <= 0.0 {
            0.0
        } else {
            (MIN_RUN_SECS + (MAX_ON_SECS - MIN_RUN_SECS) * d).round()
        }
    }

    /// Whether cycle `c` starts with a defrost: one cold cycle in four, never
    /// one that starts during a hot-water charge.
    fn defrosts(&self, c: i64) -> bool {
        let start = cycle_start(c);
        self.outdoor(start) < 5.0
            && self.on_secs(c) > 2.0 * DEFROST_SECS
            && mix(self.seed, c as u64).is_multiple_of(4)
            && self.dhw_charge(start).is_none()
    }

    /// Electrical power of heating (and defrosting) in cycle `c`, kW, and the
    /// COP of its heating and of a hot-water charge in it.
    fn cycle_rates(&self, c: i64) -> (f64, f64, f64) {
        let outdoor = self.outdoor(cycle_start(c));
        let el = 1.2 + 1.5 * Self::demand(outdoor);
        (el, cop(outdoor, Self::flow_set(outdoor)), cop(outdoor, DHW_FLOW))
    }

    /// What the compressor does at `t`: a hot-water charge takes precedence,
    /// then a defrost at the cycle's start, then heating until the on-time ends.
    fn mode(&self, t: f64) -> Mode {
        if self.dhw_charge(t).is_some() {
            return Mode::HotWater;
        }
        let c = cycle_of(t);
        let in_cycle = t - cycle_start(c);
        if in_cycle < self.on_secs(c) {
            if in_cycle < DEFROST_SECS && self.defrosts(c) {
                Mode::Defrost
            } else {
                Mode::Heating
            }
        } else {
            Mode::Off
        }
    }

    /// Energy of cycle `c` between `from` and `to` seconds into the cycle,
    /// exactly: the power is constant in each mode through a cycle.
    fn cycle_energy(&self, c: i64, from: f64, to: f64) -> Energy {
        let start = cycle_start(c);
        let mut e = Energy::default();
        if to <= from {
            return e;
        }
        let (a, b) = (start + from, start + to);
        let charges = self.charges_between(a, b);
        // Seconds of [x0, x1) in the span, and of those in a charge.
        let span = |x0: f64, x1: f64| overlap(x0, x1, a, b);
        let charged = |x0: f64, x1: f64| -> f64 { charges.iter().map(|(s, e)| span(x0.max(*s), x1.min(*e))).sum() };
        let on_end = start + self.on_secs(c);
        let defrost_end = if self.defrosts(c) { start + DEFROST_SECS } else { start };
        let dhw = charged(a, b);
        // The defrost lies inside the on-time; a charge overrides both.
        let defrost = span(start, defrost_end) - charged(start, defrost_end);
        let heating = span(start, on_end) - charged(start, on_end) - defrost;
        let (el_kw, cop_heating, cop_dhw) = self.cycle_rates(c);
        e.el_heating = el_kw * (heating + defrost) / 3600.0;
        e.heat_heating = el_kw * cop_heating * heating / 3600.0;
        e.el_dhw = DHW_EL_KW * dhw / 3600.0;
        e.heat_dhw = DHW_EL_KW * cop_dhw * dhw / 3600.0;
        e
    }

    /// Energy from the origin to `t`, kWh.
    pub fn energy(&self, t: f64) -> Energy {
        if t <= self.origin {
            return Energy::default();
        }
        let c_now = cycle_of(t);
        let c0 = cycle_of(self.origin);
        let first_from = self.origin - cycle_start(c0);
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
        total.add(self.cycle_energy(c_now, from, t - cycle_start(c_now)));
        total
    }

    /// Energy at the last local midnight at or before `t` (0 before the
    /// first one after the origin): what the day counters count from.
    pub fn energy_at_midnight(&self, t: f64) -> Energy {
        let midnight = self.day_start(t);
        if midnight > self.origin {
            self.energy(midnight)
        } else {
            Energy::default()
        }
    }

    /// The compressor's runs over `[from, to)`, from the schedule: a run is a
    /// span of heating on-times, defrosts and hot-water charges that touch or
    /// overlap.
    pub fn runs(&self, from: f64, to: f64) -> Runs {
        let mut r = Runs::default();
        if to <= from {
            return r;
        }
        // A run is a few cycles and a charge at most: look this far around.
        let pad = 3.0 * 3600.0;
        let mut spans = self.charges_between(from - pad, to + pad);
        for c in cycle_of(from - pad)..=cycle_of(to + pad) {
            let start = cycle_start(c);
            let on = self.on_secs(c);
            if on > 0.0 {
                spans.push((start, start + on));
            }
            if (from..to).contains(&start) && self.defrosts(c) {
                r.defrosts += 1;
            }
        }
        spans.sort_by(|x, y| x.0.total_cmp(&y.0));
        let mut merged: Vec<(f64, f64)> = Vec::new();
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        for (s, e) in merged {
            if (from..to).contains(&s) {
                r.starts += 1;
                r.shortest_run_secs = Some(r.shortest_run_secs.map_or(e - s, |m: f64| m.min(e - s)));
            }
            r.run_secs += overlap(s, e, from, to);
        }
        r
    }

    /// The plant at Unix time `t` (seconds).
    pub fn at(&self, t: f64) -> State {
        let outdoor = self.outdoor(t);
        let c = cycle_of(t);
        let in_cycle = t - cycle_start(c);
        let on = self.on_secs(c);
        let summer = Self::demand(outdoor) <= 0.0 && Self::demand(self.outdoor(cycle_start(c))) <= 0.0;
        let mode = self.mode(t);
        let dhw_charge = self.dhw_charge(t);
        let defrost = mode == Mode::Defrost;
        let heating = mode == Mode::Heating;
        let compressor = mode != Mode::Off;

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
        // The same power the counters integrate.
        let (el_kw, cop_heating, cop_dhw) = self.cycle_rates(c);
        let (power_kw, heat_kw) = match mode {
            Mode::HotWater => (DHW_EL_KW, DHW_EL_KW * cop_dhw),
            Mode::Heating => (el_kw, el_kw * cop_heating),
            Mode::Defrost => (el_kw, 0.0),
            Mode::Off => (0.0, 0.0),
        };

        let e = self.energy(t);
        let m = self.energy_at_midnight(t);

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
            heat_kw,
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
        let a = Physics::new(7, T0, TimeZone::UTC);
        let b = Physics::new(7, T0, TimeZone::UTC);
        let _ = a.at(T0 + 5.0 * DAY);
        assert_eq!(a.at(T0 + 3600.0), b.at(T0 + 3600.0));
        assert_ne!(Physics::new(8, T0, TimeZone::UTC).at(T0 + 3600.0), b.at(T0 + 3600.0));
    }

    #[test]
    fn the_compressor_cycles_and_counters_only_grow_while_it_runs() {
        let p = Physics::new(1, T0, TimeZone::UTC);
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
            let p = Physics::new(seed, T0, TimeZone::UTC);
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
        let p = Physics::new(3, T0, TimeZone::UTC);
        for m in 0..1000 {
            let a = p.outdoor(T0 + f64::from(m) * 60.0);
            let b = p.outdoor(T0 + f64::from(m + 1) * 60.0);
            assert!((a - b).abs() < 0.05);
        }
    }

    #[test]
    fn energy_is_the_same_counted_forward_or_from_scratch() {
        let p = Physics::new(5, T0, TimeZone::UTC);
        let _ = p.at(T0 + 2.0 * DAY);
        let late = p.at(T0 + 2.5 * DAY);
        let fresh = Physics::new(5, T0, TimeZone::UTC).at(T0 + 2.5 * DAY);
        assert!((late.heat_heating - fresh.heat_heating).abs() < 1e-9);
        assert!(late.heat_heating_midnight <= late.heat_heating);
    }

    #[test]
    fn a_day_makes_two_to_five_kwh_of_heat_per_kwh_of_electricity() {
        for seed in 0..6 {
            let p = Physics::new(seed, T0, TimeZone::UTC);
            for day in 0..7 {
                let a = p.energy(T0 + f64::from(day) * DAY);
                let b = p.energy(T0 + f64::from(day + 1) * DAY);
                let heat = b.heat_heating + b.heat_dhw - a.heat_heating - a.heat_dhw;
                let el = b.el_heating + b.el_dhw - a.el_heating - a.el_dhw;
                let cop_day = heat / el;
                assert!(
                    (2.0..=5.0).contains(&cop_day),
                    "seed {seed} day {day}: COP {cop_day:.2}"
                );
                // Hot water, made at a higher flow temperature, costs more.
                let cop_heating = (b.heat_heating - a.heat_heating) / (b.el_heating - a.el_heating);
                let cop_dhw = (b.heat_dhw - a.heat_dhw) / (b.el_dhw - a.el_dhw);
                assert!(
                    cop_dhw < cop_heating,
                    "seed {seed} day {day}: {cop_dhw:.2} ≥ {cop_heating:.2}"
                );
            }
        }
    }

    #[test]
    fn the_cop_falls_as_it_gets_colder_outside_and_hotter_in_the_flow() {
        assert!(cop(0.0, 35.0) > cop(-10.0, 35.0));
        assert!(cop(0.0, 35.0) > cop(0.0, 55.0));
        let c = cop(0.0, 35.0);
        assert!((2.5..4.0).contains(&c), "{c}");
    }

    /// What sampling the plant every second over `[from, to)` shows.
    #[derive(Debug, Default)]
    struct Sampled {
        /// Compressor starts (off → on).
        starts: u64,
        /// Runs that started and ended in the span: (start, end).
        runs: Vec<(f64, f64)>,
        defrosts: u64,
        run_secs: f64,
        /// Energy summed from the power shown, kWh.
        el: f64,
        heat: f64,
    }

    fn sampled(p: &Physics, from: f64, to: f64) -> Sampled {
        let mut out = Sampled::default();
        let mut prev = p.at(from - 1.0);
        let mut run_start = None;
        let mut t = from;
        while t < to {
            let s = p.at(t);
            if s.compressor && !prev.compressor {
                out.starts += 1;
                run_start = Some(t);
            }
            if !s.compressor && prev.compressor {
                if let Some(start) = run_start.take() {
                    out.runs.push((start, t));
                }
            }
            out.defrosts += u64::from(s.defrost && !prev.defrost);
            out.run_secs += f64::from(u8::from(s.compressor));
            out.el += s.power_kw / 3600.0;
            out.heat += s.heat_kw / 3600.0;
            prev = s;
            t += 1.0;
        }
        out
    }

    #[test]
    fn every_compressor_run_lasts_the_minimum_run_time_and_the_schedule_agrees_with_the_samples() {
        for seed in [1, 2] {
            let p = Physics::new(seed, T0, TimeZone::UTC);
            let (from, to) = (T0 + 3600.0, T0 + DAY);
            let s = sampled(&p, from, to);
            assert!(s.runs.len() > 10, "seed {seed}: {} runs", s.runs.len());
            for (a, b) in &s.runs {
                assert!(b - a >= MIN_RUN_SECS, "seed {seed}: a run of {} s at {a}", b - a);
            }
            // Every edge is on a whole second: the schedule and the samples agree.
            let r = p.runs(from, to);
            assert_eq!(r.starts, s.starts, "seed {seed}");
            assert_eq!(r.defrosts, s.defrosts, "seed {seed}");
            assert!(s.defrosts > 0, "seed {seed}: a cold day has defrosts");
            assert_eq!(r.run_secs, s.run_secs, "seed {seed}");
            let shortest = s.runs.iter().map(|(a, b)| b - a).fold(f64::INFINITY, f64::min);
            assert!(
                r.shortest_run_secs.is_some_and(|m| m <= shortest),
                "{r:?} vs {shortest}"
            );
            // The counters are the integral of the power shown.
            let (a, b) = (p.energy(from), p.energy(to));
            assert!((b.el_heating + b.el_dhw - a.el_heating - a.el_dhw - s.el).abs() < 1e-6);
            assert!((b.heat_heating + b.heat_dhw - a.heat_heating - a.heat_dhw - s.heat).abs() < 1e-6);
        }
        for seed in 0..8 {
            let r = Physics::new(seed, T0, TimeZone::UTC).runs(T0, T0 + 7.0 * DAY);
            assert!(r.starts > 50, "seed {seed}: {r:?}");
            assert!(
                r.shortest_run_secs.is_some_and(|s| s >= MIN_RUN_SECS),
                "seed {seed}: {r:?}"
            );
        }
    }

    #[test]
    fn the_day_starts_at_local_midnight_also_on_a_daylight_saving_day() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let p = Physics::new(1, T0, berlin);
        // 2026-03-29 00:00 +01:00 is 2026-03-28 23:00 UTC; that day has 23 hours.
        let m29 = 1_774_738_800.0;
        assert_eq!(p.day_start(m29), m29);
        assert_eq!(p.day_start(m29 - 1.0), m29 - DAY);
        assert_eq!(p.day_start(m29 + 22.0 * 3600.0), m29);
        assert_eq!(p.day_start(m29 + 23.0 * 3600.0), m29 + 23.0 * 3600.0);
        // The hot-water charges stay at their local times: one hour earlier in UTC.
        let before = p.charges_between(m29 - DAY, m29);
        let after = p.charges_between(m29 + 23.0 * 3600.0, m29 + 47.0 * 3600.0);
        assert_eq!(before.len(), 2);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].0 - (m29 + 23.0 * 3600.0), before[0].0 - (m29 - DAY));
    }
}
