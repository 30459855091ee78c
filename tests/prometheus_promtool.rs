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

/// Arbitrary tag values and tag and field names (unicode, quotes, backslashes,
/// newlines, names starting with digits or `__`): every exposition promtool
/// parses, in both formats' escaping. Seeded; the number of cases is printed.
#[test]
fn arbitrary_names_and_label_values_render_what_promtool_accepts() {
    use hpflow::event::{FieldMeta, Schema};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    const CASES: u32 = 300;
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let name = "[a-zA-Z0-9_ .:\\-éß\"\\\\]{1,16}";
    let value = prop_oneof![".{0,24}", "[\"\\\\\\n{}=,]{0,8}"];
    let case = (
        proptest::collection::vec((name, value), 1..5),
        proptest::collection::vec(name, 1..5),
        any::<f64>(),
    );
    let checked = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&case, |(tags, fields, x)| {
            let now = SystemTime::now();
            let ex = Exporter::new("heatpump", Duration::from_secs(300), Arc::new(move || now), None);
            let metas: Vec<FieldMeta> = fields
                .iter()
                .enumerate()
                .map(|(i, f)| FieldMeta::gauge(&format!("{f}{i}"), ValueType::Float))
                .collect();
            let schema = Arc::new(Schema::new("m", metas));
            let mut t: Tags = Tags::new();
            for (k, v) in &tags {
                t.insert(k.clone(), v.clone());
            }
            t.insert("heat_pump_id".into(), "hp1".into());
            let mut m = Metric::new("hp1", Arc::new(t), now, schema.clone());
            for f in &schema.fields {
                m.fields.insert(f.name.clone(), Value::Float(x));
            }
            ex.update(&Event::from(m));
            let text = ex.render(Format::Text);
            let (ok, report) = promtool_check(&text);
            // promtool's lints (not errors) are about naming style, not syntax.
            let broken = report.lines().any(|l| l.contains("error") || l.contains("parse"));
            prop_assert!(ok || !broken, "promtool refused:\n{report}\n---\n{text}");
            checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let checked = checked.into_inner();
    eprintln!("prometheus rendering: {checked} cases accepted by promtool");
    assert_eq!(checked, CASES);
}
