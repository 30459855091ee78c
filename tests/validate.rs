//! `hpflow validate` on every case under tests/cases/: each folder holds a
//! `pipeline.toml` and either `expected.txt` (the exact error and warning lines,
//! with `$DIR` for the case folder) for an invalid pipeline, or `valid.txt`
//! (lines the summary must contain) for a valid one. Runs the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.join("pipeline.toml").exists())
        .collect();
    v.sort();
    v
}

fn validate(case: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpflow"))
        .arg("validate")
        .arg(case.join("pipeline.toml"))
        .env_remove("HPFLOW_DATA_DIR")
        .env("HPFLOW_TEST_SECRET", "s3cret")
        .env_remove("HPFLOW_TEST_UNSET")
        .env_remove("HPFLOW_ADMIN_TOKEN")
        .output()
        .expect("hpflow runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_case_gives_its_expected_diagnostics() {
    let cases = cases();
    let invalid = cases.iter().filter(|c| c.join("expected.txt").exists()).count();
    assert!(invalid >= 25, "at least 25 invalid cases, found {invalid}");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (code, stdout, stderr) = validate(case);
        assert!(!stderr.contains("panicked"), "{name}: hpflow panicked:\n{stderr}");
        let dir = case.display().to_string();
        if let Ok(expected) = std::fs::read_to_string(case.join("expected.txt")) {
            if code != Some(78) {
                failures.push(format!("{name}: exit code {code:?}, expected 78\n{stderr}"));
                continue;
            }
            let want: Vec<String> = expected
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.replace("$DIR", &dir))
                .collect();
            let got: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains(": error: ") || l.contains(": warning: "))
                .collect();
            if got != want.iter().map(String::as_str).collect::<Vec<_>>() {
                failures.push(format!(
                    "{name}: diagnostics differ\n--- expected\n{}\n--- got\n{}",
                    want.join("\n"),
                    got.join("\n")
                ));
            }
        } else {
            let want = std::fs::read_to_string(case.join("valid.txt")).unwrap_or_default();
            if code != Some(0) {
                failures.push(format!("{name}: exit code {code:?}, expected 0\n{stderr}"));
                continue;
            }
            for l in want.lines().filter(|l| !l.trim().is_empty()) {
                let l = l.replace("$DIR", &dir);
                if !stdout.contains(&l) && !stderr.contains(&l) {
                    failures.push(format!("{name}: output lacks `{l}`\n{stdout}{stderr}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_file_is_a_config_error_not_a_panic() {
    let (code, _, stderr) = validate(Path::new("/nonexistent/hpflow-case"));
    assert_eq!(code, Some(78));
    assert!(stderr.contains("cannot read pipeline file"), "{stderr}");
}

#[test]
fn a_short_admin_token_in_the_environment_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        "[sources.s]\ntype = \"modbus_tcp\"\nregisters = \"r.yml\"\n\n[sinks.d]\ntype = \"dashboard\"\ninputs = [\"s\"]\naddress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("r.yml"),
        "models:\n  m:\n    registers:\n      - {name: t, address: 1, register_type: input}\n",
    )
    .unwrap();
    let run = |token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_hpflow"))
            .arg("validate")
            .arg(&path)
            .env("HPFLOW_ADMIN_TOKEN", token)
            .env_remove("HPFLOW_DATA_DIR")
            .output()
            .expect("hpflow runs");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let short = run("hunter2");
    assert!(
        short.contains("warning: sinks.d: HPFLOW_ADMIN_TOKEN is shorter than 16 characters"),
        "{short}"
    );
    assert!(!short.contains("hunter2"), "the token itself is never printed: {short}");
    let long = run("0123456789abcdef0123456789abcdef");
    assert!(!long.contains("HPFLOW_ADMIN_TOKEN is shorter"), "{long}");
}
