//! Process-level chaos: every poll hpflow completed reaches the database, across
//! crashes, restarts, device outages and database outages.
//!
//! The shipped `pipelines/heatpump.toml` (settings from the environment, as its
//! header lists them: devices file, register map, data dir, a 1 s interval, free
//! ports) runs `hpflow run` against three simulated heat pumps (the simulator
//! library, one Modbus TCP port each) and a real VictoriaMetrics (Debian package
//! `victoria-metrics`, InfluxDB v2 write API), cycle after cycle. A seeded RNG
//! decides each cycle: how long hpflow runs (to the millisecond, so the end lands
//! anywhere in a poll), whether it ends with SIGKILL or SIGTERM, and whether
//! every pump is unreachable for the whole run (their servers stopped) or the
//! database goes away at a random instant and comes back (during the run or
//! after it ended). A last run with everything up drains the buffer, then stops
//! with SIGTERM.
//!
//! Polls are counted on the device side: each simulator keeps a log of the reads
//! it answered, and a poll is complete once the device answered a read covering
//! the read plan's last register (hpflow reads the plan in order and each
//! register once a poll, whether it joins requests into one read or not). Then:
//! - no point is stored twice with different values (raw samples from
//!   `/api/v1/export`: one device, one series, one timestamp, two values);
//! - every stored point has a completed poll behind it (the poll's answer left
//!   the device within 2 s after the point's timestamp), so per device the
//!   distinct timestamps never exceed the completed polls;
//! - every completed poll is stored, except the one in flight when a SIGKILL
//!   came: only a device's last completed poll of a SIGKILL cycle may be missing
//!   (at most one per device per SIGKILL).
//!
//! Once a run, at a seeded instant, the pipeline file is changed under hpflow
//! (other keys for the InfluxDB sink and state_diff), so both are rebuilt while
//! the pumps are polled: a rebuild must lose nothing either.
//!
//! `HPFLOW_CHAOS_SEED=<n>` replays a seed (the test prints the one it used);
//! `HPFLOW_CHAOS_CYCLES=<n>` runs more cycles than the default 20;
//! `HPFLOW_CHAOS_KEEP=1` keeps the working folder (logs, buffer, database);
//! `HPFLOW_CHAOS_BIN=<path>` runs another `hpflow` binary (an older build, to
//! show a fix is what makes this pass).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hpflow::registers::{PlanOptions, ReadRequest, RegisterMap};
use hpflow::sim::{Clock, SimOptions, Simulator, TcpServer};
use support::process::{hpflow, signal};
use support::victoria::Victoria;
use support::{free_port, shipped_pipelines, shipped_registers};

const DEVICES: usize = 3;
const DEFAULT_CYCLES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    None,
    /// Every pump unreachable for the whole run.
    Devices,
    /// VictoriaMetrics stopped at `down` after the start, back at `up` (maybe after the run).
    Database {
        down: Duration,
        up: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Kill,
    Term,
}

#[derive(Debug, Clone)]
struct Cycle {
    run_for: Duration,
    signal: Signal,
    outage: Outage,
    /// Wall-clock span of the hpflow process (spawn to reaped), and when the signal went.
    began: SystemTime,
    signalled: SystemTime,
    ended: SystemTime,
    log: PathBuf,
}

/// A simulated heat pump on its own port, which can be taken off the network.
struct Pump {
    sim: Simulator,
    addr: SocketAddr,
    server: Option<TcpServer>,
}

impl Pump {
    fn up(&mut self, rt: &tokio::runtime::Runtime) {
        if self.server.is_some() {
            return;
        }
        // The port was free a moment ago; a connection of someone else's may hold it briefly.
        let start = Instant::now();
        loop {
            match rt.block_on(self.sim.serve_tcp(self.addr)) {
                Ok(s) => {
                    self.server = Some(s);
                    return;
                }
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    eprintln!("rebinding {}: {e}; retrying", self.addr);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot serve the simulator on {} again: {e}", self.addr),
            }
        }
    }

    fn down(&mut self) {
        self.server = None;
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
    )
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every file under `dir`, with its size, for a failure message.
fn listing(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = writeln!(out, "  {} ({len} bytes)", p.strip_prefix(dir).unwrap_or(&p).display());
            }
        }
    }
    out
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The shipped pipeline's settings for one run: everything on loopback, free ports.
struct Setup {
    pipeline: PathBuf,
    devices: PathBuf,
    registers: PathBuf,
    data_dir: PathBuf,
    influx_url: String,
}

impl Setup {
    fn spawn(&self, log: &Path) -> Child {
        let log = std::fs::File::create(log).unwrap();
        let mut cmd = match std::env::var_os("HPFLOW_CHAOS_BIN") {
            Some(bin) => Command::new(bin),
            None => hpflow(),
        };
        cmd.args(["--log-format", "json", "run"])
            .arg(&self.pipeline)
            .env_remove("RUST_LOG")
            .env_remove("INFLUXDB_TOKEN")
            .env_remove("HPFLOW_ADMIN_TOKEN")
            .env("HPFLOW_DEVICES", &self.devices)
            .env("HPFLOW_REGISTERS", &self.registers)
            .env("HPFLOW_DATA_DIR", &self.data_dir)
            .env("HPFLOW_POLL_INTERVAL", "1s")
            .env("INFLUXDB_URL", &self.influx_url)
            .env("INFLUXDB_ORG", "chaos")
            .env("INFLUXDB_BUCKET", "chaos")
            .env("HPFLOW_METRICS_ADDRESS", format!("127.0.0.1:{}", free_port()))
            .env("HPFLOW_DASHBOARD_ADDRESS", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hpflow run starts")
    }
}

/// Ends `child` with `sig` and reaps it; a SIGTERM must end in a clean exit.
fn end(mut child: Child, sig: Signal, log: &Path) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!("hpflow exited on its own with {status}:\n{}", tail(log, 40));
    }
    match sig {
        Signal::Kill => {
            signal(&child, "KILL");
            let _ = child.wait();
        }
        Signal::Term => {
            signal(&child, "TERM");
            let start = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("hpflow did not stop within 30 s of SIGTERM:\n{}", tail(log, 40));
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            assert_eq!(status.code(), Some(0), "clean exit after SIGTERM:\n{}", tail(log, 40));
        }
    }
}

/// What happens at an instant of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// VictoriaMetrics stopped (false) or back (true).
    Database(bool),
    /// The pipeline file rewritten with this version of the keys.
    Reload(u64),
}

/// The shipped pipeline with keys that differ by `version` in the InfluxDB sink
/// and in state_diff (so a reload rebuilds both), written as editors save.
fn write_pipeline(shipped: &str, path: &Path, version: u64) {
    let text = shipped
        .replacen(
            "[sinks.influxdb]\n",
            &format!("[sinks.influxdb]\nrequest_timeout = \"{}s\"\n", 10 + version % 2),
            1,
        )
        .replacen(
            "[transforms.states]\n",
            &format!("[transforms.states]\nheartbeat = \"{}m\"\n", 15 + version % 2),
            1,
        );
    assert_ne!(
        text, shipped,
        "the shipped pipeline has the tables the chaos test changes"
    );
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Sleeps until `at` after `t0` (at once when that has passed).
fn sleep_until(t0: Instant, at: Duration) {
    if let Some(d) = at.checked_sub(t0.elapsed()) {
        std::thread::sleep(d);
    }
}

/// Shuffled kinds: about 30 % of the cycles with the pumps offline, 30 % with a
/// database outage, the rest plain; each kind at least twice (from 6 cycles on).
fn plan_cycles(rng: &mut fastrand::Rng, cycles: usize) -> Vec<(Duration, Signal, Outage)> {
    let offline = (cycles * 3 / 10).max(2.min(cycles / 3));
    let db_down = (cycles * 3 / 10).max(2.min(cycles / 3));
    let mut kinds: Vec<u8> = (0..cycles)
        .map(|i| match i {
            i if i < offline => 1,
            i if i < offline + db_down => 2,
            _ => 0,
        })
        .collect();
    rng.shuffle(&mut kinds);
    let mut signals: Vec<Signal> = (0..cycles)
        .map(|i| if i % 2 == 0 { Signal::Kill } else { Signal::Term })
        .collect();
    rng.shuffle(&mut signals);
    kinds
        .into_iter()
        .zip(signals)
        .map(|(kind, sig)| {
            let run_for = Duration::from_millis(rng.u64(1_500..=6_000));
            let outage = match kind {
                1 => Outage::Devices,
                2 => {
                    let down = Duration::from_millis(rng.u64(0..run_for.as_millis() as u64));
                    // Back during the run, or only after it (then before the next one).
                    let up = down + Duration::from_millis(rng.u64(500..=6_000));
                    Outage::Database { down, up }
                }
                _ => Outage::None,
            };
            (run_for, sig, outage)
        })
        .collect()
}

#[test]
fn chaos_every_completed_poll_reaches_the_database_across_kills_and_outages() {
    let seed = env_number("HPFLOW_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let cycles = env_number("HPFLOW_CHAOS_CYCLES").map_or(DEFAULT_CYCLES, |n| n as usize);
    assert!(cycles >= 1, "HPFLOW_CHAOS_CYCLES must be at least 1");
    println!("chaos: seed {seed} (replay with HPFLOW_CHAOS_SEED={seed}), {cycles} cycles");
    let mut rng = fastrand::Rng::with_seed(seed);
    run_cycles(seed, plan_cycles(&mut rng, cycles));
}

/// The sequence a new user ran into (issue 10): a run that delivers everything and
/// stops, runs with every pump unreachable (nothing appended) that stop, then a run
/// with the pumps back. Every poll of that last run must arrive; before the fix the
/// buffer numbered its new segment below the ack position and skipped all of them.
#[test]
fn a_restart_after_runs_with_every_pump_offline_delivers_the_next_run() {
    let s = Duration::from_secs;
    let schedule = vec![
        (s(5), Signal::Term, Outage::None),
        (s(3), Signal::Term, Outage::Devices),
        (s(3), Signal::Term, Outage::Devices),
        (s(6), Signal::Term, Outage::None),
        (s(3), Signal::Kill, Outage::Devices),
        (s(5), Signal::Term, Outage::None),
    ];
    run_cycles(1, schedule);
}

/// Runs the shipped pipeline through `schedule` (each cycle: how long, how it ends,
/// what is down), drains, and checks the database against the devices' counts.
fn run_cycles(seed: u64, schedule: Vec<(Duration, Signal, Outage)>) {
    let cycles = schedule.len();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let keep = std::env::var_os("HPFLOW_CHAOS_KEEP").is_some();
    let mut tmp_guard = if keep {
        println!("chaos: keeping {}", dir.display());
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let mut vm = Victoria::start(&dir.join("victoria-metrics"));

    // The pumps: WPMsystem controllers (449), each on its own port, values moving
    // in real time so consecutive polls differ.
    let registers = shipped_registers();
    let map = RegisterMap::load(&registers).expect("the shipped register map loads");
    let model = Arc::clone(map.model("stiebel_eltron_wpm").expect("the shipped model"));
    let plan = model.plan(&PlanOptions::default());
    let first: ReadRequest = plan.requests().first().expect("a plan with requests").clone();
    let last: ReadRequest = plan.requests().last().expect("a plan with requests").clone();
    // hpflow joins answered requests into fewer reads, so a poll is counted by
    // the reads covering the plan's first and last registers, not by exact requests.
    let last_register = last.start + (last.count - 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut pumps: Vec<Pump> = (0..DEVICES)
        .map(|i| {
            let sim = Simulator::new(SimOptions {
                seed: seed.wrapping_add(i as u64),
                controller_id: Some(449),
                clock: Clock::Running { speed: 1.0 },
                ..SimOptions::new(model.clone())
            })
            .expect("valid simulator options");
            sim.log_requests();
            let server = rt.block_on(sim.serve_tcp("127.0.0.1:0".parse().unwrap())).unwrap();
            Pump {
                sim,
                addr: server.local_addr(),
                server: Some(server),
            }
        })
        .collect();

    let mut inventory = String::from("heatpumps:\n");
    for (i, p) in pumps.iter().enumerate() {
        let _ = write!(
            inventory,
            "- id: hp{n}\n  name: Heat Pump {n}\n  location: Chaos\n  model: stiebel_eltron_wpm\n  enabled: true\n  \
             modbus:\n    type: tcp\n    host: 127.0.0.1\n    port: {port}\n    unit_id: 1\n    timeout: 2.0\n",
            n = i + 1,
            port = p.addr.port()
        );
    }
    // The shipped pipeline, copied so that each run can change it under hpflow.
    let shipped = std::fs::read_to_string(shipped_pipelines().join("heatpump.toml")).unwrap();
    let pipeline = dir.join("pipeline.toml");
    write_pipeline(&shipped, &pipeline, 0);
    let setup = Setup {
        pipeline: pipeline.clone(),
        devices: dir.join("heatpumps.yml"),
        registers: registers.clone(),
        data_dir: dir.join("data"),
        influx_url: vm.url(),
    };
    std::fs::write(&setup.devices, inventory).unwrap();

    // The cycles.
    let mut done: Vec<Cycle> = Vec::new();
    // A database outage may outlast its run: VictoriaMetrics then comes back
    // during the next run, this long after its start.
    let mut db_back_in_next: Option<Duration> = None;
    for (i, (run_for, sig, outage)) in schedule.into_iter().enumerate() {
        if outage == Outage::Devices {
            pumps.iter_mut().for_each(Pump::down);
        }
        // (offset from the start, database up?)
        let mut db_events: Vec<(Duration, Event)> = db_back_in_next
            .take()
            .map(|at| (at, Event::Database(true)))
            .into_iter()
            .collect();
        if let Outage::Database { down, up } = outage {
            db_events.extend([(down, Event::Database(false)), (up, Event::Database(true))]);
        }
        // Once a run, at a seeded instant, the InfluxDB sink and state_diff get
        // other keys: hpflow rebuilds both while the pumps are polled.
        let reload_at = Duration::from_millis(
            fastrand::Rng::with_seed(seed.wrapping_mul(31).wrapping_add(i as u64)).u64(0..run_for.as_millis() as u64),
        );
        db_events.push((reload_at, Event::Reload(i as u64 + 1)));
        db_events.sort_by_key(|(at, _)| *at);
        let log = dir.join(format!("run-{:02}.log", i + 1));
        let began = SystemTime::now();
        let t0 = Instant::now();
        let child = setup.spawn(&log);
        for (at, event) in db_events {
            if at >= run_for {
                db_back_in_next = Some(at - run_for);
                continue;
            }
            sleep_until(t0, at);
            match event {
                Event::Database(true) if !vm.is_running() => vm.restart(),
                Event::Database(true) => {}
                Event::Database(false) => vm.stop(),
                Event::Reload(version) => write_pipeline(&shipped, &pipeline, version),
            }
        }
        sleep_until(t0, run_for);
        let signalled = SystemTime::now();
        end(child, sig, &log);
        let ended = SystemTime::now();
        if outage == Outage::Devices {
            pumps.iter_mut().for_each(|p| p.up(&rt));
        }
        println!(
            "chaos: cycle {:2}: {run_for:?} then {sig:?}, outage {outage:?}, reload at {reload_at:?}{}",
            i + 1,
            if vm.is_running() { "" } else { ", database still down" }
        );
        done.push(Cycle {
            run_for,
            signal: sig,
            outage,
            began,
            signalled,
            ended,
            log,
        });
    }
    if !vm.is_running() {
        vm.restart();
    }

    // Drain: everything up, one more run until the database holds what was polled
    // before it, then SIGTERM (which delivers the rest while the database is up).
    let log = dir.join("run-drain.log");
    let began = SystemTime::now();
    let child = setup.spawn(&log);
    let before: Vec<usize> = pumps
        .iter()
        .map(|p| p.sim.answered_covering(1, last.table, last_register).len())
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    loop {
        let stored = stored_times(&vm);
        let caught_up =
            (0..DEVICES).all(|d| stored.get(&format!("hp{}", d + 1)).map_or(0, BTreeSet::len) + cycles >= before[d]);
        if caught_up || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let signalled = SystemTime::now();
    end(child, Signal::Term, &log);
    done.push(Cycle {
        run_for: start.elapsed(),
        signal: Signal::Term,
        outage: Outage::None,
        began,
        signalled,
        ended: SystemTime::now(),
        log,
    });

    // What the devices answered.
    let completed: Vec<Vec<SystemTime>> = pumps
        .iter()
        .map(|p| p.sim.answered_covering(1, last.table, last_register))
        .collect();
    let started: Vec<usize> = pumps
        .iter()
        .map(|p| p.sim.answered_covering(1, first.table, first.start).len())
        .collect();
    // What the database holds.
    let series = vm.export_settled(r#"{__name__=~"heatpump_metrics_.*"}"#);
    let mut conflicts: Vec<String> = Vec::new();
    let mut stored: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for s in &series {
        let device = s.labels.get("heat_pump_id").cloned().unwrap_or_default();
        let mut seen: BTreeMap<i64, f64> = BTreeMap::new();
        for &(t, v) in &s.samples {
            stored.entry(device.clone()).or_default().insert(t);
            if let Some(old) = seen.insert(t, v) {
                if old.to_bits() != v.to_bits() && !(old.is_nan() && v.is_nan()) {
                    conflicts.push(format!("{} of {device} at {t}: {old} and {v}", s.labels["__name__"]));
                }
            }
        }
    }

    // Match stored points to completed polls, per device, in time order: a point
    // at t belongs to the first unmatched poll completed in [t - 5 ms, t + 2 s].
    let kills = done.iter().filter(|c| c.signal == Signal::Kill).count();
    let terms = done.len() - 1 - kills;
    let online_kills: Vec<&Cycle> = done
        .iter()
        .filter(|c| c.signal == Signal::Kill && c.outage != Outage::Devices)
        .collect();
    let mut report = String::new();
    let mut failures: Vec<String> = Vec::new();
    let mut total_missing = 0;
    let mut total_excused = 0;
    let mut first_log: Option<PathBuf> = None;
    for (d, polls) in completed.iter().enumerate() {
        let id = format!("hp{}", d + 1);
        let times: Vec<i64> = stored.get(&id).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let polls_ms: Vec<i64> = polls.iter().map(|&t| millis(t)).collect();
        let mut matched = vec![false; polls_ms.len()];
        let mut orphans: Vec<i64> = Vec::new();
        let mut next = 0;
        for &t in &times {
            while next < polls_ms.len() && (matched[next] || polls_ms[next] < t - 5) {
                next += 1;
            }
            if next < polls_ms.len() && polls_ms[next] <= t + 2_000 {
                matched[next] = true;
                next += 1;
            } else {
                orphans.push(t);
            }
        }
        let missing: Vec<usize> = (0..polls_ms.len()).filter(|&k| !matched[k]).collect();
        // The in-flight poll of a SIGKILL: the device's last completed poll of that run.
        let excused: Vec<usize> = missing
            .iter()
            .copied()
            .filter(|&k| {
                online_kills.iter().any(|c| {
                    let in_run = |t: SystemTime| t >= c.began && t <= c.ended;
                    in_run(polls[k]) && !polls[k + 1..].iter().any(|&t| in_run(t))
                })
            })
            .collect();
        total_missing += missing.len();
        total_excused += excused.len();
        let _ = writeln!(
            report,
            "  {id}: polls started {}, completed {}, points stored {}, missing {} (in flight at a SIGKILL: {}), \
             points without a poll {}",
            started[d],
            polls.len(),
            times.len(),
            missing.len(),
            excused.len(),
            orphans.len()
        );
        if times.len() > polls.len() {
            failures.push(format!(
                "{id}: {} distinct timestamps stored, {} polls completed",
                times.len(),
                polls.len()
            ));
        }
        if !orphans.is_empty() {
            failures.push(format!("{id}: points without a completed poll at (ms) {orphans:?}"));
        }
        for &k in missing.iter().filter(|k| !excused.contains(k)) {
            let t = polls[k];
            let cycle = done.iter().position(|c| t >= c.began && t <= c.ended);
            let (name, log) = match cycle {
                Some(c) => {
                    let run = &done[c];
                    let before = run.signalled.duration_since(t).map_or_else(
                        |_| "after the signal".to_string(),
                        |d| format!("{} ms before the {:?}", d.as_millis(), run.signal),
                    );
                    let name = if c + 1 == done.len() {
                        format!("the drain run, {before}")
                    } else {
                        format!("cycle {} ({:?}, ran {:?}), {before}", c + 1, run.outage, run.run_for)
                    };
                    (name, Some(&run.log))
                }
                None => ("no run".to_string(), None),
            };
            if first_log.is_none() {
                first_log = log.cloned();
            }
            failures.push(format!(
                "{id}: poll completed at {} ms (in {name}) is not in the database{}",
                millis(t),
                log.map(|l| format!(" — log {}", l.display())).unwrap_or_default()
            ));
        }
        // Poll boundaries as counted: each run cuts at most one poll short.
        if started[d] > polls.len() + done.len() {
            failures.push(format!(
                "{id}: {} polls started but only {} completed in {} runs: the poll count is not trustworthy",
                started[d],
                polls.len(),
                done.len()
            ));
        }
    }
    let polls_total: usize = completed.iter().map(Vec::len).sum();
    let stored_total: usize = stored.values().map(BTreeSet::len).sum();
    let offline = done.iter().filter(|c| c.outage == Outage::Devices).count();
    let db_down = done
        .iter()
        .filter(|c| matches!(c.outage, Outage::Database { .. }))
        .count();
    println!(
        "chaos summary: seed {seed}; {cycles} cycles + drain: {kills} SIGKILL, {terms} SIGTERM; \
         {offline} with every pump offline, {db_down} with the database down (VictoriaMetrics started {} times); \
         {DEVICES} pumps at a 1 s interval\n\
         chaos summary: polls completed on the device side {polls_total}, points found {stored_total}, \
         missing {total_missing} (allowance: one in-flight poll per device per SIGKILL of a run with pumps up = \
         {DEVICES} × {} = {}; missing polls that were such an in-flight poll: {total_excused}), \
         conflicting duplicates {}\n{report}",
        vm.starts,
        online_kills.len(),
        DEVICES * online_kills.len(),
        conflicts.len(),
    );

    assert!(
        polls_total > 0,
        "no poll completed: the plan's last request {last} is never answered"
    );
    // The rebuilds happened (not every one: a run may end before its reload).
    let rebuilt = (done.iter())
        .filter(|c| std::fs::read_to_string(&c.log).is_ok_and(|l| l.contains("Component rebuilt")))
        .count();
    println!("chaos summary: runs in which the InfluxDB sink and state_diff were rebuilt: {rebuilt}");
    if std::env::var_os("HPFLOW_CHAOS_BIN").is_none() && rebuilt == 0 {
        failures.push("no run rebuilt a component: the reload path was not exercised".to_string());
    }
    if !conflicts.is_empty() {
        failures.push(format!(
            "{} samples stored twice with different values, e.g.:\n  {}",
            conflicts.len(),
            conflicts.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ")
        ));
    }
    if !failures.is_empty() {
        let log = first_log
            .map(|l| format!("\n\nthe end of {}:\n{}", l.display(), tail(&l, 30)))
            .unwrap_or_default();
        // Kept for a look at the logs, the buffer and the database.
        if let Some(t) = tmp_guard.take() {
            let _ = t.keep();
        }
        const SHOWN: usize = 25;
        let more = match failures.len() {
            n if n > SHOWN => format!("\n… and {} more", n - SHOWN),
            _ => String::new(),
        };
        panic!(
            "seed {seed} (replay with HPFLOW_CHAOS_SEED={seed}), folder kept at {}:\n{}{more}\n\n\
             files under the data dir:\n{}{log}",
            dir.display(),
            failures[..failures.len().min(SHOWN)].join("\n"),
            listing(&setup.data_dir)
        );
    }
}

/// Distinct timestamps (ms) stored per `heat_pump_id`.
fn stored_times(vm: &Victoria) -> BTreeMap<String, BTreeSet<i64>> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for s in vm.export(r#"{__name__="heatpump_metrics_outside_temperature"}"#) {
        let device = s.labels.get("heat_pump_id").cloned().unwrap_or_default();
        out.entry(device).or_default().extend(s.samples.iter().map(|(t, _)| *t));
    }
    out
}
