//! The Modbus sources' config through the real loader and compile pass: every
//! problem at once, each at its key (or in the file it is in), and HPManager's
//! `heatpumps.yml` read as it is.

mod support;

use std::path::Path;
use std::time::Duration;

use hpflow::config::{compile, load_str};
use hpflow::event::Value;
use support::modbus::{run_tcp, serve_fake, write_map, FakeDevice};
use support::shipped_registers;

/// Every diagnostic of a pipeline (errors and warnings), as `validate` prints them.
fn diagnostics(dir: &Path, pipeline: &str) -> Vec<String> {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, pipeline).unwrap();
    let env = |_: &str| None;
    let d = match load_str(&path, pipeline, &env) {
        Err(d) => d,
        Ok((file, diags)) => match compile(file, diags) {
            Ok((_, warnings)) => warnings,
            Err(d) => d,
        },
    };
    let dir = dir.display().to_string();
    d.0.iter().map(|d| d.to_string().replace(&dir, "$DIR")).collect()
}

fn has(diags: &[String], needle: &str) -> bool {
    diags.iter().any(|d| d.contains(needle))
}

fn pipeline(source: &str) -> String {
    format!("{source}\n[sinks.out]\ntype = \"console\"\ninputs = [\"hp\"]\n")
}

fn registers() -> String {
    format!("{:?}", shipped_registers().display().to_string())
}

#[test]
fn every_device_problem_is_reported_at_once_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let src = format!(
        r#"[sources.hp]
type = "modbus_tcp"
registers = {}
interval = "0s"
max_registers = 200
in_flight = 17

[[sources.hp.devices]]
id = "hp1"
model = "stiebel_eltron_wmp"
host = "10.0.0.5"

[[sources.hp.devices]]
id = "hp1"
model = "stiebel_eltron_wpm"
host = "10.0.0.6"
port = 0
unit_id = 300

[[sources.hp.devices]]
id = "hp3"
model = "stiebel_eltron_wpm"
"#,
        registers()
    );
    let d = diagnostics(dir.path(), &pipeline(&src));
    let want = [
        "pipeline.toml:4:1: error: sources.hp: `interval` must be longer than 0s",
        "pipeline.toml:5:1: error: sources.hp: `max_registers` must be 1-125 (the Modbus limit), not 200",
        "pipeline.toml:6:1: error: sources.hp: `in_flight` must be 1-16 (1 sends one request at a time), not 17",
        "pipeline.toml:10:1: error: sources.hp: unknown model `stiebel_eltron_wmp`; the register map has: stiebel_eltron_wpm",
        "pipeline.toml:14:1: error: sources.hp: device id `hp1` is used twice",
        "pipeline.toml:17:1: error: sources.hp: `port` must be 1-65535, not 0",
        "pipeline.toml:18:1: error: sources.hp: `unit_id` must be 0-247, not 300",
        "error: sources.hp: device `hp3` needs a `host`",
    ];
    for w in want {
        assert!(has(&d, w), "missing `{w}` in:\n{}", d.join("\n"));
    }
}

#[test]
fn an_unknown_key_in_a_device_table_is_located_at_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let src = format!(
        "[sources.hp]\ntype = \"modbus_tcp\"\nregisters = {}\n\n[[sources.hp.devices]]\nid = \"hp1\"\nmodel = \"stiebel_eltron_wpm\"\nhost = \"h\"\ncolour = \"red\"\n",
        registers()
    );
    let d = diagnostics(dir.path(), &pipeline(&src));
    assert!(
        has(&d, "pipeline.toml:9:1: error: sources.hp: unknown key `colour`"),
        "{}",
        d.join("\n")
    );
    let src = format!(
        "[sources.hp]\ntype = \"modbus_tcp\"\nregisters = {}\ndevices = 5\n",
        registers()
    );
    let d = diagnostics(dir.path(), &pipeline(&src));
    assert!(
        has(&d, "pipeline.toml:4:11: error: sources.hp: invalid type: integer `5`, expected a path to a heatpumps.yml file, or an array of device tables"),
        "{}",
        d.join("\n")
    );
}

#[test]
fn register_map_problems_point_into_the_map() {
    let dir = tempfile::tempdir().unwrap();
    write_map(
        dir.path(),
        "models:\n  m:\n    registers:\n      - {name: a, address: 1, data_type: int17}\n",
    );
    let src = "[sources.hp]\ntype = \"modbus_tcp\"\nregisters = \"map.yml\"\n\n[[sources.hp.devices]]\nid = \"hp1\"\nmodel = \"m\"\nhost = \"h\"\n";
    let d = diagnostics(dir.path(), &pipeline(src));
    assert!(
        d.iter()
            .any(|l| l.starts_with("$DIR/map.yml:4:") && l.contains("int17")),
        "{}",
        d.join("\n")
    );
}

const HEATPUMPS: &str = "heatpumps:
- id: hp1
  name: Heat Pump 1
  location: Garage
  model: stiebel_eltron_wpm
  enabled: true
  modbus:
    type: tcp
    host: 127.0.0.1
    port: PORT
    unit_id: 1
    timeout: 2.5
    retries: 3
    retry_delay: 1.0
- id: hp2
  name: Heat Pump 2
  location: Cellar
  model: stiebel_eltron_wpm
  enabled: false
  modbus:
    type: tcp
    host: 127.0.0.1
    port: 1
- id: hp3
  name: Pool
  location: Garden
  model: stiebel_eltron_wpm
  modbus:
    type: rtu
    port: /dev/ttyUSB0
    unit_id: 2
";

#[test]
fn heatpumps_yml_problems_point_into_that_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("heatpumps.yml"), HEATPUMPS.replace("PORT", "99999")).unwrap();
    let src = format!(
        "[sources.hp]\ntype = \"modbus_tcp\"\nregisters = {}\ndevices = \"heatpumps.yml\"\n",
        registers()
    );
    let d = diagnostics(dir.path(), &pipeline(&src));
    assert!(
        has(
            &d,
            "$DIR/heatpumps.yml:10:5: error: sources.hp: heat pump `hp1`: `port` must be 1-65535, not 99999"
        ),
        "{}",
        d.join("\n")
    );
    assert!(
        has(&d, "warning: sources.hp: heat pump `hp3` is an rtu device; skipped"),
        "{}",
        d.join("\n")
    );
}

#[test]
fn two_rtu_sources_cannot_share_a_serial_port() {
    let dir = tempfile::tempdir().unwrap();
    let one = |id: &str| {
        format!(
            "[sources.{id}]\ntype = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\nregisters = {}\n\n[[sources.{id}.devices]]\nid = \"hp1\"\nmodel = \"stiebel_eltron_wpm\"\n",
            registers()
        )
    };
    let text = format!(
        "{}\n{}\n[sinks.out]\ntype = \"console\"\ninputs = [\"a\", \"b\"]\n",
        one("a"),
        one("b")
    );
    let d = diagnostics(dir.path(), &text);
    assert!(
        d.iter().any(|l| l.contains("error") && l.contains("/dev/ttyUSB0")),
        "{}",
        d.join("\n")
    );
    let bad = format!(
        "[sources.hp]\ntype = \"modbus_rtu\"\nport = \"/dev/ttyUSB1\"\nparity = \"mark\"\nregisters = {}\n\n[[sources.hp.devices]]\nid = \"hp1\"\nmodel = \"stiebel_eltron_wpm\"\nhost = \"h\"\n",
        registers()
    );
    let d = diagnostics(dir.path(), &pipeline(&bad));
    assert!(
        has(&d, "pipeline.toml:4:10: error: sources.hp: unknown variant `mark`"),
        "{}",
        d.join("\n")
    );
}

#[tokio::test]
async fn a_heatpumps_yml_is_polled_as_it_is_disabled_and_rtu_entries_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(
        dir.path(),
        "models:\n  stiebel_eltron_wpm:\n    registers:\n      - {name: outside_temperature, address: 506, register_type: input, scale: 0.1}\n",
    );
    let dev = FakeDevice::new();
    dev.set(4, 506, &[55]);
    let server = serve_fake(dev).await;
    std::fs::write(
        dir.path().join("heatpumps.yml"),
        HEATPUMPS.replace("PORT", &server.addr.port().to_string()),
    )
    .unwrap();
    let toml =
        format!("registers = \"{map}\"\ndevices = \"heatpumps.yml\"\ninterval = \"200ms\"\nphase_spread = false\n");
    let mut src = run_tcp("hpm_file", dir.path(), &toml);
    for _ in 0..3 {
        let m = src.next(Duration::from_secs(3), "polls of hp1").await;
        assert_eq!(&*m.device, "hp1", "hp2 is disabled, hp3 is on a serial bus");
        assert_eq!(m.fields.get("outside_temperature"), Some(&Value::Int(55)));
        let tags: Vec<(&str, &str)> = m.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            tags,
            [
                ("heat_pump_id", "hp1"),
                ("location", "Garage"),
                ("model", "stiebel_eltron_wpm"),
                ("name", "Heat Pump 1")
            ]
        );
    }
    src.stop().await;
}
