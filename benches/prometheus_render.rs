//! Scrape cost of the `prometheus` sink: 1,000 devices × 40 fields (gauges,
//! counters, enums as state sets, bools with since stamps), rendered in both
//! formats. Prints median and p99 milliseconds per scrape and the body size.
//!
//! `cargo bench --bench prometheus_render` (release build). Budget: ≤ 50 ms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hpflow::event::{Event, FieldKind, FieldMeta, Metric, Schema, Tags, Value, ValueType};
use hpflow::sinks::prometheus::{Exporter, Format};
use hpflow::telemetry::Registry;

const DEVICES: usize = 1_000;
const ROUNDS: usize = 200;

fn schema() -> Arc<Schema> {
    let mut fields = Vec::new();
    let units = ["celsius", "bar", "kw", "percent", "l/min", "kelvin"];
    for i in 0..24 {
        let mut m = FieldMeta::gauge(&format!("sensor_{i:02}"), ValueType::Float);
        m.unit = Some(units[i % units.len()].to_string());
        m.description = Some(format!("sensor {i} (manual {})", 500 + i));
        fields.push(m);
    }
    for i in 0..6 {
        let mut m = FieldMeta::gauge(&format!("meter_{i}"), ValueType::Int);
        m.unit = Some(if i % 2 == 0 { "kwh" } else { "hours" }.to_string());
        m.kind = FieldKind::Counter;
        m.description = Some(format!("meter {i}"));
        fields.push(m);
    }
    for i in 0..4 {
        let mut m = FieldMeta::gauge(&format!("mode_{i}"), ValueType::Int);
        m.kind = FieldKind::State;
        m.labels = Some((0..5).map(|c| (c, format!("State {c}"))).collect::<BTreeMap<_, _>>());
        fields.push(m);
    }
    for i in 0..6 {
        let mut m = FieldMeta::gauge(&format!("running_{i}"), ValueType::Bool);
        m.kind = FieldKind::State;
        fields.push(m);
    }
    Arc::new(Schema::new("bench_model", fields))
}

fn poll(schema: &Arc<Schema>, d: usize, round: u64) -> Event {
    let id = format!("hp{d:04}");
    let tags: Tags = [
        ("heat_pump_id", id.clone()),
        ("name", format!("Heat pump {d} \"north\"")),
        ("location", format!("Building {}", d / 10)),
        ("model", "bench_model".to_string()),
        ("customer", format!("c{}", d % 97)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let now = SystemTime::now();
    let mut m = Metric::new(&id, Arc::new(tags), now, schema.clone());
    for (i, f) in schema.fields.iter().enumerate() {
        let v = match (f.value_type, f.kind) {
            (ValueType::Float, _) => Value::Float((d * 40 + i) as f64 / 7.0 + round as f64 * 0.1),
            (ValueType::Int, FieldKind::State) => Value::Int(((d + i) % 5) as i64),
            (ValueType::Int, _) => Value::Int((d * 1000 + i) as i64 + round as i64),
            (ValueType::Bool, _) => Value::Bool((d + i).is_multiple_of(2)),
            (ValueType::Text, _) => Value::Text("x".into()),
        };
        m.fields.insert(f.name.clone(), v);
        if f.kind == FieldKind::State {
            m.since.insert(
                f.name.clone(),
                Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + d as u64)),
            );
        }
    }
    Event::from(m)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let registry = Arc::new(Registry::default());
    for (id, kind, ty) in [
        ("heatpumps", "source", "modbus_tcp"),
        ("states", "transform", "state_diff"),
    ] {
        registry.component(id, kind, ty).sent(1);
    }
    for (id, kind, ty) in [("influx", "sink", "influxdb"), ("metrics", "sink", "prometheus")] {
        registry.component(id, kind, ty).received(1);
    }
    let ex = Arc::new(Exporter::new(
        "heatpump",
        Duration::from_secs(300),
        Arc::new(SystemTime::now),
        Some(registry),
    ));
    let schema = schema();

    let events: Vec<Event> = (0..DEVICES).map(|d| poll(&schema, d, 0)).collect();
    let t = Instant::now();
    for e in &events {
        ex.update(e);
    }
    let first = t.elapsed();
    let events: Vec<Event> = (0..DEVICES).map(|d| poll(&schema, d, 1)).collect();
    let t = Instant::now();
    for e in &events {
        ex.update(e);
    }
    let steady = t.elapsed();
    println!(
        "update: {:.2} µs/poll steady ({:.2} µs/poll on first sight), {DEVICES} devices × {} fields",
        steady.as_secs_f64() * 1e6 / DEVICES as f64,
        first.as_secs_f64() * 1e6 / DEVICES as f64,
        schema.fields.len()
    );

    for format in [Format::Text, Format::OpenMetrics] {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        let mut series = 0;
        for round in 0..ROUNDS + 5 {
            let t = Instant::now();
            let body = ex.render(format);
            let took = t.elapsed();
            if round >= 5 {
                times.push(took);
            }
            bytes = body.len();
            series = body.lines().filter(|l| !l.starts_with('#')).count();
            std::hint::black_box(body);
        }
        times.sort();
        println!(
            "render {format:?}: median {:.2} ms, p99 {:.2} ms, max {:.2} ms per scrape; {bytes} bytes, {series} samples \
             ({ROUNDS} scrapes)",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
        );
    }
}
