//! `hpflow run` as a user runs it: the real binary against `hpflow simulate`,
//! stopped with SIGTERM. It must drain, flush and exit 0.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::process::{hpflow, simulator, terminate, wait_for, Killed};
use support::{shipped_registers, SCALED_STATES};

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole JSON lines only: the sink flushed before exit"))
        .collect()
}

#[test]
fn run_polls_the_simulator_and_sigterm_drains_flushes_and_exits_zero() {
    let (_sim, port) = simulator();
    let dir = tempfile::tempdir().unwrap();
    let registers = shipped_registers();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[sources.heatpumps]
type = "modbus_tcp"
registers = "{}"
interval = "200ms"
phase_spread = false

[[sources.heatpumps.devices]]
id = "hp1"
model = "stiebel_eltron_wpm"
host = "127.0.0.1"
port = {port}

{SCALED_STATES}
[sinks.archive]
type = "file"
inputs = ["states"]
path = "events.jsonl"
"#,
            registers.display()
        ),
    )
    .unwrap();

    let child = hpflow()
        .args(["--log-format", "json", "run"])
        .arg(&pipeline)
        .env_remove("HPFLOW_DATA_DIR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hpflow run starts");
    let mut run = Killed(child);
    let events = dir.path().join("events.jsonl");
    wait_for("three polls in the file sink", Duration::from_secs(30), || {
        lines(&events).len() >= 3
    });

    let code = terminate(&mut run.0, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code.code(), Some(0), "clean exit:\n{stderr}");
    for l in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("--log-format json: {e}: {l}"));
    }
    assert!(stderr.contains("Pipeline stopped cleanly"), "{stderr}");

    let all = lines(&events);
    let metrics: Vec<_> = all.iter().filter(|e| e["type"] == "metric").collect();
    assert!(metrics.len() >= 3);
    for m in &metrics {
        assert_eq!(m["device"], "hp1");
        assert!(
            m["fields"]["outside_temperature"].is_f64(),
            "scaled to a float: {}",
            m["fields"]
        );
        assert!(m["since"].is_object(), "state_diff stamped since");
    }
    // The state file was written on shutdown.
    assert!(dir.path().join("data/state_diff/states.json").exists());
}

#[test]
fn version_and_help_with_examples() {
    let out = hpflow().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hpflow "));
    for cmd in ["run", "validate", "simulate", "read", "scan"] {
        let out = hpflow().args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Example"),
            "{cmd} --help has an example:\n{text}"
        );
    }
}
