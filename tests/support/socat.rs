//! A pair of pseudo-terminals joined by `socat` (Debian package `socat`), for
//! Modbus RTU over a serial line. A missing `socat` fails the test: it is
//! never skipped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A socat pty pair; killed when dropped.
pub struct PtyPair {
    child: Child,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn socat_pair() -> PtyPair {
    let mut child = Command::new("socat")
        .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("socat is required for the Modbus RTU tests and could not be started ({e}); install it, e.g. `apt-get install socat`")
        });
    let stderr = child.stderr.take().expect("socat's stderr is piped");
    // socat announces each end as "... N PTY is /dev/pts/7" before it starts copying.
    let mut paths = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("socat's stderr is readable");
        if let Some(i) = line.find("PTY is ") {
            paths.push(PathBuf::from(line[i + 7..].trim()));
        }
        if paths.len() == 2 {
            break;
        }
    }
    assert_eq!(paths.len(), 2, "socat did not announce two pseudo-terminals");
    PtyPair {
        child,
        b: paths.pop().unwrap(),
        a: paths.pop().unwrap(),
    }
}
