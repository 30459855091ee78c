//! Line-protocol encoding throughput of the `influxdb` sink.
//!
//! `cargo bench --bench line_protocol` encodes realistic polls (4 tags, 40 fields
//! of mixed types) and prints points/s and MB/s, the median of several runs.
//! Under `cargo test --all-targets` it runs once on a few points as a smoke test.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hpflow::event::{Event, Metric, Schema, Value};
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

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, runs) = if full { (100_000, 9) } else { (100, 1) };
    let events = polls(n);
    let encoder = Encoder::new("heatpump_metrics", "heatpump_state_changes", Precision::Ms);
    let mut out = Vec::with_capacity(n * 1024);
    let mut samples = Vec::new();
    for _ in 0..runs {
        out.clear();
        let start = Instant::now();
        for e in &events {
            encoder.encode(black_box(e), &mut out);
        }
        samples.push((start.elapsed(), out.len()));
        black_box(&out);
    }
    samples.sort_by_key(|s| s.0);
    let (t, bytes) = samples[samples.len() / 2];
    let secs = t.as_secs_f64();
    println!(
        "line protocol: {n} points × 40 fields, {runs} runs, median {:.1} ms: {:.0} points/s, {:.1} MB/s ({} bytes/point)",
        secs * 1e3,
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes / n
    );
}
