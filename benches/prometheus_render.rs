//! Scrape cost of the `prometheus` sink: 1,000 devices × 40 fields (gauges,
//! counters, enums as state sets, bools with since stamps), rendered in both
//! formats; then 1,000 devices of the shipped register map (about 200 fields)
//! rendered and scraped over loopback HTTP from the sink's own server, the body
//! read to its end by a plain client. Prints median and p99 milliseconds per
//! scrape and the body size, and the cost of an update per device-poll of
//! both maps.
//!
//! `cargo bench --bench prometheus_render` (release build). Budget: ≤ 50 ms.
//! `HPFLOW_BENCH_ONLY=shipped` runs only the shipped-map part.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hpflow::event::{Event, FieldKind, FieldMeta, Metric, Schema, Tags, Value, ValueType};
use hpflow::sinks::prometheus::{Exporter, Format};
use hpflow::telemetry::cpu::thread_cpu;
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
    metric(schema, &id, tags, d, schema.fields.len(), |i, f| {
        match (f.value_type, f.kind) {
            (ValueType::Float, _) => Value::Float((d * 40 + i) as f64 / 7.0 + round as f64 * 0.1),
            (ValueType::Int, FieldKind::State) => Value::Int(((d + i) % 5) as i64),
            (ValueType::Int, _) => Value::Int((d * 1000 + i) as i64 + round as i64),
            (ValueType::Bool, _) => Value::Bool((d + i).is_multiple_of(2)),
            (ValueType::Text, _) => Value::Text("x".into()),
        }
    })
}

/// A poll of device `d` with the schema's first `fields` fields at `value(index,
/// field)`, and a since stamp on every state field.
fn metric(
    schema: &Arc<Schema>,
    id: &str,
    tags: Tags,
    d: usize,
    fields: usize,
    value: impl Fn(usize, &FieldMeta) -> Value,
) -> Event {
    let mut m = Metric::new(id, Arc::new(tags), SystemTime::now(), schema.clone());
    for (i, f) in schema.fields.iter().enumerate().take(fields) {
        m.fields.insert(f.name.clone(), value(i, f));
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
    if std::env::var("HPFLOW_BENCH_ONLY").is_ok_and(|v| v == "shipped") {
        shipped();
        return;
    }
    synthetic();
    shipped();
}

fn synthetic() {
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

/// Fields a poll of the shipped model carries: the 200 (a WPMsystem
/// answers about that many of the map's 425).
const SHIPPED_FIELDS: usize = 200;

/// A poll of the shipped model: its first 200 fields with a value of their
/// type, states at one of their codes, since stamps on every state field.
fn shipped_poll(schema: &Arc<Schema>, d: usize, round: u64) -> Event {
    let id = format!("hp{d:04}");
    let tags: Tags = common::pump_tags(&id, d, "Bench", &schema.model);
    metric(schema, &id, tags, d, SHIPPED_FIELDS, |i, f| {
        match (f.value_type, &f.labels) {
            (_, Some(labels)) if !labels.is_empty() => {
                let codes: Vec<i64> = labels.keys().copied().collect();
                Value::Int(codes[(d + i + round as usize) % codes.len()])
            }
            (ValueType::Float, _) => Value::Float((d * 200 + i) as f64 / 7.0 + round as f64 * 0.1),
            (ValueType::Int, _) => Value::Int((d * 1000 + i) as i64 + round as i64),
            (ValueType::Bool, _) => Value::Bool((d + i).is_multiple_of(2)),
            (ValueType::Text, _) => Value::Text("x".into()),
        }
    })
}

/// One `GET /metrics` over HTTP/1.1 with `Connection: close`, read to its end:
/// the body's size.
fn scrape(port: u16, buf: &mut [u8]) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the sink listens");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("request sent");
    let mut total = 0;
    loop {
        match s.read(buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) => panic!("reading the scrape: {e}"),
        }
    }
}

/// Runs `f` 25 times: the sorted wall times of the last 20, the median of
/// their CPU times on this thread (steadier than wall time on a shared
/// machine, for work done on this thread alone) and the size the last returned.
fn timed(mut f: impl FnMut() -> usize) -> (Vec<Duration>, f64, usize) {
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut size = 0;
    for round in 0..25 {
        let (t, c) = (Instant::now(), thread_cpu());
        size = std::hint::black_box(f());
        if round >= 5 {
            times.push(t.elapsed());
            cpu.push(thread_cpu() - c);
        }
    }
    times.sort();
    cpu.sort();
    (times, percentile(&cpu, 0.5), size)
}

/// 1,000 devices of the shipped map (the pipeline_poll bench's scrape, without
/// the polling around it): the render alone, then whole scrapes over loopback.
fn shipped() {
    let schema = common::shipped_schema();
    let ex = Arc::new(Exporter::new(
        "heatpump",
        Duration::from_secs(300),
        Arc::new(SystemTime::now),
        Some(Arc::new(Registry::default())),
    ));
    for round in 0..2 {
        for d in 0..DEVICES {
            ex.update(&shipped_poll(&schema, d, round));
        }
    }
    // Steady updates: each round is a poll of every device, prepared beforehand.
    let rounds: Vec<Vec<Event>> = (2..7)
        .map(|round| (0..DEVICES).map(|d| shipped_poll(&schema, d, round)).collect())
        .collect();
    let (mut wall, mut cpu): (Vec<Duration>, Vec<Duration>) = rounds
        .iter()
        .map(|events| {
            let (t, c) = (Instant::now(), thread_cpu());
            for e in events {
                ex.update(e);
            }
            (t.elapsed() / DEVICES as u32, (thread_cpu() - c) / DEVICES as u32)
        })
        .unzip();
    wall.sort();
    cpu.sort();
    drop(rounds);
    println!(
        "shipped map, update: median {:.2} µs per device-poll, CPU {:.2} µs (5 rounds of {DEVICES})",
        wall[wall.len() / 2].as_secs_f64() * 1e6,
        cpu[cpu.len() / 2].as_secs_f64() * 1e6,
    );
    let (times, cpu, bytes) = timed(|| ex.render(Format::Text).len());
    println!(
        "shipped map, render Text: median {:.2} ms, p99 {:.2} ms, CPU {cpu:.2} ms; {:.1} MiB, {DEVICES} devices × {} \
         fields",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        bytes as f64 / (1 << 20) as f64,
        SHIPPED_FIELDS.min(schema.fields.len())
    );
    // As the server renders: in 128 KiB pieces, each dropped once taken.
    let (times, cpu, _) = timed(|| {
        let mut total = 0;
        ex.render_chunked(Format::Text, 128 << 10, &mut |piece| total += piece.len());
        total
    });
    println!(
        "shipped map, render Text in 128 KiB pieces: median {:.2} ms, p99 {:.2} ms, CPU {cpu:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = rt.spawn(hpflow::component::http::serve(
        listener,
        hpflow::sinks::prometheus::router(ex.clone()),
        hpflow::component::http::HttpLimits::default(),
        stop.clone(),
    ));
    let mut buf = vec![0u8; 256 << 10];
    let (times, _, got) = timed(|| scrape(port, &mut buf));
    println!(
        "shipped map, HTTP scrape: median {:.2} ms, p99 {:.2} ms; {:.1} MiB with the head (20 scrapes)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        got as f64 / (1 << 20) as f64,
    );
    stop.cancel();
    let _ = rt.block_on(server);
}
