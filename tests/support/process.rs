//! Helpers for tests that run the real `hpflow` binary as a user would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed and reaped when the test ends, pass or fail.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn hpflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hpflow"))
}

/// Starts `hpflow simulate` on a free port and returns it with the port it printed.
pub fn simulator() -> (Killed, u16) {
    simulator_with(&["--devices", "1"])
}

/// As `simulator`, with more `hpflow simulate` arguments (`--devices 2`, `--speed 600`…).
pub fn simulator_with(args: &[&str]) -> (Killed, u16) {
    let mut child = hpflow()
        .args(["simulate", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hpflow simulate starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok());
    (
        Killed(child),
        port.unwrap_or_else(|| panic!("simulate prints its address: {line:?}")),
    )
}

/// Polls `f` every 50 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `sig` (`KILL`, `TERM`…) to `child` with `kill`; fails the test if it cannot.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {}", child.id());
}

/// Sends SIGTERM and waits for the process to exit; fails the test if it is still
/// running after `within`. Returns its exit status.
pub fn terminate(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let killed = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {}", child.id());
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "hpflow did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
