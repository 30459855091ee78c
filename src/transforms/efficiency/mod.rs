//! `efficiency`: energy counters that never go back, COP per day, 24 h, month and
//! year, and compressor cycles, added to each device's metrics.
//!
//! It reads the controller's energy registers (a day counter in whole kWh plus a
//! cumulative total, the day's kWh moving into the total at midnight; see
//! [`meter`] for every case a poll can show), the compressor and defrost states,
//! and the outdoor temperature. The defaults are the names of the shipped
//! Stiebel Eltron map and HPManager's map; `fields` renames them, `""` leaves one
//! out. Each device's figures go to local calendar days in `time_zone` (default:
//! the system's).
//!
//! Fields added to every metric (absent when they cannot be computed; a COP is
//! absent, never 0 or infinite, when no electricity was used):
//!
//! | field | kind | unit |
//! |---|---|---|
//! | `heat_heating_kwh`, `heat_dhw_kwh`, `heat_kwh` | counter | kwh |
//! | `electricity_heating_kwh`, `electricity_dhw_kwh`, `electricity_kwh` | counter | kwh |
//! | `booster_kwh` (the electric booster: its heat is its electricity) | counter | kwh |
//! | `heat_today_kwh`, `heat_heating_today_kwh`, `heat_dhw_today_kwh` | gauge | kwh |
//! | `electricity_today_kwh`, `electricity_heating_today_kwh`, `electricity_dhw_today_kwh` | gauge | kwh |
//! | `cop_today`, `cop_24h`, `cop_month`, `scop`, each also `…_heating`, `…_dhw` | gauge | dimensionless |
//! | `compressor_starts`, `defrosts` | counter | (count) |
//! | `compressor_run_seconds`, `defrost_seconds` | counter | seconds |
//! | `compressor_starts_per_hour` (starts in the last hour) | gauge | (count) |
//! | `compressor_last_run_seconds`, `defrost_last_seconds` | gauge | seconds |
//! | `short_cycling` | state | bool |
//!
//! The booster heater's energy counts in heating and hot water on both sides
//! (heat and electricity): the COPs are those of the whole system, as
//! OpenEnergyMonitor's heat-pump monitor reports them. `scop` covers the last
//! 365 days that have figures; `cop_24h` the counters' rise over the last 24 h
//! (in 5-minute steps, once 24 h are known).
//!
//! Each device's days (energy by heating and hot water, mean outdoor
//! temperature, starts, run and defrost time) are kept for 400 days and handed to
//! the dashboard's efficiency view through the pipeline's telemetry.
//!
//! The counters, days and cycle states survive a restart in
//! `<data_dir>/efficiency/<component id>.json` and its journal `<component
//! id>.journal`: at most every `persist_interval` a save appends what changed
//! (one line a save), and the whole file is written atomically once the journal
//! has grown to its size, and on shutdown (see [`store`]); a corrupt file is
//! moved aside and counting starts over.
//!
//! A poll costs what it changes: the month and year sums go on from cached
//! sums of the closed days ([`sums`]), and local days are looked up in the
//! zone once a day ([`clock`]).
//!
//! ```toml
//! [transforms.efficiency]
//! type = "efficiency"
//! inputs = ["scaled"]
//! # time_zone = "Europe/Berlin"          # default: the system's
//! # max_step_kwh = 50                    # a counter rising more than this plus
//! # max_power_kw = 50                    #   max_power_kw × hours since the last poll is rejected
//! # short_cycling = { max_starts_per_hour = 3, min_run_time = "6m" }
//! # fields = { outdoor_temperature = "outside_temperature", electricity_heating_total = "" }
//! ```

mod clock;
mod cycles;
pub mod meter;
mod store;
mod sums;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::ToSpan;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use self::clock::Clock;
use self::cycles::{Limits, Runs};
use self::meter::{Meter, Reading};
use self::store::Marks;
use self::sums::Closed;
use crate::component::{BoxError, BuildContext, Check, Claim, Transform};
use crate::event::{Event, FieldKind, FieldMeta, Metric, Schema, Value, ValueType};
use crate::telemetry::{cop, sum, ComponentMetrics, Day, Registry};
use crate::transforms::journal::Journal;

const FILE_VERSION: u32 = 1;
/// Days of figures kept per device.
const KEEP_DAYS: i32 = 400;
/// Days SCOP covers.
const SCOP_DAYS: i32 = 365;
/// Spacing of the counter readings `cop_24h` is computed from (seconds).
const CHECKPOINT_EVERY: f64 = 300.0;
const DAY_SECS: f64 = 86_400.0;
const MAX_CACHED_SCHEMAS: usize = 256;

/// `[transforms.<id>]` with `type = "efficiency"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficiencyConfig {
    /// IANA name of the zone local days are counted in. Default: the system's.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Register fields read, by role; `""` leaves one out.
    #[serde(default)]
    pub fields: Box<FieldNames>,
    /// A counter may rise at most `max_step_kwh + max_power_kw × hours` between
    /// two polls; more is rejected as implausible.
    #[serde(default = "default_max_step_kwh")]
    pub max_step_kwh: f64,
    #[serde(default = "default_max_power_kw")]
    pub max_power_kw: f64,
    #[serde(default)]
    pub short_cycling: ShortCycling,
    /// Longest time new figures wait before they are written to the state file.
    #[serde(default = "default_persist_interval", with = "crate::component::duration")]
    pub persist_interval: Duration,
    /// A device that sends nothing for this long is forgotten.
    #[serde(default = "default_expire_after", with = "crate::component::duration")]
    pub expire_after: Duration,
}

fn default_max_step_kwh() -> f64 {
    50.0
}

fn default_max_power_kw() -> f64 {
    50.0
}

fn default_persist_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_expire_after() -> Duration {
    crate::component::duration::MAX
}

/// Thresholds of the `short_cycling` state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortCycling {
    /// More compressor starts than this within an hour is short cycling.
    #[serde(default = "default_max_starts")]
    pub max_starts_per_hour: u32,
    /// A run shorter than this is short cycling (for the hour after it ended).
    #[serde(default = "default_min_run_time", with = "crate::component::duration")]
    pub min_run_time: Duration,
}

impl Default for ShortCycling {
    fn default() -> Self {
        ShortCycling {
            max_starts_per_hour: default_max_starts(),
            min_run_time: default_min_run_time(),
        }
    }
}

fn default_max_starts() -> u32 {
    3
}

fn default_min_run_time() -> Duration {
    Duration::from_secs(360)
}

/// The register fields the transform reads. Each is `None` for its default.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldNames {
    pub heat_heating_day: Option<String>,
    pub heat_heating_total: Option<String>,
    pub heat_dhw_day: Option<String>,
    pub heat_dhw_total: Option<String>,
    pub electricity_heating_day: Option<String>,
    pub electricity_heating_total: Option<String>,
    pub electricity_dhw_day: Option<String>,
    pub electricity_dhw_total: Option<String>,
    pub booster_heating_total: Option<String>,
    pub booster_dhw_total: Option<String>,
    pub compressor: Option<String>,
    pub defrost: Option<String>,
    pub outdoor_temperature: Option<String>,
}

/// The meters, in file and output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Family {
    HeatHeating,
    HeatDhw,
    ElectricityHeating,
    ElectricityDhw,
    BoosterHeating,
    BoosterDhw,
}

const FAMILIES: [Family; 6] = [
    Family::HeatHeating,
    Family::HeatDhw,
    Family::ElectricityHeating,
    Family::ElectricityDhw,
    Family::BoosterHeating,
    Family::BoosterDhw,
];

impl Family {
    fn key(self) -> &'static str {
        match self {
            Family::HeatHeating => "heat_heating",
            Family::HeatDhw => "heat_dhw",
            Family::ElectricityHeating => "electricity_heating",
            Family::ElectricityDhw => "electricity_dhw",
            Family::BoosterHeating => "booster_heating",
            Family::BoosterDhw => "booster_dhw",
        }
    }

    fn slot(self, day: &mut Day) -> &mut Option<f64> {
        match self {
            Family::HeatHeating => &mut day.heat_heating,
            Family::HeatDhw => &mut day.heat_dhw,
            Family::ElectricityHeating => &mut day.electricity_heating,
            Family::ElectricityDhw => &mut day.electricity_dhw,
            Family::BoosterHeating => &mut day.booster_heating,
            Family::BoosterDhw => &mut day.booster_dhw,
        }
    }
}

/// A meter's (day, total) field names.
type Parts = (Option<Arc<str>>, Option<Arc<str>>);

/// The field names after defaults, `None` where left out.
#[derive(Debug, Clone, PartialEq)]
struct Names {
    /// (day, total) per family.
    meters: [Parts; 6],
    compressor: Option<Arc<str>>,
    defrost: Option<Arc<str>>,
    outdoor: Option<Arc<str>>,
}

impl FieldNames {
    /// Every role with the name configured (`explicit`) or its default.
    fn roles(&self) -> Vec<(&'static str, Option<&str>, &'static str)> {
        fn f(o: &Option<String>) -> Option<&str> {
            o.as_deref()
        }
        vec![
            ("heat_heating_day", f(&self.heat_heating_day), "heat_meter_heating_day"),
            (
                "heat_heating_total",
                f(&self.heat_heating_total),
                "heat_meter_heating_total",
            ),
            ("heat_dhw_day", f(&self.heat_dhw_day), "heat_meter_dhw_day"),
            ("heat_dhw_total", f(&self.heat_dhw_total), "heat_meter_dhw_total"),
            (
                "electricity_heating_day",
                f(&self.electricity_heating_day),
                "power_consumption_heating_day",
            ),
            (
                "electricity_heating_total",
                f(&self.electricity_heating_total),
                "power_consumption_heating_total",
            ),
            (
                "electricity_dhw_day",
                f(&self.electricity_dhw_day),
                "power_consumption_dhw_day",
            ),
            (
                "electricity_dhw_total",
                f(&self.electricity_dhw_total),
                "power_consumption_dhw_total",
            ),
            (
                "booster_heating_total",
                f(&self.booster_heating_total),
                "heat_meter_nhz_heating_total",
            ),
            (
                "booster_dhw_total",
                f(&self.booster_dhw_total),
                "heat_meter_nhz_dhw_total",
            ),
            ("compressor", f(&self.compressor), "compressor_running"),
            ("defrost", f(&self.defrost), "defrost_mode"),
            (
                "outdoor_temperature",
                f(&self.outdoor_temperature),
                "outside_temperature",
            ),
        ]
    }

    fn resolve(&self) -> Names {
        let names: Vec<Option<Arc<str>>> = self
            .roles()
            .into_iter()
            .map(|(_, set, default)| {
                let name = set.unwrap_or(default);
                (!name.is_empty()).then(|| Arc::from(name))
            })
            .collect();
        let n = |i: usize| names[i].clone();
        Names {
            meters: [
                (n(0), n(1)),
                (n(2), n(3)),
                (n(4), n(5)),
                (n(6), n(7)),
                (None, n(8)),
                (None, n(9)),
            ],
            compressor: n(10),
            defrost: n(11),
            outdoor: n(12),
        }
    }
}

/// Where a component keeps its figures.
pub fn state_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("efficiency").join(format!("{id}.json"))
}

fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(crate::localtime::system()),
        Some(n) => TimeZone::get(n).map_err(|e| format!("unknown time zone `{n}`: {e}")),
    }
}

impl EfficiencyConfig {
    pub fn check(&self, cx: &mut Check<'_>) {
        if let Err(e) = time_zone(self.time_zone.as_deref()) {
            cx.error(Some("time_zone"), e);
        }
        for (key, v) in [("max_step_kwh", self.max_step_kwh), ("max_power_kw", self.max_power_kw)] {
            if !(v.is_finite() && v > 0.0) {
                cx.error(Some(key), format!("`{key}` must be a number above 0, not {v}"));
            }
        }
        if self.short_cycling.min_run_time == Duration::ZERO {
            cx.error(
                Some("short_cycling.min_run_time"),
                "`min_run_time` must be longer than 0s",
            );
        }
        for (key, d) in [
            ("persist_interval", self.persist_interval),
            ("expire_after", self.expire_after),
        ] {
            if d == Duration::ZERO {
                cx.error(Some(key), format!("`{key}` must be longer than 0s"));
            }
        }
        let names = self.fields.resolve();
        if !cx.input_schemas.is_empty() {
            for (role, set, default) in self.fields.roles() {
                let Some(name) = set.filter(|n| !n.is_empty()) else {
                    continue;
                };
                if !cx.input_schemas.iter().any(|s| s.field(name).is_some()) {
                    let msg = format!(
                        "no input model has a field `{name}` (the default for `{role}` is `{default}`); known models: {}",
                        cx.known_models()
                    );
                    cx.error(Some(&format!("fields.{role}")), msg);
                }
            }
            let reads_energy = names
                .meters
                .iter()
                .flat_map(|(d, t)| [d, t])
                .flatten()
                .any(|n| cx.input_schemas.iter().any(|s| s.field(n).is_some()));
            if !reads_energy {
                let msg = format!(
                    "no input model has an energy register this transform reads (by default `heat_meter_heating_day`, `power_consumption_heating_day`, …); only compressor cycles are counted. Known models: {}",
                    cx.known_models()
                );
                cx.warn(Some("fields"), msg);
            }
        }
        let added = added_fields();
        for s in cx.input_schemas {
            for f in &added {
                if s.field(&f.name).is_some() {
                    let msg = format!(
                        "model `{}` already has a field `{}`; the transform's figure replaces it",
                        s.model, f.name
                    );
                    cx.warn(None, msg);
                }
            }
        }
        let outputs: Vec<Arc<Schema>> = cx.input_schemas.iter().map(|s| Arc::new(extend(s))).collect();
        for s in outputs {
            cx.output(s);
        }
        cx.claim(None, Claim::File(state_path(cx.data_dir, cx.id)));
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Transform>, BoxError> {
        Ok(Box::new(self.build_efficiency(cx)?))
    }

    fn build_efficiency(&self, cx: &BuildContext<'_>) -> Result<Efficiency, BoxError> {
        let tz = time_zone(self.time_zone.as_deref())?;
        let metrics = cx.registry.component(cx.id, "transform", "efficiency");
        let path = state_path(cx.data_dir, cx.id);
        let dir = path.parent().unwrap_or(cx.data_dir);
        fs::create_dir_all(dir).map_err(|e| format!("cannot create the state folder {}: {e}", dir.display()))?;
        let (devices, generation) = store::load(&path, cx.id, &metrics)?;
        let mut t = Efficiency {
            id: cx.id.into(),
            names: self.fields.resolve(),
            clock: Clock::new(tz),
            max_step_kwh: self.max_step_kwh,
            max_power_kw: self.max_power_kw,
            limits: Limits {
                max_starts_per_hour: self.short_cycling.max_starts_per_hour,
                min_run_time: self.short_cycling.min_run_time.as_secs_f64(),
            },
            devices: devices.into_iter().map(|(k, d)| (k, Entry::new(d))).collect(),
            #[cfg(test)]
            reference: false,
            schemas: HashMap::new(),
            unpublished: HashSet::new(),
            dirty: false,
            path,
            persist_interval: self.persist_interval,
            expire_after: self.expire_after,
            last_save: None,
            journal: None,
            generation,
            file_len: 0,
            forgotten: Vec::new(),
            told: HashSet::new(),
            added: added_fields().into_iter().map(|f| f.name.clone()).collect(),
            registry: cx.registry.clone(),
            metrics,
        };
        t.expire(SystemTime::now());
        t.unpublished.extend(t.devices.keys().cloned());
        t.publish();
        Ok(t)
    }
}

/// How many fields the transform adds.
const ADDED_FIELDS: usize = 33;

/// The descriptions of the fields the transform adds (`ADDED_FIELDS` of them).
fn added_fields() -> Vec<FieldMeta> {
    let meta =
        |name: &str, kind: FieldKind, value_type: ValueType, unit: Option<&str>, decimals: Option<u8>, d: &str| {
            FieldMeta {
                unit: unit.map(str::to_string),
                description: Some(d.to_string()),
                kind,
                decimals,
                source: Some("efficiency".into()),
                ..FieldMeta::gauge(name, value_type)
            }
        };
    use FieldKind::{Counter, Gauge, State};
    use ValueType::{Bool, Float, Int};
    let kwh = Some("kwh");
    let mut v = vec![
        meta(
            "heat_heating_kwh",
            Counter,
            Float,
            kwh,
            Some(3),
            "heat delivered for space heating, booster included",
        ),
        meta(
            "heat_dhw_kwh",
            Counter,
            Float,
            kwh,
            Some(3),
            "heat delivered for hot water, booster included",
        ),
        meta("heat_kwh", Counter, Float, kwh, Some(3), "heat delivered"),
        meta(
            "electricity_heating_kwh",
            Counter,
            Float,
            kwh,
            Some(3),
            "electricity used for space heating, booster included",
        ),
        meta(
            "electricity_dhw_kwh",
            Counter,
            Float,
            kwh,
            Some(3),
            "electricity used for hot water, booster included",
        ),
        meta("electricity_kwh", Counter, Float, kwh, Some(3), "electricity used"),
        meta(
            "booster_kwh",
            Counter,
            Float,
            kwh,
            Some(3),
            "electricity (= heat) of the electric booster heater",
        ),
        meta(
            "heat_today_kwh",
            Gauge,
            Float,
            kwh,
            Some(3),
            "heat delivered today (local day)",
        ),
        meta(
            "heat_heating_today_kwh",
            Gauge,
            Float,
            kwh,
            Some(3),
            "heat delivered for space heating today",
        ),
        meta(
            "heat_dhw_today_kwh",
            Gauge,
            Float,
            kwh,
            Some(3),
            "heat delivered for hot water today",
        ),
        meta(
            "electricity_today_kwh",
            Gauge,
            Float,
            kwh,
            Some(3),
            "electricity used today (local day)",
        ),
        meta(
            "electricity_heating_today_kwh",
            Gauge,
            Float,
            kwh,
            Some(3),
            "electricity used for space heating today",
        ),
        meta(
            "electricity_dhw_today_kwh",
            Gauge,
            Float,
            kwh,
            Some(3),
            "electricity used for hot water today",
        ),
    ];
    for (window, what) in [
        ("cop_today", "coefficient of performance today (local day)"),
        ("cop_24h", "coefficient of performance over the last 24 hours"),
        ("cop_month", "coefficient of performance this calendar month"),
        ("scop", "seasonal performance factor over the last 365 days"),
    ] {
        for (suffix, part) in [("", ""), ("_heating", ", space heating"), ("_dhw", ", hot water")] {
            v.push(meta(
                &format!("{window}{suffix}"),
                Gauge,
                Float,
                Some("dimensionless"),
                Some(2),
                &format!("{what}{part}"),
            ));
        }
    }
    let s = Some("seconds");
    v.extend([
        meta("compressor_starts", Counter, Int, None, None, "compressor starts seen"),
        meta(
            "compressor_run_seconds",
            Counter,
            Float,
            s,
            Some(0),
            "compressor run time of runs seen whole",
        ),
        meta(
            "compressor_starts_per_hour",
            Gauge,
            Int,
            None,
            None,
            "compressor starts in the last hour",
        ),
        meta(
            "compressor_last_run_seconds",
            Gauge,
            Float,
            s,
            Some(0),
            "length of the last whole compressor run",
        ),
        meta("defrosts", Counter, Int, None, None, "defrost cycles seen"),
        meta(
            "defrost_seconds",
            Counter,
            Float,
            s,
            Some(0),
            "defrost time of defrosts seen whole",
        ),
        meta(
            "defrost_last_seconds",
            Gauge,
            Float,
            s,
            Some(0),
            "length of the last whole defrost",
        ),
        meta(
            "short_cycling",
            State,
            Bool,
            None,
            None,
            "the compressor starts too often or runs too briefly",
        ),
    ]);
    v
}

/// The input schema with the transform's fields appended (replacing same-named ones).
fn extend(input: &Schema) -> Schema {
    let added = added_fields();
    let mut fields: Vec<FieldMeta> = input
        .fields
        .iter()
        .filter(|f| !added.iter().any(|a| a.name == f.name))
        .map(|f| (**f).clone())
        .collect();
    fields.extend(added);
    let mut s = Schema::new(input.model.clone(), fields);
    s.scaled = input.scaled;
    s.manufacturer = input.manufacturer.clone();
    s
}

/// A reading of the counters `cop_24h` is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    t: f64,
    heat: [Option<f64>; 2],
    electricity: [Option<f64>; 2],
}

/// What is kept of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
struct Device {
    /// Unix seconds of the latest poll.
    last: Option<f64>,
    meters: BTreeMap<String, Meter>,
    compressor: Runs,
    defrost: Runs,
    days: VecDeque<Day>,
    checkpoints: VecDeque<Checkpoint>,
    /// The date whose outdoor mean is being summed, the sum and the count.
    outdoor: Option<(Date, f64, u32)>,
}

impl Device {
    /// Where the day of `date` is in `days`, added if it was not.
    fn day_index(&mut self, date: Date) -> usize {
        let pos = self.days.iter().rposition(|d| d.date <= date);
        match pos {
            Some(i) if self.days[i].date == date => i,
            Some(i) => {
                self.days.insert(i + 1, Day::new(date));
                i + 1
            }
            None => {
                self.days.push_front(Day::new(date));
                0
            }
        }
    }

    fn find(&self, date: Date) -> Option<&Day> {
        self.days.iter().rev().find(|d| d.date == date)
    }
}

/// A device as the transform holds it: what is kept, and what is worked out from it.
#[derive(Debug, Default)]
struct Entry {
    dev: Device,
    /// The month and year sums of its closed days; `None` until worked out, or
    /// after one of those days changed.
    closed: Option<Closed>,
    /// What changed since the last save.
    marks: Marks,
    /// The first of the kept days as last published, shared with the
    /// dashboard's board while none of them changes; `None` after one did.
    older: Option<Arc<[Day]>>,
}

/// Most days published after the shared older ones before those are taken anew.
const RECENT_DAYS: usize = 4;

impl Entry {
    fn new(dev: Device) -> Self {
        Entry {
            dev,
            closed: None,
            marks: Marks::default(),
            older: None,
        }
    }

    /// The day of `date`, to be changed.
    fn day(&mut self, date: Date) -> &mut Day {
        self.marks.day(date);
        let i = self.dev.day_index(date);
        if self.closed.as_ref().is_some_and(|c| c.covers(i)) {
            self.closed = None;
        }
        if self.older.as_ref().is_some_and(|o| i < o.len()) {
            self.older = None;
        }
        &mut self.dev.days[i]
    }

    /// The kept days as the board takes them: the older ones shared (copied
    /// again only after one of them changed, or every few new days), and the
    /// last few copied.
    fn published(&mut self) -> (Arc<[Day]>, Vec<Day>) {
        let n = self.dev.days.len();
        let fresh = (self.older.as_ref()).is_some_and(|o| n.checked_sub(o.len()).is_some_and(|r| r <= RECENT_DAYS));
        if !fresh {
            let keep = n.saturating_sub(2);
            self.older = Some(self.dev.days.range(..keep).cloned().collect());
        }
        let older = self.older.clone().unwrap_or_else(|| Arc::from(Vec::new()));
        let recent = self.dev.days.range(older.len()..).cloned().collect();
        (older, recent)
    }

    /// Drops the days older than the last [`KEEP_DAYS`] before `today`.
    fn prune(&mut self, today: Date) {
        let Ok(oldest) = today.checked_sub(KEEP_DAYS.days()) else {
            return;
        };
        while self.dev.days.front().is_some_and(|d| d.date < oldest) {
            self.dev.days.pop_front();
            self.closed = None;
            self.older = None;
        }
    }
}

/// The running transform.
pub struct Efficiency {
    id: Arc<str>,
    names: Names,
    clock: Clock,
    max_step_kwh: f64,
    max_power_kw: f64,
    limits: Limits,
    devices: BTreeMap<Arc<str>, Entry>,
    /// Moments come from the zone and month and year sums from every kept day,
    /// each poll, as before the caches (the model test's reference).
    #[cfg(test)]
    reference: bool,
    /// Output schema by address of the input schema (kept alive by the entry).
    schemas: HashMap<usize, (Arc<Schema>, Arc<Schema>)>,
    /// Devices whose days changed since they were last published.
    unpublished: HashSet<Arc<str>>,
    dirty: bool,
    path: PathBuf,
    persist_interval: Duration,
    expire_after: Duration,
    last_save: Option<SystemTime>,
    /// The journal being appended to; `None`: the next save writes the whole file.
    journal: Option<Journal>,
    /// The generation of the state file as last written whole (or loaded).
    generation: u64,
    /// Bytes of the state file as last written whole.
    file_len: u64,
    /// Devices forgotten since the last save, for the journal.
    forgotten: Vec<Arc<str>>,
    /// What was already logged, so each reason is logged once.
    told: HashSet<String>,
    /// The names of the fields set on each metric, in the order of `added_fields`.
    added: Vec<Arc<str>>,
    registry: Arc<Registry>,
    metrics: Arc<ComponentMetrics>,
}

fn unix(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Efficiency {
    fn output_schema(&mut self, input: &Arc<Schema>) -> Arc<Schema> {
        let key = Arc::as_ptr(input) as usize;
        if let Some((_, out)) = self.schemas.get(&key) {
            return out.clone();
        }
        if self.schemas.len() >= MAX_CACHED_SCHEMAS {
            self.schemas.clear();
        }
        let out = Arc::new(extend(input));
        self.schemas.insert(key, (input.clone(), out.clone()));
        out
    }

    /// Logs `message` the first time `key` is told.
    fn tell(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.told.insert(key) {
            warn!(component = %self.id, "{}", message());
        }
    }

    /// Updates a device from one poll and sets the figures on it.
    fn observe(&mut self, m: &mut Metric) {
        let device_id = m.device.clone();
        let last = self.devices.get(&device_id).and_then(|e| e.dev.last);
        if last.is_some_and(|l| unix(m.time) < l) {
            // An older poll (replayed or reordered) must not move counters back.
            return;
        }
        let now = self.clock.moment(m.time, last);
        #[cfg(test)]
        let now = if self.reference {
            clock::moment(self.clock.tz(), m.time, last)
        } else {
            now
        };
        let Some(now) = now else {
            return;
        };
        let (max_step, max_kw) = (self.max_step_kwh, self.max_power_kw);
        let limit = move |secs: f64| max_step + max_kw * secs / 3600.0;
        let mut counters: [Option<f64>; 6] = [None; 6];
        let mut present = [false; 6];
        let mut problems = Vec::new();
        let entry = self.devices.entry(device_id.clone()).or_default();
        entry.marks.unsaved = true;
        for (i, family) in FAMILIES.iter().enumerate() {
            let (day_name, total_name) = &self.names.meters[i];
            let part = |name: &Option<Arc<str>>| -> Option<Option<f64>> {
                let name = name.as_ref()?;
                m.schema.field(name)?;
                Some(m.fields.get(name).and_then(Value::as_f64))
            };
            let (day, total) = (part(day_name), part(total_name));
            if day.is_none() && total.is_none() {
                continue;
            }
            present[i] = true;
            if day == Some(None) || total == Some(None) {
                // A failed read or a "not available" sentinel: nothing to count this poll.
                continue;
            }
            let reading = Reading {
                day: day.flatten(),
                total: total.flatten(),
            };
            if !entry.dev.meters.contains_key(family.key()) {
                entry.dev.meters.insert(family.key().to_string(), Meter::default());
            }
            let Some(meter) = entry.dev.meters.get_mut(family.key()) else {
                continue;
            };
            let outcome = meter.observe(reading, now, limit);
            if let Some(p) = outcome.problem {
                problems.push((*family, p));
            }
            for (date, figure) in outcome.closed.into_iter().chain(outcome.today) {
                let day = entry.day(date);
                *family.slot(day) = figure;
                day.partial |= figure.is_none();
            }
            counters[i] = outcome.counter;
        }
        // Compressor and defrost.
        let state = |name: &Option<Arc<str>>| {
            name.as_ref()
                .and_then(|n| m.fields.get(n))
                .and_then(Value::as_f64)
                .map(|v| v != 0.0)
        };
        let compressor = state(&self.names.compressor);
        let defrost = state(&self.names.defrost);
        if let Some(on) = compressor {
            let flip = entry.dev.compressor.observe(on, now.t);
            let day = entry.day(now.date);
            day.compressor_starts += u32::from(flip.started);
            if let Some(Some(run)) = flip.ended {
                day.compressor_run_seconds += run;
            }
        }
        if let Some(on) = defrost {
            let flip = entry.dev.defrost.observe(on, now.t);
            let day = entry.day(now.date);
            day.defrosts += u32::from(flip.started);
            if let Some(Some(run)) = flip.ended {
                day.defrost_seconds += run;
            }
        }
        if let Some(x) = self
            .names
            .outdoor
            .as_ref()
            .and_then(|n| m.fields.get(n))
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite())
        {
            let (sum_x, n) = match entry.dev.outdoor {
                Some((d, s, n)) if d == now.date => (s + x, n + 1),
                _ => (x, 1),
            };
            entry.dev.outdoor = Some((now.date, sum_x, n));
            entry.day(now.date).outdoor_mean = Some(sum_x / f64::from(n));
        }
        entry.dev.last = Some(now.t);
        entry.prune(now.date);
        let dev = &mut entry.dev;

        // The counters: each combined one only when every part the device has counted this poll.
        let with_booster = |main: usize, booster: usize| -> Option<f64> {
            let b = if present[booster] {
                Some(counters[booster]?)
            } else {
                None
            };
            if !present[main] && !present[booster] {
                return None;
            }
            let a = if present[main] { Some(counters[main]?) } else { None };
            sum([a, b])
        };
        let heat_heating = with_booster(0, 4);
        let heat_dhw = with_booster(1, 5);
        let el_heating = with_booster(2, 4);
        let el_dhw = with_booster(3, 5);
        let both = |a: Option<f64>, b: Option<f64>, pa: bool, pb: bool| -> Option<f64> {
            if (pa && a.is_none()) || (pb && b.is_none()) {
                return None;
            }
            sum([a, b])
        };
        let heat = both(
            heat_heating,
            heat_dhw,
            present[0] || present[4],
            present[1] || present[5],
        );
        let electricity = both(el_heating, el_dhw, present[2] || present[4], present[3] || present[5]);
        let booster = both(counters[4], counters[5], present[4], present[5]);

        // Checkpoints for cop_24h.
        if dev.checkpoints.back().is_none_or(|c| now.t - c.t >= CHECKPOINT_EVERY) {
            entry.marks.new_checkpoints += 1;
            dev.checkpoints.push_back(Checkpoint {
                t: now.t,
                heat: [heat_heating, heat_dhw],
                electricity: [el_heating, el_dhw],
            });
        }
        while dev.checkpoints.len() > 1 && dev.checkpoints[1].t <= now.t - DAY_SECS {
            dev.checkpoints.pop_front();
        }
        let day_ago = dev.checkpoints.front().filter(|c| c.t <= now.t - DAY_SECS).copied();

        let today = dev.find(now.date).cloned().unwrap_or_else(|| Day::new(now.date));
        let (month, year) = sums::windows(&entry.dev.days, now.date, &mut entry.closed);
        #[cfg(test)]
        let (month, year) = if self.reference {
            sums::reference::windows(&entry.dev.days, now.date)
        } else {
            (month, year)
        };
        let dev = &entry.dev;
        let month_cops = month.cops();
        let year_cops = year.cops();
        let day_cops = [today.cop(), today.cop_heating(), today.cop_dhw()];
        let window_cops = match day_ago {
            Some(c) => {
                let rise = |now: Option<f64>, then: Option<f64>| Some(now? - then?);
                let h = [rise(heat_heating, c.heat[0]), rise(heat_dhw, c.heat[1])];
                let e = [rise(el_heating, c.electricity[0]), rise(el_dhw, c.electricity[1])];
                [
                    cop(sum(h), sum(e)).filter(|_| h.iter().zip(&e).all(|(a, b)| a.is_some() == b.is_some())),
                    cop(h[0], e[0]),
                    cop(h[1], e[1]),
                ]
            }
            None => [None; 3],
        };

        let runs = compressor.map(|_| {
            let c = &dev.compressor;
            (
                c.starts,
                c.seconds,
                c.starts_last_hour(now.t),
                c.last.map(|(r, _)| r),
                c.short_cycling(now.t, self.limits),
            )
        });
        let defrosts = defrost.map(|_| {
            let d = &dev.defrost;
            (d.starts, d.seconds, d.last.map(|(r, _)| r))
        });
        self.unpublished.insert(device_id.clone());
        self.dirty = true;

        for (family, p) in problems {
            self.metrics.error();
            let key = format!("{device_id}/{}/{}", family.key(), p.kind());
            self.tell(key, || {
                format!(
                    "device {device_id}: the {} energy {p}; its figures are absent until it counts plausibly again (told once)",
                    family.key().replace('_', " ")
                )
            });
        }
        for (i, family) in FAMILIES.iter().enumerate().take(4) {
            if !present[i] {
                let model = m.schema.model.clone();
                self.tell(format!("{model}/{}/missing", family.key()), || {
                    format!(
                        "model `{model}` has no {} energy register; the figures that need it are absent (told once)",
                        family.key().replace('_', " ")
                    )
                });
            }
        }

        // Set the fields, in the order of `added_fields`.
        let f = |x: Option<f64>, decimals: i32| {
            x.filter(|x| x.is_finite()).map(|x| {
                let p = 10f64.powi(decimals);
                Value::Float((x * p).round() / p)
            })
        };
        let [day_cops, window_cops, month_cops, year_cops] =
            [day_cops, window_cops, month_cops, year_cops].map(|cops| cops.map(|c| f(c, 2)));
        let (starts, run_seconds, per_hour, last_run, short) = match runs {
            Some((starts, seconds, per_hour, last_run, short)) => (
                Some(Value::Int(starts as i64)),
                f(Some(seconds), 0),
                Some(Value::Int(i64::from(per_hour))),
                f(last_run, 0),
                Some(Value::Bool(short)),
            ),
            None => (None, None, None, None, None),
        };
        let (defrost_count, defrost_seconds, defrost_last) = match defrosts {
            Some((count, seconds, last)) => (Some(Value::Int(count as i64)), f(Some(seconds), 0), f(last, 0)),
            None => (None, None, None),
        };
        let [cop_today, cop_today_heating, cop_today_dhw] = day_cops;
        let [cop_24h, cop_24h_heating, cop_24h_dhw] = window_cops;
        let [cop_month, cop_month_heating, cop_month_dhw] = month_cops;
        let [scop, scop_heating, scop_dhw] = year_cops;
        let values: [Option<Value>; ADDED_FIELDS] = [
            f(heat_heating, 3),
            f(heat_dhw, 3),
            f(heat, 3),
            f(el_heating, 3),
            f(el_dhw, 3),
            f(electricity, 3),
            f(booster, 3),
            f(today.heat(), 3),
            f(today.heat_for_heating(), 3),
            f(today.heat_for_dhw(), 3),
            f(today.electricity(), 3),
            f(today.electricity_for_heating(), 3),
            f(today.electricity_for_dhw(), 3),
            cop_today,
            cop_today_heating,
            cop_today_dhw,
            cop_24h,
            cop_24h_heating,
            cop_24h_dhw,
            cop_month,
            cop_month_heating,
            cop_month_dhw,
            scop,
            scop_heating,
            scop_dhw,
            starts,
            run_seconds,
            per_hour,
            last_run,
            defrost_count,
            defrost_seconds,
            defrost_last,
            short,
        ];
        for (name, v) in self.added.iter().zip(values) {
            match v {
                Some(v) => {
                    m.fields.insert_ref(name, v);
                }
                None => {
                    m.fields.remove(name);
                }
            }
        }
    }

    fn publish(&mut self) {
        let board = self.registry.efficiency();
        for id in std::mem::take(&mut self.unpublished) {
            let Some(e) = self.devices.get_mut(&id) else {
                continue;
            };
            #[cfg(test)]
            if self.reference {
                // Every day copied, every time: what the shared days must equal.
                board.publish(&id, e.dev.days.iter().cloned().collect());
                continue;
            }
            let (older, recent) = e.published();
            board.publish_split(&id, older, recent);
        }
    }

    fn expire(&mut self, now: SystemTime) {
        let limit = now.checked_sub(self.expire_after).map(unix);
        let Some(limit) = limit else { return };
        let gone: Vec<Arc<str>> = self
            .devices
            .iter()
            .filter(|(_, e)| e.dev.last.is_some_and(|l| l < limit))
            .map(|(k, _)| k.clone())
            .collect();
        for id in &gone {
            self.devices.remove(id);
            self.forgotten.push(id.clone());
            self.registry.efficiency().forget(id);
        }
        if !gone.is_empty() {
            info!(component = %self.id, devices = gone.len(), "Forgot the figures of devices not seen for `expire_after`");
            self.dirty = true;
        }
    }
}

impl Transform for Efficiency {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        let Event::Metric(mut arc) = event else {
            out.push(event);
            return;
        };
        let schema = self.output_schema(&arc.schema);
        let m = Arc::make_mut(&mut arc);
        m.schema = schema;
        self.observe(m);
        out.push(Event::Metric(arc));
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.persist_interval.min(Duration::from_secs(10)))
    }

    fn tick(&mut self, now: SystemTime, _out: &mut Vec<Event>) {
        self.publish();
        if self.dirty {
            let slack = self.tick_interval().unwrap_or_default() / 2;
            let due = self.last_save.is_none_or(|t| {
                now.duration_since(t)
                    .map_or(true, |d| d + slack >= self.persist_interval)
            });
            if due {
                self.expire(now);
                self.save(now);
            }
        }
    }

    fn shutdown(&mut self, _out: &mut Vec<Event>) {
        self.publish();
        // A stopped pipeline leaves the whole file and an empty journal.
        if self.dirty || self.journal.as_ref().is_some_and(Journal::has_entries) {
            let result = self.compact();
            self.saved(result);
        }
    }
}
