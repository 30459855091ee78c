use super::*;
use crate::component::Check;
use std::collections::BTreeMap;
use std::fs;

use crate::fsutil::write_atomically;

const HOUR: u64 = 3600;

/// Midnight (UTC) eight days ago: recent, so the default `expire_after` keeps it.
fn day0() -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now / 86_400 - 8) * 86_400
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(day0() + secs)
}

fn field(name: &str, value_type: ValueType, kind: FieldKind) -> FieldMeta {
    FieldMeta {
        kind,
        ..FieldMeta::gauge(name, value_type)
    }
}

/// The shipped map's energy registers, or HPManager's (day counters only).
fn schema(with_totals: bool, with_electricity: bool) -> Arc<Schema> {
    let mut fields = vec![
        field("heat_meter_heating_day", ValueType::Int, FieldKind::Gauge),
        field("heat_meter_dhw_day", ValueType::Int, FieldKind::Gauge),
        field("compressor_running", ValueType::Bool, FieldKind::State),
        field("defrost_mode", ValueType::Bool, FieldKind::State),
        field("outside_temperature", ValueType::Float, FieldKind::Gauge),
    ];
    if with_electricity {
        fields.push(field("power_consumption_heating_day", ValueType::Int, FieldKind::Gauge));
        fields.push(field("power_consumption_dhw_day", ValueType::Int, FieldKind::Gauge));
    }
    if with_totals {
        for n in ["heat_meter_heating_total", "heat_meter_dhw_total"] {
            fields.push(field(n, ValueType::Int, FieldKind::Counter));
        }
        if with_electricity {
            for n in ["power_consumption_heating_total", "power_consumption_dhw_total"] {
                fields.push(field(n, ValueType::Int, FieldKind::Counter));
            }
        }
    }
    Arc::new(Schema::new("wpm", fields))
}

fn config(text: &str) -> EfficiencyConfig {
    toml::from_str(text).unwrap()
}

fn build(c: &EfficiencyConfig, dir: &Path, schema: &Arc<Schema>, registry: &Arc<Registry>) -> Box<dyn Transform> {
    BuildContext::alone("efficiency", dir, std::slice::from_ref(schema), registry, |cx| {
        c.build(cx)
    })
    .unwrap()
}

fn feed(tr: &mut dyn Transform, schema: &Arc<Schema>, time: SystemTime, fields: &[(&str, Value)]) -> Arc<Metric> {
    let mut m = Metric::new("hp1", Arc::default(), time, schema.clone());
    for (k, v) in fields {
        m.fields.insert((*k).into(), v.clone());
    }
    let mut out = Vec::new();
    tr.transform(m.into(), &mut out);
    match out.pop() {
        Some(Event::Metric(m)) => m,
        other => panic!("expected a metric, got {other:?}"),
    }
}

fn num(m: &Metric, name: &str) -> Option<f64> {
    m.fields.get(name).and_then(Value::as_f64)
}

/// A poll of the shipped map: heat and electricity (heating, hot water), each a
/// day counter and a total.
fn energy(heat: (i64, i64, i64, i64), el: (i64, i64, i64, i64)) -> Vec<(&'static str, Value)> {
    vec![
        ("heat_meter_heating_day", Value::Int(heat.0)),
        ("heat_meter_heating_total", Value::Int(heat.1)),
        ("heat_meter_dhw_day", Value::Int(heat.2)),
        ("heat_meter_dhw_total", Value::Int(heat.3)),
        ("power_consumption_heating_day", Value::Int(el.0)),
        ("power_consumption_heating_total", Value::Int(el.1)),
        ("power_consumption_dhw_day", Value::Int(el.2)),
        ("power_consumption_dhw_total", Value::Int(el.3)),
    ]
}

const UTC: &str = "time_zone = \"UTC\"";

#[test]
fn the_added_fields_have_kinds_and_units_and_the_output_schema_declares_them() {
    let s = schema(true, true);
    let mut cx = Check::new("efficiency", Path::new("."), Path::new("."), std::slice::from_ref(&s));
    config(UTC).check(&mut cx);
    assert!(cx.errors().is_empty(), "{:?}", cx.errors());
    assert_eq!(added_fields().len(), ADDED_FIELDS);
    let out = extend(&s);
    let kind = |n: &str| out.field(n).map(|f| (f.kind, f.unit.clone(), f.value_type));
    assert_eq!(
        kind("heat_kwh"),
        Some((FieldKind::Counter, Some("kwh".into()), ValueType::Float))
    );
    assert_eq!(
        kind("cop_today"),
        Some((FieldKind::Gauge, Some("dimensionless".into()), ValueType::Float))
    );
    assert_eq!(
        kind("compressor_starts"),
        Some((FieldKind::Counter, None, ValueType::Int))
    );
    assert_eq!(kind("short_cycling"), Some((FieldKind::State, None, ValueType::Bool)));
    assert!(out.field("heat_meter_heating_day").is_some(), "input fields stay");
}

#[test]
fn a_misnamed_field_and_an_unknown_time_zone_are_errors_with_their_keys() {
    let s = schema(true, true);
    let mut cx = Check::new("efficiency", Path::new("."), Path::new("."), std::slice::from_ref(&s));
    config("time_zone = \"Mars/Olympus\"\nfields = { outdoor_temperature = \"outdoor\" }\nmax_step_kwh = 0")
        .check(&mut cx);
    let keys: Vec<Option<String>> = cx.errors().into_iter().map(|(k, _)| k).collect();
    assert!(keys.contains(&Some("time_zone".into())), "{keys:?}");
    assert!(keys.contains(&Some("fields.outdoor_temperature".into())), "{keys:?}");
    assert!(keys.contains(&Some("max_step_kwh".into())), "{keys:?}");
}

#[test]
fn a_day_of_polls_gives_counters_todays_figures_and_cop_and_the_midnight_move_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = schema(true, true);
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    // 06:00: 3 kWh heat, 1 kWh electricity so far today.
    let m = feed(&mut *tr, &s, t(6 * HOUR), &energy((3, 1000, 0, 500), (1, 300, 0, 200)));
    assert_eq!(num(&m, "heat_kwh"), Some(1503.0), "the device's own total + day");
    assert_eq!(num(&m, "heat_today_kwh"), Some(3.0));
    assert_eq!(num(&m, "cop_today"), Some(3.0));
    assert_eq!(num(&m, "cop_24h"), None, "no 24 h known yet");
    // 23:59: 30 heat (28 heating + 2 hot water), 9 electricity.
    let m = feed(
        &mut *tr,
        &s,
        t(24 * HOUR - 60),
        &energy((28, 1000, 2, 500), (8, 300, 1, 200)),
    );
    assert_eq!(num(&m, "heat_kwh"), Some(1530.0));
    assert_eq!(num(&m, "cop_today"), Some(3.33));
    assert_eq!(num(&m, "cop_today_heating"), Some(3.5));
    assert_eq!(num(&m, "cop_today_dhw"), Some(2.0));
    // 00:00:10, the move seen half: the day counters reset, the totals not yet grown.
    let m = feed(
        &mut *tr,
        &s,
        t(24 * HOUR + 10),
        &energy((0, 1000, 0, 500), (0, 300, 0, 200)),
    );
    assert_eq!(num(&m, "heat_kwh"), Some(1530.0), "nothing lost, nothing twice");
    assert_eq!(num(&m, "cop_today"), None, "no electricity yet today: absent, not 0");
    // 00:00:20: the totals took the day's whole kWh (one more came in the last minute).
    let m = feed(
        &mut *tr,
        &s,
        t(24 * HOUR + 20),
        &energy((0, 1029, 0, 502), (0, 309, 0, 201)),
    );
    assert_eq!(num(&m, "heat_kwh"), Some(1531.0));
    assert_eq!(num(&m, "electricity_kwh"), Some(510.0));
    tr.tick(t(24 * HOUR + 30), &mut Vec::new());
    let days = registry.efficiency().days("hp1").unwrap();
    let first = days.iter().find(|d| {
        d.date
            == jiff::Timestamp::try_from(t(0))
                .unwrap()
                .to_zoned_datetime(TimeZone::UTC)
                .date()
    });
    let first = first.unwrap();
    assert_eq!((first.heat_heating, first.heat_dhw), (Some(29.0), Some(2.0)));
    assert_eq!(
        (first.electricity_heating, first.electricity_dhw),
        (Some(9.0), Some(1.0))
    );
}

#[test]
fn a_counter_that_goes_back_or_jumps_is_absent_once_and_the_total_never_goes_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = schema(true, true);
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    let base = 10 * HOUR;
    let m = feed(&mut *tr, &s, t(base), &energy((10, 1000, 0, 500), (3, 300, 0, 200)));
    assert_eq!(num(&m, "heat_kwh"), Some(1510.0));
    // The heating total drops by 900 kWh (a torn read): absent, once.
    let m = feed(&mut *tr, &s, t(base + 10), &energy((10, 100, 0, 500), (3, 300, 0, 200)));
    assert_eq!(num(&m, "heat_heating_kwh"), None);
    assert_eq!(num(&m, "heat_kwh"), None);
    assert_eq!(num(&m, "electricity_kwh"), Some(503.0), "other figures stay");
    // Back to normal: counting goes on where it was.
    let m = feed(
        &mut *tr,
        &s,
        t(base + 20),
        &energy((11, 1000, 0, 500), (3, 300, 0, 200)),
    );
    assert_eq!(num(&m, "heat_kwh"), Some(1511.0));
    // A jump of 200 kWh in 10 s: absent, and counting goes on from the new value.
    let m = feed(
        &mut *tr,
        &s,
        t(base + 30),
        &energy((211, 1000, 0, 500), (3, 300, 0, 200)),
    );
    assert_eq!(num(&m, "heat_heating_kwh"), None);
    let m = feed(
        &mut *tr,
        &s,
        t(base + 40),
        &energy((212, 1000, 0, 500), (3, 300, 0, 200)),
    );
    assert_eq!(num(&m, "heat_kwh"), Some(1512.0), "the jump is not counted");
    // The device's counters are reset to 0 (a new controller): absent once, then counting goes on.
    let m = feed(&mut *tr, &s, t(base + 50), &energy((0, 0, 0, 500), (3, 300, 0, 200)));
    assert_eq!(num(&m, "heat_heating_kwh"), None);
    let m = feed(&mut *tr, &s, t(base + 60), &energy((1, 0, 0, 500), (3, 300, 0, 200)));
    assert_eq!(num(&m, "heat_kwh"), Some(1512.0));
    let m = feed(&mut *tr, &s, t(base + 70), &energy((3, 0, 0, 500), (3, 300, 0, 200)));
    assert_eq!(num(&m, "heat_kwh"), Some(1514.0));
    // The day's heating figure can no longer be trusted: today's heat is unknown, COP absent.
    assert_eq!(num(&m, "heat_heating_today_kwh"), None);
    assert_eq!(num(&m, "cop_today"), None);
    assert_eq!(num(&m, "cop_today_dhw"), None, "no hot-water electricity: absent");
}

#[test]
fn hpmanagers_day_counters_alone_count_and_a_map_without_electricity_has_no_cop() {
    let dir = tempfile::tempdir().unwrap();
    let s = schema(false, true);
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    let day = |h: i64, e: i64| {
        vec![
            ("heat_meter_heating_day", Value::Int(h)),
            ("heat_meter_dhw_day", Value::Int(0)),
            ("power_consumption_heating_day", Value::Int(e)),
            ("power_consumption_dhw_day", Value::Int(0)),
        ]
    };
    feed(&mut *tr, &s, t(20 * HOUR), &day(20, 5));
    let m = feed(&mut *tr, &s, t(23 * HOUR), &day(26, 7));
    assert_eq!(num(&m, "heat_kwh"), Some(26.0));
    let m = feed(&mut *tr, &s, t(24 * HOUR + 60), &day(0, 0));
    assert_eq!(num(&m, "heat_kwh"), Some(26.0), "the reset is a new day, not a drop");
    let m = feed(&mut *tr, &s, t(25 * HOUR), &day(2, 1));
    assert_eq!(num(&m, "heat_kwh"), Some(28.0));
    assert_eq!(num(&m, "cop_today"), Some(2.0));

    let s = schema(false, false);
    let dir = tempfile::tempdir().unwrap();
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    let m = feed(
        &mut *tr,
        &s,
        t(HOUR),
        &[
            ("heat_meter_heating_day", Value::Int(3)),
            ("heat_meter_dhw_day", Value::Int(1)),
        ],
    );
    assert_eq!(num(&m, "heat_kwh"), Some(4.0));
    assert_eq!(num(&m, "electricity_kwh"), None);
    assert_eq!(num(&m, "cop_today"), None, "no electricity register: absent");
    assert!(m.fields.keys().all(|k| !k.starts_with("cop") && !k.starts_with("scop")));
}

#[test]
fn counters_and_days_survive_a_restart_and_a_missed_midnight_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = schema(true, true);
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    feed(
        &mut *tr,
        &s,
        t(12 * HOUR),
        &energy((10, 1000, 0, 500), (3, 300, 0, 200)),
    );
    let m = feed(
        &mut *tr,
        &s,
        t(20 * HOUR),
        &energy((20, 1000, 0, 500), (6, 300, 0, 200)),
    );
    assert_eq!(num(&m, "heat_kwh"), Some(1520.0));
    tr.shutdown(&mut Vec::new());
    drop(tr);
    // hpflow is down over midnight; the device moved 24 kWh and counted 5 since.
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    assert!(
        registry.efficiency().days("hp1").is_some(),
        "days are published at build"
    );
    let m = feed(&mut *tr, &s, t(32 * HOUR), &energy((5, 1024, 0, 500), (2, 307, 0, 200)));
    assert_eq!(num(&m, "heat_kwh"), Some(1529.0));
    assert_eq!(num(&m, "electricity_kwh"), Some(509.0));
    assert_eq!(num(&m, "heat_today_kwh"), Some(5.0));
    tr.tick(t(32 * HOUR + 10), &mut Vec::new());
    let days = registry.efficiency().days("hp1").unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(
        days[0].heat_heating,
        Some(24.0),
        "the missed end of the day comes from the move"
    );
    assert_eq!(days[0].electricity_heating, Some(7.0));
    assert_eq!(days[0].cop(), Some(24.0 / 7.0));
}

#[test]
fn short_cycling_is_a_state_from_starts_per_hour_and_run_length() {
    let dir = tempfile::tempdir().unwrap();
    let s = schema(true, true);
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    let on = |b: bool| {
        vec![
            ("compressor_running", Value::Bool(b)),
            ("defrost_mode", Value::Bool(false)),
        ]
    };
    feed(&mut *tr, &s, t(HOUR), &on(false));
    let mut last = None;
    // Runs of 4 minutes every 10 minutes.
    for k in 0..5u64 {
        let start = HOUR + 60 + k * 600;
        feed(&mut *tr, &s, t(start), &on(true));
        last = Some(feed(&mut *tr, &s, t(start + 240), &on(false)));
    }
    let m = last.unwrap();
    assert_eq!(m.fields.get("short_cycling"), Some(&Value::Bool(true)));
    assert_eq!(num(&m, "compressor_starts"), Some(5.0));
    assert_eq!(num(&m, "compressor_starts_per_hour"), Some(5.0));
    assert_eq!(num(&m, "compressor_last_run_seconds"), Some(240.0));
    assert_eq!(num(&m, "compressor_run_seconds"), Some(1200.0));
    // Two hours of rest: no longer short cycling.
    let m = feed(&mut *tr, &s, t(4 * HOUR), &on(false));
    assert_eq!(m.fields.get("short_cycling"), Some(&Value::Bool(false)));
    // A 30-minute run once an hour is fine.
    let m = feed(&mut *tr, &s, t(4 * HOUR + 60), &on(true));
    assert_eq!(m.fields.get("short_cycling"), Some(&Value::Bool(false)));
    let m = feed(&mut *tr, &s, t(4 * HOUR + 1860), &on(false));
    assert_eq!(m.fields.get("short_cycling"), Some(&Value::Bool(false)));
    assert_eq!(num(&m, "compressor_last_run_seconds"), Some(1800.0));
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_counting_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(dir.path(), "efficiency");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"{not json").unwrap();
    let s = schema(true, true);
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    let m = feed(&mut *tr, &s, t(HOUR), &energy((1, 10, 0, 5), (1, 3, 0, 2)));
    assert_eq!(num(&m, "heat_kwh"), Some(16.0));
    let aside = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(aside, "the corrupt file was moved aside");
}

/// A simulated device for the model test: true energy per meter, a day counter
/// that the device's own clock resets at local midnight, the move into the
/// total sometimes seen in two halves, failed reads, and the odd glitch.
struct SimDevice {
    id: &'static str,
    /// True energy (kWh) of heat heating, heat dhw, el heating, el dhw, booster heating, booster dhw.
    energy: [f64; 6],
    /// Energy at the device's last midnight, per meter: what the total holds.
    moved: [f64; 6],
    /// The same at the midnight before, what the total shows while it lags.
    before: [f64; 6],
    /// The device's local date.
    date: Option<jiff::civil::Date>,
    /// The total lags the day reset by this many polls.
    lag: u32,
    compressor: bool,
}

impl SimDevice {
    fn new(id: &'static str) -> Self {
        SimDevice {
            id,
            energy: [5000.0, 1200.0, 1400.0, 400.0, 30.0, 10.0],
            moved: [5000.0, 1200.0, 1400.0, 400.0, 30.0, 10.0],
            before: [5000.0, 1200.0, 1400.0, 400.0, 30.0, 10.0],
            date: None,
            lag: 0,
            compressor: false,
        }
    }

    fn poll(
        &mut self,
        rng: &mut fastrand::Rng,
        tz: &TimeZone,
        at: SystemTime,
        secs: f64,
    ) -> Vec<(&'static str, Value)> {
        let power = [6.0, 2.0, 1.8, 0.7, 0.3, 0.1];
        for (e, p) in self.energy.iter_mut().zip(power) {
            *e += p * rng.f64() * secs / 3600.0;
        }
        let date = jiff::Timestamp::try_from(at)
            .unwrap()
            .to_zoned_datetime(tz.clone())
            .date();
        if self.date.is_some_and(|d| d != date) {
            // Midnight: the day's whole kWh move into the total, maybe seen apart.
            self.before = self.moved;
            for (m, e) in self.moved.iter_mut().zip(self.energy) {
                *m += (e - *m).floor();
            }
            self.lag = rng.u32(..3);
        }
        self.date = Some(date);
        let names = [
            ("heat_meter_heating_day", "heat_meter_heating_total"),
            ("heat_meter_dhw_day", "heat_meter_dhw_total"),
            ("power_consumption_heating_day", "power_consumption_heating_total"),
            ("power_consumption_dhw_day", "power_consumption_dhw_total"),
        ];
        let mut fields = Vec::new();
        for (i, (day, total)) in names.into_iter().enumerate() {
            if rng.u8(..50) == 0 {
                continue; // a failed read
            }
            let mut d = (self.energy[i] - self.moved[i]).floor();
            // While the total lags, the day counter has reset and the total not grown yet.
            let mut t = if self.lag > 0 { self.before[i] } else { self.moved[i] }.floor();
            match rng.u16(..400) {
                0 => d += 500.0,              // an implausible jump
                1 => t = (t - 40.0).max(0.0), // a total that goes back
                _ => {}
            }
            fields.push((day, Value::Int(d as i64)));
            fields.push((total, Value::Int(t as i64)));
        }
        self.lag = self.lag.saturating_sub(1);
        fields.push((
            "heat_meter_nhz_heating_total",
            Value::Int(self.energy[4].floor() as i64),
        ));
        fields.push(("heat_meter_nhz_dhw_total", Value::Int(self.energy[5].floor() as i64)));
        if rng.u8(..3) == 0 {
            self.compressor = !self.compressor;
        }
        fields.push(("compressor_running", Value::Bool(self.compressor)));
        fields.push(("defrost_mode", Value::Bool(rng.u8(..20) == 0)));
        fields.push(("outside_temperature", Value::Float(rng.f64() * 20.0 - 5.0)));
        fields
    }
}

fn full_schema() -> Arc<Schema> {
    let s = schema(true, true);
    let mut fields: Vec<FieldMeta> = s.fields.iter().map(|f| (**f).clone()).collect();
    for n in ["heat_meter_nhz_heating_total", "heat_meter_nhz_dhw_total"] {
        fields.push(field(n, ValueType::Int, FieldKind::Counter));
    }
    Arc::new(Schema::new("wpm", fields))
}

fn efficiency(
    c: &EfficiencyConfig,
    dir: &Path,
    schema: &Arc<Schema>,
    registry: &Arc<Registry>,
    reference: bool,
) -> Efficiency {
    let mut e = BuildContext::alone("efficiency", dir, std::slice::from_ref(schema), registry, |cx| {
        c.build_efficiency(cx)
    })
    .unwrap();
    e.reference = reference;
    e
}

fn run(
    tr: &mut Efficiency,
    schema: &Arc<Schema>,
    id: &str,
    time: SystemTime,
    fields: &[(&str, Value)],
) -> Vec<(String, Value)> {
    let mut m = Metric::new(id, Arc::default(), time, schema.clone());
    for (k, v) in fields {
        m.fields.insert((*k).into(), v.clone());
    }
    let mut out = Vec::new();
    tr.transform(m.into(), &mut out);
    match out.pop() {
        Some(Event::Metric(m)) => m.fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        other => panic!("expected a metric, got {other:?}"),
    }
}

/// Europe/London (two DST changes a year), a config in it with `extra`, the full map.
fn london(extra: &str) -> (TimeZone, EfficiencyConfig, Arc<Schema>) {
    let zone = "Europe/London";
    let c = config(&format!("time_zone = \"{zone}\"\n{extra}"));
    (TimeZone::get(zone).unwrap(), c, full_schema())
}

#[test]
fn every_figure_equals_the_reference_that_sums_every_day_each_poll() {
    // Seeded random polls of two devices over 14 months in Europe/London (two
    // DST changes each way), sparse and dense, with gaps, late polls, restarts
    // and kills, through the transform and through the reference that asks
    // the zone and sums every kept day each poll: every field of every poll,
    // and the published days, must be the same.
    let (tz, c, s) = london("persist_interval = \"1h\"");
    let (mut polls, mut with_scop, mut with_month) = (0, 0, 0);
    for seed in 0..2u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (dir_new, dir_ref) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (reg_new, reg_ref) = (Arc::new(Registry::default()), Arc::new(Registry::default()));
        let mut new = efficiency(&c, dir_new.path(), &s, &reg_new, false);
        let mut reference = efficiency(&c, dir_ref.path(), &s, &reg_ref, true);
        let mut devices = [SimDevice::new("hp1"), SimDevice::new("hp2")];
        let start = (day0() - 60 * 86_400) as f64 + rng.f64() * 86_400.0;
        let end = start + 430.0 * 86_400.0;
        let mut t = start;
        while t < end {
            // Mostly hours apart; now and then a dense stretch or a gap of days.
            let step = match rng.u8(..20) {
                0 => 86_400.0 * rng.f64() * 3.0,
                1..=4 => 10.0 + rng.f64() * 50.0,
                _ => 1800.0 + rng.f64() * 14_400.0,
            };
            t += step;
            let dev = &mut devices[rng.usize(..2)];
            let late = rng.u8(..40) == 0;
            let at_secs = if late { t - 600.0 } else { t };
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(at_secs);
            let fields = dev.poll(&mut rng, &tz, at, step);
            let a = run(&mut new, &s, dev.id, at, &fields);
            let b = run(&mut reference, &s, dev.id, at, &fields);
            assert_eq!(a, b, "seed {seed}, {} at {at_secs}", dev.id);
            polls += 1;
            with_scop += usize::from(a.iter().any(|(k, _)| k == "scop"));
            with_month += usize::from(a.iter().any(|(k, _)| k == "cop_month_dhw"));
            match rng.u8(..100) {
                0..=2 => {
                    let now = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t);
                    new.tick(now, &mut Vec::new());
                    reference.tick(now, &mut Vec::new());
                    for d in &devices {
                        assert_eq!(reg_new.efficiency().days(d.id), reg_ref.efficiency().days(d.id));
                    }
                }
                3 => {
                    // A restart: both save on shutdown and load again.
                    new.shutdown(&mut Vec::new());
                    reference.shutdown(&mut Vec::new());
                    new = efficiency(&c, dir_new.path(), &s, &reg_new, false);
                    reference = efficiency(&c, dir_ref.path(), &s, &reg_ref, true);
                }
                4 => {
                    // A kill: what the last save held.
                    new = efficiency(&c, dir_new.path(), &s, &reg_new, false);
                    reference = efficiency(&c, dir_ref.path(), &s, &reg_ref, true);
                }
                _ => {}
            }
        }
    }
    assert!(polls > 4000, "{polls} polls");
    assert!(
        with_scop > polls / 2 && with_month > polls / 2,
        "{polls} polls, {with_scop} with scop, {with_month} with cop_month_dhw"
    );
}

/// The devices as a load would restore them: through JSON, as the file holds them.
fn held(e: &Efficiency) -> BTreeMap<String, Device> {
    e.devices
        .iter()
        .map(|(k, e)| {
            let json = serde_json::to_vec(&e.dev).unwrap();
            (k.to_string(), serde_json::from_slice(&json).unwrap())
        })
        .collect()
}

fn persisted(path: &Path) -> BTreeMap<String, Device> {
    let registry = Registry::default();
    let metrics = registry.component("efficiency", "transform", "efficiency");
    let (devices, _) = store::load(path, "efficiency", &metrics).unwrap();
    devices.into_iter().map(|(k, d)| (k.to_string(), d)).collect()
}

fn journal_len(path: &Path) -> u64 {
    fs::metadata(path.with_extension("journal")).map_or(0, |m| m.len())
}

#[test]
fn a_kill_at_any_instant_restores_the_last_finished_save_or_the_one_before() {
    let (tz, c, s) = london("");
    let (mut cut_appends, mut half_compactions, mut journal_saves) = (0, 0, 0);
    for seed in 0..40u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path(), "efficiency");
        let registry = Arc::new(Registry::default());
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut e = efficiency(&c, dir.path(), &s, &registry, false);
        e.expire_after = Duration::from_secs(2 * 86_400);
        let mut devices = [SimDevice::new("hp1"), SimDevice::new("hp2"), SimDevice::new("hp3")];
        let (mut saved, mut before_last) = (BTreeMap::new(), BTreeMap::new());
        // The journal's bytes written by the last save, when it appended.
        let mut last_append = None;
        let mut t = (day0() - 30 * 86_400) as f64;
        for _ in 0..rng.usize(1..300) {
            let step = if rng.u8(..30) == 0 {
                3.0 * 86_400.0
            } else {
                60.0 + rng.f64() * 7200.0
            };
            t += step;
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t);
            let dev = &mut devices[rng.usize(..3)];
            let fields = dev.poll(&mut rng, &tz, at, step);
            run(&mut e, &s, dev.id, at, &fields);
            if rng.u8(..10) == 0 {
                e.expire(at);
            }
            if rng.u8(..4) == 0 {
                let before = journal_len(&path);
                let generation = e.generation;
                if rng.u8(..10) == 0 {
                    let result = e.compact();
                    e.saved(result);
                } else {
                    e.save(at);
                }
                let after = journal_len(&path);
                last_append = (e.generation == generation && after > before).then_some((before, after));
                journal_saves += usize::from(last_append.is_some());
                before_last = std::mem::replace(&mut saved, held(&e));
            }
        }
        let what = format!("seed {seed}");
        match rng.u8(..3) {
            // Killed while appending: the journal ends inside the last append.
            0 if last_append.is_some() => {
                let (from, to) = last_append.unwrap();
                let cut = rng.u64(from..to);
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(path.with_extension("journal"))
                    .unwrap();
                f.set_len(cut).unwrap();
                drop(e);
                cut_appends += 1;
                let restored = persisted(&path);
                assert!(
                    restored == saved || restored == before_last,
                    "{what}: restored as neither save held it"
                );
            }
            // Killed after writing the whole file, before its journal started:
            // the old journal must not be applied over it.
            1 if e.journal.is_some() => {
                let now_held = held(&e);
                let bytes = e.render(e.generation + 1).unwrap();
                write_atomically(&path, &bytes).unwrap();
                drop(e);
                half_compactions += 1;
                assert_eq!(persisted(&path), now_held, "{what}");
            }
            _ => {
                drop(e);
                assert_eq!(persisted(&path), saved, "{what}");
            }
        }
    }
    assert!(
        cut_appends > 5 && half_compactions > 5 && journal_saves > 100,
        "{cut_appends} cut appends, {half_compactions} half compactions, {journal_saves} saves to the journal"
    );
}

#[test]
fn a_stop_leaves_a_whole_file_that_a_hand_edit_changes_and_an_empty_journal() {
    let dir = tempfile::tempdir().unwrap();
    let s = schema(true, true);
    let registry = Arc::new(Registry::default());
    let mut tr = build(&config(UTC), dir.path(), &s, &registry);
    feed(
        &mut *tr,
        &s,
        t(12 * HOUR),
        &energy((10, 1000, 0, 500), (3, 300, 0, 200)),
    );
    tr.tick(t(12 * HOUR), &mut Vec::new());
    feed(
        &mut *tr,
        &s,
        t(13 * HOUR),
        &energy((12, 1000, 0, 500), (4, 300, 0, 200)),
    );
    tr.tick(t(13 * HOUR), &mut Vec::new());
    let path = state_path(dir.path(), "efficiency");
    let journal = fs::read_to_string(path.with_extension("journal")).unwrap();
    assert_eq!(journal.lines().count(), 2, "a header and the second save: {journal}");
    tr.shutdown(&mut Vec::new());
    drop(tr);
    assert_eq!(
        fs::read_to_string(path.with_extension("journal"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    // An edit by hand: the device is renamed.
    let text = fs::read_to_string(&path).unwrap().replace("\"hp1\"", "\"hp7\"");
    fs::write(&path, text).unwrap();
    assert_eq!(persisted(&path).keys().collect::<Vec<_>>(), ["hp7"]);
}

/// Seeded random changes to a device's days (today's, late ones to any kept
/// day, new days after gaps, pruning): every publish gives the board exactly
/// the days kept, however much of them it shares from an earlier publish.
#[test]
fn published_days_are_the_kept_days_whatever_changed_since_the_last_publish() {
    let board = crate::telemetry::EfficiencyBoard::default();
    let mut reused = 0;
    for seed in 0..40 {
        let mut rng = crate::modbus::Rng::new(seed);
        let mut below = |n: u64| rng.next_u64() % n;
        let mut e = Entry::new(Device::default());
        let mut today = jiff::civil::date(2026, 1, 1);
        for step in 0..300 {
            match below(10) {
                // The next day or a gap of some.
                0 => today = today.checked_add(jiff::Span::new().days(1 + below(30) as i64)).unwrap(),
                // A late poll: any day from a year back on.
                1 | 2 => {
                    let back = jiff::Span::new().days(below(365) as i64);
                    e.day(today.checked_sub(back).unwrap()).heat_heating = Some(step as f64);
                }
                3 => e.prune(today),
                _ => e.day(today).heat_heating = Some(step as f64),
            }
            if below(3) == 0 {
                let before = e.older.clone();
                let (older, recent) = e.published();
                reused += usize::from(before.is_some_and(|b| Arc::ptr_eq(&b, &older)));
                board.publish_split("hp1", older, recent);
                let want: Vec<Day> = e.dev.days.iter().cloned().collect();
                assert_eq!(&*board.days("hp1").unwrap(), &want[..], "seed {seed}, step {step}");
            }
        }
    }
    // Most publishes share what the one before copied.
    assert!(reused > 2000, "older days shared in {reused} publishes");
}
