//! A simulated Stiebel Eltron WPM behind an ISG: serves a register map's model
//! over Modbus TCP or RTU, for demos and tests.
//!
//! - **Realistic and deterministic**: values are a function of the seed and the
//!   simulated time ([`physics`]): outdoor temperature drifting, compressor
//!   cycles flipping the status bits, defrosts, two hot-water charges a day,
//!   energy counters split into kWh + MWh with the day counter moving into the
//!   total at local midnight ([`SimOptions::time_zone`]), heat = COP ×
//!   electricity with a COP of the outdoor and flow temperatures
//!   ([`physics::cop`]), compressor runs of at least
//!   [`physics::MIN_RUN_SECS`], the controller id at input 5001, 0x8000 for
//!   sensors not fitted. Values change at most once per simulated second.
//! - **Exact figures for tests**: [`Simulator::energy_at`] (the floating
//!   counters the registers are derived from) and
//!   [`Simulator::compressor_runs`] (starts, defrosts and run time over a span).
//! - **An ISG's address rule**: a read starting on an address the map does not
//!   document gets exception 02 (as does one starting at input 608, as on a real
//!   WPMsystem); undocumented addresses inside a span read 0x8000; optional
//!   blocks the controller lacks are refused (ventilation always; every
//!   optional block on a WPM 3i, controller 391).
//! - **Faults on demand**: an exception on a share of requests, latency, and a
//!   dropped connection (or, on a serial line, no answer) every N requests.
//! - **The truth**: what a correct `hpflow read --json` prints right now.
//! - **A request log** (off by default, see [`Simulator::log_requests`]): every
//!   read answered, so a test can count polls on the device's side of the wire
//!   instead of trusting the poller's own counters.

mod image;
pub mod physics;
mod server;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jiff::tz::TimeZone;
use serde_json::{Map, Value as Json};

use self::image::{Fixed, Image, Layout};
use self::physics::Physics;
use crate::event::{Metric, Tags};
use crate::registers::Model;

pub use server::{RtuServer, TcpServer};

/// The controller ids the simulator can claim (input 5001).
pub const CONTROLLERS: [u16; 2] = [391, 449];

/// Failures to inject.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Share of requests (0..1) answered with `exception_code` instead of data.
    pub exception_rate: f64,
    pub exception_code: u8,
    /// Added before every answer.
    pub latency: Duration,
    /// Every Nth request closes its TCP connection unanswered (on RTU: is not answered).
    pub drop_every: Option<u64>,
    /// Over TCP, reads only the first request of what arrives together and
    /// drops the rest unanswered, as some gateways do.
    pub one_request_at_a_time: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            exception_rate: 0.0,
            exception_code: 0x06,
            latency: Duration::ZERO,
            drop_every: None,
            one_request_at_a_time: false,
        }
    }
}

/// How simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    /// Starts at the wall-clock time and runs `speed` times as fast.
    Running { speed: f64 },
    /// Stands still at this time until [`Simulator::set_time`] moves it.
    Frozen(SystemTime),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub model: Arc<Model>,
    pub seed: u64,
    /// One simulated heat pump per unit id, all behind the same endpoint.
    pub unit_ids: Vec<u8>,
    /// Controller id at input 5001; default: 391 or 449, chosen by the seed.
    pub controller_id: Option<u16>,
    /// Optional blocks the controller refuses; default: by controller (see module docs).
    pub refuse_blocks: Option<Vec<String>>,
    pub clock: Clock,
    /// Where a running clock starts (and the counters count from): default now.
    pub start: Option<SystemTime>,
    pub faults: Faults,
    /// Where the controllers' day is: the day counters move into the totals
    /// at local midnight here, and the hot-water charges run at fixed local
    /// times. Default: the system's time zone.
    pub time_zone: TimeZone,
}

impl SimOptions {
    pub fn new(model: Arc<Model>) -> Self {
        SimOptions {
            model,
            seed: 1,
            unit_ids: vec![1],
            controller_id: None,
            refuse_blocks: None,
            clock: Clock::Running { speed: 1.0 },
            start: None,
            faults: Faults::default(),
            time_zone: TimeZone::system(),
        }
    }
}

/// The four energy counters of a simulated heat pump, kWh, floating: the
/// readings the registers are derived from (the counters at the simulator's
/// start plus the energy since). With `M` the last local midnight after the
/// start (or the start itself), the registers show
/// `*_total = floor(E(M))` and `*_day = floor(E(t)) − floor(E(M))`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimEnergy {
    /// Heat for heating (`heat_meter_heating_*`).
    pub heat_heating: f64,
    /// Heat for hot water (`heat_meter_dhw_*`).
    pub heat_dhw: f64,
    /// Electricity for heating, defrosts included (`power_consumption_heating_*`).
    pub el_heating: f64,
    /// Electricity for hot water (`power_consumption_dhw_*`).
    pub el_dhw: f64,
}

/// A simulated compressor's runs over a span of time (see
/// [`Simulator::compressor_runs`]).
pub use physics::Runs as SimRuns;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no unit ids to simulate")]
    NoDevices,
    #[error("unit id {0} is not 1-247")]
    BadUnitId(u8),
    #[error("unit id {0} is given twice")]
    DuplicateUnitId(u8),
    #[error("exception rate {0} is not between 0 and 1")]
    BadExceptionRate(f64),
    #[error("speed {0} must be a positive number")]
    BadSpeed(f64),
    #[error("unknown time zone {name:?} (an IANA name such as Europe/Berlin, or UTC): {reason}")]
    UnknownTimeZone { name: String, reason: String },
}

/// One simulated heat pump.
#[derive(Debug)]
struct SimDevice {
    unit: u8,
    physics: Physics,
    fixed: Fixed,
    layout: Layout,
    /// The image of the current simulated second.
    cache: Mutex<Option<(i64, Arc<Image>)>>,
}

#[derive(Debug)]
struct ClockState {
    clock: Clock,
    /// Real instant and simulated time (Unix seconds) when the clock started.
    real0: Instant,
    sim0: f64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    model: Arc<Model>,
    devices: Vec<SimDevice>,
    time_zone: TimeZone,
    clock: Mutex<ClockState>,
    pub(crate) faults: Faults,
    pub(crate) requests: AtomicU64,
    pub(crate) rng: Mutex<crate::modbus::Rng>,
    /// `Some` once [`Simulator::log_requests`] turned the request log on.
    pub(crate) log: Mutex<Option<Vec<AnsweredRead>>>,
}

/// One read a simulated heat pump answered, as the request log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredRead {
    pub unit: u8,
    pub table: crate::registers::Table,
    pub start: u16,
    pub count: u16,
    /// Answered with data (`false`: with a Modbus exception).
    pub data: bool,
    /// Wall-clock time the answer was handed to the connection.
    pub at: SystemTime,
}

/// A running set of simulated heat pumps sharing one endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

fn unix(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Simulator {
    pub fn new(opts: SimOptions) -> Result<Simulator, SimError> {
        if opts.unit_ids.is_empty() {
            return Err(SimError::NoDevices);
        }
        let mut seen = HashSet::new();
        for u in &opts.unit_ids {
            if !(1..=247).contains(u) {
                return Err(SimError::BadUnitId(*u));
            }
            if !seen.insert(*u) {
                return Err(SimError::DuplicateUnitId(*u));
            }
        }
        if !(0.0..=1.0).contains(&opts.faults.exception_rate) {
            return Err(SimError::BadExceptionRate(opts.faults.exception_rate));
        }
        let start = match opts.clock {
            Clock::Running { speed } if !(speed.is_finite() && speed > 0.0) => return Err(SimError::BadSpeed(speed)),
            Clock::Running { .. } => opts.start.unwrap_or_else(SystemTime::now),
            Clock::Frozen(t) => t,
        };
        let sim0 = unix(start).floor();
        let devices = opts
            .unit_ids
            .iter()
            .enumerate()
            .map(|(i, &unit)| {
                let seed = opts.seed.wrapping_add(i as u64);
                let controller = opts
                    .controller_id
                    .unwrap_or(CONTROLLERS[(physics::unit(seed, 99) * CONTROLLERS.len() as f64) as usize % 2]);
                let refused: HashSet<String> = match &opts.refuse_blocks {
                    Some(list) => list.iter().cloned().collect(),
                    None if controller == 391 => opts
                        .model
                        .blocks()
                        .iter()
                        .filter(|b| b.optional)
                        .map(|b| b.name.to_string())
                        .collect(),
                    None => ["ventilation".to_string()].into_iter().collect(),
                };
                SimDevice {
                    unit,
                    physics: Physics::new(seed, sim0, opts.time_zone.clone()),
                    fixed: Fixed::new(seed, controller),
                    layout: Layout::new(&opts.model, &refused),
                    cache: Mutex::new(None),
                }
            })
            .collect();
        Ok(Simulator {
            inner: Arc::new(Inner {
                model: opts.model,
                devices,
                time_zone: opts.time_zone,
                clock: Mutex::new(ClockState {
                    clock: opts.clock,
                    real0: Instant::now(),
                    sim0,
                }),
                faults: opts.faults,
                requests: AtomicU64::new(0),
                rng: Mutex::new(crate::modbus::Rng::new(opts.seed ^ 0x5eed)),
                log: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub fn unit_ids(&self) -> Vec<u8> {
        self.inner.devices.iter().map(|d| d.unit).collect()
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.inner.model
    }

    /// The controller id a unit reports.
    pub fn controller_id(&self, unit: u8) -> Option<u16> {
        self.inner.device(unit).map(|d| d.fixed.controller)
    }

    /// The time zone of the controllers' day ([`SimOptions::time_zone`]).
    pub fn time_zone(&self) -> &TimeZone {
        &self.inner.time_zone
    }

    /// The exact energy counters of `unit` at `t` (any time, not only the
    /// simulated now; `None` for a unit not simulated). The registers at a
    /// whole second `t` show these floored, as [`SimEnergy`] describes; before
    /// the simulator's start they are the readings at the start.
    pub fn energy_at(&self, unit: u8, t: SystemTime) -> Option<SimEnergy> {
        let d = self.inner.device(unit)?;
        let e = d.physics.energy(unix(t));
        Some(SimEnergy {
            heat_heating: d.fixed.heat_heating + e.heat_heating,
            heat_dhw: d.fixed.heat_dhw + e.heat_dhw,
            el_heating: d.fixed.el_heating + e.el_heating,
            el_dhw: d.fixed.el_dhw + e.el_dhw,
        })
    }

    /// The compressor runs of `unit` over `[from, to)`, worked out from the
    /// plant's schedule (no sampling, so days cost little): starts (off → on
    /// edges, the `compressor_running` bit of `operating_status` going up),
    /// defrosts starting (`defrost_mode` going up), the seconds it ran within
    /// the span and the shortest run starting in it. A hot-water charge that
    /// meets a heating run continues it: one run, one start. `None` for a unit
    /// not simulated.
    pub fn compressor_runs(&self, unit: u8, from: SystemTime, to: SystemTime) -> Option<SimRuns> {
        let d = self.inner.device(unit)?;
        Some(d.physics.runs(unix(from), unix(to)))
    }

    /// Requests answered (or dropped) so far.
    pub fn requests_served(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Starts (or restarts, empty) the request log: from now on every read
    /// answered, with data or an exception, is recorded until the simulator is
    /// dropped. Reads dropped unanswered (`Faults::drop_every`) and requests to
    /// a unit it does not simulate are not. It grows by one entry a read, so
    /// it is meant for tests, not for a long-running `hpflow simulate`.
    pub fn log_requests(&self) {
        *self.inner.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// The request log so far, oldest first (empty when it is off).
    pub fn request_log(&self) -> Vec<AnsweredRead> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// When `unit` answered, with data, a read of `table` that covered
    /// `address`, from the request log. A poller reads its plan in order and
    /// reads each register once a poll, however it joins or splits the plan's
    /// requests, so the answers covering the plan's last register count the
    /// polls the device fully answered, and those covering its first register
    /// the polls begun.
    pub fn answered_covering(&self, unit: u8, table: crate::registers::Table, address: u16) -> Vec<SystemTime> {
        let log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .flatten()
            .filter(|a| {
                a.data
                    && a.unit == unit
                    && a.table == table
                    && u32::from(a.start) <= u32::from(address)
                    && u32::from(address) < u32::from(a.start) + u32::from(a.count)
            })
            .map(|a| a.at)
            .collect()
    }

    /// Simulated time now.
    pub fn now(&self) -> SystemTime {
        let t = self.inner.now_unix();
        let since_epoch = Duration::try_from_secs_f64(t.max(0.0)).unwrap_or_default();
        SystemTime::UNIX_EPOCH
            .checked_add(since_epoch)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Moves a frozen clock (or restarts a running one) at `t`.
    pub fn set_time(&self, t: SystemTime) {
        let mut c = self.inner.clock.lock().unwrap_or_else(|p| p.into_inner());
        if let Clock::Frozen(_) = c.clock {
            c.clock = Clock::Frozen(t);
        }
        c.real0 = Instant::now();
        c.sim0 = unix(t);
    }

    /// The raw values a correct poll of `unit` decodes right now (sentinels absent).
    pub fn truth_raw(&self, unit: u8) -> Option<Metric> {
        let d = self.inner.device(unit)?;
        let img = self.inner.image(d);
        let mut tags = Tags::new();
        tags.insert("unit_id".into(), unit.to_string());
        let mut m = Metric::new(
            &format!("unit{unit}"),
            Arc::new(tags),
            self.now(),
            self.inner.model.schema().clone(),
        );
        m.fields.extend(img.truth.iter().map(|(k, v)| (k.clone(), v.clone())));
        Some(m)
    }

    /// What `hpflow read --json` against `unit` prints right now: field →
    /// engineering value (scaled, rounded, bools, enum labels as text).
    pub fn truth(&self, unit: u8) -> Option<Map<String, Json>> {
        self.truth_raw(unit).map(crate::display::engineering_json)
    }

    /// The truth of every device: the flat object of [`truth`](Self::truth) for a
    /// single device, else an object keyed by unit id.
    pub fn truth_json(&self) -> Json {
        let units = self.unit_ids();
        if let [u] = units.as_slice() {
            return Json::Object(self.truth(*u).unwrap_or_default());
        }
        let all: BTreeMap<String, Json> = units
            .iter()
            .map(|u| (u.to_string(), Json::Object(self.truth(*u).unwrap_or_default())))
            .collect();
        Json::Object(all.into_iter().collect())
    }

    /// Writes [`truth_json`](Self::truth_json) to `path` atomically (temp file + rename).
    pub fn write_truth(&self, path: &Path) -> std::io::Result<()> {
        write_json_atomic(path, &self.truth_json())
    }
}

/// Writes JSON to a temporary file beside `path` and renames it into place, so a
/// reader never sees half a file.
pub fn write_json_atomic(path: &Path, value: &Json) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomically(path, (text + "\n").as_bytes())
}

impl Inner {
    /// Adds an answer to the request log, when it is on.
    pub(crate) fn record(&self, answered: impl FnOnce() -> AnsweredRead) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = log.as_mut() {
            log.push(answered());
        }
    }

    fn device(&self, unit: u8) -> Option<&SimDevice> {
        self.devices.iter().find(|d| d.unit == unit)
    }

    /// The unit a request addressed to `slave` reaches. Over TCP a lone device
    /// also answers 0 and 255, the ids Modbus TCP uses for "the device itself".
    pub(crate) fn resolve_unit(&self, slave: u8, tcp: bool) -> Option<u8> {
        if self.device(slave).is_some() {
            return Some(slave);
        }
        match self.devices.as_slice() {
            [only] if tcp && (slave == 0 || slave == 255) => Some(only.unit),
            _ => None,
        }
    }

    fn now_unix(&self) -> f64 {
        let c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        match c.clock {
            Clock::Frozen(_) => c.sim0,
            Clock::Running { speed } => c.sim0 + c.real0.elapsed().as_secs_f64() * speed,
        }
    }

    /// The registers of `d` at the current simulated second.
    fn image(&self, d: &SimDevice) -> Arc<Image> {
        let sec = self.now_unix().floor() as i64;
        let mut cache = d.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, img)) = cache.as_ref() {
            if *s == sec {
                return img.clone();
            }
        }
        let state = d.physics.at(sec as f64);
        let img = Arc::new(Image::build(&self.model, &d.layout, &state, &d.fixed));
        *cache = Some((sec, img.clone()));
        img
    }

    /// Answers one read of `unit`: words or bits, or the exception an ISG would send.
    pub(crate) fn read(
        &self,
        unit: u8,
        table: crate::registers::Table,
        start: u16,
        count: u16,
    ) -> Option<Result<crate::registers::RawData, tokio_modbus::ExceptionCode>> {
        let d = self.device(unit)?;
        let img = self.image(d);
        Some(if table.is_bits() {
            img.read_bits(&d.layout, table, start, count)
                .map(crate::registers::RawData::Bits)
        } else {
            img.read_words(&d.layout, table, start, count)
                .map(crate::registers::RawData::Words)
        })
    }
}

/// A WPMsystem controller (449) of the shipped map with its clock frozen at
/// 2026-01-15: the device of unit tests that talk Modbus to a simulator.
#[cfg(test)]
pub(crate) fn shipped_wpmsystem() -> Simulator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
    let map = crate::registers::RegisterMap::load(path).expect("the shipped map loads");
    let model = Arc::clone(map.model("stiebel_eltron_wpm").expect("the shipped model"));
    Simulator::new(SimOptions {
        controller_id: Some(449),
        clock: Clock::Frozen(SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_435_200)),
        ..SimOptions::new(model)
    })
    .expect("valid options")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn model() -> Arc<Model> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
        let map = crate::registers::RegisterMap::load(&path).expect("the shipped map loads");
        Arc::clone(map.model("stiebel_eltron_wpm").expect("the shipped model"))
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("the time zone database has Europe/Berlin")
    }

    fn at(unix: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
    }

    /// Unix seconds of a local time in Berlin.
    fn local(y: i16, mo: i8, d: i8, h: i8) -> i64 {
        date(y, mo, d)
            .at(h, 0, 0, 0)
            .to_zoned_datetime(berlin())
            .unwrap()
            .timestamp()
            .as_second()
    }

    fn frozen(seed: u64, t: SystemTime) -> Simulator {
        Simulator::new(SimOptions {
            seed,
            clock: Clock::Frozen(t),
            time_zone: berlin(),
            ..SimOptions::new(model())
        })
        .expect("valid options")
    }

    /// The registers of the four counters: (total, day).
    const COUNTERS: [(&str, &str); 4] = [
        ("heat_meter_heating_total", "heat_meter_heating_day"),
        ("heat_meter_dhw_total", "heat_meter_dhw_day"),
        ("power_consumption_heating_total", "power_consumption_heating_day"),
        ("power_consumption_dhw_total", "power_consumption_dhw_day"),
    ];

    /// The whole kWh of counter `i` of `e` (in [`COUNTERS`]' order).
    fn whole(e: &SimEnergy, i: usize) -> i64 {
        [e.heat_heating, e.heat_dhw, e.el_heating, e.el_dhw][i].floor() as i64
    }

    /// (total, day) of the four counters `sim` serves at `t`.
    fn registers(sim: &Simulator, t: i64) -> [(i64, i64); 4] {
        sim.set_time(at(t));
        let truth = sim.truth(1).unwrap();
        COUNTERS.map(|(total, day)| (truth[total].as_i64().unwrap(), truth[day].as_i64().unwrap()))
    }

    /// Over four local days from noon before the first of `midnights`: the
    /// totals stand still all day and take the day's whole kWh at local
    /// midnight, when the day counters start from 0 again.
    fn counters_move_at_local_midnight(midnights: [i64; 4]) {
        for seed in [1, 4] {
            let origin = midnights[0] - 12 * 3600;
            let sim = frozen(seed, at(origin));
            let energy = |t: i64| sim.energy_at(1, at(t)).unwrap();
            let mut last = registers(&sim, origin);
            let mut previous = origin;
            let mut moved_any = false;
            for m in midnights {
                // Every 10 minutes through the day: the total stands still and
                // total + day never falls.
                let mut t = previous;
                while t < m {
                    let now = registers(&sim, t);
                    for i in 0..4 {
                        assert_eq!(
                            now[i].0,
                            whole(&energy(previous), i),
                            "seed {seed} {} at {t}",
                            COUNTERS[i].0
                        );
                        assert!(
                            now[i].0 + now[i].1 >= last[i].0 + last[i].1,
                            "seed {seed} {} at {t}",
                            COUNTERS[i].0
                        );
                    }
                    last = now;
                    t += 600;
                }
                let before = registers(&sim, m - 1);
                let after = registers(&sim, m);
                for i in 0..4 {
                    let moved = after[i].0 - before[i].0;
                    let expected = whole(&energy(m), i) - whole(&energy(previous), i);
                    assert_eq!(moved, expected, "seed {seed} {} at {m}", COUNTERS[i].0);
                    assert!(
                        moved >= before[i].1,
                        "the day's whole kWh move: {moved} < {}",
                        before[i].1
                    );
                    assert_eq!(after[i].1, 0, "seed {seed} {} restarts at {m}", COUNTERS[i].0);
                    assert!(after[i].0 + after[i].1 >= before[i].0 + before[i].1);
                    moved_any |= moved > 0;
                }
                assert!(before[0].1 > 0, "seed {seed}: heat was made on the day before {m}");
                last = after;
                previous = m;
            }
            assert!(moved_any);
        }
    }

    #[test]
    fn the_day_counters_move_at_local_midnight_across_the_spring_change() {
        let midnights = [
            local(2026, 3, 28, 0),
            local(2026, 3, 29, 0),
            local(2026, 3, 30, 0),
            local(2026, 3, 31, 0),
        ];
        // Berlin midnight is 23:00 UTC before the change and 22:00 after: the
        // 29th has 23 hours.
        assert_eq!(midnights[0].rem_euclid(86_400), 23 * 3600);
        assert_eq!(midnights[2] - midnights[1], 23 * 3600);
        counters_move_at_local_midnight(midnights);
    }

    #[test]
    fn the_day_counters_move_at_local_midnight_across_the_autumn_change() {
        let midnights = [
            local(2026, 10, 24, 0),
            local(2026, 10, 25, 0),
            local(2026, 10, 26, 0),
            local(2026, 10, 27, 0),
        ];
        assert_eq!(midnights[0].rem_euclid(86_400), 22 * 3600);
        assert_eq!(midnights[2] - midnights[1], 25 * 3600);
        counters_move_at_local_midnight(midnights);
    }

    #[test]
    fn the_registers_show_the_exact_energy_floored() {
        for seed in [2, 3, 5] {
            let origin = local(2026, 1, 14, 9) + 17;
            let sim = frozen(seed, at(origin));
            let mut t = origin;
            let mut grew = false;
            while t < origin + 2 * 86_400 {
                let regs = registers(&sim, t);
                let now = sim.energy_at(1, at(t)).unwrap();
                let day_start = jiff::Timestamp::from_second(t)
                    .unwrap()
                    .to_zoned_datetime(berlin())
                    .start_of_day()
                    .unwrap()
                    .timestamp()
                    .as_second();
                let midnight = sim.energy_at(1, at(day_start.max(origin))).unwrap();
                for (i, (total, day)) in regs.iter().enumerate() {
                    assert_eq!(*total, whole(&midnight, i), "seed {seed} {} at {t}", COUNTERS[i].0);
                    assert_eq!(total + day, whole(&now, i), "seed {seed} {} at {t}", COUNTERS[i].1);
                    grew |= *day > 0;
                }
                t += 37 * 60 + 13;
            }
            assert!(grew);
            // Before the start the counters stand at their starting readings.
            assert_eq!(sim.energy_at(1, at(origin - 3600)), sim.energy_at(1, at(origin)));
            assert_eq!(sim.energy_at(2, at(origin)), None);
        }
    }

    #[test]
    fn compressor_runs_agree_with_the_status_bits() {
        let origin = local(2026, 1, 20, 0);
        let sim = frozen(1, at(origin));
        let step = 120;
        let (mut on, mut off, mut defrosts_seen) = (0, 0, 0);
        let mut prev: Option<(bool, bool)> = None;
        let mut t = origin;
        while t < origin + 86_400 {
            sim.set_time(at(t));
            let truth = sim.truth(1).unwrap();
            let compressor = truth["compressor_running"].as_bool().unwrap();
            let defrost = truth["defrost_mode"].as_bool().unwrap();
            let here = sim.compressor_runs(1, at(t), at(t + 1)).unwrap();
            assert_eq!(here.run_secs > 0.0, compressor, "at {t}");
            if defrost {
                let recent = sim.compressor_runs(1, at(t - 299), at(t + 1)).unwrap();
                assert_eq!(recent.defrosts, 1, "a defrost started within 5 minutes of {t}");
            }
            if let Some((was_on, was_defrosting)) = prev {
                let between = sim.compressor_runs(1, at(t - step + 1), at(t + 1)).unwrap();
                if compressor && !was_on {
                    assert!(between.starts >= 1, "a start before {t}: {between:?}");
                }
                defrosts_seen += u32::from(defrost && !was_defrosting);
            }
            on += u32::from(compressor);
            off += u32::from(!compressor);
            prev = Some((compressor, defrost));
            t += step;
        }
        let day = sim.compressor_runs(1, at(origin), at(origin + 86_400)).unwrap();
        assert!(on > 0 && off > 0);
        assert!(day.starts > 10, "{day:?}");
        assert!(
            defrosts_seen > 0 && u64::from(defrosts_seen) <= day.defrosts,
            "{defrosts_seen} vs {day:?}"
        );
        assert!(
            day.shortest_run_secs.is_some_and(|s| s >= physics::MIN_RUN_SECS),
            "{day:?}"
        );
        // Sampled every 2 minutes, each run's time is right to one sample's worth.
        let sampled = f64::from(on) * step as f64;
        let slack = (day.starts + 1) as f64 * step as f64;
        assert!((sampled - day.run_secs).abs() <= slack, "{sampled} vs {day:?}");
        assert_eq!(sim.compressor_runs(9, at(origin), at(origin + 60)), None);
    }
}
