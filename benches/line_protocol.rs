//! Line-protocol encoding cost of the `influxdb` sink.
//!
//! `cargo bench --bench line_protocol` runs two parts and prints the median of
//! several runs of each:
//! - synthetic: 100,000 polls × 40 fields of mixed types (points/s, MB/s);
//! - shipped: 1,000 devices × 10 rounds of the shipped register map's model, its
//!   first 200 fields as the `scale` transform leaves them (floats at their
//!   register's decimals, integers, enum codes written as their labels), the four
//!   HPManager tags: µs and ns per field of one poll, then what gzip (flate2 at the
//!   client's level, `Compression::fast()`, and at its default level for
//!   comparison) adds per poll when the lines are sent in batches of 100 polls,
//!   about what the shipped pipeline's 1,000 devices send per `batch_timeout`.
//!
//! `HPFLOW_BENCH_ONLY=shipped` (or `synthetic`) runs one part. Under
//! `cargo test --all-targets` it runs once on a few points as a smoke test.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flate2::write::GzEncoder;
use flate2::Compression;
use hpflow::event::{Event, FieldKind, FieldMeta, Metric, Schema, Value, ValueType};
use hpflow::sinks::influxdb::{Encoder, Precision};

fn polls(n: usize) -> Vec<Event> {
    let schema = Arc::new(Schema::default());
    (0..n)
        .map(|i| {
            let tags: BTreeMap<String, String> = [
                ("heat_pump_id", format!("hp{}", i % 100)),
                ("name", format!("Heat pump {}", i % 100)),
                ("location", "Basement, left".to_string()),
                ("model", "stiebel_eltron_wpl_25".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + i as u64 * 10_000);
            let mut m = Metric::new(&format!("hp{}", i % 100), Arc::new(tags), time, schema.clone());
            for f in 0..40 {
                let v = match f % 4 {
                    0 | 1 => Value::Float(20.0 + (i * 7 + f) as f64 / 10.0),
                    2 => Value::Int((i * 13 + f) as i64 % 5000),
                    _ => Value::Bool((i + f) % 3 == 0),
                };
                m.fields.insert(format!("field_number_{f}").into(), v);
            }
            Event::from(m)
        })
        .collect()
}

/// Runs `f` `runs` times: the median time and what the median run returned.
fn median(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut samples: Vec<(Duration, usize)> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let r = black_box(f());
            (start.elapsed(), r)
        })
        .collect();
    samples.sort_by_key(|s| s.0);
    samples[samples.len() / 2]
}

fn encode_all(encoder: &Encoder, events: &[Event], out: &mut Vec<u8>) -> usize {
    out.clear();
    for e in events {
        encoder.encode(black_box(e), out);
    }
    black_box(&*out);
    out.len()
}

fn synthetic(full: bool) {
    let (n, runs) = if full { (100_000, 9) } else { (100, 1) };
    let events = polls(n);
    let encoder = Encoder::new("heatpump_metrics", "heatpump_state_changes", Precision::Ms);
    let mut out = Vec::with_capacity(n * 1024);
    let (t, bytes) = median(runs, || encode_all(&encoder, &events, &mut out));
    let secs = t.as_secs_f64();
    println!(
        "line protocol: {n} points × 40 fields, {runs} runs, median {:.1} ms: {:.0} points/s, {:.1} MB/s ({} bytes/point)",
        secs * 1e3,
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes / n
    );
}

/// Fields a poll of the shipped model carries (a WPMsystem answers about 200 of
/// the map's registers), as in the prometheus_render bench.
const SHIPPED_FIELDS: usize = 200;

/// Decimals the `scale` transform rounds a field to: the map's, else its scale's.
fn decimals(f: &FieldMeta) -> i32 {
    match f.decimals {
        Some(d) => i32::from(d),
        None if f.scale > 0.0 && f.scale < 1.0 => (-f.scale.log10()).round() as i32,
        None => 0,
    }
}

/// A poll of the shipped model in round `round`: values vary by device, field and
/// round as measurements do; floats are n / 10^decimals, correctly rounded, as the
/// `scale` transform's rounding leaves them.
fn shipped_poll(schema: &Arc<Schema>, d: usize, round: usize) -> Event {
    let id = format!("hp{d:04}");
    let tags = common::pump_tags(&id, d, "Basement", &schema.model);
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + round as u64 * 10_000 + d as u64);
    let mut m = Metric::new(&id, Arc::new(tags), time, schema.clone());
    for (i, f) in schema.fields.iter().enumerate().take(SHIPPED_FIELDS) {
        let raw = ((d * 7919 + i * 104_729 + round * 31) % 1200) as i64 - 100;
        let v = match (f.value_type, &f.labels) {
            (_, Some(labels)) if !labels.is_empty() => {
                let codes: Vec<i64> = labels.keys().copied().collect();
                Value::Int(codes[(d + i + round) % codes.len()])
            }
            (ValueType::Float, _) => Value::Float(raw as f64 / 10f64.powi(decimals(f))),
            // The map's types are the registers'; scaled ones reach the sinks as floats.
            (ValueType::Int, _) if f.scale != 1.0 || f.offset != 0.0 => {
                Value::Float(raw as f64 / 10f64.powi(decimals(f)))
            }
            (ValueType::Int, _) => Value::Int(raw.abs() * 37),
            (ValueType::Bool, _) => Value::Bool((d + i + round).is_multiple_of(2)),
            (ValueType::Text, _) => Value::Text("x".into()),
        };
        m.fields.insert(f.name.clone(), v);
        if f.kind == FieldKind::State {
            m.since.insert(f.name.clone(), Some(time));
        }
    }
    Event::from(m)
}

fn shipped(full: bool) {
    let (devices, rounds, runs) = if full { (1_000, 10, 9) } else { (10, 1, 1) };
    let schema = common::shipped_schema();
    let events: Vec<Event> = (0..rounds)
        .flat_map(|r| (0..devices).map(move |d| (d, r)))
        .map(|(d, r)| shipped_poll(&schema, d, r))
        .collect();
    let n = events.len();
    let Event::Metric(first) = &events[0] else {
        unreachable!("polls are metrics")
    };
    let count = |p: fn(&Value, &FieldMeta) -> bool| {
        first
            .fields
            .iter()
            .filter(|(k, v)| first.meta(k).is_some_and(|f| p(v, f)))
            .count()
    };
    let labelled = count(|v, f| matches!(v, Value::Int(_)) && f.labels.as_ref().is_some_and(|l| !l.is_empty()));
    let floats = count(|v, _| matches!(v, Value::Float(_)));
    let ints = count(|v, _| matches!(v, Value::Int(_))) - labelled;
    let bools = count(|v, _| matches!(v, Value::Bool(_)));

    let encoder = Encoder::new("heatpump_metrics", "heatpump_state_changes", Precision::Ms);
    let mut out = Vec::with_capacity(n * 8192);
    println!(
        "line protocol, shipped map: {} fields a poll ({floats} floats, {ints} ints, {labelled} enum labels, \
         {bools} bools), median of {runs} runs",
        first.fields.len()
    );
    // Cold: each poll's maps come from memory, as in a long queue. Warm: the same
    // 100 polls (about 1 MB of maps, in cache) encoded over and over, as a poll
    // fresh from the transforms before it is.
    let warm = &events[..100.min(n)];
    let passes = n / warm.len();
    let cold = median(runs, || encode_all(&encoder, &events, &mut out));
    let hot = median(runs, || (0..passes).map(|_| encode_all(&encoder, warm, &mut out)).sum());
    for (name, (t, bytes)) in [("cold", cold), ("warm", hot)] {
        let per_poll = t.as_secs_f64() / n as f64;
        println!(
            "  {name}: {n} polls in {:.1} ms: {:.2} µs/poll, {:.1} ns/field, {:.1} MB/s ({} bytes/poll)",
            t.as_secs_f64() * 1e3,
            per_poll * 1e6,
            per_poll * 1e9 / first.fields.len() as f64,
            bytes as f64 / t.as_secs_f64() / 1e6,
            bytes / n
        );
    }

    // gzip of the same lines in batches of 100 polls, as the client compresses a request body.
    encode_all(&encoder, &events, &mut out);
    let mut ends = Vec::with_capacity(n);
    let mut lines = Vec::new();
    for e in &events {
        encoder.encode(e, &mut lines);
        ends.push(lines.len());
    }
    let batches: Vec<&[u8]> = ends
        .chunks(100)
        .scan(0, |start, chunk| {
            let end = *chunk.last().expect("chunks are not empty");
            let b = &lines[*start..end];
            *start = end;
            Some(b)
        })
        .collect();
    for (name, level) in [
        ("fast (the client's)", Compression::fast()),
        ("default", Compression::default()),
    ] {
        let (t, zbytes) = median(runs, || {
            batches
                .iter()
                .map(|b| {
                    let mut z = GzEncoder::new(Vec::with_capacity(b.len() / 4 + 64), level);
                    z.write_all(b).expect("writing into a Vec");
                    z.finish().expect("writing into a Vec").len()
                })
                .sum()
        });
        println!(
            "gzip {name}, batches of 100 polls: median {:.2} µs/poll, ratio {:.1}:1 ({} bytes/poll compressed)",
            t.as_secs_f64() / n as f64 * 1e6,
            lines.len() as f64 / zbytes as f64,
            zbytes / n
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let only = std::env::var("HPFLOW_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "synthetic" {
        synthetic(full);
    }
    if only.is_empty() || only == "shipped" {
        shipped(full);
    }
}
