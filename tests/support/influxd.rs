//! A real InfluxDB 1.x (`influxd`, Debian package `influxdb`) for the tests that
//! need one: started on free loopback ports with its data in a folder of the
//! test's, killed when dropped. Restartable on the same port and data, for tests
//! that take it away. A missing `influxd` fails the test: it is never skipped.
//!
//! The InfluxDB sink's own tests (src/sinks/influxdb/tests.rs) include this file
//! and `net.rs` beside it, so it uses nothing else of `support`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::net::{encode, free_port, http_get, http_get_any};

/// `influxd` from the PATH, else where the Debian package puts it.
fn influxd_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("influxd")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/influxd")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "influxd is missing: this test needs a real InfluxDB 1.x server; install it with \
                 `apt-get install influxdb` (scripts/test installs it)"
            )
        })
}

/// The configuration of a quiet `influxd` keeping everything in `dir`, serving
/// HTTP on loopback `http_port` (its RPC port a free one), with `extra_http`
/// lines added to its `[http]` section. Also used by the sink's own tests in
/// src/sinks/influxdb/tests.rs.
pub fn config(dir: &Path, http_port: u16, extra_http: &str) -> String {
    let d = dir.display();
    format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
         [meta]\ndir = \"{d}/meta\"\nlogging-enabled = false\n\
         [data]\ndir = \"{d}/data\"\nwal-dir = \"{d}/wal\"\nquery-log-enabled = false\n\
         [monitor]\nstore-enabled = false\n[continuous_queries]\nenabled = false\n\
         [http]\nbind-address = \"127.0.0.1:{http_port}\"\nlog-enabled = false\n{extra_http}\n",
        rpc = free_port(),
    )
}

/// An `influxd` of our own.
pub struct Influxd {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
}

impl Influxd {
    /// Starts one with its configuration, data and log in `dir`, and waits until it answers.
    pub fn start(dir: &Path) -> Influxd {
        let mut s = Influxd {
            child: None,
            dir: dir.to_path_buf(),
            port: free_port(),
        };
        s.restart();
        s
    }

    /// Starts it (again) on the same HTTP port and data.
    pub fn restart(&mut self) {
        let bin = influxd_binary();
        let config = config(&self.dir, self.port, "");
        std::fs::create_dir_all(&self.dir).unwrap();
        let conf = self.dir.join("influxd.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(self.dir.join("influxd.log")).unwrap();
        let mut child = Command::new(&bin)
            .arg("-config")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let start = Instant::now();
        while http_get(self.port, "/ping").is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("influxd exited with {status}:\n{}", self.log());
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("influxd did not come up within 15 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Kills it hard; its WAL keeps what it accepted.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("influxd.log")).unwrap_or_default()
    }

    /// Runs InfluxQL against database `db` (times in ms since the epoch) and returns
    /// the whole answer, errors included.
    pub fn query_raw(&self, db: &str, q: &str) -> Json {
        let path = format!("/query?db={}&epoch=ms&q={}", encode(db), encode(q));
        let (status, body) = http_get_any(self.port, &path).unwrap_or_else(|| panic!("influxd answers {q}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: HTTP {status}, not JSON ({e}): {body}"))
    }

    /// As `query_raw`, failing the test when InfluxDB reports an error.
    pub fn query(&self, db: &str, q: &str) -> Json {
        let j = self.query_raw(db, q);
        assert!(j.get("error").is_none(), "{q}: {j}");
        assert!(j["results"][0].get("error").is_none(), "{q}: {j}");
        j
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}
