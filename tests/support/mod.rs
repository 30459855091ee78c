//! The integration tests' plumbing, one module for all of them: each test says
//! `mod support;` and uses what it needs. Cargo builds only the files directly
//! in `tests/` as tests, so this folder is no test of its own.
//!
//! The starters run real programs and fail the test, naming the Debian package
//! to install, when the program is missing: they never skip. Servers listen on
//! free loopback ports.

// Each test binary uses only part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hpflow::event::Schema;
use hpflow::registers::RegisterMap;

/// Headless Chromium (`chromium`) driven over the DevTools protocol.
pub mod chromium;
/// A dashboard fed with hours of polls, without a pipeline.
pub mod dashboard;
/// The Grafana dashboards' queries as Grafana sends them.
pub mod grafana;
/// Home Assistant's rules for MQTT discovery configs.
pub mod ha;
/// A real InfluxDB 1.x (`influxd`).
pub mod influxd;
/// In-process Modbus devices and a harness that runs a source alone.
pub mod modbus;
/// A real MQTT broker (`mosquitto`) and its command-line clients.
pub mod mosquitto;
/// Loopback helpers: a free port, a plain HTTP GET.
pub mod net;
/// The real `hpflow` binary and `hpflow simulate` as processes.
pub mod process;
/// A real Prometheus, and `promtool check metrics` (`prometheus`).
pub mod prometheus;
/// A pair of pseudo-terminals joined by `socat`.
pub mod socat;
/// A real VictoriaMetrics (`victoria-metrics`).
pub mod victoria;

#[allow(unused_imports)]
pub use net::{encode, free_port, http_get, http_get_any, http_post};

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped register map, `config/registers.yml`.
pub fn shipped_registers() -> PathBuf {
    repo().join("config/registers.yml")
}

/// The shipped pipelines' folder, `pipelines/`.
pub fn shipped_pipelines() -> PathBuf {
    repo().join("pipelines")
}

/// The schema of the shipped Stiebel Eltron WPM model.
pub fn wpm_schema() -> Arc<Schema> {
    let map = RegisterMap::load(shipped_registers()).expect("the shipped register map loads");
    map.model("stiebel_eltron_wpm")
        .expect("the shipped map has the WPM model")
        .schema()
        .clone()
}

/// The transforms most test pipelines send their polls through, as TOML:
/// `scale` of the source `heatpumps` as `scaled`, then `state_diff` as
/// `states`. It ends in the `[transforms.states]` table, so settings of the
/// `state_diff` may follow it.
pub const SCALED_STATES: &str = r#"[transforms.scaled]
type = "scale"
inputs = ["heatpumps"]

[transforms.states]
type = "state_diff"
inputs = ["scaled"]
"#;

/// A pipeline file in `dir` whose `modbus_tcp` source `heatpumps` (one WPM,
/// `hp1`, on the shipped map) a test replaces with a scripted one: its polls go
/// through `scale` (`scaled`) and `state_diff` of `compressor_running`
/// (`states`), then into what `rest` adds (the test's sinks).
pub fn hp1_pipeline(dir: &Path, rest: &str) -> PathBuf {
    let text = format!(
        r#"
data_dir = "state"

[sources.heatpumps]
type = "modbus_tcp"
registers = "{registers}"

[[sources.heatpumps.devices]]
id = "hp1"
host = "127.0.0.1"
model = "stiebel_eltron_wpm"

{SCALED_STATES}fields = ["compressor_running"]
{rest}"#,
        registers = shipped_registers().display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}
