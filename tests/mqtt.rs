//! The `mqtt` sink against a real broker (mosquitto) and a simulated heat
//! pump, with `hpflow run` as a user runs it, over MQTT 3.1.1 and MQTT 5
//! alike: the state equals `hpflow read --json`, every discovery config
//! follows Home Assistant's rules and every state gives each entity a value HA
//! accepts, availability follows the pump (and `offline_after`), nothing
//! retained is lost over a broker restart, the newest state is published after
//! the broker was away, dropped fields and removed pumps are removed from Home
//! Assistant (also across restarts), the last will says offline, and wrong
//! credentials or a wrong CA fail loudly, naming the sink.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

use hpflow::commands::read;
use hpflow::registers::RegisterMap;
use hpflow::sim::{Clock, SimOptions, Simulator, TcpServer};
use serde_json::{Map, Value as Json};
use support::modbus::read_args;
use support::mosquitto::{make_tls, Mosquitto, PASSWORD, USER};
use support::process::{hpflow, terminate, wait_for, Killed};
use support::{ha, shipped_registers, wpm_schema};

const WAIT: Duration = Duration::from_secs(30);

/// 2026-01-15 (a winter day) at `h`:`m` UTC.
fn at(h: u64, m: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_435_200 + h * 3600 + m * 60)
}

fn simulator(t: SystemTime) -> Simulator {
    let map = RegisterMap::load(shipped_registers()).expect("the shipped map loads");
    let model = map.model("stiebel_eltron_wpm").expect("the WPM model").clone();
    Simulator::new(SimOptions {
        seed: 7,
        controller_id: Some(449),
        clock: Clock::Frozen(t),
        time_zone: jiff::tz::TimeZone::UTC,
        ..SimOptions::new(model)
    })
    .expect("simulator options are valid")
}

/// A pipeline polling one simulated pump every second into an `mqtt` sink,
/// through `scale` and `efficiency`; `extra` is added to the sink's keys.
fn pipeline(dir: &Path, sim_port: u16, broker_port: u16, extra: &str) -> PathBuf {
    pipeline_with(dir, &[("hp1", sim_port)], "interval = \"1s\"", broker_port, extra)
}

/// As [`pipeline`], with several pumps (id, simulator port) and `source`
/// holding the source's poll keys.
fn pipeline_with(dir: &Path, pumps: &[(&str, u16)], source: &str, broker_port: u16, extra: &str) -> PathBuf {
    std::fs::write(dir.join("mqtt-password"), format!("{PASSWORD}\n")).unwrap();
    let devices: String = pumps
        .iter()
        .map(|(id, port)| {
            format!(
                r#"
[[sources.pumps.devices]]
id = "{id}"
name = "Pump {id}"
location = "Cellar"
model = "stiebel_eltron_wpm"
host = "127.0.0.1"
port = {port}
unit_id = 1
"#
            )
        })
        .collect();
    let devices = devices.replacen("name = \"Pump hp1\"", "name = \"Cellar pump\"", 1);
    let text = format!(
        r#"data_dir = "data"

[sources.pumps]
type = "modbus_tcp"
registers = {registers:?}
{source}
timeout = "1s"
{devices}

[transforms.states]
type = "scale"
inputs = ["pumps"]

[transforms.eff]
type = "efficiency"
inputs = ["states"]

[sinks.mqtt]
type = "mqtt"
inputs = ["eff"]
host = "127.0.0.1"
port = {broker_port}
username = "{USER}"
password_file = "mqtt-password"
{offline}
{extra}
"#,
        registers = shipped_registers().display().to_string(),
        offline = if extra.contains("offline_after") {
            ""
        } else {
            "offline_after = \"30s\""
        },
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `hpflow run` with its log in `dir/hpflow.log`.
fn run(dir: &Path, pipeline: &Path) -> Killed {
    let log = std::fs::File::create(dir.join("hpflow.log")).unwrap();
    let child: Child = hpflow()
        .args(["--log-level", "info", "run"])
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("hpflow run starts");
    Killed(child)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("hpflow.log")).unwrap_or_default()
}

fn state(broker: &Mosquitto) -> Option<Map<String, Json>> {
    let text = broker.retained_one("hpflow/hp1/state")?;
    match serde_json::from_str(&text) {
        Ok(Json::Object(o)) => Some(o),
        other => panic!("the state is a JSON object: {text:?} ({other:?})"),
    }
}

/// The retained discovery configs of the pump, by topic.
fn pump_configs(broker: &Mosquitto) -> BTreeMap<String, String> {
    broker
        .retained("homeassistant/+/hpflow_hp1/+/config", Duration::from_secs(2))
        .into_iter()
        .collect()
}

fn read_json(rt: &tokio::runtime::Runtime, port: u16) -> Map<String, Json> {
    rt.block_on(read::json(&read_args(port, 1, Some(shipped_registers()), "hp1")))
        .expect("hpflow read succeeds")
}

/// The state must hold exactly what `hpflow read --json` prints, plus only
/// the fields the `efficiency` transform adds (none of the map's).
fn assert_state_is_read_json(state: &Map<String, Json>, read: &Map<String, Json>) {
    assert!(read.len() > 100, "read covers the map: {} fields", read.len());
    for (k, v) in read {
        assert_eq!(state.get(k), Some(v), "field {k}: state against hpflow read --json");
    }
    let wpm = wpm_schema();
    for k in state.keys().filter(|k| !read.contains_key(*k)) {
        assert!(
            wpm.field(k).is_none(),
            "state field {k} is a map field that read did not print"
        );
    }
}

fn serve(rt: &tokio::runtime::Runtime, sim: &Simulator, port: u16) -> TcpServer {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    rt.block_on(sim.serve_tcp(addr)).expect("the simulator serves")
}

/// How mosquitto's log names a client of ours connecting with `protocol`
/// ("p2": MQTT 3.1.1, "p5": MQTT 5).
fn connected_as(protocol: &str) -> String {
    let p = if protocol == "5" { "p5" } else { "p2" };
    format!("as hpflow-mqtt ({p},")
}

/// Every entity of the pump gets a value HA accepts from the state on the
/// broker (enum values among the options, numbers where HA wants numbers).
fn check_states_as_home_assistant_would(broker: &Mosquitto) -> usize {
    let all = broker.retained("homeassistant/#", Duration::from_secs(2));
    let states: BTreeMap<String, String> = broker
        .retained("hpflow/+/state", Duration::from_secs(2))
        .into_iter()
        .collect();
    assert!(!states.is_empty(), "a state to check against");
    ha::check_states(&all, &states).unwrap_or_else(|p| panic!("{} problems:\n{}", p.len(), p.join("\n")))
}

#[test]
fn states_discovery_availability_and_restarts_against_mosquitto_mqtt_3_1_1() {
    full_run("3.1.1");
}

#[test]
fn states_discovery_availability_and_restarts_against_mosquitto_mqtt_5() {
    full_run("5");
}

/// Everything the sink does, over MQTT `protocol`.
fn full_run(protocol: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    let mut broker = Mosquitto::start(&broker_dir);
    let sim = simulator(at(7, 10));
    let server = serve(&rt, &sim, 0);
    let sim_port = server.local_addr().port();
    let path = pipeline(dir.path(), sim_port, broker.port, &format!("protocol = \"{protocol}\""));
    let mut hp = run(dir.path(), &path);

    // State, status and availability arrive, retained.
    wait_for("the first state", WAIT, || state(&broker).is_some());
    assert_eq!(broker.retained_one("hpflow/status").as_deref(), Some("online"));
    wait_for("the pump online", WAIT, || {
        broker.retained_one("hpflow/hp1/availability").as_deref() == Some("online")
    });
    let read = read_json(&rt, sim_port);
    assert_state_is_read_json(&state(&broker).unwrap(), &read);
    assert!(
        broker.log().contains(&connected_as(protocol)),
        "the broker saw MQTT {protocol}:\n{}",
        broker.log()
    );
    assert!(
        log(dir.path()).contains(&format!("(MQTT {protocol})")),
        "{}",
        log(dir.path())
    );

    // Every discovery config follows Home Assistant's rules.
    let wpm = wpm_schema();
    wait_for("every discovery config", WAIT, || {
        pump_configs(&broker).len() > wpm.fields.len()
    });
    let all = broker.retained("homeassistant/#", Duration::from_secs(2));
    let n = ha::check(&all).unwrap_or_else(|p| panic!("{} problems:\n{}", p.len(), p.join("\n")));
    println!("MQTT {protocol}: {n} discovery configs from the broker checked against Home Assistant's rules");
    let known = check_states_as_home_assistant_would(&broker);
    println!("MQTT {protocol}: {known} entities get a value Home Assistant accepts from the state (the rest unknown)");
    assert!(known > 100, "most entities have a value: {known}");
    let configs = pump_configs(&broker);
    assert_eq!(n, configs.len() + 1, "the pump's entities and hpflow's own");
    let objects: BTreeSet<String> = configs
        .keys()
        .map(|t| t.split('/').nth(3).unwrap().to_string())
        .collect();
    let state_now = state(&broker).unwrap();
    for f in wpm
        .fields
        .iter()
        .map(|f| f.name.to_string())
        .chain(state_now.keys().cloned())
    {
        assert!(objects.contains(&f), "no entity for field {f}");
    }
    for p in configs.values() {
        let p: Json = serde_json::from_str(p).unwrap();
        assert_eq!(p["device"]["name"], "Cellar pump");
        assert_eq!(p["device"]["manufacturer"], "Stiebel Eltron", "from the register map");
        assert_eq!(p["device"]["via_device"], "hpflow");
        assert_eq!(p["state_topic"], "hpflow/hp1/state");
    }
    let heat: Json = serde_json::from_str(&configs["homeassistant/sensor/hpflow_hp1/heat_kwh/config"]).unwrap();
    assert_eq!(
        (
            &heat["device_class"],
            &heat["state_class"],
            &heat["unit_of_measurement"]
        ),
        (&"energy".into(), &"total_increasing".into(), &"kWh".into())
    );
    assert_eq!(heat["default_entity_id"], "sensor.hp1_heat_kwh");

    // Home Assistant starting again gets every config again.
    let sub = broker.subscribe("homeassistant/+/hpflow_hp1/+/config");
    wait_for("the subscription's retained configs", WAIT, || {
        sub.lines().len() >= configs.len()
    });
    let before = sub.lines().len();
    broker.publish("homeassistant/status", "online", false);
    wait_for("discovery published again", WAIT, || {
        sub.lines().len() >= before + configs.len()
    });
    drop(sub);

    // The pump stops answering: offline; it comes back: online.
    drop(server);
    wait_for("the pump offline", WAIT, || {
        broker.retained_one("hpflow/hp1/availability").as_deref() == Some("offline")
    });
    assert_eq!(broker.retained_one("hpflow/status").as_deref(), Some("online"));
    let server = serve(&rt, &sim, sim_port);
    wait_for("the pump online again", WAIT, || {
        broker.retained_one("hpflow/hp1/availability").as_deref() == Some("online")
    });

    // A broker restart loses no retained config.
    let retained_before = broker.retained("homeassistant/#", Duration::from_secs(2));
    broker.restart();
    let retained_after = broker.retained("homeassistant/#", Duration::from_secs(2));
    assert_eq!(
        retained_after.len(),
        retained_before.len(),
        "retained configs over a restart"
    );
    assert_eq!(
        retained_after.into_iter().collect::<BTreeMap<_, _>>(),
        retained_before.into_iter().collect::<BTreeMap<_, _>>()
    );

    // The broker goes away while the pump's values change: after it is back,
    // the newest state is published.
    broker.stop();
    sim.set_time(at(15, 20));
    std::thread::sleep(Duration::from_secs(3));
    let read_later = read_json(&rt, sim_port);
    assert_ne!(read_later, read, "the values changed while the broker was away");
    broker.restart();
    wait_for("hpflow online again", WAIT, || {
        broker.retained_one("hpflow/status").as_deref() == Some("online")
    });
    wait_for("the newest state after the broker came back", WAIT, || {
        state(&broker).is_some_and(|s| read_later.iter().all(|(k, v)| s.get(k) == Some(v)))
    });
    assert_state_is_read_json(&state(&broker).unwrap(), &read_later);
    assert!(
        log(dir.path()).contains("mqtt sink `mqtt`: cannot reach broker"),
        "the outage is logged naming the sink:\n{}",
        log(dir.path())
    );

    // Fields dropped from the config are removed from Home Assistant
    // (the pipeline reloads when its file changes).
    let fields = r#"fields = ["outside_temperature", "heat_kwh", "compressor_running"]"#;
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + fields + "\n").unwrap();
    wait_for("only the configured entities left", WAIT, || {
        pump_configs(&broker).len() == 3
    });
    let left: BTreeSet<String> = pump_configs(&broker).into_keys().collect();
    assert_eq!(
        left,
        BTreeSet::from([
            "homeassistant/binary_sensor/hpflow_hp1/compressor_running/config".to_string(),
            "homeassistant/sensor/hpflow_hp1/heat_kwh/config".to_string(),
            "homeassistant/sensor/hpflow_hp1/outside_temperature/config".to_string(),
        ])
    );
    wait_for("the state holds only the configured fields", WAIT, || {
        state(&broker).is_some_and(|s| s.len() <= 3 && s.contains_key("outside_temperature"))
    });

    // A clean stop says offline.
    let status = terminate(&mut hp.0, Duration::from_secs(20));
    assert!(status.success(), "hpflow stops cleanly: {status}\n{}", log(dir.path()));
    assert_eq!(broker.retained_one("hpflow/status").as_deref(), Some("offline"));
    for l in log(dir.path()).lines().filter(|l| l.contains("mqtt")) {
        println!("{l}");
    }

    // Killed without a word: the broker publishes the last will.
    let mut hp = run(dir.path(), &path);
    wait_for("hpflow online once more", WAIT, || {
        broker.retained_one("hpflow/status").as_deref() == Some("online")
    });
    hp.0.kill().unwrap();
    hp.0.wait().unwrap();
    wait_for("the last will", WAIT, || {
        broker.retained_one("hpflow/status").as_deref() == Some("offline")
    });
    drop(server);
    drop(rt);
}

#[test]
fn wrong_credentials_fail_loudly_naming_the_sink_mqtt_3_1_1() {
    wrong_credentials("3.1.1");
}

#[test]
fn wrong_credentials_fail_loudly_naming_the_sink_mqtt_5() {
    wrong_credentials("5");
}

fn wrong_credentials(protocol: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"));
    let sim = simulator(at(7, 10));
    let server = serve(&rt, &sim, 0);
    let extra = format!("protocol = \"{protocol}\"");
    let path = pipeline(dir.path(), server.local_addr().port(), broker.port, &extra);
    std::fs::write(dir.path().join("mqtt-password"), "not-the-password\n").unwrap();
    let _hp = run(dir.path(), &path);
    wait_for("the refusal in the log", WAIT, || {
        let l = log(dir.path());
        l.contains("mqtt sink `mqtt`") && (l.contains("not authorised") || l.contains("bad user name or password"))
    });
    let l = log(dir.path());
    let line = l.lines().find(|l| l.contains("mqtt sink `mqtt`")).unwrap_or_default();
    println!("MQTT {protocol}: {line}");
    assert!(line.contains("ERROR"), "logged as an error:\n{l}");
    assert_eq!(broker.retained_one("hpflow/hp1/state"), None, "nothing was published");
    drop(server);
}

#[test]
fn tls_with_a_client_certificate_and_loud_failures_without() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let tls = make_tls(&broker_dir);
    let broker = Mosquitto::start_with(&broker_dir, Some(&tls));
    let other_dir = dir.path().join("other-ca");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = make_tls(&other_dir);
    let sim = simulator(at(7, 10));
    let server = serve(&rt, &sim, 0);
    let sim_port = server.local_addr().port();

    // A CA that did not sign the broker's certificate: a TLS error naming the sink.
    let extra = format!("tls = true\nca_file = {:?}\n", other.ca.display().to_string());
    let path = pipeline(dir.path(), sim_port, broker.port, &extra);
    let mut hp = run(dir.path(), &path);
    wait_for("the TLS failure in the log", WAIT, || {
        let l = log(dir.path());
        l.contains("mqtt sink `mqtt`") && l.contains("TLS") && l.contains("`ca_file`")
    });
    let l = log(dir.path());
    println!("{}", l.lines().find(|l| l.contains("TLS")).unwrap_or_default());
    terminate(&mut hp.0, Duration::from_secs(20));

    // The broker's own CA but no client certificate: refused, loudly.
    std::fs::write(dir.path().join("hpflow.log"), "").unwrap();
    let extra = format!("tls = true\nca_file = {:?}\n", tls.ca.display().to_string());
    let path = pipeline(dir.path(), sim_port, broker.port, &extra);
    let mut hp = run(dir.path(), &path);
    wait_for("the refused handshake in the log", WAIT, || {
        log(dir.path())
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("mqtt sink `mqtt`") && l.contains("`cert_file`"))
    });
    let l = log(dir.path());
    println!(
        "{}",
        l.lines().find(|l| l.contains("mqtt sink `mqtt`")).unwrap_or_default()
    );
    assert_eq!(broker.retained_one("hpflow/hp1/state"), None, "nothing was published");
    terminate(&mut hp.0, Duration::from_secs(20));

    // The broker's CA and a client certificate: states arrive over TLS, and
    // each field on its own topic too.
    let extra = format!(
        "tls = true\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\nper_field_topics = true\n",
        tls.ca.display().to_string(),
        tls.client_cert.display().to_string(),
        tls.client_key.display().to_string(),
    );
    let path = pipeline(dir.path(), sim_port, broker.port, &extra);
    let mut hp = run(dir.path(), &path);
    wait_for("the first state over TLS", WAIT, || state(&broker).is_some());
    let read = read_json(&rt, sim_port);
    assert_state_is_read_json(&state(&broker).unwrap(), &read);
    let fields: BTreeMap<String, String> = broker
        .retained("hpflow/hp1/+", Duration::from_secs(2))
        .into_iter()
        .collect();
    for (k, v) in &read {
        let want = match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(
            fields.get(&format!("hpflow/hp1/{k}")),
            Some(&want),
            "per-field topic of {k}"
        );
    }
    terminate(&mut hp.0, Duration::from_secs(20));

    // The same over MQTT 5, with a wrong CA first: the same loud failure.
    std::fs::write(dir.path().join("hpflow.log"), "").unwrap();
    let extra = format!(
        "protocol = \"5\"\ntls = true\nca_file = {:?}\n",
        other.ca.display().to_string()
    );
    let path = pipeline(dir.path(), sim_port, broker.port, &extra);
    let mut hp = run(dir.path(), &path);
    wait_for("the TLS failure over MQTT 5 in the log", WAIT, || {
        let l = log(dir.path());
        l.contains("mqtt sink `mqtt`") && l.contains("TLS") && l.contains("`ca_file`")
    });
    terminate(&mut hp.0, Duration::from_secs(20));
    let before = broker.log().matches(&connected_as("5")).count();
    let extra = format!(
        "protocol = \"5\"\ntls = true\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        tls.ca.display().to_string(),
        tls.client_cert.display().to_string(),
        tls.client_key.display().to_string(),
    );
    let path = pipeline(dir.path(), sim_port, broker.port, &extra);
    let mut hp = run(dir.path(), &path);
    wait_for("a client of ours over MQTT 5 and TLS", WAIT, || {
        broker.log().matches(&connected_as("5")).count() > before
    });
    sim.set_time(at(9, 40));
    let read = read_json(&rt, sim_port);
    wait_for("the newest state over MQTT 5 and TLS", WAIT, || {
        state(&broker).is_some_and(|s| read.iter().all(|(k, v)| s.get(k) == Some(v)))
    });
    terminate(&mut hp.0, Duration::from_secs(20));
}

#[test]
fn validate_names_a_bad_prefix_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(dir.path(), 1502, 1883, "prefix = \"home/+/pumps\"");
    let out = hpflow().arg("validate").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{text}");
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("prefix ="))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("pipeline.toml:{line}:1: error: sinks.mqtt:")) && text.contains("wildcard"),
        "{text}"
    );
}

/// The retained discovery configs of pump `id`, by topic.
fn configs_of(broker: &Mosquitto, id: &str) -> BTreeMap<String, String> {
    broker
        .retained(&format!("homeassistant/+/hpflow_{id}/+/config"), Duration::from_secs(2))
        .into_iter()
        .collect()
}

#[test]
fn removed_pumps_and_fields_are_cleared_across_restarts_mqtt_3_1_1() {
    removed_pumps_and_fields("3.1.1");
}

#[test]
fn removed_pumps_and_fields_are_cleared_across_restarts_mqtt_5() {
    removed_pumps_and_fields("5");
}

/// Two pumps announced, hpflow killed (the last will says offline), then
/// started again with one pump and one field fewer: the removed pump's
/// configs, state and availability and the dropped field's config are
/// cleared (no retained message left), the rest stays.
fn removed_pumps_and_fields(protocol: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"));
    let sim = simulator(at(7, 10));
    let (s1, s2) = (serve(&rt, &sim, 0), serve(&rt, &sim, 0));
    let (p1, p2) = (s1.local_addr().port(), s2.local_addr().port());
    let interval = "interval = \"1s\"";
    let three = r#"fields = ["outside_temperature", "heat_kwh", "compressor_running"]"#;
    let extra = format!("protocol = \"{protocol}\"\n{three}");
    let path = pipeline_with(dir.path(), &[("hp1", p1), ("hp2", p2)], interval, broker.port, &extra);

    // First run: both pumps with three entities each.
    let mut hp = run(dir.path(), &path);
    wait_for("both pumps announced", WAIT, || {
        configs_of(&broker, "hp1").len() == 3 && configs_of(&broker, "hp2").len() == 3
    });
    wait_for("both states", WAIT, || {
        broker.retained_one("hpflow/hp1/state").is_some() && broker.retained_one("hpflow/hp2/state").is_some()
    });
    let ledger = dir.path().join("data/mqtt/mqtt.json");
    wait_for("the ledger of what was announced", WAIT, || {
        std::fs::read_to_string(&ledger).is_ok_and(|t| t.contains("hpflow_hp2"))
    });
    hp.0.kill().unwrap();
    hp.0.wait().unwrap();
    wait_for("the last will", WAIT, || {
        broker.retained_one("hpflow/status").as_deref() == Some("offline")
    });
    assert_eq!(configs_of(&broker, "hp2").len(), 3, "a crash removes nothing");

    // Second run: hp2 is gone from the inventory, compressor_running from `fields`.
    let two = r#"fields = ["outside_temperature", "heat_kwh"]"#;
    let extra = format!("protocol = \"{protocol}\"\n{two}");
    let path = pipeline_with(dir.path(), &[("hp1", p1)], interval, broker.port, &extra);
    let _hp = run(dir.path(), &path);
    wait_for("the removed pump's configs cleared", WAIT, || {
        configs_of(&broker, "hp2").is_empty()
    });
    wait_for("the dropped field's config cleared", WAIT, || {
        configs_of(&broker, "hp1").len() == 2
    });
    wait_for("the removed pump's state and availability cleared", WAIT, || {
        broker.retained("hpflow/hp2/#", Duration::from_secs(1)).is_empty()
    });
    let left: BTreeSet<String> = broker
        .retained("homeassistant/#", Duration::from_secs(2))
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        left,
        BTreeSet::from([
            "homeassistant/binary_sensor/hpflow/connection/config".to_string(),
            "homeassistant/sensor/hpflow_hp1/heat_kwh/config".to_string(),
            "homeassistant/sensor/hpflow_hp1/outside_temperature/config".to_string(),
        ]),
        "only what is configured is left"
    );
    assert!(broker.retained_one("hpflow/hp1/state").is_some());
    assert_eq!(broker.retained_one("hpflow/status").as_deref(), Some("online"));
    let l = log(dir.path());
    let line = l
        .lines()
        .find(|l| l.contains("device hp2 is no longer polled"))
        .unwrap_or_else(|| panic!("the removal is logged:\n{l}"));
    println!("MQTT {protocol}: {line}");
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(!text.contains("hpflow_hp2"), "the ledger forgot hp2: {text}");
    drop((s1, s2));
}

/// QoS 0 delivers the state (mosquitto logs each publish with its QoS), and a
/// pump that is not polled for `offline_after` goes offline although its
/// source never saw it fail (one poll an hour).
#[test]
fn qos_0_delivers_and_a_pump_not_polled_for_offline_after_goes_offline() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"));
    let sim = simulator(at(7, 10));
    let server = serve(&rt, &sim, 0);
    let source = "interval = \"1h\"\nphase_spread = false";
    let extra = "qos = 0\noffline_after = \"4s\"";
    let path = pipeline_with(
        dir.path(),
        &[("hp1", server.local_addr().port())],
        source,
        broker.port,
        extra,
    );
    let _hp = run(dir.path(), &path);
    wait_for("the state at QoS 0", WAIT, || state(&broker).is_some());
    assert_state_is_read_json(&state(&broker).unwrap(), &read_json(&rt, server.local_addr().port()));
    let qos0 = broker
        .log()
        .lines()
        .find(|l| l.contains("Received PUBLISH from hpflow-mqtt") && l.contains("'hpflow/hp1/state'"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the broker logged the state publish:\n{}", broker.log()));
    println!("{qos0}");
    assert!(qos0.contains("q0"), "published at QoS 0: {qos0}");
    let started = std::time::Instant::now();
    wait_for("the pump online", WAIT, || {
        broker.retained_one("hpflow/hp1/availability").as_deref() == Some("online")
    });
    wait_for("the pump offline after `offline_after`", WAIT, || {
        broker.retained_one("hpflow/hp1/availability").as_deref() == Some("offline")
    });
    println!("offline {:.1} s after the first state", started.elapsed().as_secs_f64());
    assert_eq!(
        broker.retained_one("hpflow/status").as_deref(),
        Some("online"),
        "hpflow itself is fine"
    );
    assert!(log(dir.path()).contains("device hp1 is offline"), "{}", log(dir.path()));
}

#[test]
fn validate_names_an_unknown_protocol_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(dir.path(), 1502, 1883, "protocol = \"4\"");
    let out = hpflow().arg("validate").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{text}");
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("protocol ="))
        .unwrap()
        + 1;
    println!("{}", text.lines().find(|l| l.contains("protocol")).unwrap_or_default());
    assert!(
        text.contains(&format!("pipeline.toml:{line}:1: error: sinks.mqtt:")) && text.contains("\"3.1.1\""),
        "{text}"
    );
    // "5" validates.
    let path = pipeline(dir.path(), 1502, 1883, "protocol = \"5\"");
    let out = hpflow().arg("validate").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
