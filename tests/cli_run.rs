//! `hpflow run` as a user runs it: the real binary against `hpflow simulate`,
//! stopped with SIGTERM. It must drain, flush and exit 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hpflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hpflow"))
}

/// Starts the simulator on a free port and returns it with the port.
fn simulator() -> (Killed, u16) {
    let mut child = hpflow()
        .args(["simulate", "--listen", "127.0.0.1:0", "--devices", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hpflow simulate starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("simulate prints its address: {line:?}"));
    (Killed(child), port)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    let registers = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
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

[transforms.scaled]
type = "scale"
inputs = ["heatpumps"]

[transforms.states]
type = "state_diff"
inputs = ["scaled"]

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

    let status = Command::new("kill")
        .args(["-TERM", &run.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let code = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "hpflow did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
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
