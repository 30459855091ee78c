//! The InfluxDB sink's promise at process level: InfluxDB (a real `influxd` 1.x,
//! Debian package `influxdb`) stopped for many polls, `hpflow run` killed with
//! SIGKILL and started again during the outage, InfluxDB back: every polled point
//! arrives, once, in order. The file sink of the same pipeline is the ground truth.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::influxd::Influxd;
use support::process::{hpflow, signal, simulator, wait_for, Killed};
use support::{free_port, http_get, shipped_registers};

/// (time in ms, outside_temperature) of hp1, in the order InfluxDB returns them.
fn points(influxd: &Influxd) -> Vec<(i64, f64)> {
    let j = influxd.query(
        "outage",
        "SELECT outside_temperature FROM heatpump_metrics WHERE heat_pump_id='hp1'",
    );
    let rows = j["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    rows.iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_f64().unwrap()))
        .collect()
}

fn run(pipeline: &Path, log: &Path) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    let child = hpflow()
        .args(["--log-format", "json", "run"])
        .arg(pipeline)
        .env_remove("HPFLOW_DATA_DIR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("hpflow run starts");
    Killed(child)
}

/// (time in ms, outside_temperature) of hp1's metric events in the file sink.
fn polled(path: &Path) -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Json>(l).expect("whole JSON lines: the file sink writes each batch at once"))
        .filter(|e| e["type"] == "metric" && e["device"] == "hp1")
        .map(|e| {
            let t: jiff::Timestamp = e["time"].as_str().unwrap().parse().unwrap();
            (t.as_millisecond(), e["fields"]["outside_temperature"].as_f64().unwrap())
        })
        .collect()
}

/// `hpflow_influxdb_points_written_total` of the running hpflow.
fn points_written(port: u16) -> u64 {
    let body = http_get(port, "/metrics").expect("the prometheus sink answers");
    let line = body
        .lines()
        .find(|l| l.starts_with("hpflow_influxdb_points_written_total{"));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no points written in:\n{body}"))
}

/// How long the simulator is frozen before the polls are counted: past the
/// pipeline's 1 s request timeout, since a poll the freeze cut short still
/// delivers the values it read once its request times out.
const FREEZE: Duration = Duration::from_millis(1500);

#[test]
fn influxdb_outage_with_a_sigkill_delivers_every_polled_point_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut influxd = Influxd::start(&dir.path().join("influxd"));
    influxd.query("outage", "CREATE DATABASE outage");
    let (sim, modbus_port) = simulator();
    let prom_port = free_port();
    let pipeline = dir.path().join("pipeline.toml");
    let registers = shipped_registers();
    std::fs::write(
        &pipeline,
        format!(
            r#"
[sources.heatpumps]
type = "modbus_tcp"
registers = "{registers}"
interval = "200ms"
timeout = "1s"
phase_spread = false

[[sources.heatpumps.devices]]
id = "hp1"
model = "stiebel_eltron_wpm"
host = "127.0.0.1"
port = {modbus_port}

[transforms.scaled]
type = "scale"
inputs = ["heatpumps"]

[sinks.db]
type = "influxdb"
inputs = ["scaled"]
endpoint = "http://127.0.0.1:{influx_port}"
database = "outage"
batch_timeout = "200ms"
retry_initial = "100ms"
retry_max = "500ms"

[sinks.db.buffer]
sync_interval = "200ms"

[sinks.truth]
type = "file"
inputs = ["scaled"]
path = "polled.jsonl"

[sinks.metrics]
type = "prometheus"
inputs = ["scaled"]
address = "127.0.0.1:{prom_port}"
"#,
            registers = registers.display(),
            influx_port = influxd.port,
        ),
    )
    .unwrap();
    let truth = dir.path().join("polled.jsonl");
    let long = Duration::from_secs(15);

    // A few points arrive, then InfluxDB goes away for ~15 polls.
    let mut first = run(&pipeline, &dir.path().join("run1.log"));
    wait_for("3 points in InfluxDB", long, || points(&influxd).len() >= 3);
    influxd.stop();
    let outage_from = polled(&truth).len();
    wait_for("15 polls during the outage", long, || {
        polled(&truth).len() >= outage_from + 15
    });

    // Freeze the simulator so that no poll is half-way through the pipeline, wait
    // past sync_interval (and past the request timeout: a poll cut short by it still
    // sends what it read), and kill hpflow hard mid-outage.
    signal(&sim.0, "STOP");
    std::thread::sleep(FREEZE);
    let written_first = points_written(prom_port);
    let before_kill = polled(&truth).len();
    signal(&first.0, "KILL");
    let _ = first.0.wait();
    signal(&sim.0, "CONT");

    // Started again on the same data folder, still during the outage.
    let mut second = run(&pipeline, &dir.path().join("run2.log"));
    wait_for("5 polls by the restarted hpflow", long, || {
        polled(&truth).len() >= before_kill + 5
    });
    let outage_to = polled(&truth).len();
    influxd.restart();

    // Freeze the polls again and wait until everything polled has arrived.
    signal(&sim.0, "STOP");
    std::thread::sleep(FREEZE);
    let expected = polled(&truth);
    wait_for("every polled point in InfluxDB", long, || {
        points(&influxd).len() >= expected.len()
    });
    std::thread::sleep(Duration::from_millis(500)); // any extra point, were one sent, would show now
    let written_second = points_written(prom_port);
    signal(&second.0, "TERM");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = second.0.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < long, "hpflow did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log2 = std::fs::read_to_string(dir.path().join("run2.log")).unwrap();
    assert_eq!(status.code(), Some(0), "clean exit:\n{log2}");

    // Ground truth: every poll once, in time order.
    assert!(
        expected.windows(2).all(|w| w[0].0 < w[1].0),
        "polls strictly in time order: {expected:?}"
    );
    let arrived = points(&influxd);
    assert_eq!(
        arrived, expected,
        "InfluxDB holds exactly the polled points, values included"
    );
    assert!(
        outage_to - outage_from >= 20,
        "polled during the outage: {}",
        outage_to - outage_from
    );
    // InfluxDB overwrites a point with the same series and time, so a duplicate is
    // invisible there: the sink's own counters show each point was written once.
    assert_eq!(
        written_first + written_second,
        expected.len() as u64,
        "points written by the first ({written_first}) and second run"
    );
    // The restarted run found the first run's outage points in its disk buffer.
    let replayed: u64 = log2
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .find(|e| e["message"] == "InfluxDB buffer holds points from an earlier run; sending them first")
        .and_then(|e| e["points"].as_u64())
        .unwrap_or_else(|| panic!("the second run replays the buffer:\n{log2}"));
    assert!(
        replayed >= (before_kill - outage_from) as u64,
        "{replayed} buffered points, {} polled during the first run's outage",
        before_kill - outage_from
    );
}
