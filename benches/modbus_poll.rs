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

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
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

use common::{benching, cpu, env_or, manifest_dir, peak_rss_kib, percentile, spawn_simulators, Children};

const COMPONENT: &str = "bench";
const MODEL: &str = "stiebel_eltron_wpm";
const ON_TIME: Duration = Duration::from_secs(1);

struct Setup {
    devices: usize,
    interval: Duration,
    window: Duration,
    in_process: bool,
}

fn setup() -> Setup {
    if !benching() {
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

fn shipped_map() -> PathBuf {
    manifest_dir().join("config/registers.yml")
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
        let (children, ports) = spawn_simulators(s.devices, None);
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
