//! What the process-level benchmarks share: reading a process's CPU time and
//! peak memory from /proc, and running `hpflow simulate` children. Cargo does
//! not take a folder under `benches/` for a benchmark of its own.

// Each benchmark uses part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Ports per `hpflow simulate` child (its `--devices` allows up to 247).
pub const PER_CHILD: usize = 200;
/// /proc reports CPU time in USER_HZ ticks, 100 a second on every Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `HPFLOW_BIN`, else the release build of `hpflow`, which must exist.
pub fn hpflow_bin() -> PathBuf {
    let bin = std::env::var_os("HPFLOW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/release/hpflow"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release --bin hpflow` first (or set HPFLOW_BIN)",
        bin.display()
    );
    bin
}

/// An environment setting, parsed, or `default` when unset.
pub fn env_or<T>(key: &str, default: T, parse: impl Fn(&str) -> Option<T>) -> T {
    match std::env::var(key) {
        Ok(v) => parse(&v).unwrap_or_else(|| panic!("{key}={v:?} does not parse")),
        Err(_) => default,
    }
}

/// True when cargo runs this as a benchmark (`cargo bench`), not as a smoke
/// test under `cargo test --all-targets`.
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// CPU time (user + system) of a process (`"self"` or a pid), from /proc/<pid>/stat.
pub fn cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC)
}

/// Peak resident set (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child processes, killed (by their own pid) when dropped.
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Children {
    pub fn pids(&self) -> Vec<String> {
        self.0.iter().map(|c| c.id().to_string()).collect()
    }
}

/// Starts `n` simulated heat pumps in `hpflow simulate --layout ports`
/// children, one loopback port each, serving `registers` (default: the map
/// built into hpflow); returns the children and every port.
pub fn spawn_simulators(n: usize, registers: Option<&Path>) -> (Children, Vec<u16>) {
    let bin = hpflow_bin();
    let mut children = Children(Vec::new());
    let mut ports = Vec::new();
    for (i, first) in (0..n).step_by(PER_CHILD).enumerate() {
        let count = PER_CHILD.min(n - first);
        let mut cmd = Command::new(&bin);
        cmd.args(["simulate", "--listen", "127.0.0.1:0", "--layout", "ports"])
            .args(["--devices", &count.to_string(), "--seed", &(1 + first).to_string()]);
        if let Some(map) = registers {
            cmd.arg("--registers").arg(map);
        }
        let mut child = cmd
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

/// The value at quantile `p` (0–1) of sorted samples.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The tags HPManager's layout gives simulated pump `d` with id `id`:
/// heat_pump_id, name, location and model.
pub fn pump_tags(id: &str, d: usize, location: &str, model: &str) -> BTreeMap<String, String> {
    [
        ("heat_pump_id", id.to_string()),
        ("name", format!("Heat pump {d}")),
        ("location", location.to_string()),
        ("model", model.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The schema of the shipped map's `stiebel_eltron_wpm` model, from `config/registers.yml`.
pub fn shipped_schema() -> std::sync::Arc<hpflow::event::Schema> {
    let map = hpflow::registers::RegisterMap::load(manifest_dir().join("config/registers.yml"))
        .expect("the shipped register map loads");
    map.model("stiebel_eltron_wpm")
        .expect("the shipped model")
        .schema()
        .clone()
}
