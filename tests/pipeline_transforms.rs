//! Transforms run through the real topology: a pipeline file is loaded,
//! compiled and built as `hpflow run` does, its Modbus source is swapped for a
//! scripted one that emits raw polls of the shipped Stiebel Eltron model, and
//! a `file` sink records what leaves the pipeline.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hpflow::component::{BoxError, Source, SourceContext};
use hpflow::event::{Event, Metric, Schema, Tags, Value};
use hpflow::telemetry::Registry;
use serde_json::Value as Json;
use support::{hp1_pipeline, wpm_schema};

/// A recent whole second: state older than `state_diff`'s `expire_after` is
/// forgotten on load, so the polls must look current.
fn base() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 3600
}

fn at(secs: u64) -> String {
    hpflow::event::rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

/// One raw poll: (seconds after the epoch, outside_temperature raw, low_pressure raw, compressor running).
type Poll = (u64, i64, i64, bool);

/// Emits the given polls of device hp1, then ends (which drains the pipeline).
struct Scripted {
    schema: Arc<Schema>,
    polls: Vec<Poll>,
}

#[async_trait]
impl Source for Scripted {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), BoxError> {
        let tags: Tags = [
            ("heat_pump_id", "hp1"),
            ("name", "Heat Pump 1"),
            ("model", "stiebel_eltron_wpm"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let tags = Arc::new(tags);
        for (secs, outside, low_pressure, compressor) in self.polls {
            let mut m = Metric::new(
                "hp1",
                tags.clone(),
                UNIX_EPOCH + Duration::from_secs(secs),
                self.schema.clone(),
            );
            m.fields.insert("outside_temperature".into(), Value::Int(outside));
            m.fields.insert("low_pressure".into(), Value::Int(low_pressure));
            m.fields.insert("compressor_running".into(), Value::Bool(compressor));
            cx.out.send(Event::from(m)).await;
        }
        Ok(())
    }
}

/// [`hp1_pipeline`] with `extra` transforms (a `rename` as `renamed`) and a
/// `file` sink of the last one into `events.jsonl`.
fn pipeline(dir: &Path, extra: &str) -> PathBuf {
    let rest = format!(
        r#"{extra}
[sinks.archive]
type = "file"
inputs = ["{last}"]
path = "events.jsonl"
"#,
        last = if extra.is_empty() { "states" } else { "renamed" },
    );
    hp1_pipeline(dir, &rest)
}

/// Loads, compiles, builds and runs the pipeline with the scripted polls until it drains.
async fn run(path: &Path, polls: Vec<Poll>) -> Vec<Json> {
    let (checked, _warnings) = hpflow::config::load_pipeline(path).unwrap_or_else(|d| panic!("valid pipeline:\n{d}"));
    let mut pieces = hpflow::topology::build(&checked, Arc::new(Registry::default())).expect("builds");
    assert!(pieces.replace_source(
        "heatpumps",
        Box::new(Scripted {
            schema: wpm_schema(),
            polls
        })
    ));
    tokio::time::timeout(Duration::from_secs(20), pieces.start().wait())
        .await
        .expect("pipeline drains");
    let text = std::fs::read_to_string(path.parent().unwrap().join("events.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn metrics(events: &[Json]) -> Vec<&Json> {
    events.iter().filter(|e| e["type"] == "metric").collect()
}

fn changes(events: &[Json]) -> Vec<&Json> {
    events.iter().filter(|e| e["type"] == "state_change").collect()
}

#[tokio::test]
async fn scale_rounds_to_register_precision_and_keeps_field_types_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(dir.path(), "");
    // raw 3 × 0.1 is 0.30000000000000004 in floating point; 200 × 0.1 is a whole number.
    let events = run(
        &path,
        vec![(100, 3, 1035, false), (110, 200, 1000, false), (120, -65, 999, false)],
    )
    .await;
    let m = metrics(&events);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0]["fields"]["outside_temperature"].to_string(), "0.3");
    assert_eq!(m[0]["fields"]["low_pressure"].to_string(), "10.35");
    // 20.0 stays a float (InfluxDB would reject an integer after a float).
    assert_eq!(m[1]["fields"]["outside_temperature"].to_string(), "20.0");
    assert_eq!(m[1]["fields"]["low_pressure"].to_string(), "10.0");
    assert_eq!(m[2]["fields"]["outside_temperature"].to_string(), "-6.5");
    assert_eq!(m[2]["fields"]["low_pressure"].to_string(), "9.99");
    for e in &m {
        assert!(e["fields"]["compressor_running"].is_boolean(), "bools are never scaled");
    }
}

#[tokio::test]
async fn state_diff_flips_with_unknown_since_on_first_sight_and_since_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(dir.path(), "");

    let t = base();
    let first = run(
        &path,
        vec![(t, 50, 1000, false), (t + 10, 50, 1000, true), (t + 20, 50, 1000, true)],
    )
    .await;
    let m = metrics(&first);
    assert_eq!(m.len(), 3);
    assert!(
        m[0]["since"]["compressor_running"].is_null(),
        "first sight: since unknown, never now"
    );
    assert_eq!(m[1]["since"]["compressor_running"], at(t + 10));
    assert_eq!(m[2]["since"]["compressor_running"], at(t + 10));
    let c = changes(&first);
    assert_eq!(c.len(), 1, "one flip, one state change: {c:?}");
    assert_eq!(c[0]["field"], "compressor_running");
    assert_eq!(c[0]["from"], false);
    assert_eq!(c[0]["to"], true);
    assert_eq!(c[0]["at"], at(t + 10));
    assert!(
        c[0]["from_since"].is_null(),
        "the state that ended began before hpflow saw it"
    );

    // A new process on the same data_dir: the flip is remembered, nothing flips again.
    std::fs::remove_file(dir.path().join("events.jsonl")).unwrap();
    let second = run(&path, vec![(t + 1000, 50, 1000, true), (t + 1010, 50, 1000, false)]).await;
    let m = metrics(&second);
    assert_eq!(
        m[0]["since"]["compressor_running"],
        at(t + 10),
        "since survived the restart"
    );
    let c = changes(&second);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["from"], true);
    assert_eq!(c[0]["from_since"], at(t + 10));
    assert_eq!(m[1]["since"]["compressor_running"], at(t + 1010));
}

#[tokio::test]
async fn rename_applies_to_fields_since_and_state_changes_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
[transforms.renamed]
type = "rename"
inputs = ["states"]
fields = { compressor_running = "compressor", outside_temperature = "outdoor_temperature" }
tags = { heat_pump_id = "pump" }
"#;
    let path = pipeline(dir.path(), extra);
    let t = base();
    let events = run(&path, vec![(t, 12, 1000, false), (t + 10, 12, 1000, true)]).await;
    let m = metrics(&events);
    assert_eq!(m[0]["fields"]["outdoor_temperature"].to_string(), "1.2");
    assert!(m[0]["fields"].get("outside_temperature").is_none());
    assert_eq!(m[1]["fields"]["compressor"], true);
    assert_eq!(m[1]["since"]["compressor"], at(t + 10));
    assert_eq!(m[1]["tags"]["pump"], "hp1");
    assert!(m[1]["tags"].get("heat_pump_id").is_none());
    let c = changes(&events);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["field"], "compressor");
}
