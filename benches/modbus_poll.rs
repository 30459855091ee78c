//! Steady-state cost of the `modbus_tcp` source: 1,000 simulated heat pumps,
//! each on its own 127.0.0.1 port, polled every 10 s.
//!
//! `cargo bench --bench modbus_poll` (release). First `cargo build --release
//! --bin hpflow`: the simulators run as `hpflow simulate --layout ports` child
//! processes (up to 200 ports each), so the CPU and memory measured here are
//! the source's alone. Environment:
//! - `HPFLOW_BENCH_DEVICES` (1000), `HPFLOW_BENCH_INTERVAL` (10s),
//!   `HPFLOW_BENCH_SECS` (180, the measured window, after one warm-up interval);
//! - `HPFLOW_BENCH_SIM=inprocess` serves the simulators from this process instead;
//! - `HPFLOW_BIN` overrides the path of the `hpflow` binary.
//!
//! Prints requests per poll, CPU per device-poll and as % of one core (from
//! /proc: bench process and simulators apart), the share of polls on time
//! (event within 1 s of its scheduled instant), p50/p99 poll duration and lag,
//! and peak RSS. Targets: ≥ 99.9 % on time, ≤ 10 % of one core, RSS ≤ 64 MiB.
//! Under `cargo test --all-targets` it polls 3 in-process devices for 3 s as a smoke test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hpflow::component::{Output, Source, SourceContext};
use hpflow::event::Event;
use hpflow::registers::{PlanOptions, RegisterMap};
use hpflow::sim::{SimOptions, Simulator, TcpServer};
use hpflow::sources::modbus::ModbusTcpConfig;
use hpflow::telemetry::ComponentMetrics;
use hpflow::telemetry::{DeviceHealth, RequestResult};
use tokio_util::sync::CancellationToken;

const COMPONENT: &str = "bench";
const MODEL: &str = "stiebel_eltron_wpm";
/// Ports per `hpflow simulate` child (its `--devices` allows up to 247).
const PER_CHILD: usize = 200;
const ON_TIME: Duration = Duration::from_secs(1);
/// /proc reports CPU time in USER_HZ ticks, 100 a second on every Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

struct Setup {
    devices: usize,
    interval: Duration,
    window: Duration,
    in_process: bool,
}

fn env_or<T>(key: &str, default: T, parse: impl Fn(&str) -> Option<T>) -> T {
    match std::env::var(key) {
        Ok(v) => parse(&v).unwrap_or_else(|| panic!("{key}={v:?} does not parse")),
        Err(_) => default,
    }
}

fn setup() -> Setup {
    if !std::env::args().any(|a| a == "--bench") {
        return Setup {
            devices: 3,
            interval: Duration::from_secs(1),
            window: Duration::from_secs(3),
            in_process: true,
        };
    }
    Setup {
        devices: env_or("HPFLOW_BENCH_DEVICES", 1000, |v| v.parse().ok()),
        interval: env_or("HPFLOW_BENCH_INTERVAL", Duration::from_secs(10), |v| {
            humantime::parse_duration(v).ok()
        }),
        window: env_or("HPFLOW_BENCH_SECS", Duration::from_secs(180), |v| {
            v.parse().ok().map(Duration::from_secs)
        }),
        in_process: std::env::var("HPFLOW_BENCH_SIM").is_ok_and(|v| v == "inprocess"),
    }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_map() -> PathBuf {
    manifest_dir().join("config/registers.yml")
}

/// CPU time (user + system) of a process, from /proc/<pid>/stat.
fn cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC)
}

/// Peak resident set (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `hpflow simulate` children, killed (by their own pid) when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the simulators in child processes; returns them and every port.
fn spawn_simulators(n: usize) -> (Children, Vec<u16>) {
    let bin = std::env::var_os("HPFLOW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/release/hpflow"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release --bin hpflow` first (or set HPFLOW_BENCH_SIM=inprocess)",
        bin.display()
    );
    let mut children = Children(Vec::new());
    let mut ports = Vec::new();
    for (i, first) in (0..n).step_by(PER_CHILD).enumerate() {
        let count = PER_CHILD.min(n - first);
        let mut child = Command::new(&bin)
            .args(["simulate", "--listen", "127.0.0.1:0", "--layout", "ports"])
            .args(["--devices", &count.to_string(), "--seed", &(1 + first).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        children.0.push(child);
        // One line per port: "simulating units [1] (…) over Modbus TCP on 127.0.0.1:PORT".
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..count {
            let line = lines
                .next()
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("simulator {i} stopped before listing its ports"));
            let port = line
                .rsplit(':')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("no port in {line:?}"));
            ports.push(port);
        }
        // Keep reading so a full pipe never blocks the child.
        std::thread::spawn(move || lines.for_each(drop));
    }
    (children, ports)
}

/// Serves every device from this process, each on its own port.
async fn serve_in_process(n: usize) -> (Vec<TcpServer>, Vec<u16>) {
    let map = RegisterMap::load(shipped_map()).expect("the shipped map loads");
    let model = map.model(MODEL).expect("the shipped model").clone();
    let mut servers = Vec::new();
    for i in 0..n {
        let sim = Simulator::new(SimOptions {
            seed: 1 + i as u64,
            ..SimOptions::new(model.clone())
        })
        .expect("simulator options are valid");
        servers.push(
            sim.serve_tcp("127.0.0.1:0".parse().expect("an address"))
                .await
                .expect("bind"),
        );
    }
    let ports = servers.iter().map(|s| s.local_addr().port()).collect();
    (servers, ports)
}

fn config(ports: &[u16], interval: Duration) -> String {
    let mut text = format!(
        "registers = {:?}\ninterval = \"{}\"\n",
        shipped_map().display().to_string(),
        humantime::format_duration(interval)
    );
    for (i, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[devices]]\nid = \"hp{i:04}\"\nmodel = \"{MODEL}\"\nhost = \"127.0.0.1\"\nport = {port}\n"
        ));
    }
    text
}

/// The devices' summed counters.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    polls: u64,
    failed: u64,
    missed: u64,
    requests: u64,
    requests_ok: u64,
}

fn totals(snapshot: &[DeviceHealth]) -> Totals {
    let mut t = Totals::default();
    for h in snapshot.iter().filter(|h| &*h.component == COMPONENT) {
        t.polls += h.polls;
        t.failed += h.polls_failed;
        t.missed += h.missed_ticks;
        t.requests += h.requests.values().sum::<u64>();
        t.requests_ok += h.requests(RequestResult::Ok);
    }
    t
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let s = setup();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(bench(s));
}

async fn bench(s: Setup) {
    let (children, _servers, ports) = if s.in_process {
        let (servers, ports) = serve_in_process(s.devices).await;
        (Children(Vec::new()), servers, ports)
    } else {
        let (children, ports) = spawn_simulators(s.devices);
        (children, Vec::new(), ports)
    };
    let child_pids: Vec<String> = children.0.iter().map(|c| c.id().to_string()).collect();

    let cfg: ModbusTcpConfig = toml::from_str(&config(&ports, s.interval)).expect("a valid config");
    let source = cfg.build_source(manifest_dir()).expect("the source builds");
    let telemetry = source.telemetry();
    let plan = RegisterMap::load(shipped_map())
        .expect("the shipped map loads")
        .model(MODEL)
        .expect("the model")
        .plan(&PlanOptions::default());
    let metrics = Arc::new(ComponentMetrics::new("source", "modbus_tcp"));
    let (out, mut rx) = Output::detached(metrics.clone());
    let shutdown = CancellationToken::new();
    let cx = SourceContext {
        id: COMPONENT.into(),
        out,
        shutdown: shutdown.clone(),
        metrics,
    };
    let task = tokio::spawn(async move {
        let _ = Box::new(source).run(cx).await;
    });

    // Warm-up: one interval (and a second) connects every device and lets the
    // plans learn which optional blocks the simulated controllers refuse.
    let warm = s.interval + Duration::from_secs(1);
    let warm_end = tokio::time::Instant::now() + warm;
    while tokio::time::timeout_at(warm_end, rx.recv())
        .await
        .is_ok_and(|e| e.is_some())
    {}

    let before = totals(&telemetry.devices().snapshot());
    let cpu0 = cpu("self");
    let sim_cpu0: Duration = child_pids.iter().map(|p| cpu(p)).sum();
    let t0 = Instant::now();
    let end = tokio::time::Instant::now() + s.window;

    let mut lags = Vec::new();
    let mut durations = Vec::new();
    let mut on_time = 0u64;
    let mut last_polls: HashMap<Arc<str>, u64> = HashMap::new();
    let mut sampler_cost = Duration::ZERO;
    let mut per_interval_core = Vec::new();
    let mut interval_mark = (Instant::now(), cpu("self"));
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            e = rx.recv() => match e {
                Some(Event::Metric(m)) => {
                    let lag = SystemTime::now().duration_since(m.time).unwrap_or_default();
                    on_time += u64::from(lag < ON_TIME);
                    lags.push(lag);
                }
                Some(_) => {}
                None => panic!("the source stopped"),
            },
            _ = sample.tick() => {
                // Each device polls once an interval; sampling every second
                // sees each poll's duration before the next one replaces it.
                let began = Instant::now();
                for h in telemetry.devices().snapshot().iter().filter(|h| &*h.component == COMPONENT) {
                    let seen = last_polls.insert(h.device.clone(), h.polls);
                    if seen.is_some_and(|p| p != h.polls) {
                        durations.extend(h.last_poll_duration);
                    }
                }
                sampler_cost += began.elapsed();
                if interval_mark.0.elapsed() >= s.interval {
                    let now = (Instant::now(), cpu("self"));
                    per_interval_core.push((now.1 - interval_mark.1).as_secs_f64() / (now.0 - interval_mark.0).as_secs_f64());
                    interval_mark = now;
                }
            }
        }
    }
    let wall = t0.elapsed();
    let cpu_used = cpu("self") - cpu0;
    let sim_cpu: Duration = child_pids.iter().map(|p| cpu(p)).sum::<Duration>() - sim_cpu0;
    let after = totals(&telemetry.devices().snapshot());
    let rss = peak_rss_kib("self");
    let sim_rss: u64 = child_pids.iter().map(|p| peak_rss_kib(p)).sum();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    drop(children);

    let polls = after.polls - before.polls;
    let ticks = polls + (after.missed - before.missed);
    let failed = after.failed - before.failed;
    let requests = after.requests - before.requests;
    let ok = after.requests_ok - before.requests_ok;
    lags.sort();
    durations.sort();
    per_interval_core.sort_by(f64::total_cmp);
    let core = cpu_used.as_secs_f64() / wall.as_secs_f64();
    let per_poll_us = cpu_used.as_secs_f64() * 1e6 / polls.max(1) as f64;
    let on_time_ratio = on_time as f64 / ticks.max(1) as f64;
    let rss_mib = rss as f64 / 1024.0;
    let median_core = per_interval_core
        .get(per_interval_core.len() / 2)
        .copied()
        .unwrap_or(core);

    println!(
        "modbus_poll: {} devices ({}), interval {}, {:.0} s measured after {} warm-up",
        s.devices,
        if s.in_process {
            "one port each, simulators in this process".to_string()
        } else {
            format!(
                "one port each, simulators in {} `hpflow simulate` processes",
                child_pids.len()
            )
        },
        humantime::format_duration(s.interval),
        wall.as_secs_f64(),
        humantime::format_duration(warm),
    );
    println!(
        "  requests/poll: {:.2} measured ({} requests, {} ok, over {polls} polls); full plan {} (required + optional blocks)",
        requests as f64 / polls.max(1) as f64,
        requests,
        ok,
        plan.requests().len()
    );
    println!(
        "  polls: {polls} done, {failed} failed, {} ticks missed; on time (< 1 s after schedule): {on_time}/{ticks} = {:.3} %",
        ticks - polls,
        100.0 * on_time_ratio
    );
    println!(
        "  CPU (this process: source + runtime + bench bookkeeping): {:.2} s = {per_poll_us:.0} µs per device-poll, {:.2} % of one core (median per interval {:.2} %)",
        cpu_used.as_secs_f64(),
        100.0 * core,
        100.0 * median_core
    );
    println!(
        "    of which the bench's 1 s health sampling: {:.3} s wall",
        sampler_cost.as_secs_f64()
    );
    if !s.in_process {
        println!(
            "  CPU (simulators, separate processes): {:.2} s = {:.2} % of one core; their peak RSS summed {:.1} MiB",
            sim_cpu.as_secs_f64(),
            100.0 * sim_cpu.as_secs_f64() / wall.as_secs_f64(),
            sim_rss as f64 / 1024.0
        );
    }
    println!(
        "  poll duration: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} sampled)",
        ms(percentile(&durations, 0.5)),
        ms(percentile(&durations, 0.99)),
        ms(durations.last().copied().unwrap_or_default()),
        durations.len()
    );
    println!(
        "  lag from scheduled instant to event: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or_default())
    );
    println!("  peak RSS (VmHWM, this process): {rss_mib:.1} MiB");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "  targets: on time ≥ 99.9 % {}; CPU ≤ 10 % of one core {}; RSS ≤ 64 MiB {}",
        verdict(on_time_ratio >= 0.999),
        verdict(core <= 0.10),
        verdict(rss_mib <= 64.0)
    );
}
