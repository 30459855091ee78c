//! `hpflow demo` as the README's first command runs it: the shipped
//! pipelines/demo.toml (only its Modbus port moved to a free one, and the HTTP
//! addresses through the variables the file offers), simulated heat pumps
//! in-process, the dashboard and the metrics endpoint live, SIGTERM → exit 0;
//! with `INFLUXDB_URL` set, a real InfluxDB 1.x filled too; and with no pipeline
//! at all, the one built into the binary, from an empty folder.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::influxd::Influxd;
use support::process::{hpflow, terminate, wait_for, Killed};
use support::{free_port, http_get, http_get_any, shipped_pipelines, shipped_registers};

/// GET on loopback: status and body, or None while nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_any(port, path)
}

/// The shipped demo pipeline in `dir`, with its Modbus port replaced and the
/// register map path pointing back into the repository.
fn demo_pipeline(dir: &Path, modbus_port: u16) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(shipped_pipelines().join("demo.toml")).unwrap();
    assert_eq!(
        shipped.matches("port = 5020").count(),
        2,
        "the demo has two pumps on port 5020"
    );
    let registers = shipped_registers();
    let text = shipped
        .replace("port = 5020", &format!("port = {modbus_port}"))
        .replace(
            "\"../config/registers.yml\"",
            &toml::Value::String(registers.display().to_string()).to_string(),
        );
    let path = dir.join("demo.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `hpflow demo` (add the pipeline, if any) with its state in `data`, its
/// dashboard and metrics on the given loopback ports, polling every 500 ms, and
/// no InfluxDB.
fn demo(data: &Path, dashboard: u16, metrics: u16) -> Command {
    let mut cmd = hpflow();
    cmd.arg("demo")
        .env("HPFLOW_DATA_DIR", data)
        .env("HPFLOW_DASHBOARD_ADDRESS", format!("127.0.0.1:{dashboard}"))
        .env("HPFLOW_METRICS_ADDRESS", format!("127.0.0.1:{metrics}"))
        .env("HPFLOW_POLL_INTERVAL", "500ms")
        .env_remove("INFLUXDB_URL");
    cmd
}

fn metric(body: &str, name: &str, pump: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("heat_pump_id=\"{pump}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn demo_serves_live_simulated_values_on_the_dashboard_and_metrics_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (modbus, dashboard, metrics) = (free_port(), free_port(), free_port());
    let pipeline = demo_pipeline(dir.path(), modbus);
    let mut child = demo(&dir.path().join("data"), dashboard, metrics)
        .arg(&pipeline)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hpflow demo starts");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);

    // The banner: both pumps and the URLs to open.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    while !banner.iter().any(|l: &String| l.starts_with("Stop with")) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => banner.push(l),
            Err(_) => panic!("demo printed no banner; so far: {banner:#?}"),
        }
    }
    let banner = banner.join("\n");
    assert!(
        banner.contains(&format!("dashboard  http://127.0.0.1:{dashboard}/")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("metrics    http://127.0.0.1:{metrics}/metrics")),
        "{banner}"
    );
    assert!(
        banner.contains("Air source (garage)") && banner.contains("Ground source (cellar)"),
        "{banner}"
    );
    assert!(banner.contains(&format!("127.0.0.1:{modbus} unit 2")), "{banner}");

    // Both pumps answer and their values reach Prometheus.
    let mut body = String::new();
    wait_for("both pumps up on /metrics", Duration::from_secs(30), || {
        body = get(metrics, "/metrics").map(|(_, b)| b).unwrap_or_default();
        ["hp1", "hp2"]
            .iter()
            .all(|p| metric(&body, "heatpump_up", p) == Some(1.0))
    });
    for pump in ["hp1", "hp2"] {
        let t = metric(&body, "heatpump_outside_temperature_celsius", pump)
            .unwrap_or_else(|| panic!("{pump} has an outdoor temperature:\n{body}"));
        assert!((-30.0..45.0).contains(&t), "{pump} outdoor {t} °C is plausible");
        let flow = metric(&body, "heatpump_actual_flow_temperature_celsius", pump);
        assert!(flow.is_some_and(|f| (10.0..80.0).contains(&f)), "{pump} flow {flow:?}");
    }
    // The efficiency transform's figures reach Prometheus with their kinds and
    // units, and the whole exposition is promtool-clean.
    for pump in ["hp1", "hp2"] {
        let heat = metric(&body, "heatpump_heat_joules_total", pump);
        let el = metric(&body, "heatpump_electricity_joules_total", pump);
        assert!(heat.is_some_and(|h| h > 0.0), "{pump} heat counter {heat:?}");
        assert!(el.is_some_and(|e| e > 0.0), "{pump} electricity counter {el:?}");
        let el_today = metric(&body, "heatpump_electricity_today_joules", pump).expect("electricity today");
        let cop = metric(&body, "heatpump_cop_today", pump);
        if el_today > 0.0 {
            assert!(
                cop.is_some_and(|c| (1.0..=6.0).contains(&c)),
                "{pump} COP today {cop:?}"
            );
        } else {
            assert_eq!(cop, None, "{pump}: no electricity today, no COP");
        }
        assert!(
            metric(&body, "heatpump_short_cycling", pump).is_some(),
            "{pump} short_cycling"
        );
        assert!(metric(&body, "heatpump_compressor_starts_total", pump).is_some());
    }
    for line in [
        "# TYPE heatpump_heat_joules_total counter",
        "# TYPE heatpump_heat_today_joules gauge",
    ] {
        assert!(body.lines().any(|l| l == line), "{line}");
    }
    let (clean, report) = support::prometheus::promtool_check(&body);
    assert!(clean, "promtool check metrics:\n{report}");

    // Two pumps with their own weather: the simulated values differ.
    assert_ne!(
        metric(&body, "heatpump_outside_temperature_celsius", "hp1"),
        metric(&body, "heatpump_outside_temperature_celsius", "hp2")
    );

    // The dashboard shows both by name, with the values just served.
    let (status, page) = get(dashboard, "/").expect("dashboard answers");
    assert_eq!(status, 200);
    assert!(page.contains("Air source (garage)") && page.contains("Ground source (cellar)"));
    assert!(page.contains("hpflow demo"), "the demo's title");
    let (status, api) = get(dashboard, "/api/pumps/hp1").expect("dashboard API answers");
    assert_eq!(status, 200, "{api}");
    let json: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(json.to_string().contains("outside_temperature"), "{json}");

    // Values move: the simulated clock runs, so a later scrape differs somewhere.
    let first: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with("heatpump_"))
        .map(String::from)
        .collect();
    wait_for("values to change", Duration::from_secs(30), || {
        let now = get(metrics, "/metrics").map(|(_, b)| b).unwrap_or_default();
        let later: Vec<String> = now
            .lines()
            .filter(|l| l.starts_with("heatpump_"))
            .map(String::from)
            .collect();
        !later.is_empty() && later != first
    });

    let mut child = child;
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exit = None;
    wait_for("demo to exit after SIGTERM", Duration::from_secs(30), || {
        exit = child.0.try_wait().unwrap();
        exit.is_some()
    });
    assert!(exit.unwrap().success(), "demo exits 0 after SIGTERM: {exit:?}");
    // The dashboard saved its history in the data folder it was given.
    assert!(dir.path().join("data/dashboard/dashboard").exists());
}

/// `hpflow demo` alone, in an empty folder, as after `cargo install` or in the
/// container image: the pipeline and the register map come from the binary.
#[test]
fn demo_without_a_pipeline_runs_the_built_in_one_from_an_empty_folder() {
    let cwd = tempfile::tempdir().unwrap();
    // The demo's own temporary folder goes here, to see that it is removed.
    let tmp = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (modbus, dashboard, metrics) = (free_port(), free_port(), free_port());
    let child = demo(data.path(), dashboard, metrics)
        .args(["--modbus-port", &modbus.to_string()])
        .current_dir(cwd.path())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hpflow demo starts");
    let mut child = Killed(child);

    // The dashboard shows both simulated pumps, each on its own page with its values.
    wait_for("both pumps' pages on the dashboard", Duration::from_secs(30), || {
        let overview = http_get(dashboard, "/").unwrap_or_default();
        let hp2 = http_get(dashboard, "/pump/hp2").unwrap_or_default();
        overview.contains("Air source (garage)")
            && overview.contains("Ground source (cellar)")
            && hp2.contains("Ground source (cellar)")
            && hp2.contains("outside_temperature")
    });
    let page = http_get(dashboard, "/").unwrap();
    assert!(page.contains("hpflow demo"), "the built-in demo's title");
    let scrape = http_get(metrics, "/metrics").expect("the metrics answer");
    assert!(scrape.contains("heatpump_up{"), "{scrape}");

    let status = terminate(&mut child.0, Duration::from_secs(30));
    assert!(status.success(), "demo exits 0 after SIGTERM: {status:?}");
    assert!(
        data.path().join("dashboard/dashboard").exists(),
        "state went to HPFLOW_DATA_DIR"
    );
    let left = |dir: &Path| std::fs::read_dir(dir).unwrap().count();
    assert_eq!(left(cwd.path()), 0, "nothing written into the working folder");
    assert_eq!(left(tmp.path()), 0, "the built-in pipeline's folder is removed");
}

#[test]
fn demo_refuses_devices_it_cannot_stand_in_for() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = demo_pipeline(dir.path(), free_port());
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replacen("host = \"127.0.0.1\"", "host = \"192.0.2.10\"", 1);
    std::fs::write(&pipeline, text).unwrap();
    let out = hpflow().arg("demo").arg(&pipeline).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("device `hp1` is at 192.0.2.10") && err.contains("only simulates devices at 127.0.0.1"),
        "{err}"
    );

    let out = hpflow().args(["demo", "no/such/demo.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the demo pipeline no/such/demo.toml"), "{err}");
}

#[test]
fn demo_says_which_address_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let pipeline = demo_pipeline(dir.path(), taken.local_addr().unwrap().port());
    let out = hpflow()
        .arg("demo")
        .arg(&pipeline)
        .env("HPFLOW_DATA_DIR", dir.path().join("data"))
        .env("HPFLOW_DASHBOARD_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env("HPFLOW_METRICS_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot simulate the heat pumps at {}",
            taken.local_addr().unwrap()
        )),
        "{err}"
    );
}

#[test]
fn demo_with_influxdb_url_writes_both_pumps_into_a_real_influxdb() {
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(&dir.path().join("influxd"));
    influxd.query("hpdemo", "CREATE DATABASE hpdemo");
    let pipeline = demo_pipeline(dir.path(), free_port());
    let mut child = hpflow()
        .arg("demo")
        .arg(&pipeline)
        .env("HPFLOW_DATA_DIR", dir.path().join("data"))
        .env("HPFLOW_DASHBOARD_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env("HPFLOW_METRICS_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env("HPFLOW_POLL_INTERVAL", "500ms")
        .env("INFLUXDB_URL", influxd.url())
        .env("INFLUXDB_DATABASE", "hpdemo")
        .env_remove("INFLUXDB_TOKEN")
        .env_remove("INFLUXDB_BUCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hpflow demo starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The rest of stdout is closed unread: the demo must carry on regardless.
    let _child = Killed(child);
    assert!(first.starts_with("hpflow demo: 2 simulated heat pumps"), "{first}");

    let count = |pump: &str| -> i64 {
        let j = influxd.query(
            "hpdemo",
            &format!("SELECT count(\"outside_temperature\") FROM heatpump_metrics WHERE heat_pump_id = '{pump}'"),
        );
        j["results"][0]["series"][0]["values"][0][1].as_i64().unwrap_or(0)
    };
    wait_for("both pumps' points in InfluxDB", Duration::from_secs(30), || {
        count("hp1") >= 3 && count("hp2") >= 3
    });
    // HPManager's schema: its tags on every point.
    let tags = influxd.query("hpdemo", "SHOW TAG KEYS FROM heatpump_metrics");
    let keys: Vec<&str> = tags["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v[0].as_str())
        .collect();
    for key in ["heat_pump_id", "location", "model", "name"] {
        assert!(keys.contains(&key), "tag {key} in {keys:?}");
    }
    // The efficiency transform's fields, with the types their descriptions give.
    let fields = influxd.query("hpdemo", "SHOW FIELD KEYS FROM heatpump_metrics");
    let types: std::collections::BTreeMap<&str, &str> = fields["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| Some((v[0].as_str()?, v[1].as_str()?)))
        .collect();
    for (field, ty) in [
        ("heat_kwh", "float"),
        ("electricity_kwh", "float"),
        ("heat_today_kwh", "float"),
        ("compressor_starts", "integer"),
        ("short_cycling", "boolean"),
    ] {
        assert_eq!(types.get(field), Some(&ty), "{field} in {types:?}");
    }
}
