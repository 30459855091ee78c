//! The dashboard and the Prometheus endpoint of a real `hpflow run` against
//! hostile clients: slow-loris clients that send a header byte at a time, and
//! connections that say nothing, are closed within `header_read_timeout` while
//! normal requests still answer; past `max_connections`, new connections are
//! closed at once and established clients keep working.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::process::{hpflow, simulator, wait_for, Killed};
use support::{free_port, http_get_any, shipped_registers};

const TIMEOUT_SECS: u64 = 1;
const MAX_CONNECTIONS: usize = 6;

fn pipeline(dir: &std::path::Path, modbus: u16, metrics: u16, dashboard: u16, timeout_secs: u64) -> std::path::PathBuf {
    let text = format!(
        r#"
data_dir = "state"

[sources.heatpumps]
type = "modbus_tcp"
registers = "{registers}"
interval = "1s"

[[sources.heatpumps.devices]]
id = "hp1"
host = "127.0.0.1"
port = {modbus}
model = "stiebel_eltron_wpm"

[transforms.scaled]
type = "scale"
inputs = ["heatpumps"]

[sinks.metrics]
type = "prometheus"
inputs = ["scaled"]
address = "127.0.0.1:{metrics}"
header_read_timeout = "{timeout_secs}s"
max_connections = {MAX_CONNECTIONS}

[sinks.dashboard]
type = "dashboard"
inputs = ["scaled"]
address = "127.0.0.1:{dashboard}"
header_read_timeout = "{timeout_secs}s"
max_connections = {MAX_CONNECTIONS}
"#,
        registers = shipped_registers().display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Seconds until the server closes `s` (reads 0 bytes or fails), while `feed`
/// runs between reads; `None` if it is still open after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration, mut feed: impl FnMut(&mut TcpStream) -> bool) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
        if !feed(s) {
            return Some(start.elapsed());
        }
    }
    None
}

/// One whole request on an open keep-alive connection; the status it got.
fn ask(s: &mut TcpStream, path: &str) -> Option<u16> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    // Read the head, then the body by its length.
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return head.split(' ').nth(1)?.parse().ok();
            }
        }
    }
}

fn slow_clients_are_closed(port: u16, path: &str, what: &str) {
    let limit = Duration::from_secs(TIMEOUT_SECS) * 3;
    // Slow loris: one header byte every 300 ms never completes the head.
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    let lorises: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    // Each slow client trickles in its own thread, all at once.
    let trickling: Vec<_> = lorises
        .into_iter()
        .map(|mut s| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                let mut last = Instant::now() - Duration::from_secs(1);
                let closed = closed_within(&mut s, limit, |s| {
                    if last.elapsed() >= Duration::from_millis(300) && sent < request.len() {
                        last = Instant::now();
                        sent += 1;
                        return s.write_all(&request.as_bytes()[sent - 1..sent]).is_ok();
                    }
                    true
                });
                (closed.map(|_| started.elapsed()), sent)
            })
        })
        .collect();
    // While they trickle, a normal request answers.
    let (status, _) = http_get_any(port, path).expect("a normal request answers");
    assert_eq!(status, 200, "{what}: a normal request during the slow clients");
    for (i, t) in trickling.into_iter().enumerate() {
        let (closed, sent) = t.join().unwrap();
        let at = closed.unwrap_or_else(|| panic!("{what}: slow client {i} still open after {limit:?}"));
        assert!(
            sent > 0 && sent < request.len(),
            "{what}: slow client {i} sent {sent} bytes"
        );
        assert!(
            at >= Duration::from_millis(TIMEOUT_SECS * 900) && at < limit,
            "{what}: slow client {i} closed {at:?} after it opened, not at the {TIMEOUT_SECS} s timeout"
        );
        eprintln!(
            "{what}: slow client {i} closed {:.2} s after it opened, {sent} bytes sent one at a time",
            at.as_secs_f64()
        );
    }
    closed_within(&mut silent, limit, |_| true).unwrap_or_else(|| panic!("{what}: a silent connection still open"));
    let silent_at = started.elapsed();
    eprintln!(
        "{what}: silent connection closed {:.2} s after it opened",
        silent_at.as_secs_f64()
    );
    assert!(silent_at < limit, "{what}: the silent connection outlived {limit:?}");
}

fn the_connection_cap_holds(port: u16, path: &str, what: &str) {
    // Up to the cap, kept-alive clients are served; one more is closed at once,
    // and the established ones keep working.
    let mut clients: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ask(c, path), Some(200), "{what}: client {i} within the cap");
    }
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = write!(extra, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let refused = closed_within(&mut extra, Duration::from_secs(2), |_| true);
    assert!(
        refused.is_some_and(|d| d < Duration::from_secs(1)),
        "{what}: a connection past the cap is closed at once ({refused:?})"
    );
    for c in clients.iter_mut() {
        assert_eq!(ask(c, path), Some(200), "{what}: an established client past the cap");
    }
    drop(clients.pop());
    wait_for("a freed slot to be usable", Duration::from_secs(5), || {
        TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| ask(&mut s, path))
            == Some(200)
    });
}

/// Runs `hpflow run` with both servers at `timeout_secs`; gives their ports.
fn run(dir: &std::path::Path, modbus: u16, timeout_secs: u64) -> (Killed, u16, u16) {
    let (metrics, dashboard) = (free_port(), free_port());
    let path = pipeline(dir, modbus, metrics, dashboard, timeout_secs);
    let child = Killed(
        hpflow()
            .arg("run")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("hpflow run starts"),
    );
    wait_for("both servers to answer", Duration::from_secs(30), || {
        http_get_any(metrics, "/metrics").is_some_and(|(s, _)| s == 200)
            && http_get_any(dashboard, "/").is_some_and(|(s, _)| s == 200)
    });
    (child, metrics, dashboard)
}

#[test]
fn slow_and_silent_clients_are_closed_and_the_connection_cap_holds() {
    let (_sim, modbus) = simulator();
    let dir = tempfile::tempdir().unwrap();
    {
        let (_run, metrics, dashboard) = run(dir.path(), modbus, TIMEOUT_SECS);
        slow_clients_are_closed(metrics, "/metrics", "prometheus");
        slow_clients_are_closed(dashboard, "/", "dashboard");
    }
    // The cap with a timeout long enough that kept-alive clients stay open on a busy machine.
    let dir = tempfile::tempdir().unwrap();
    let (_run, metrics, dashboard) = run(dir.path(), modbus, 60);
    the_connection_cap_holds(metrics, "/metrics", "prometheus");
    the_connection_cap_holds(dashboard, "/", "dashboard");
}
