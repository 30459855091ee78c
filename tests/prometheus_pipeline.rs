//! The `prometheus` sink in a real pipeline: the documented sample config loads,
//! claims are enforced, a port in use fails the build naming the component, and
//! a running pipeline serves its scaled polls and stops cleanly.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use hpflow::component::{BoxError, Source, SourceContext};
use hpflow::event::{Event, Metric, Schema, Tags, Value};
use hpflow::telemetry::Registry;
use support::{free_port, hp1_pipeline as pipeline, wpm_schema};

/// The ```toml block of the sink's module documentation.
fn documented_sample() -> String {
    let doc = include_str!("../src/sinks/prometheus/mod.rs");
    let lines: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| *l != "```toml")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert!(!lines.is_empty(), "the module documents a sample config");
    lines.join("\n") + "\n"
}

/// The diagnostics of a pipeline that must not load.
fn load_error(path: &Path, why: &str) -> String {
    match hpflow::config::load_pipeline(path) {
        Ok(_) => panic!("{why}, but the pipeline loaded"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn the_documented_sample_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let sample = documented_sample().replace("127.0.0.1:9464", &format!("127.0.0.1:{}", free_port()));
    let path = pipeline(dir.path(), &sample);
    if let Err(d) = hpflow::config::load_pipeline(&path) {
        panic!("the documented sample is valid:\n{d}\n{sample}");
    }
}

#[test]
fn two_components_cannot_claim_one_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        r#"
[sinks.a]
type = "prometheus"
inputs = ["states"]

[sinks.b]
type = "prometheus"
inputs = ["states"]
address = "127.0.0.1:9464"
"#,
    );
    let err = load_error(&path, "a shared port is an error");
    assert!(err.contains("127.0.0.1:9464"), "{err}");
}

#[test]
fn listeners_on_port_zero_take_a_free_port_each_and_do_not_clash() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        r#"
[sinks.a]
type = "prometheus"
inputs = ["states"]
address = "127.0.0.1:0"

[sinks.b]
type = "prometheus"
inputs = ["states"]
address = "127.0.0.1:0"
"#,
    );
    if let Err(d) = hpflow::config::load_pipeline(&path) {
        panic!("two listeners on port 0 are valid:\n{d}");
    }
}

#[test]
fn bad_settings_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        r#"
[sinks.metrics]
type = "prometheus"
inputs = ["states"]
address = "localhost:80:80"
namespace = "heat-pump"
expire_after = "0s"
"#,
    );
    let err = load_error(&path, "the settings are invalid");
    for needle in ["localhost:80:80", "heat-pump", "expire_after"] {
        assert!(err.contains(needle), "{needle} missing in:\n{err}");
    }
}

#[test]
fn an_address_in_use_fails_the_build_naming_address_and_component() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        &format!("[sinks.metrics]\ntype = \"prometheus\"\ninputs = [\"states\"]\naddress = \"{addr}\"\n"),
    );
    let (checked, _) = hpflow::config::load_pipeline(&path).unwrap_or_else(|d| panic!("valid pipeline:\n{d}"));
    let err = match hpflow::topology::build(&checked, Arc::new(Registry::default())) {
        Ok(_) => panic!("building must fail while {addr} is taken"),
        Err(d) => d.to_string(),
    };
    assert!(err.contains(&addr.to_string()), "{err}");
    assert!(err.contains("metrics"), "{err}");
    assert!(err.contains("in use"), "{err}");
}

/// Emits raw polls of hp1, then waits for shutdown (so the endpoint stays up).
struct Scripted {
    schema: Arc<Schema>,
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
        for (raw, running) in [(3, false), (-65, true)] {
            let mut m = Metric::new("hp1", tags.clone(), SystemTime::now(), self.schema.clone());
            m.fields.insert("outside_temperature".into(), Value::Int(raw));
            m.fields.insert("compressor_running".into(), Value::Bool(running));
            cx.out.send(Event::from(m)).await;
        }
        cx.shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_serves_scaled_polls_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = pipeline(
        dir.path(),
        &format!("[sinks.metrics]\ntype = \"prometheus\"\ninputs = [\"states\"]\naddress = \"127.0.0.1:{port}\"\n"),
    );
    let (checked, _) = hpflow::config::load_pipeline(&path).unwrap_or_else(|d| panic!("valid pipeline:\n{d}"));
    let mut pieces = hpflow::topology::build(&checked, Arc::new(Registry::default()))
        .unwrap_or_else(|d| panic!("the pipeline builds:\n{d}"));
    assert!(pieces.replace_source("heatpumps", Box::new(Scripted { schema: wpm_schema() })));
    let running = pieces.start();

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let labels = r#"heat_pump_id="hp1",model="stiebel_eltron_wpm",name="Heat Pump 1""#;
    let want = format!("heatpump_outside_temperature_celsius{{{labels}}} -6.5");
    let body = loop {
        let body = match http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.lines().any(|l| l == want) || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let has = |line: &str| body.lines().any(|l| l == line);
    assert!(has(&want), "missing {want} in:\n{body}");
    assert!(has(&format!("heatpump_compressor_running{{{labels}}} 1")), "{body}");
    assert!(has(&format!("heatpump_up{{{labels}}} 1")), "{body}");
    assert!(
        body.lines().any(|l| l.starts_with(&format!(
            "heatpump_state_since_seconds{{{labels},field=\"compressor_running\"}} "
        ))),
        "{body}"
    );
    // Two polls and the state change between them.
    assert!(
        has(
            r#"hpflow_component_events_in_total{component_id="metrics",component_kind="sink",component_type="prometheus"} 3"#
        ),
        "{body}"
    );

    let clean = tokio::time::timeout(Duration::from_secs(15), running.stop())
        .await
        .expect("stops in time");
    assert!(clean, "the pipeline stops cleanly");
    assert!(
        http.get(&url).send().await.is_err(),
        "the endpoint is closed after shutdown"
    );
}
