//! `hpflow import` on HPManager's real config folder (tests/fixtures/hpmanager-config,
//! copied unchanged from HPManager) and on variants of it built in temporary
//! folders. Runs the real binary, then checks what it wrote with `hpflow validate`.

mod support;

use std::path::{Path, PathBuf};

use support::process::hpflow;
use support::{repo, shipped_registers};

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/hpmanager-config").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A temporary folder with a writable copy of the fixture in `hpm/`; the
/// import writes `out/imported.toml` and `out/imported/`.
struct Case {
    tmp: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let hpm = tmp.path().join("hpm");
        std::fs::create_dir(&hpm).unwrap();
        for name in ["heatpumps.yml", "registers.yml", "collector.yml", "display.yml"] {
            // Written, not copied: the copy must be writable whatever the fixture's mode.
            std::fs::write(hpm.join(name), read(&fixture(name))).unwrap();
        }
        Case { tmp }
    }

    fn hpm(&self, name: &str) -> PathBuf {
        self.tmp.path().join("hpm").join(name)
    }

    fn pipeline(&self) -> PathBuf {
        self.tmp.path().join("out/imported.toml")
    }

    fn copied(&self, name: &str) -> PathBuf {
        self.tmp.path().join("out/imported").join(name)
    }

    /// Replaces the one occurrence of `from` in an HPManager file.
    fn edit(&self, name: &str, from: &str, to: &str) {
        let text = read(&self.hpm(name));
        assert_eq!(text.matches(from).count(), 1, "{name} holds `{from}` once");
        std::fs::write(self.hpm(name), text.replacen(from, to, 1)).unwrap();
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.hpm(name), text).unwrap();
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.hpm(name)).unwrap();
    }

    fn run(&self, args: &[&str], token: Option<&str>) -> Run {
        let mut cmd = hpflow();
        cmd.args(args).current_dir(self.tmp.path());
        for var in [
            "INFLUXDB_URL",
            "INFLUXDB_ORG",
            "INFLUXDB_BUCKET",
            "INFLUXDB_TOKEN",
            "HPFLOW_DATA_DIR",
            "HPFLOW_LOG_FORMAT",
            "HPFLOW_METRICS_ADDRESS",
            "HPFLOW_DASHBOARD_ADDRESS",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        if let Some(t) = token {
            cmd.env("INFLUXDB_TOKEN", t);
        }
        let out = cmd.output().expect("hpflow runs");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(!run.stderr.contains("panicked"), "hpflow panicked:\n{run}");
        run
    }

    fn import(&self, extra: &[&str]) -> Run {
        let mut args = vec!["import", "hpm", "-o", "out/imported.toml"];
        args.extend_from_slice(extra);
        self.run(&args, None)
    }

    fn validate(&self, token: Option<&str>) -> Run {
        self.run(&["validate", "out/imported.toml"], token)
    }

    /// The written pipeline, parsed.
    fn toml(&self) -> toml::Table {
        toml::from_str(&read(&self.pipeline())).expect("the pipeline is TOML")
    }

    fn nothing_written(&self) -> bool {
        !self.tmp.path().join("out").exists()
    }
}

fn get<'a>(t: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or_default();
    let mut v = t.get(first).unwrap_or_else(|| panic!("no `{first}` in the pipeline"));
    for p in parts {
        v = v.get(p).unwrap_or_else(|| panic!("no `{path}` in the pipeline"));
    }
    v
}

fn s<'a>(t: &'a toml::Table, path: &str) -> &'a str {
    get(t, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

fn strings(t: &toml::Table, path: &str) -> Vec<String> {
    get(t, path)
        .as_array()
        .unwrap_or_else(|| panic!("`{path}` is not an array"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The report's line about one heat pump.
fn pump_line<'a>(report: &'a str, id: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("the report has no line for {id}:\n{report}"))
}

/// The lines of one report section, up to the next blank line.
fn section(report: &str, title: &str) -> String {
    report
        .split("\n\n")
        .find(|s| s.starts_with(title))
        .unwrap_or_else(|| panic!("the report has no `{title}` section:\n{report}"))
        .to_string()
}

#[test]
fn the_real_hpmanager_folder_imports_into_a_pipeline_that_validates() {
    let case = Case::new();
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");

    let text = read(&case.pipeline());
    assert!(
        text.starts_with("# Imported from HPManager by `hpflow import`"),
        "{text}"
    );
    let t = case.toml();
    assert_eq!(s(&t, "sources.heatpumps.type"), "modbus_tcp");
    assert_eq!(s(&t, "sources.heatpumps.devices"), "imported/heatpumps.yml");
    assert_eq!(s(&t, "sources.heatpumps.registers"), "imported/registers.yml");
    assert_eq!(s(&t, "sources.heatpumps.interval"), "10s");
    assert_eq!(strings(&t, "transforms.scaled.inputs"), ["heatpumps"]);
    assert_eq!(s(&t, "transforms.scaled.type"), "scale");
    assert_eq!(s(&t, "transforms.states.type"), "state_diff");
    assert_eq!(s(&t, "transforms.efficiency.type"), "efficiency");
    assert_eq!(strings(&t, "transforms.states.inputs"), ["efficiency"]);
    assert_eq!(s(&t, "sinks.influxdb.api"), "v2");
    assert_eq!(
        s(&t, "sinks.influxdb.endpoint"),
        "${INFLUXDB_URL:-http://influxdb:8086}"
    );
    assert_eq!(s(&t, "sinks.influxdb.org"), "${INFLUXDB_ORG:-heatpump-monitoring}");
    assert_eq!(s(&t, "sinks.influxdb.bucket"), "${INFLUXDB_BUCKET:-heatpump-data}");
    assert_eq!(s(&t, "sinks.influxdb.token"), "${INFLUXDB_TOKEN}");
    assert_eq!(get(&t, "sinks.influxdb.batch_max_points").as_integer(), Some(100));
    assert_eq!(s(&t, "sinks.influxdb.batch_timeout"), "5s");
    assert_eq!(s(&t, "sinks.influxdb.request_timeout"), "10s");
    assert_eq!(s(&t, "sinks.influxdb.retry_max"), "30s");
    assert_eq!(strings(&t, "sinks.influxdb.inputs"), ["states"]);
    assert_eq!(s(&t, "sinks.metrics.type"), "prometheus");
    assert_eq!(s(&t, "sinks.dashboard.display"), "imported/display.yml");

    for name in ["heatpumps.yml", "registers.yml", "display.yml"] {
        assert_eq!(
            read(&case.copied(name)),
            read(&fixture(name)),
            "{name} is copied unchanged"
        );
    }

    let report = &run.stdout;
    assert!(pump_line(report, "hp1").contains("tcp host.docker.internal:5074 unit 1: polled by sources.heatpumps"));
    assert!(pump_line(report, "hp2").contains("tcp host.docker.internal:5124 unit 1: polled by sources.heatpumps"));
    let dropped = section(report, "Not carried over:");
    assert!(
        dropped.contains("logging.file: /var/log/hpm-collector.log"),
        "{dropped}"
    );
    assert!(dropped.contains("collector.yml:17:3"), "{dropped}");
    assert!(dropped.contains("logging.format: json"), "{dropped}");
    assert!(
        dropped.contains("modbus.retries/retry_delay (hp1: retries 3, retry_delay 1.0; hp2:"),
        "{dropped}"
    );
    let carried = section(report, "Carried over:");
    assert!(
        carried.contains("collector.yml:2:3)\n      → sources.heatpumps.interval = \"10s\""),
        "{carried}"
    );
    assert!(carried.contains("sinks.influxdb.retry_max = \"30s\""), "{carried}");
    assert!(
        report.contains("valid: 1 source, 3 transforms, 3 sinks, 6 edges"),
        "{report}"
    );
    assert!(report.contains("stand-in for INFLUXDB_TOKEN"), "{report}");
    assert!(
        report.contains("INFLUXDB_TOKEN=… hpflow --log-format json run out/imported.toml"),
        "{report}"
    );

    let valid = case.validate(Some("t0ken"));
    assert_eq!(valid.code, Some(0), "{valid}");
    assert!(
        valid.stdout.contains("valid: 1 source, 3 transforms, 3 sinks, 6 edges"),
        "{valid}"
    );
    // The token stays required, as in HPManager: no token, no start.
    let unset = case.validate(None);
    assert_eq!(unset.code, Some(78), "{unset}");
    assert!(unset.stderr.contains("`INFLUXDB_TOKEN` is not set"), "{unset}");
}

const RTU_PUMP: &str = "\
- id: hp3
  name: Pool
  location: Cellar
  model: stiebel_eltron_wpm
  modbus:
    type: rtu
    port: /dev/ttyUSB0
    baudrate: 19200
    parity: E
    unit_id: 2
";

#[test]
fn tcp_and_rtu_pumps_get_a_source_for_each_transport() {
    let case = Case::new();
    let text = read(&case.hpm("heatpumps.yml"));
    case.write("heatpumps.yml", &format!("{text}{RTU_PUMP}"));
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    let t = case.toml();
    assert_eq!(s(&t, "sources.heatpumps.type"), "modbus_tcp");
    assert_eq!(s(&t, "sources.heatpumps_rtu.type"), "modbus_rtu");
    assert_eq!(s(&t, "sources.heatpumps_rtu.port"), "/dev/ttyUSB0");
    assert_eq!(get(&t, "sources.heatpumps_rtu.baud").as_integer(), Some(19200));
    assert_eq!(s(&t, "sources.heatpumps_rtu.parity"), "even");
    assert_eq!(s(&t, "sources.heatpumps_rtu.devices"), "imported/heatpumps.yml");
    // hp3 has no modbus.timeout: HPManager gave it 5 s, not hpflow's 1 s for a bus.
    assert_eq!(s(&t, "sources.heatpumps_rtu.timeout"), "5s");
    assert_eq!(strings(&t, "transforms.scaled.inputs"), ["heatpumps", "heatpumps_rtu"]);
    assert!(pump_line(&run.stdout, "hp3").contains("rtu /dev/ttyUSB0 unit 2: polled by sources.heatpumps_rtu"));
    assert!(pump_line(&run.stdout, "hp1").contains("polled by sources.heatpumps"));

    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
    assert!(valid.stdout.contains("valid: 2 sources"), "{valid}");
}

#[test]
fn rtu_pumps_on_two_ports_get_a_source_per_bus_and_no_tcp_source() {
    let case = Case::new();
    case.write(
        "heatpumps.yml",
        "heatpumps:
- id: hp1
  model: stiebel_eltron_wpm
  modbus:
    type: rtu
    port: /dev/ttyUSB0
    unit_id: 1
    timeout: 2.0
- id: hp2
  model: stiebel_eltron_wpm
  modbus:
    type: rtu
    port: /dev/ttyUSB1
    unit_id: 1
    timeout: 2.0
",
    );
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    let t = case.toml();
    let sources = get(&t, "sources").as_table().expect("a sources table");
    assert_eq!(
        sources.keys().collect::<Vec<_>>(),
        ["heatpumps_ttyUSB0", "heatpumps_ttyUSB1"]
    );
    assert_eq!(s(&t, "sources.heatpumps_ttyUSB0.type"), "modbus_rtu");
    assert_eq!(s(&t, "sources.heatpumps_ttyUSB1.port"), "/dev/ttyUSB1");
    assert_eq!(get(&t, "sources.heatpumps_ttyUSB1.baud").as_integer(), Some(9600));
    assert_eq!(s(&t, "sources.heatpumps_ttyUSB1.parity"), "none");
    // Both pumps set their own timeout, so the bus keeps hpflow's default.
    assert!(get(&t, "sources.heatpumps_ttyUSB0").get("timeout").is_none());
    assert_eq!(
        strings(&t, "transforms.scaled.inputs"),
        ["heatpumps_ttyUSB0", "heatpumps_ttyUSB1"]
    );
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
    assert!(
        valid.stdout.contains("valid: 2 sources, 3 transforms, 3 sinks"),
        "{valid}"
    );
}

#[test]
fn rtu_pumps_on_one_port_must_agree_on_its_line_settings() {
    let case = Case::new();
    let text = read(&case.hpm("heatpumps.yml"));
    let other = RTU_PUMP
        .replace("hp3", "hp4")
        .replace("baudrate: 19200", "baudrate: 9600");
    case.write("heatpumps.yml", &format!("{text}{RTU_PUMP}{other}"));
    let run = case.import(&[]);
    assert_eq!(run.code, Some(78), "{run}");
    // hp4's entry starts on line 42; its modbus section is line 46.
    assert!(run.stderr.contains("heatpumps.yml:46:3: error: heat pump `hp4` on /dev/ttyUSB0 is set to 9600 baud 8E1 but `hp3` on the same port to 19200 baud 8E1"), "{run}");
    assert!(case.nothing_written(), "{run}");
}

#[test]
fn a_disabled_pump_stays_in_the_file_is_reported_and_not_polled() {
    let case = Case::new();
    case.edit(
        "heatpumps.yml",
        "name: Heat Pump2\n  location: Garage\n  model: stiebel_eltron_wpm\n  enabled: true",
        "name: Heat Pump2\n  location: Garage\n  model: stiebel_eltron_wpm\n  enabled: false",
    );
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        pump_line(&run.stdout, "hp2").contains("DISABLED: kept in the file, not polled"),
        "{run}"
    );
    assert!(
        pump_line(&run.stdout, "hp1").contains("polled by sources.heatpumps"),
        "{run}"
    );
    assert!(!run.stdout.contains("no heat pump is enabled"), "{run}");
    let copy = read(&case.copied("heatpumps.yml"));
    assert_eq!(copy, read(&case.hpm("heatpumps.yml")));
    assert!(copy.contains("- id: hp2") && copy.contains("enabled: false"));
    assert!(read(&case.pipeline()).contains("# Modbus TCP heat pumps of heatpumps.yml: hp1 (disabled: hp2)."));
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
    assert!(!valid.stderr.contains("no enabled devices"), "{valid}");
}

#[test]
fn with_every_pump_disabled_the_pipeline_validates_but_says_it_polls_nothing() {
    let case = Case::new();
    let text = read(&case.hpm("heatpumps.yml")).replace("enabled: true", "enabled: false");
    case.write("heatpumps.yml", &text);
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("WARNING: no heat pump is enabled"), "{run}");
    assert!(pump_line(&run.stdout, "hp1").contains("DISABLED"), "{run}");
    // hpflow's own check says the same, in the report and in `hpflow validate`.
    assert!(
        run.stdout
            .contains("sources.heatpumps: no enabled devices: this source will poll nothing"),
        "{run}"
    );
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
    assert!(
        valid
            .stderr
            .contains("no enabled devices: this source will poll nothing"),
        "{valid}"
    );
}

#[test]
fn a_missing_registers_yml_is_replaced_by_the_built_in_map() {
    let case = Case::new();
    case.remove("registers.yml");
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    let builtin = read(&shipped_registers());
    assert_eq!(read(&case.copied("registers.yml")), builtin);
    assert!(
        run.stdout
            .contains("registers.yml is missing: hpflow's built-in map was written instead"),
        "{run}"
    );
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
}

#[test]
fn a_missing_collector_yml_gives_hpmanagers_defaults() {
    let case = Case::new();
    case.remove("collector.yml");
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    let t = case.toml();
    assert_eq!(s(&t, "sources.heatpumps.interval"), "10s");
    assert_eq!(
        s(&t, "sinks.influxdb.endpoint"),
        "${INFLUXDB_URL:-http://localhost:8086}"
    );
    assert_eq!(s(&t, "sinks.influxdb.org"), "${INFLUXDB_ORG:-heatpump-monitoring}");
    assert_eq!(s(&t, "sinks.influxdb.bucket"), "${INFLUXDB_BUCKET:-heatpump-data}");
    assert_eq!(s(&t, "sinks.influxdb.token"), "${INFLUXDB_TOKEN}");
    assert_eq!(get(&t, "sinks.influxdb.batch_max_points").as_integer(), Some(100));
    assert_eq!(s(&t, "sinks.influxdb.batch_timeout"), "5s");
    assert_eq!(s(&t, "sinks.influxdb.retry_max"), "30s");
    assert!(
        run.stdout
            .contains("collector.yml is missing: HPManager's collector defaults are used"),
        "{run}"
    );
    assert!(!run.stdout.contains("logging.file"), "{run}");
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
}

#[test]
fn a_missing_display_yml_leaves_the_dashboard_on_its_defaults() {
    let case = Case::new();
    case.remove("display.yml");
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    let t = case.toml();
    assert_eq!(s(&t, "sinks.dashboard.type"), "dashboard");
    assert!(get(&t, "sinks.dashboard").get("display").is_none());
    assert!(!case.copied("display.yml").exists());
    assert!(
        run.stdout
            .contains("display.yml is missing: the dashboard gets no `display` key"),
        "{run}"
    );
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
}

#[test]
fn a_missing_heatpumps_yml_is_an_error_and_nothing_is_written() {
    let case = Case::new();
    case.remove("heatpumps.yml");
    let run = case.import(&[]);
    assert_eq!(run.code, Some(78), "{run}");
    assert!(run.stderr.contains("heatpumps.yml: error: not found"), "{run}");
    assert!(run.stderr.contains("nothing was written"), "{run}");
    assert!(case.nothing_written(), "{run}");
}

#[test]
fn a_missing_folder_or_a_file_instead_of_one_is_a_clear_error() {
    let case = Case::new();
    let run = case.run(&["import", "no-such-folder", "-o", "out/imported.toml"], None);
    assert_eq!(run.code, Some(78), "{run}");
    assert!(
        run.stderr
            .contains("cannot open HPManager's config folder no-such-folder"),
        "{run}"
    );
    let run = case.run(&["import", "hpm/heatpumps.yml", "-o", "out/imported.toml"], None);
    assert_eq!(run.code, Some(78), "{run}");
    assert!(
        run.stderr.contains("hpm/heatpumps.yml is a file, not a folder"),
        "{run}"
    );
    assert!(case.nothing_written());
}

#[test]
fn unknown_keys_are_reported_with_file_line_and_key_and_left_in_the_copies() {
    let case = Case::new();
    case.edit("heatpumps.yml", "  location: Garage\n  model: stiebel_eltron_wpm\n  enabled: true\n  modbus:\n    type: tcp\n    # Docker: use host.docker.internal with port forwarding (netsh portproxy)\n    # Native: use 192.168.8.74", "  location: Garage\n  colour: red\n  model: stiebel_eltron_wpm\n  enabled: true\n  modbus:\n    type: tcp\n    # Docker: use host.docker.internal with port forwarding (netsh portproxy)\n    # Native: use 192.168.8.74");
    case.edit(
        "collector.yml",
        "  retry_interval: 30  # seconds between reconnection attempts\n",
        "  retry_interval: 30  # seconds between reconnection attempts\n  precision: s\n",
    );
    let display = read(&case.hpm("display.yml"));
    case.write("display.yml", &format!("theme: dark\n{display}"));
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    let warnings = section(&run.stdout, "Warnings:");
    assert!(
        warnings.contains("hpm/heatpumps.yml:5:3: warning: unknown key `heatpumps[0].colour`"),
        "{warnings}"
    );
    assert!(
        warnings.contains("hpm/collector.yml:13:3: warning: unknown key `influxdb.precision` (not carried over)"),
        "{warnings}"
    );
    assert!(
        warnings.contains("hpm/display.yml:1:1: warning: unknown key `theme`"),
        "{warnings}"
    );
    assert!(read(&case.copied("heatpumps.yml")).contains("colour: red"));
    assert!(!read(&case.pipeline()).contains("precision"));
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{valid}");
}

#[test]
fn an_unknown_key_in_registers_yml_is_hpflows_error_and_nothing_is_written() {
    let case = Case::new();
    case.edit(
        "registers.yml",
        "      - name: outside_temperature\n",
        "      - name: outside_temperature\n        colour: red\n",
    );
    let run = case.import(&[]);
    assert_eq!(run.code, Some(78), "{run}");
    assert!(
        run.stderr.contains(
            "hpm/registers.yml:20:9: error: register `outside_temperature` of model `stiebel_eltron_wpm`: unknown key `colour`"
        ),
        "{run}"
    );
    assert!(case.nothing_written(), "{run}");
}

#[test]
fn yaml_syntax_errors_name_the_file_line_and_column() {
    let broken = [
        (
            "heatpumps.yml",
            "heatpumps:\n- id: hp1\n  name: \"Heat Pump 1\n",
            "hpm/heatpumps.yml:4:1: error: invalid YAML",
        ),
        (
            "registers.yml",
            "models:\n  m:\n    registers: [\n",
            "hpm/registers.yml:4:1: error: invalid YAML",
        ),
        (
            "collector.yml",
            "collector:\n  poll_interval: 10\n   batch_size: 100\n",
            "hpm/collector.yml:3:14: error: invalid YAML: mapping values are not allowed in this context",
        ),
        (
            "display.yml",
            "refresh_interval: 10\nvisible_fields:\n  hp1: [a, b\n",
            "hpm/display.yml:4:1: error: invalid YAML",
        ),
    ];
    for (name, text, expected) in broken {
        let case = Case::new();
        case.write(name, text);
        let run = case.import(&[]);
        assert_eq!(run.code, Some(78), "{name}: {run}");
        assert!(run.stderr.contains(expected), "{name}: expected `{expected}`\n{run}");
        assert!(case.nothing_written(), "{name}: {run}");
    }
}

#[test]
fn bad_collector_values_are_errors_at_their_line() {
    let case = Case::new();
    case.edit("collector.yml", "poll_interval: 10 ", "poll_interval: -5 ");
    case.edit("collector.yml", "batch_size: 100 ", "batch_size: lots ");
    let run = case.import(&[]);
    assert_eq!(run.code, Some(78), "{run}");
    assert!(
        run.stderr.contains(
            "hpm/collector.yml:2:3: error: `collector.poll_interval` must be a positive number of seconds, not `-5`"
        ),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("hpm/collector.yml:3:3: error: `collector.batch_size` must be a whole number"),
        "{run}"
    );
    assert!(run.stderr.contains("2 problems"), "{run}");
    assert!(case.nothing_written());
}

#[test]
fn plain_influxdb_values_keep_hpmanagers_env_override_and_a_written_token_is_not_copied() {
    let case = Case::new();
    case.edit(
        "collector.yml",
        "url: ${INFLUXDB_URL:-http://influxdb:8086}",
        "url: http://10.1.2.3:8086",
    );
    case.edit("collector.yml", "token: ${INFLUXDB_TOKEN}", "token: s3cret-t0ken");
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{run}");
    let text = read(&case.pipeline());
    assert!(!text.contains("s3cret-t0ken"), "{text}");
    let t = case.toml();
    assert_eq!(
        s(&t, "sinks.influxdb.endpoint"),
        "${INFLUXDB_URL:-http://10.1.2.3:8086}"
    );
    assert_eq!(s(&t, "sinks.influxdb.token"), "${INFLUXDB_TOKEN}");
    let dropped = section(&run.stdout, "Not carried over:");
    assert!(
        dropped.contains("influxdb.token (its value) (") && dropped.contains("collector.yml:10:3"),
        "{dropped}"
    );
    assert!(
        dropped.contains("set INFLUXDB_TOKEN to the token from collector.yml"),
        "{dropped}"
    );
}

#[test]
fn an_existing_import_is_not_overwritten_without_force() {
    let case = Case::new();
    let first = case.import(&[]);
    assert_eq!(first.code, Some(0), "{first}");
    std::fs::write(case.pipeline(), "# my own edits\n").unwrap();
    std::fs::write(case.copied("heatpumps.yml"), "heatpumps: []\n").unwrap();

    let again = case.import(&[]);
    assert_eq!(again.code, Some(73), "{again}");
    assert!(again.stderr.contains("already exist; nothing was written"), "{again}");
    assert!(again.stderr.contains("--force"), "{again}");
    assert_eq!(read(&case.pipeline()), "# my own edits\n");
    assert_eq!(read(&case.copied("heatpumps.yml")), "heatpumps: []\n");

    // With the token set, the check is `hpflow validate`'s own, with no stand-in.
    let forced = case.run(&["import", "hpm", "-o", "out/imported.toml", "--force"], Some("t"));
    assert_eq!(forced.code, Some(0), "{forced}");
    assert!(forced.stdout.contains("out/imported.toml: valid: 1 source"), "{forced}");
    assert!(!forced.stdout.contains("stand-in"), "{forced}");
    assert!(read(&case.pipeline()).starts_with("# Imported from HPManager"));
    assert_eq!(read(&case.copied("heatpumps.yml")), read(&fixture("heatpumps.yml")));
}

#[test]
fn a_pipeline_that_fails_hpflows_check_is_written_and_the_errors_point_into_the_copies() {
    let case = Case::new();
    case.edit("heatpumps.yml", "port: 5074", "port: 99999");
    let run = case.import(&[]);
    assert_eq!(run.code, Some(78), "{run}");
    assert!(
        run.stderr.contains(
            "out/imported/heatpumps.yml:12:5: error: sources.heatpumps: heat pump `hp1`: `port` must be 1-65535, not 99999"
        ),
        "{run}"
    );
    assert!(
        run.stderr.contains("error: the files were written, but hpflow's check"),
        "{run}"
    );
    assert!(
        run.stdout.contains("out/imported.toml: 1 error, printed below"),
        "{run}"
    );
    assert!(run.stdout.contains("Next, once the errors below are fixed:"), "{run}");
    assert_eq!(read(&case.copied("heatpumps.yml")), read(&case.hpm("heatpumps.yml")));
    assert!(read(&case.pipeline()).starts_with("# Imported from HPManager"));
}

// Shapes HPManager accepted (read by its dashboard, src/webapp/config_manager.py,
// and its collector, src/collector/main.py) that hpflow must take too.

/// The fixture with `name` replaced by `text`, imported (exit 0) and the result
/// validated (exit 0, with a token).
fn accepted(name: &str, text: &str) -> (Case, Run) {
    let case = Case::new();
    case.write(name, text);
    let run = case.import(&[]);
    assert_eq!(run.code, Some(0), "{name}: {text:?}\n{run}");
    let valid = case.validate(Some("t"));
    assert_eq!(valid.code, Some(0), "{name}: {text:?}\n{valid}");
    (case, run)
}

/// The one line of the "Not carried over" section about `what`, with its reason.
fn dropped_item(report: &str, what: &str) -> String {
    let dropped = section(report, "Not carried over:");
    let start = dropped
        .find(&format!("  {what} ("))
        .unwrap_or_else(|| panic!("`{what}` is not reported as dropped:\n{dropped}"));
    dropped[start..].lines().take(2).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_flat_visible_fields_list_is_ignored_as_hpmanager_did_and_reported() {
    for display in [
        "refresh_interval: 15\nvisible_fields: [outside_temperature, flow_temperature]\n",
        "refresh_interval: 15\nvisible_fields:\n- outside_temperature\n- flow_temperature\n",
    ] {
        // `validate` passing: the dashboard reads the copy the same way.
        let (case, run) = accepted("display.yml", display);
        let item = dropped_item(&run.stdout, "visible_fields: [outside_temperature, flow_temperature]");
        assert!(item.contains("(hpm/display.yml:2:1)"), "{item}");
        assert!(item.contains("HPManager ignored them too"), "{item}");
        assert!(item.contains("/settings page"), "how to choose a pump's tiles: {item}");
        let carried = section(&run.stdout, "Carried over:");
        assert!(
            carried.contains("display.yml: refresh_interval, sparkline_minutes\n"),
            "{carried}"
        );
        assert_eq!(read(&case.copied("display.yml")), display, "copied unchanged");
    }
}

#[test]
fn a_single_value_as_visible_fields_is_ignored_as_hpmanager_did_and_reported() {
    let (_, run) = accepted(
        "display.yml",
        "sparkline_minutes: 30\nvisible_fields: outside_temperature\n",
    );
    let item = dropped_item(&run.stdout, "visible_fields: outside_temperature");
    assert!(item.contains("(hpm/display.yml:2:1)"), "{item}");
    assert!(item.contains("HPManager ignored them too"), "{item}");
}

#[test]
fn an_empty_or_null_display_yml_gives_the_dashboards_defaults() {
    for display in ["", "# settings come later\n", "~\n", "null\n"] {
        let (case, run) = accepted("display.yml", display);
        assert_eq!(s(&case.toml(), "sinks.dashboard.display"), "imported/display.yml");
        assert!(
            !section(&run.stdout, "Not carried over:").contains("display.yml"),
            "{run}"
        );
    }
}

#[test]
fn visible_fields_left_empty_gives_no_per_pump_fields() {
    for display in [
        "refresh_interval: 20\nvisible_fields:\n",
        "refresh_interval: 20\nvisible_fields: {}\n",
    ] {
        let (_, run) = accepted("display.yml", display);
        assert!(
            !section(&run.stdout, "Not carried over:").contains("visible_fields"),
            "{run}"
        );
    }
}

#[test]
fn a_pump_listed_with_no_fields_gets_the_default_tiles_and_is_reported() {
    let (_, run) = accepted(
        "display.yml",
        "refresh_interval: 10\nvisible_fields:\n  hp1: []\n  hp2:\n  - outside_temperature\n",
    );
    let item = dropped_item(&run.stdout, "visible_fields.hp1: []");
    assert!(item.contains("(hpm/display.yml:3:3)"), "{item}");
    assert!(
        item.contains("HPManager showed `hp1`'s card with no tiles") && item.contains("default tiles"),
        "{item}"
    );
    assert!(!run.stdout.contains("visible_fields.hp2"), "{run}");
}

#[test]
fn an_empty_collector_yml_gives_hpmanagers_defaults() {
    let (case, _) = accepted("collector.yml", "");
    let t = case.toml();
    assert_eq!(s(&t, "sources.heatpumps.interval"), "10s");
    assert_eq!(get(&t, "sinks.influxdb.batch_max_points").as_integer(), Some(100));
    assert_eq!(
        s(&t, "sinks.influxdb.endpoint"),
        "${INFLUXDB_URL:-http://localhost:8086}"
    );
}

#[test]
fn an_empty_heatpumps_yml_imports_a_pipeline_that_polls_nothing() {
    for heatpumps in ["", "heatpumps: []\n"] {
        let (_, run) = accepted("heatpumps.yml", heatpumps);
        assert!(run.stdout.contains("none: heatpumps.yml lists no heat pumps"), "{run}");
    }
}

/// heatpumps.yml with hp1 as HPManager's fixture has it, then `more`.
fn with_hp1(more: &str) -> String {
    format!(
        "heatpumps:
- id: hp1
  name: Heat Pump 1
  location: Garage
  model: stiebel_eltron_wpm
  modbus:
    host: 192.0.2.10
{more}"
    )
}

#[test]
fn enabled_is_read_as_hpmanager_read_it() {
    // PyYAML's YAML 1.1 booleans, and Python's truth: an empty value and 0 are false.
    let cases = [
        ("", false),
        (" no", false),
        (" off", false),
        (" 0", false),
        (" yes", true),
        (" on", true),
        (" 1", true),
    ];
    let hp2 = |value: &str| {
        with_hp1(&format!(
            "- id: hp2\n  model: stiebel_eltron_wpm\n  enabled:{value}\n  modbus:\n    host: 192.0.2.11\n"
        ))
    };
    for (value, polled) in cases {
        let (_, run) = accepted("heatpumps.yml", &hp2(value));
        let line = pump_line(&run.stdout, "hp2");
        assert_eq!(
            line.contains("polled by sources.heatpumps"),
            polled,
            "enabled:{value}: {line}"
        );
        assert_eq!(line.contains("DISABLED"), !polled, "enabled:{value}: {line}");
    }
    // What HPManager would have taken as true by accident is refused.
    let case = Case::new();
    case.write("heatpumps.yml", &hp2(" maybe"));
    let run = case.import(&[]);
    assert_eq!(run.code, Some(78), "{run}");
    assert!(
        run.stderr
            .contains("hpm/heatpumps.yml:10:3: error: heat pump `hp2`: `enabled` must be true or false"),
        "{run}"
    );
    assert!(case.nothing_written());
}

#[test]
fn a_disabled_pump_that_hpmanager_never_read_may_be_incomplete() {
    let (case, run) = accepted(
        "heatpumps.yml",
        &with_hp1(
            "- id: hp2
  name: Old pump
  enabled: false
- id: hp3
  model: nibe_f1255
  enabled: false
  modbus:
    host: 192.0.2.12
- id: hp1
  model: stiebel_eltron_wpm
  enabled: false
  modbus:
    port: 99999
- name: never named
  enabled: false
",
        ),
    );
    assert!(
        pump_line(&run.stdout, "hp1").contains("polled by sources.heatpumps"),
        "{run}"
    );
    for id in ["hp2", "hp3"] {
        assert!(pump_line(&run.stdout, id).contains("DISABLED"), "{run}");
    }
    let warnings = section(&run.stdout, "Warnings:");
    for expected in [
        "hpm/heatpumps.yml:8:1: warning: heat pump `hp2` has no `modbus` section; the entry is disabled",
        "hpm/heatpumps.yml:12:3: warning: heat pump `hp3`: model `nibe_f1255` is not in the register map",
        "hpm/heatpumps.yml:16:3: warning: heat pump id `hp1` is used twice, by a disabled entry",
        "hpm/heatpumps.yml:21:1: warning: heat pump #5 has no `id`; the entry is disabled",
    ] {
        assert!(warnings.contains(expected), "expected `{expected}`\n{warnings}");
    }
    // Said once, from HPManager's file: hpflow's check finds the same in the copy.
    assert!(!warnings.contains("out/imported/heatpumps.yml"), "{warnings}");
    // `hpflow validate` warns about them too.
    let valid = case.validate(Some("t"));
    assert!(
        valid
            .stderr
            .contains("heat pump `hp3`: unknown model `nibe_f1255`; the register map has: stiebel_eltron_wpm; the entry is disabled"),
        "{valid}"
    );
}

#[test]
fn a_disabled_rtu_pump_may_disagree_with_its_bus_and_is_reported() {
    let text = read(&fixture("heatpumps.yml"));
    let other = RTU_PUMP
        .replace("hp3", "hp4")
        .replace("baudrate: 19200", "baudrate: 9600")
        .replace("  modbus:", "  enabled: false\n  modbus:");
    // The disabled one first: the bus still takes the enabled pump's line.
    let (case, run) = accepted("heatpumps.yml", &format!("{text}{other}{RTU_PUMP}"));
    assert_eq!(
        get(&case.toml(), "sources.heatpumps_rtu.baud").as_integer(),
        Some(19200)
    );
    assert!(pump_line(&run.stdout, "hp4").contains("DISABLED"), "{run}");
    let item = dropped_item(&run.stdout, "the serial line of `hp4`: 9600 baud 8E1");
    assert!(item.contains("(hpm/heatpumps.yml:37:3)"), "{item}");
    assert!(item.contains("/dev/ttyUSB0 runs at 19200 baud 8E1 (`hp3`'s)"), "{item}");
}
