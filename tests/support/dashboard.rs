//! A dashboard fed with hours of realistic polls of several pumps, without a
//! pipeline: for the browser test's screenshots and for the benchmark
//! (benches/dashboard_overview.rs, through tests/dashboard_support/fixture.rs).
//! Self-contained, as the benchmark has no `support` module around it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hpflow::component::Control;
use hpflow::event::{Event, Metric, Schema, StateChange, Tags, Value, ValueType};
use hpflow::registers::RegisterMap;
use hpflow::sinks::dashboard::{App, Clock, DashboardConfig};
use hpflow::telemetry::Registry;

pub fn wpm() -> Arc<Schema> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
    let map = RegisterMap::load(path).expect("the shipped register map loads");
    map.model("stiebel_eltron_wpm").expect("the WPM model").schema().clone()
}

// The browser test and the benchmark each read a different part.
#[allow(dead_code)]
pub struct Fixture {
    pub app: Arc<App>,
    pub control: Arc<Control>,
    pub dir: tempfile::TempDir,
    /// The telemetry the app reads (the efficiency board: empty until a test publishes days).
    pub registry: Arc<Registry>,
}

/// Fields that get a history in the light version (the default tiles).
const TILES: &[&str] = &[
    "outside_temperature",
    "actual_temperature_hk1",
    "set_temperature_hk1",
    "actual_return_temperature",
    "actual_buffer_temperature",
    "set_buffer_temperature",
    "actual_dhw_temperature",
    "set_dhw_temperature",
    "hot_gas_temperature",
    "wp_water_flow_rate",
    "inverter_power",
];

/// `pumps` pumps polled every 10 s for `hours` up to `now`. Every field of the
/// model is in the last poll; the earlier polls carry every field when
/// `all_fields`, else the tiles and states only (fast to build in debug).
/// Pump 3 was offline for 15 minutes half an hour ago, so its lines have a gap.
/// The last poll carries the `efficiency` transform's figures of the day.
/// The app reads the time from `clock`.
pub fn fixture(pumps: usize, hours: u64, all_fields: bool, now: SystemTime, clock: Clock) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let control = Arc::new(Control::default());
    let _rx = control.poll_interval("heatpumps", Duration::from_secs(10));
    let schema = wpm();
    let registry = Arc::new(Registry::default());
    let app = DashboardConfig::default()
        .app(
            "dashboard",
            dir.path(),
            dir.path(),
            std::slice::from_ref(&schema),
            &control,
            None,
            None,
        )
        .expect("the dashboard builds")
        .with_clock(clock, jiff::tz::TimeZone::UTC)
        .with_telemetry(registry.clone());
    let polls = hours * 360;
    let states = [
        "compressor_running",
        "hc1_pump",
        "hc2_pump",
        "hp_heating_mode",
        "hp_dhw_mode",
        "defrost_mode",
        "summer_mode",
        "cooling_mode",
        "nhz_stages_running",
        "heatup_program",
    ];
    for p in 0..pumps {
        let id = format!("hp{}", p + 1);
        let mut tags = Tags::new();
        tags.insert("heat_pump_id".into(), id.clone());
        tags.insert("name".into(), format!("Heat pump {}", p + 1));
        tags.insert(
            "location".into(),
            ["Basement", "Garage", "Utility room", "Barn"][p % 4].into(),
        );
        tags.insert("model".into(), "stiebel_eltron_wpm".into());
        let tags = Arc::new(tags);
        let mut compressor_since = None;
        let mut was_on = None;
        for i in 0..polls {
            let age = (polls - 1 - i) * 10;
            if p == 2 && (1800..2700).contains(&age) {
                continue; // offline
            }
            let t = now - Duration::from_secs(age);
            let minute = (i / 6) as f64;
            let phase = p as f64;
            let mut m = Metric::new(&id, tags.clone(), t, schema.clone());
            let on = !((i / 90) + p as u64).is_multiple_of(3);
            if was_on != Some(on) {
                if let Some(from) = was_on {
                    let c = StateChange {
                        device: id.as_str().into(),
                        tags: tags.clone(),
                        field: "compressor_running".into(),
                        from: Some(Value::Bool(from)),
                        to: Value::Bool(on),
                        at: t,
                        from_since: compressor_since,
                        meta: None,
                    };
                    app.ingest(&Event::from(c));
                    compressor_since = Some(t);
                }
                was_on = Some(on);
            }
            let outside = -3.0 + 4.0 * (minute / 240.0 + phase).sin();
            let flow = if on { 35.0 + 5.0 * (minute / 20.0).sin() } else { 28.0 };
            let values: [(&str, f64); 11] = [
                ("outside_temperature", outside),
                ("actual_temperature_hk1", flow),
                ("set_temperature_hk1", 36.0),
                ("actual_return_temperature", flow - 4.5),
                ("actual_buffer_temperature", flow + 1.0),
                ("set_buffer_temperature", 37.0),
                ("actual_dhw_temperature", 46.0 + 4.0 * (minute / 90.0).cos()),
                ("set_dhw_temperature", 50.0),
                (
                    "hot_gas_temperature",
                    if on { 80.0 + 3.0 * (minute / 7.0).sin() } else { 40.0 },
                ),
                ("wp_water_flow_rate", if on { 15.2 } else { 0.0 }),
                (
                    "inverter_power",
                    if on { 2.1 + 0.4 * (minute / 13.0).sin() } else { 0.0 },
                ),
            ];
            let last = i + 1 == polls;
            if all_fields || last {
                for meta in &schema.fields {
                    let v = match meta.value_type {
                        ValueType::Float => Value::Float(((i % 50) as f64 / 10.0 + phase).round()),
                        ValueType::Int => Value::Int(1 + (i % 3) as i64),
                        ValueType::Bool => Value::Bool(false),
                        ValueType::Text => Value::Text("WPMsystem".into()),
                    };
                    m.fields.insert(meta.name.clone(), v);
                }
            }
            if last {
                let heat = 30.0 + 4.0 * phase;
                let electricity = heat / (3.1 + 0.2 * phase);
                m.fields.insert("heat_today_kwh".into(), Value::Float(heat));
                m.fields
                    .insert("electricity_today_kwh".into(), Value::Float(electricity));
                m.fields.insert("cop_today".into(), Value::Float(heat / electricity));
            }
            for (k, v) in values {
                debug_assert!(TILES.contains(&k));
                m.fields.insert(k.into(), Value::Float((v * 10.0).round() / 10.0));
            }
            for s in states {
                m.fields.insert(s.into(), Value::Bool(false));
                m.since.insert(s.into(), None);
            }
            m.fields.insert("compressor_running".into(), Value::Bool(on));
            m.fields.insert("hc1_pump".into(), Value::Bool(on));
            m.fields.insert("hp_heating_mode".into(), Value::Bool(on));
            m.since.insert("compressor_running".into(), compressor_since);
            m.fields.insert("operating_mode".into(), Value::Int(2));
            m.fields
                .insert("operating_status".into(), Value::Int(if on { 0b101_0001 } else { 0 }));
            m.fields.insert("fault_status".into(), Value::Int(i64::from(p == 1)));
            m.since
                .insert("fault_status".into(), Some(now - Duration::from_secs(2 * 3600)));
            app.ingest(&Event::from(m));
        }
    }
    Fixture {
        app: Arc::new(app),
        control,
        dir,
        registry,
    }
}
