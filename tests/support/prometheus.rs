//! A real Prometheus and its `promtool` (Debian package `prometheus`): a server
//! that scrapes an endpoint, and a judge of an exposition. A missing binary fails
//! the test: it is never skipped. The Prometheus sink's own tests
//! (src/sinks/prometheus/tests.rs) include this file and `net.rs` beside it.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::net::free_port;

/// `promtool check metrics` on `text`: whether it passed without a remark, and
/// what it said.
pub fn promtool_check(text: &str) -> (bool, String) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run `promtool` ({e}): install the Debian package `prometheus` (scripts/test installs it); \
             this test does not skip"
        ),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("promtool runs");
    writer.join().expect("writer thread").expect("promtool reads its input");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && report.trim().is_empty(), report)
}

/// A running `prometheus`, killed when dropped; `log` holds what it said.
pub struct Server {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus on a free loopback port, scraping `target` every second,
/// its files in `dir`. A missing `prometheus` fails the test.
pub fn start_prometheus(dir: &Path, target: std::net::SocketAddr) -> (Server, u16) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: hpflow\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.join("prometheus.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `prometheus` ({e}): install the Debian package `prometheus` \
                 (scripts/test installs it)"
            )
        });
    (Server { child, log }, port)
}
