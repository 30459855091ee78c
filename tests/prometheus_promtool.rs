//! The `/metrics` exposition of every field of the shipped register map passes
//! `promtool check metrics` (Debian package `prometheus`). Missing promtool is a
//! failure, never a skip.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hpflow::event::{Event, Metric, Tags, Value, ValueType};
use hpflow::registers::RegisterMap;
use hpflow::sinks::prometheus::{Exporter, Format};
use hpflow::telemetry::Registry;
use support::prometheus::promtool_check;
use support::shipped_registers;

/// An exporter holding one poll of every numeric field of every shipped model,
/// for a few devices with awkward tags.
fn exporter(base_units: bool) -> Exporter {
    let map = RegisterMap::load(shipped_registers()).expect("the shipped register map loads");
    let registry = Arc::new(Registry::default());
    let c = registry.component("heatpumps", "source", "modbus_tcp");
    c.sent(10);
    c.error();
    registry.component("metrics", "sink", "prometheus").received(10);
    let now = SystemTime::now();
    let ex = Exporter::new(
        "heatpump",
        Duration::from_secs(300),
        Arc::new(move || now),
        Some(registry),
    )
    .with_base_units(base_units);
    for (i, model) in map.models().enumerate() {
        let schema = model.schema();
        for d in 0..3 {
            let id = format!("hp{i}-{d}");
            let mut tags: Tags = Tags::new();
            tags.insert("heat_pump_id".into(), id.clone());
            tags.insert("name".into(), format!("Pump \"{d}\" \\ second\nline"));
            tags.insert("location".into(), "Keller".into());
            tags.insert("model".into(), schema.model.clone());
            tags.insert("site.zone".into(), "north".into());
            let mut m = Metric::new(&id, Arc::new(tags), now, schema.clone());
            for (n, f) in schema.fields.iter().enumerate() {
                let value = match (f.value_type, &f.labels) {
                    (ValueType::Text, _) => Value::Text("x".into()),
                    (_, Some(labels)) if !labels.is_empty() => {
                        Value::Int(*labels.keys().nth(d % labels.len()).unwrap_or(&0))
                    }
                    (ValueType::Bool, _) => Value::Bool(n % 2 == 0),
                    (ValueType::Int, _) => Value::Int(n as i64 * 7 - 20),
                    (ValueType::Float, _) => Value::Float(n as f64 / 8.0 - 3.0),
                };
                m.fields.insert(f.name.clone(), value);
                if f.labels.is_some() || f.value_type == ValueType::Bool {
                    m.since.insert(
                        f.name.clone(),
                        Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)),
                    );
                }
            }
            ex.update(&Event::from(m));
        }
    }
    ex
}

#[test]
fn metrics_in_base_units_pass_promtool_check_metrics() {
    let text = exporter(true).render(Format::Text);
    assert!(text.lines().count() > 500, "the map should yield many series:\n{text}");
    assert!(
        text.contains("# TYPE heatpump_outside_temperature_celsius gauge"),
        "{text}"
    );
    let (ok, report) = promtool_check(&text);
    assert!(
        ok,
        "promtool check metrics found problems:\n{report}\n--- exposition ---\n{text}"
    );
}

/// In register units (the default) the exposition parses, and promtool's only
/// remark is its naming lint against `hours` (in `_hours` and `_kilowatt_hours`):
/// the units are kept on purpose, so values match the heat pump's display.
#[test]
fn metrics_in_register_units_parse_and_only_hours_are_linted() {
    let text = exporter(false).render(Format::Text);
    assert!(
        text.contains("# TYPE heatpump_outside_temperature_celsius gauge"),
        "{text}"
    );
    assert!(text.contains("_kilowatt_hours_total{"), "{text}");
    let (_, report) = promtool_check(&text);
    let other: Vec<&str> = report
        .lines()
        .filter(|l| {
            let hours_lint = l.ends_with(r#"use base unit "seconds" instead of "hours""#)
                && l.split_whitespace().next().is_some_and(|name| name.contains("_hours"));
            !hours_lint && !l.trim().is_empty()
        })
        .collect();
    assert!(
        other.is_empty(),
        "promtool check metrics found problems:\n{}\n--- exposition ---\n{text}",
        other.join("\n")
    );
}

#[test]
fn promtool_rejects_a_broken_exposition() {
    // Guards the check above: promtool must actually be judging its input.
    let (ok, report) = promtool_check("# TYPE x gauge\nx{a=\"unterminated} 1\n");
    assert!(!ok, "promtool accepted a broken exposition: {report}");
}
