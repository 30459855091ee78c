//! CPU of the `efficiency` transform alone: 1,000 devices with 400 days of
//! history each, polled every 10 s (the shipped map's energy, compressor,
//! defrost and outdoor fields among 40 others), a tick (publish and save into a
//! temporary folder) after every round, as the topology runs it. Prints µs per
//! device-poll for the polls, the ticks and both, median of several runs.
//!
//! `cargo bench --bench efficiency`. `HPFLOW_BENCH_DEVICES` (1000),
//! `HPFLOW_BENCH_ROUNDS` (60 polls of each device a run), `HPFLOW_BENCH_RUNS` (5).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{benching, env_or};
use hpflow::component::{BuildContext, Transform};
use hpflow::event::{Event, FieldKind, FieldMeta, Metric, Schema, Value, ValueType};
use hpflow::telemetry::Registry;
use hpflow::transforms::efficiency::{state_path, EfficiencyConfig};

const HISTORY_DAYS: u64 = 400;

fn schema() -> Arc<Schema> {
    let mut fields = Vec::new();
    for n in [
        "heat_meter_heating_day",
        "heat_meter_heating_total",
        "heat_meter_dhw_day",
        "heat_meter_dhw_total",
        "power_consumption_heating_day",
        "power_consumption_heating_total",
        "power_consumption_dhw_day",
        "power_consumption_dhw_total",
        "heat_meter_nhz_heating_total",
        "heat_meter_nhz_dhw_total",
    ] {
        let mut m = FieldMeta::gauge(n, ValueType::Int);
        m.kind = FieldKind::Counter;
        fields.push(m);
    }
    for n in ["compressor_running", "defrost_mode"] {
        let mut m = FieldMeta::gauge(n, ValueType::Bool);
        m.kind = FieldKind::State;
        fields.push(m);
    }
    fields.push(FieldMeta::gauge("outside_temperature", ValueType::Float));
    for i in 0..40 {
        fields.push(FieldMeta::gauge(&format!("sensor_{i:02}"), ValueType::Float));
    }
    Arc::new(Schema::new("wpm", fields))
}

/// A device heating at 4 kW (1.2 kW electric) and making hot water at 1 kW
/// (0.4 kW) around the clock, its day counters moving into the totals at UTC
/// midnight; the compressor runs 20 minutes an hour.
fn poll(schema: &Arc<Schema>, device: &str, t: u64) -> Event {
    let day_start = t / 86_400 * 86_400;
    let hours = |from: u64, to: u64| (to - from) as f64 / 3600.0;
    let split = |kw: f64| {
        let before = (kw * hours(0, day_start)).floor() as i64;
        let today = (kw * hours(day_start, t)).floor() as i64;
        (Value::Int(today), Value::Int(before))
    };
    let time = UNIX_EPOCH + Duration::from_secs(t);
    let mut m = Metric::new(device, Arc::default(), time, schema.clone());
    for (prefix, kw) in [
        ("heat_meter_heating", 4.0),
        ("heat_meter_dhw", 1.0),
        ("power_consumption_heating", 1.2),
        ("power_consumption_dhw", 0.4),
    ] {
        let (day, total) = split(kw);
        m.fields.insert(format!("{prefix}_day").into(), day);
        m.fields.insert(format!("{prefix}_total").into(), total);
    }
    m.fields.insert("heat_meter_nhz_heating_total".into(), Value::Int(12));
    m.fields.insert("heat_meter_nhz_dhw_total".into(), Value::Int(3));
    m.fields
        .insert("compressor_running".into(), Value::Bool(t % 3600 < 1200));
    m.fields.insert("defrost_mode".into(), Value::Bool(false));
    m.fields.insert(
        "outside_temperature".into(),
        Value::Float(((t / 600) % 20) as f64 - 5.0),
    );
    for i in 0..40 {
        m.fields
            .insert(format!("sensor_{i:02}").into(), Value::Float(i as f64 * 1.5));
    }
    Event::Metric(Arc::new(m))
}

fn build(config: &EfficiencyConfig, dir: &Path, schema: &Arc<Schema>) -> Box<dyn Transform> {
    let registry = Arc::new(Registry::default());
    BuildContext::alone("efficiency", dir, std::slice::from_ref(schema), &registry, |cx| {
        config.build(cx)
    })
    .expect("the transform builds")
}

fn main() {
    let devices: usize = env_or("HPFLOW_BENCH_DEVICES", 1000, |v| v.parse().ok());
    let default_rounds = if benching() { 60 } else { 2 };
    let rounds: u64 = env_or("HPFLOW_BENCH_ROUNDS", default_rounds, |v| v.parse().ok());
    let runs: usize = env_or("HPFLOW_BENCH_RUNS", if benching() { 5 } else { 1 }, |v| v.parse().ok());
    let history = if benching() { HISTORY_DAYS } else { 3 };
    let config: EfficiencyConfig = toml::from_str("time_zone = \"Europe/London\"").expect("config parses");
    let schema = schema();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let start = now - history * 86_400;

    // One device's history, polled every 3 hours, copied to every device.
    let mut tr = build(&config, dir.path(), &schema);
    let mut out = Vec::new();
    let mut t = start;
    while t < now {
        tr.transform(poll(&schema, "hp0000", t), &mut out);
        out.clear();
        t += 3 * 3600;
    }
    tr.shutdown(&mut out);
    drop(tr);
    let path = state_path(dir.path(), "efficiency");
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("the state file")).expect("JSON");
    let one = file["devices"]["hp0000"].clone();
    let all: serde_json::Map<String, serde_json::Value> =
        (0..devices).map(|d| (format!("hp{d:04}"), one.clone())).collect();
    file["devices"] = serde_json::Value::Object(all);
    std::fs::write(&path, serde_json::to_vec(&file).expect("JSON")).expect("state file written");
    let file_mib = std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1048576.0);

    let mut tr = build(&config, dir.path(), &schema);
    let ids: Vec<String> = (0..devices).map(|d| format!("hp{d:04}")).collect();
    let mut t = now;
    let (mut polls, mut ticks, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (mut poll_time, mut tick_time) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let events: Vec<Event> = ids.iter().map(|id| poll(&schema, id, t)).collect();
            let began = Instant::now();
            for e in events {
                tr.transform(e, &mut out);
            }
            poll_time += began.elapsed();
            out.clear();
            let began = Instant::now();
            tr.tick(UNIX_EPOCH + Duration::from_secs(t), &mut out);
            tick_time += began.elapsed();
            t += 10;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / (devices as f64 * rounds as f64);
        polls.push(per(poll_time));
        ticks.push(per(tick_time));
        both.push(per(poll_time + tick_time));
    }
    tr.shutdown(&mut out);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    println!(
        "efficiency: {devices} devices × {history} days of history (state file {file_mib:.1} MiB), {rounds} rounds of polls at 10 s, {runs} runs"
    );
    println!(
        "  polls:      median {:.2} µs per device-poll ({})",
        median(&mut polls.clone()),
        list(&polls)
    );
    println!(
        "  ticks:      median {:.2} µs per device-poll ({})",
        median(&mut ticks.clone()),
        list(&ticks)
    );
    println!(
        "  together:   median {:.2} µs per device-poll ({})",
        median(&mut both.clone()),
        list(&both)
    );
}
