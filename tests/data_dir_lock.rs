//! One hpflow per data_dir: a second `hpflow run` on the same data folder stops at
//! start with an error naming the lock file and the holder's pid, before it builds
//! anything, so it never opens the first one's buffers or state files. The lock
//! goes with the process, even one killed with SIGKILL.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use support::process::{hpflow, simulator, terminate, wait_for, Killed};
use support::{free_port, shipped_registers, SCALED_STATES};

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p, (bytes, e.metadata().unwrap().modified().unwrap()));
            }
        }
    }
    out
}

fn run(pipeline: &Path) -> Command {
    let mut cmd = hpflow();
    cmd.args(["--log-format", "json", "run"])
        .arg(pipeline)
        .env_remove("HPFLOW_DATA_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn stop(mut child: Killed, log: &Path) {
    assert!(child.0.try_wait().unwrap().is_none(), "still running before SIGTERM");
    let status = terminate(&mut child.0, Duration::from_secs(30));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit after SIGTERM ({:?}):\n{}",
        status.signal(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn a_second_hpflow_on_one_data_dir_is_refused_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (sim, modbus) = simulator();
    let data = tmp.path().join("data");
    // The database is down (nothing listens there): polls wait in the disk buffer.
    let pipeline = tmp.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"data_dir = "data"
[sources.heatpumps]
type = "modbus_tcp"
registers = "{registers}"
interval = "1s"
[[sources.heatpumps.devices]]
id = "hp1"
host = "127.0.0.1"
port = {modbus}
model = "stiebel_eltron_wpm"

{SCALED_STATES}
[sinks.influx]
type = "influxdb"
inputs = ["states"]
endpoint = "http://127.0.0.1:{db}"
database = "hp"
"#,
            registers = shipped_registers().display(),
            db = free_port(),
        ),
    )
    .unwrap();

    let first_log = std::fs::File::create(tmp.path().join("first.log")).unwrap();
    let first = Killed(run(&pipeline).stdout(Stdio::null()).stderr(first_log).spawn().unwrap());
    let buffer = data.join("influxdb/influx");
    let has_segment = || {
        std::fs::read_dir(&buffer)
            .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "seg")))
            .unwrap_or(false)
    };
    wait_for(
        "the first hpflow to buffer a poll",
        Duration::from_secs(20),
        has_segment,
    );
    let lock = data.join("hpflow.lock");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        first.0.id().to_string(),
        "the lock file names its holder"
    );

    // The second one must not add, remove or rewrite anything. With the pump gone
    // and the database down, the first one writes nothing either.
    drop(sim);
    std::thread::sleep(Duration::from_millis(2500));
    let pid = first.0.id().to_string();
    let before = snapshot(&data);
    let second: Output = run(&pipeline).output().unwrap();
    let after = snapshot(&data);

    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        second.status.code(),
        Some(75),
        "exit code EX_TEMPFAIL; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&lock.display().to_string()),
        "names the lock file: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {pid}")),
        "names the holder's pid: {stderr}"
    );
    assert!(
        !stderr.contains("Starting hpflow") && !stderr.contains("component"),
        "nothing was built or started: {stderr}"
    );
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    assert!(before == after, "the second hpflow changed files in the data folder");

    // After a clean stop the folder is free again; after a SIGKILL too (the kernel
    // drops the lock with the process).
    stop(first, &tmp.path().join("first.log"));
    let mut third = Killed(
        run(&pipeline)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let third_pid = third.0.id().to_string();
    wait_for("the third hpflow to take the lock", Duration::from_secs(20), || {
        std::fs::read_to_string(&lock).is_ok_and(|s| s.trim() == third_pid)
    });
    third.0.kill().unwrap();
    third.0.wait().unwrap();
    let fourth = Killed(
        run(&pipeline)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let fourth_pid = fourth.0.id().to_string();
    wait_for("a new hpflow to start after a SIGKILL", Duration::from_secs(20), || {
        std::fs::read_to_string(&lock).is_ok_and(|s| s.trim() == fourth_pid)
    });
    stop(fourth, Path::new("/dev/null"));
}
