//! A real VictoriaMetrics (Debian package `victoria-metrics`) for the process
//! tests that need a database speaking the InfluxDB v2 write API: started on a
//! free loopback port with its storage in a folder of the test's, stopped when
//! dropped, restartable on the same port and storage. A missing
//! `victoria-metrics` fails the test: it is never skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::{encode, free_port, http_get};

/// `victoria-metrics` from the PATH, else where the Debian package puts it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("victoria-metrics"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/victoria-metrics")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "victoria-metrics is missing: this test needs a real VictoriaMetrics; install it with \
                 `apt-get install victoria-metrics` (scripts/test installs it)"
            )
        })
}

/// One series of `/api/v1/export`: its labels (`__name__` included) and samples.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// (time in ms, value), as stored: duplicates are not merged.
    pub samples: Vec<(i64, f64)>,
}

/// A VictoriaMetrics of our own.
pub struct Victoria {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    /// How many times it was started.
    pub starts: u32,
}

impl Victoria {
    /// Starts one with its storage and log in `dir`, and waits until it answers.
    pub fn start(dir: &Path) -> Victoria {
        let mut vm = Victoria {
            child: None,
            dir: dir.to_path_buf(),
            port: free_port(),
            starts: 0,
        };
        vm.restart();
        vm
    }

    /// Starts it (again) on the same port and storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "VictoriaMetrics is already running");
        let bin = binary();
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("victoria-metrics.log"))
            .unwrap();
        let mut child = Command::new(&bin)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.dir.join("data").display()))
            .arg("-loggerLevel=ERROR")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let start = Instant::now();
        while http_get(self.port, "/health").is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("victoria-metrics exited with {status}:\n{}", self.log());
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("victoria-metrics did not come up within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.child = Some(child);
        self.starts += 1;
    }

    /// Stops it with SIGTERM and waits for it to exit. VictoriaMetrics answers a
    /// write before the samples reach its disk and flushes them on an orderly
    /// stop; a SIGKILL would lose the last second it acknowledged, which no
    /// client could notice, so a test that takes it away to check its clients
    /// stops it this way.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("victoria-metrics did not stop within 30 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("victoria-metrics.log")).unwrap_or_default()
    }

    /// As [`export`](Self::export), once everything VictoriaMetrics acknowledged
    /// is searchable: it answers a write before the rows leave its ingestion
    /// buffers, and `/internal/force_flush` does not reach those (a write
    /// acknowledged just before an export can be missing from it; seen with
    /// VictoriaMetrics 1.79 from Debian). So wait, then export until two exports a
    /// second apart agree.
    pub fn export_settled(&self, selector: &str) -> Vec<Series> {
        std::thread::sleep(Duration::from_secs(2));
        let count = |s: &[Series]| s.iter().map(|x| x.samples.len()).sum::<usize>();
        let mut last = self.export(selector);
        for _ in 0..10 {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.export(selector);
            if count(&now) == count(&last) {
                return now;
            }
            last = now;
        }
        panic!("the export of {selector} keeps changing");
    }

    /// Every raw sample of the series matching `selector` (after a force flush;
    /// see [`export_settled`](Self::export_settled) for what that misses).
    pub fn export(&self, selector: &str) -> Vec<Series> {
        http_get(self.port, "/internal/force_flush").expect("victoria-metrics flushes");
        let body = http_get(self.port, &format!("/api/v1/export?match[]={}", encode(selector)))
            .unwrap_or_else(|| panic!("victoria-metrics exports {selector}"));
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let j: Json = serde_json::from_str(l).unwrap_or_else(|e| panic!("export line is not JSON ({e}): {l}"));
                let labels = j["metric"]
                    .as_object()
                    .unwrap_or_else(|| panic!("no labels: {l}"))
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let times = j["timestamps"].as_array().cloned().unwrap_or_default();
                let values = j["values"].as_array().cloned().unwrap_or_default();
                assert_eq!(times.len(), values.len(), "one value per timestamp: {l}");
                let samples = times
                    .iter()
                    .zip(&values)
                    .map(|(t, v)| {
                        let t = t.as_i64().unwrap_or_else(|| panic!("timestamp {t} in {l}"));
                        // Export writes NaN and the infinities as strings.
                        let v = v
                            .as_f64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                            .unwrap_or_else(|| panic!("value {v} in {l}"));
                        (t, v)
                    })
                    .collect();
                Series { labels, samples }
            })
            .collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        // Orderly, so a kept folder holds what it accepted.
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
