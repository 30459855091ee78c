//! Prometheus's `promtool` (Debian package `prometheus`), to judge an
//! exposition. A missing `promtool` fails the test: it is never skipped.

use std::io::Write;
use std::process::{Command, Stdio};

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
