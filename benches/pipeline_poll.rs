//! The shipped pipeline end to end: `hpflow run pipelines/heatpump.toml`, the
//! release binary as users run it, polling simulated heat pumps and delivering
//! to a real VictoriaMetrics (InfluxDB v2 write API), the Prometheus endpoint
//! (scraped every 15 s, as a Prometheus would) and the dashboard.
//!
//! `cargo build --release --bin hpflow && cargo bench --bench pipeline_poll`.
//! Environment:
//! - `HPFLOW_BENCH_DEVICES` (1000), `HPFLOW_BENCH_INTERVAL` (10s),
//!   `HPFLOW_BENCH_SECS` (120, the measured window, after the warm-up);
//! - `HPFLOW_BENCH_MAP`: `full` (the shipped map, about 200 fields) or
//!   `hpmanager` (HPManager's own map, tests/fixtures/hpmanager-config);
//! - `HPFLOW_BIN` overrides the path of the `hpflow` binary;
//! - `HPFLOW_BENCH_COMPONENT_CPU=0` runs hpflow without the per-component
//!   metering, to see what the metering itself costs.
//! - `HPFLOW_BENCH_UNSPREAD=1` starts every device at once (`phase_spread =
//!   false`) in the measured run, to compare with the slotted start phases.
//! - `HPFLOW_BENCH_ONLY=startup` (or `idle`, or `startup,idle`) runs only those
//!   short parts, without the simulators and the measured window: startup in
//!   seconds and without VictoriaMetrics (nothing is written before the first
//!   request), idle with it.
//!
//! hpflow runs with `HPFLOW_COMPONENT_CPU=1`, so its `/metrics` carries the
//! thread CPU time of each component's tasks. Prints, over the window: CPU per
//! device-poll for the whole process (from /proc) and split by component,
//! requests per poll, polls on time, what reached the database, peak RSS, and
//! the scrape's size and time. Then two short runs: startup (exec to the first
//! Modbus request a device receives, median of 9) and CPU while no device is
//! due. Under `cargo test --all-targets` it runs 3 devices for 3 s.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{benching, cpu, env_or, hpflow_bin, manifest_dir, peak_rss_kib, percentile, spawn_simulators};
use support::net::free_port;
use support::victoria::Victoria;

/// How often the bench scrapes `/metrics`, as a Prometheus would.
const SCRAPE_EVERY: Duration = Duration::from_secs(15);
const STARTUP_RUNS: usize = 9;

struct Setup {
    devices: usize,
    interval: Duration,
    window: Duration,
    map: &'static str,
}

fn setup() -> Setup {
    let map = match std::env::var("HPFLOW_BENCH_MAP").as_deref() {
        Ok("hpmanager") => "hpmanager",
        Ok("full") | Err(_) => "full",
        Ok(other) => panic!("HPFLOW_BENCH_MAP={other:?}: use `full` or `hpmanager`"),
    };
    if !benching() {
        return Setup {
            devices: 3,
            interval: Duration::from_secs(1),
            window: Duration::from_secs(3),
            map,
        };
    }
    Setup {
        devices: env_or("HPFLOW_BENCH_DEVICES", 1000, |v| v.parse().ok()),
        interval: env_or("HPFLOW_BENCH_INTERVAL", Duration::from_secs(10), |v| {
            humantime::parse_duration(v).ok()
        }),
        window: env_or("HPFLOW_BENCH_SECS", Duration::from_secs(120), |v| {
            v.parse().ok().map(Duration::from_secs)
        }),
        map,
    }
}

fn map_path(map: &str) -> PathBuf {
    match map {
        "hpmanager" => manifest_dir().join("tests/fixtures/hpmanager-config/registers.yml"),
        _ => manifest_dir().join("config/registers.yml"),
    }
}

/// False when `HPFLOW_BENCH_COMPONENT_CPU=0` asks for the process's figures
/// without the per-component metering (two clock reads per task poll).
fn metering() -> bool {
    std::env::var("HPFLOW_BENCH_COMPONENT_CPU").map_or(true, |v| v != "0")
}

/// An HPManager `heatpumps.yml` with one heat pump per port.
fn heatpumps_yml(ports: &[u16]) -> String {
    let mut s = String::from("heatpumps:\n");
    for (i, port) in ports.iter().enumerate() {
        s.push_str(&format!(
            "- id: hp{i:04}\n  name: Heat pump {i}\n  location: Bench\n  model: stiebel_eltron_wpm\n  enabled: true\n  \
             modbus:\n    type: tcp\n    host: 127.0.0.1\n    port: {port}\n    unit_id: 1\n"
        ));
    }
    s
}

/// A running `hpflow run` of the shipped pipeline.
struct Hpflow {
    child: Child,
    metrics_port: u16,
}

impl Drop for Hpflow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hpflow {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

/// Starts hpflow on the shipped pipeline (or `pipeline`) with its settings
/// pointed into `dir`.
fn start_hpflow(dir: &Path, pipeline: &Path, ports: &[u16], interval: Duration, map: &str, db: &str) -> Hpflow {
    std::fs::create_dir_all(dir).unwrap();
    let devices = dir.join("heatpumps.yml");
    std::fs::write(&devices, heatpumps_yml(ports)).unwrap();
    let metrics_port = free_port();
    let log = std::fs::File::create(dir.join("hpflow.log")).unwrap();
    let child = Command::new(hpflow_bin())
        .arg("run")
        .arg(pipeline)
        .env("HPFLOW_DATA_DIR", dir.join("data"))
        .env("HPFLOW_DEVICES", &devices)
        .env("HPFLOW_REGISTERS", map_path(map))
        .env("HPFLOW_POLL_INTERVAL", humantime::format_duration(interval).to_string())
        .env("INFLUXDB_URL", db)
        .env("INFLUXDB_TOKEN", "bench")
        .env("HPFLOW_METRICS_ADDRESS", format!("127.0.0.1:{metrics_port}"))
        .env("HPFLOW_DASHBOARD_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env("HPFLOW_COMPONENT_CPU", if metering() { "1" } else { "0" })
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("hpflow starts");
    Hpflow { child, metrics_port }
}

/// The `hpflow_*` samples of one scrape: name → [(labels, value)].
#[derive(Default)]
struct Scrape {
    samples: BTreeMap<String, Vec<(String, f64)>>,
    bytes: usize,
    took: Duration,
}

impl Scrape {
    fn take(port: u16) -> Option<Scrape> {
        // As a Prometheus reads a scrape: the whole answer into a buffer kept
        // from the last scrape, timed from connecting to its last byte; reading
        // it as text comes after.
        static BUFFER: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
        let mut raw = std::mem::take(&mut *BUFFER.lock().unwrap_or_else(|p| p.into_inner()));
        raw.clear();
        let began = Instant::now();
        let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        conn.read_to_end(&mut raw).ok()?;
        let took = began.elapsed();
        let scrape = Scrape::parse(&raw, took);
        *BUFFER.lock().unwrap_or_else(|p| p.into_inner()) = raw;
        scrape
    }

    fn parse(raw: &[u8], took: Duration) -> Option<Scrape> {
        let text = std::str::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        if head.split(' ').nth(1) != Some("200") {
            return None;
        }
        let mut samples: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
        for line in body.lines().filter(|l| l.starts_with("hpflow_")) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            samples
                .entry(name.to_string())
                .or_default()
                .push((labels.to_string(), value));
        }
        Some(Scrape {
            samples,
            bytes: body.len(),
            took,
        })
    }

    /// The sum of a metric over the series whose labels contain `filter`.
    fn sum(&self, name: &str, filter: &str) -> f64 {
        self.samples
            .get(name)
            .map(|rows| rows.iter().filter(|(l, _)| l.contains(filter)).map(|r| r.1).sum())
            .unwrap_or(0.0)
    }

    /// CPU seconds per component, keyed by `kind/id`.
    fn component_cpu(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (labels, v) in self
            .samples
            .get("hpflow_component_cpu_seconds_total")
            .into_iter()
            .flatten()
        {
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            let order = match label("component_kind").as_str() {
                "source" => 0,
                "transform" => 1,
                _ => 2,
            };
            out.insert(
                format!(
                    "{order}{}/{} ({})",
                    label("component_kind"),
                    label("component_id"),
                    label("component_type")
                ),
                *v,
            );
        }
        out
    }
}

fn scrape_until(port: u16, what: &str, done: impl Fn(&Scrape) -> bool, limit: Duration) -> Scrape {
    let start = Instant::now();
    loop {
        if let Some(s) = Scrape::take(port) {
            if done(&s) {
                return s;
            }
        }
        assert!(start.elapsed() < limit, "hpflow did not {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn main() {
    let s = setup();
    if let Ok(parts) = std::env::var("HPFLOW_BENCH_ONLY") {
        if benching() {
            return only(&s, &parts);
        }
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let vm = Victoria::start(&dir.path().join("victoria"));
    let map = map_path(s.map);
    let (sims, ports) = spawn_simulators(s.devices, Some(&map));
    let pipeline = manifest_dir().join("pipelines/heatpump.toml");
    let main_pipeline = if std::env::var("HPFLOW_BENCH_UNSPREAD").is_ok_and(|v| v == "1") {
        unspread_pipeline(dir.path(), &pipeline)
    } else {
        pipeline.clone()
    };
    let mut run = start_hpflow(
        &dir.path().join("run"),
        &main_pipeline,
        &ports,
        s.interval,
        s.map,
        &vm.url(),
    );
    let pid = run.pid();

    // Warm-up: every device polled twice, so plans have learnt which optional
    // blocks the simulated controllers refuse.
    let n = s.devices as f64;
    let polls = |sc: &Scrape| sc.sum("hpflow_modbus_polls_total", "");
    let warm_limit = s.interval * 4 + Duration::from_secs(30);
    scrape_until(
        run.metrics_port,
        "poll every device twice",
        |sc| polls(sc) >= 2.0 * n,
        warm_limit,
    );

    let first = Scrape::take(run.metrics_port).expect("a scrape");
    let cpu0 = cpu(&pid);
    let sim_cpu0: Duration = sims.pids().iter().map(|p| cpu(p)).sum();
    let t0 = Instant::now();
    let mut scrapes = vec![first.took];
    let mut sizes = vec![first.bytes];
    while t0.elapsed() + SCRAPE_EVERY.min(s.window) <= s.window {
        std::thread::sleep(SCRAPE_EVERY.min(s.window));
        let sc = Scrape::take(run.metrics_port).expect("a scrape");
        scrapes.push(sc.took);
        sizes.push(sc.bytes);
    }
    std::thread::sleep(s.window.saturating_sub(t0.elapsed()));
    let last = Scrape::take(run.metrics_port).expect("a scrape");
    let wall = t0.elapsed();
    let cpu_used = cpu(&pid) - cpu0;
    let sim_cpu = sims.pids().iter().map(|p| cpu(p)).sum::<Duration>() - sim_cpu0;
    let rss_kib = peak_rss_kib(&pid);
    if let Ok(Some(status)) = run.child.try_wait() {
        panic!("hpflow exited with {status}");
    }
    drop(run);
    drop(sims);

    let d = |name: &str, filter: &str| last.sum(name, filter) - first.sum(name, filter);
    let device_polls = d("hpflow_modbus_polls_total", "");
    let per_poll = |secs: f64| secs * 1e6 / device_polls.max(1.0);
    let requests = d("hpflow_modbus_requests_total", "");
    let on_time = d("hpflow_modbus_polls_on_time_total", "");
    let failed = d("hpflow_modbus_polls_failed_total", "");
    let written = d("hpflow_influxdb_points_written_total", "");
    let backlog = last.sum("hpflow_influxdb_buffer_points", "");

    println!(
        "pipeline_poll: pipelines/heatpump.toml, {} devices ({} map), interval {}, {:.0} s measured",
        s.devices,
        s.map,
        humantime::format_duration(s.interval),
        wall.as_secs_f64()
    );
    println!(
        "  polls: {device_polls:.0} ({:.1}/s), {failed:.0} failed, on time {:.2} %; requests/poll {:.2}",
        device_polls / wall.as_secs_f64(),
        100.0 * on_time / device_polls.max(1.0),
        requests / device_polls.max(1.0)
    );
    println!(
        "  CPU, whole process: {:.2} s = {:.0} µs per device-poll ({:.1} % of one core)",
        cpu_used.as_secs_f64(),
        per_poll(cpu_used.as_secs_f64()),
        100.0 * cpu_used.as_secs_f64() / wall.as_secs_f64()
    );
    let (c0, c1) = (first.component_cpu(), last.component_cpu());
    let mut charged = 0.0;
    for (key, after) in &c1 {
        let used = after - c0.get(key).copied().unwrap_or(0.0);
        charged += used;
        println!(
            "    {:<40} {:>7.1} µs per device-poll ({:>4.1} %)",
            &key[1..],
            per_poll(used),
            100.0 * used / cpu_used.as_secs_f64().max(1e-9)
        );
    }
    let rest = cpu_used.as_secs_f64() - charged;
    println!(
        "    {:<40} {:>7.1} µs per device-poll ({:>4.1} %)",
        "runtime and the rest",
        per_poll(rest),
        100.0 * rest / cpu_used.as_secs_f64().max(1e-9)
    );
    let mut sorted = scrapes.clone();
    sorted.sort();
    println!(
        "  /metrics scrapes (counted in the prometheus sink): {}, median {:.1} ms, {:.1} MiB each",
        scrapes.len(),
        percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        *sizes.last().unwrap_or(&0) as f64 / (1 << 20) as f64
    );
    println!(
        "  InfluxDB (VictoriaMetrics): {written:.0} points written in the window, {backlog:.0} buffered at its end"
    );
    println!("  peak RSS (VmHWM): {:.1} MiB", rss_kib as f64 / 1024.0);
    println!("  simulators (other processes): {:.2} s CPU", sim_cpu.as_secs_f64());

    if !benching() {
        return;
    }
    startup(dir.path(), &pipeline, s.map, &vm.url());
    idle(dir.path(), &pipeline, s.map, &vm.url());
}

/// `HPFLOW_BENCH_ONLY`: the startup and idle parts alone.
fn only(s: &Setup, parts: &str) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let pipeline = manifest_dir().join("pipelines/heatpump.toml");
    println!("pipeline_poll: pipelines/heatpump.toml ({} map), only {parts}", s.map);
    for part in parts.split(',').map(str::trim) {
        match part {
            // Each run ends at its first Modbus request, before any point is
            // written: the InfluxDB endpoint may be a port nobody listens on.
            "startup" => startup(
                dir.path(),
                &pipeline,
                s.map,
                &format!("http://127.0.0.1:{}", free_port()),
            ),
            "idle" => {
                let vm = Victoria::start(&dir.path().join("victoria"));
                idle(dir.path(), &pipeline, s.map, &vm.url());
            }
            other => panic!("HPFLOW_BENCH_ONLY: unknown part {other:?}; use startup, idle or startup,idle"),
        }
    }
}

/// The shipped pipeline with the first polls not spread over the interval, so
/// a device is asked as soon as hpflow is up.
fn unspread_pipeline(dir: &Path, pipeline: &Path) -> PathBuf {
    let text = std::fs::read_to_string(pipeline).unwrap();
    let marker = "[sources.heatpumps]\n";
    assert!(text.contains(marker), "the shipped pipeline has its heatpumps source");
    let text = text.replace(marker, &format!("{marker}phase_spread = false\n"));
    // Relative paths in the file resolve from its folder; every one is set
    // through the environment here.
    let path = dir.join("heatpump-unspread.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Exec to the first Modbus request a device receives: hpflow starts, reads
/// and checks its configuration, opens its data folder and servers, connects.
fn startup(dir: &Path, pipeline: &Path, map: &str, db: &str) {
    let pipeline = unspread_pipeline(dir, pipeline);
    let mut took = Vec::new();
    for i in 0..STARTUP_RUNS {
        let device = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = device.local_addr().unwrap().port();
        let began = Instant::now();
        let run = start_hpflow(
            &dir.join(format!("startup{i}")),
            &pipeline,
            &[port],
            Duration::from_secs(10),
            map,
            db,
        );
        let (mut conn, _) = device.accept().expect("hpflow connects");
        let mut header = [0u8; 7];
        conn.read_exact(&mut header).expect("a Modbus request");
        took.push(began.elapsed());
        drop(run);
    }
    took.sort();
    println!(
        "  startup, exec to the first Modbus request: median {:.1} ms (min {:.1}, max {:.1}; {} runs)",
        percentile(&took, 0.5).as_secs_f64() * 1e3,
        took[0].as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3,
        took.len()
    );
}

/// CPU while no device is due: 10 devices polled once, then an hour to wait.
fn idle(dir: &Path, pipeline: &Path, map: &str, db: &str) {
    const WINDOW: Duration = Duration::from_secs(20);
    let pipeline = unspread_pipeline(dir, pipeline);
    let (sims, ports) = spawn_simulators(10, Some(&map_path(map)));
    let run = start_hpflow(&dir.join("idle"), &pipeline, &ports, Duration::from_secs(3600), map, db);
    scrape_until(
        run.metrics_port,
        "poll 10 devices once",
        |sc| sc.sum("hpflow_modbus_polls_total", "") >= 10.0,
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = run.pid();
    let c0 = cpu(&pid);
    std::thread::sleep(WINDOW);
    let used = cpu(&pid) - c0;
    drop(run);
    drop(sims);
    println!(
        "  idle (no device due for an hour): {:.1} ms CPU over {} s = {:.3} % of one core",
        used.as_secs_f64() * 1e3,
        WINDOW.as_secs(),
        100.0 * used.as_secs_f64() / WINDOW.as_secs_f64()
    );
}
