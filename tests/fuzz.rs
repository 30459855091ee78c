//! Property tests of hpflow's parsers and decoders on arbitrary input: each runs
//! thousands of generated cases (seeded, so a failure reproduces) and prints how
//! many; the property is that nothing panics and every answer is a value or a
//! clear error.
//!
//! Covered here: Modbus reply decoding through every shipped model's read plan
//! (arbitrary words, bits and lengths), register-map YAML, and pipeline TOML
//! with `${VAR}` interpolation (arbitrary text, and valid files cut and
//! mutated at random); in `fuzz/`, line-protocol encoding read back by an
//! independent parser and by a real InfluxDB 1.x (`line_protocol.rs`), and the
//! dashboard's forms and JSON bodies (`dashboard.rs`).

mod support;

#[path = "fuzz/dashboard.rs"]
mod dashboard;
#[path = "fuzz/line_protocol.rs"]
mod line_protocol;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use hpflow::config::{compile, load_str};
use hpflow::interpolate::interpolate;
use hpflow::registers::{PlanOptions, RawData, RegisterMap};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::shipped_registers;

const CASES: u32 = 3000;

fn runner() -> TestRunner {
    runner_with(CASES)
}

/// A seeded runner of `cases` cases, so that a failure reproduces.
fn runner_with(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    )
}

/// A valid text, cut at a random place and with a few bytes replaced.
fn mutated(valid: &'static str) -> impl Strategy<Value = String> {
    let len = valid.len();
    (0..=len, proptest::collection::vec((0..len.max(1), any::<char>()), 0..6)).prop_map(move |(cut, edits)| {
        let mut chars: Vec<char> = valid.chars().collect();
        for (at, c) in edits {
            if at < chars.len() {
                chars[at] = c;
            }
        }
        chars.truncate(cut.min(chars.len()));
        chars.into_iter().collect()
    })
}

#[test]
fn modbus_replies_of_any_words_and_length_decode_without_panicking() {
    let map = RegisterMap::load(shipped_registers()).unwrap();
    let seen = AtomicUsize::new(0);
    for model in map.models() {
        let plan = model.plan(&PlanOptions::default());
        let n = plan.requests().len();
        let reply = prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u16>(), 0..140).prop_map(|w| Some(RawData::Words(w))),
            proptest::collection::vec(any::<bool>(), 0..300).prop_map(|b| Some(RawData::Bits(b))),
        ];
        runner()
            .run(&proptest::collection::vec(reply, n..=n), |replies| {
                let fields = plan.decode(&replies);
                // Only the model's fields come out, and nothing without a reply.
                for name in fields.keys() {
                    prop_assert!(model.schema().field(name).is_some(), "unknown field {name}");
                }
                if replies.iter().all(Option::is_none) {
                    prop_assert!(fields.is_empty());
                }
                seen.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
    }
    eprintln!(
        "modbus decode: {} cases over {} models",
        seen.load(Ordering::Relaxed),
        map.models().count()
    );
    assert!(seen.load(Ordering::Relaxed) >= CASES as usize);
}

const MAP: &str = r#"models:
  m:
    not_available: [0x8000]
    registers:
      - {name: t, address: 1, register_type: input, data_type: int16, scale: 0.1, unit: celsius}
      - name: total
        parts: [{address: 10, factor: 1}, {address: 11, factor: 1000}]
        register_type: input
        kind: counter
      - name: mode
        address: 20
        register_type: holding
        enum_values: {1: "Standby", 3: "Comfort"}
      - name: status
        address: 30
        register_type: input
        unit: bitmap
        bitmap_fields: {0: "pump", 6: "compressor_running"}
      - {name: text, address: 40, data_type: string, length: 4, register_type: input}
"#;

#[test]
fn register_maps_of_any_text_load_or_fail_with_a_message() {
    assert!(RegisterMap::parse("m.yml", MAP).is_ok(), "the seed map is valid");
    let seen = AtomicUsize::new(0);
    let text = prop_oneof![mutated(MAP), ".{0,400}", "[a-z_:{}\\[\\], 0-9\\n\"-]{0,300}"];
    runner()
        .run(&text, |t| {
            if let Err(diags) = RegisterMap::parse("m.yml", &t) {
                prop_assert!(!diags.is_empty(), "an error comes with a diagnostic");
                for d in &diags {
                    prop_assert!(!d.to_string().is_empty());
                }
            }
            seen.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    eprintln!("register maps: {} cases", seen.load(Ordering::Relaxed));
}

const PIPELINE: &str = r#"data_dir = "${DATA:-state}"

[sources.s]
type = "modbus_tcp"
registers = "m.yml"
interval = "${INTERVAL:-10s}"

[[sources.s.devices]]
id = "hp1"
host = "127.0.0.1"
model = "m"

[transforms.scaled]
type = "scale"
inputs = ["s"]

[transforms.efficiency]
type = "efficiency"
inputs = ["scaled"]

[sinks.out]
type = "console"
inputs = ["efficiency"]
"#;

#[test]
fn pipelines_of_any_text_and_interpolation_load_or_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yml"), MAP).unwrap();
    let path = dir.path().join("pipeline.toml");
    let env = |k: &str| (k == "INTERVAL").then(|| "5s".to_string());
    let seen = AtomicUsize::new(0);
    let text = prop_oneof![mutated(PIPELINE), ".{0,300}", "[\\[\\]a-z_.=\"${}:\\- \\n0-9]{0,300}"];
    runner()
        .run(&text, |t| {
            match load_str(&path, &t, &env) {
                Ok((file, diags)) => {
                    let _ = compile(file, diags);
                }
                Err(diags) => prop_assert!(diags.has_errors(), "a refusal names an error"),
            }
            seen.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let interpolated = AtomicUsize::new(0);
    runner()
        .run(&"[a-z${}:\\-_ ]{0,60}", |t| {
            match interpolate(&t, &env) {
                Ok(out) => {
                    let unresolved = "${INTERVAL}";
                    prop_assert!(!out.contains(unresolved));
                }
                Err(e) => prop_assert!(!e.is_empty()),
            }
            interpolated.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "pipelines: {} cases; interpolation: {} cases",
        seen.load(Ordering::Relaxed),
        interpolated.load(Ordering::Relaxed)
    );
    assert!(Path::new(&path).parent().is_some());
}
