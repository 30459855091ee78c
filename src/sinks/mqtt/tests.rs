//! The `mqtt` sink's config checks and payloads, without a broker (the broker
//! tests are in tests/mqtt.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value as Json};

use super::config::Loaded;
use super::payload::{self, Topics};
use super::MqttConfig;
use crate::component::Check;
use crate::event::{FieldKind, FieldMeta, Metric, Schema, Tags, Value, ValueType};
use crate::registers::RegisterMap;
use crate::transforms::efficiency::EfficiencyConfig;
use crate::transforms::scale::ScaleConfig;

#[path = "../../../tests/support/ha.rs"]
mod ha;

fn config(toml_text: &str) -> MqttConfig {
    toml::from_str(toml_text).expect("the test config parses")
}

fn check_in(dir: &Path, c: &MqttConfig, schemas: &[Arc<Schema>]) -> (Vec<(Option<String>, String)>, Option<Loaded>) {
    let mut cx = Check::new("mqtt", dir, dir, schemas);
    c.check(&mut cx);
    let loaded = cx.prepared.as_ref().and_then(|p| p.downcast_ref::<Loaded>()).cloned();
    (cx.errors(), loaded)
}

fn errors(c: &MqttConfig) -> Vec<(Option<String>, String)> {
    let dir = tempfile::tempdir().unwrap();
    check_in(dir.path(), c, &[]).0
}

fn keys(errs: &[(Option<String>, String)]) -> Vec<&str> {
    errs.iter().map(|(k, _)| k.as_deref().unwrap_or("")).collect()
}

#[test]
fn defaults_are_valid_and_documented() {
    let c = config("host = \"127.0.0.1\"");
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.port(), 1883);
    assert_eq!(c.qos, 1);
    assert_eq!(c.prefix, "hpflow");
    assert!(c.discovery);
    assert_eq!(c.discovery_prefix, "homeassistant");
    assert_eq!(c.client_id("mqtt"), "hpflow-mqtt");
    assert_eq!(config("host = \"h\"\ntls = true").port(), 8883);
}

#[test]
fn prefixes_with_wildcards_or_empty_levels_are_rejected_at_their_key() {
    for bad in ["a/+/b", "a/#", "#", "", "/a", "a/", "a//b", "$SYS/x"] {
        let c = config(&format!("host = \"h\"\nprefix = {bad:?}"));
        let errs = errors(&c);
        assert_eq!(keys(&errs), vec!["prefix"], "{bad:?}: {errs:?}");
        let c = config(&format!("host = \"h\"\ndiscovery_prefix = {bad:?}"));
        assert_eq!(keys(&errors(&c)), vec!["discovery_prefix"], "{bad:?}");
    }
    for good in ["hpflow", "home/heating", "a b/c-d_e"] {
        let c = config(&format!("host = \"h\"\nprefix = {good:?}"));
        assert_eq!(errors(&c), vec![], "{good:?}");
    }
    // With discovery off its prefix is not used.
    let c = config("host = \"h\"\ndiscovery = false\ndiscovery_prefix = \"a/#\"");
    assert_eq!(errors(&c), vec![]);
}

#[test]
fn qos_keep_alive_host_and_credentials_are_checked() {
    let c = config("host = \"h\"\nqos = 2");
    assert_eq!(keys(&errors(&c)), vec!["qos"]);
    let c = config("host = \"\"\nkeep_alive = \"1s\"\nport = 0");
    assert_eq!(keys(&errors(&c)), vec!["host", "port", "keep_alive"]);
    let c = config("host = \"h\"\npassword = \"x\"");
    assert_eq!(keys(&errors(&c)), vec!["username"]);
    let c = config("host = \"h\"\nusername = \"u\"\npassword_file = \"missing.txt\"");
    let errs = errors(&c);
    assert_eq!(keys(&errs), vec!["password_file"]);
    assert!(errs[0].1.contains("missing.txt"), "{errs:?}");
    let c = config("host = \"h\"\nusername = \"u\"\npassword = \"a\"\npassword_file = \"p\"");
    assert!(keys(&errors(&c)).contains(&"password_file"));
}

#[test]
fn the_password_comes_from_its_file_or_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\nignored\n").unwrap();
    let c = config("host = \"h\"\nusername = \"u\"\npassword_file = \"pw\"");
    let (errs, loaded) = check_in(dir.path(), &c, &[]);
    assert_eq!(errs, vec![]);
    assert_eq!(loaded.unwrap().password.as_deref(), Some("s3cret"));
    std::fs::write(dir.path().join("empty"), "").unwrap();
    let c = config("host = \"h\"\nusername = \"u\"\npassword_file = \"empty\"");
    assert_eq!(keys(&check_in(dir.path(), &c, &[]).0), vec!["password_file"]);
    let c = config("host = \"h\"\nusername = \"u\"\npassword = \"inline\"");
    assert_eq!(
        check_in(dir.path(), &c, &[]).1.unwrap().password.as_deref(),
        Some("inline")
    );
}

#[test]
fn tls_files_must_exist_and_parse() {
    let dir = tempfile::tempdir().unwrap();
    let c = config("host = \"h\"\nca_file = \"ca.pem\"");
    assert_eq!(
        keys(&check_in(dir.path(), &c, &[]).0),
        vec!["ca_file"],
        "ca_file without tls"
    );
    let c = config("host = \"h\"\ntls = true\nca_file = \"ca.pem\"");
    let errs = check_in(dir.path(), &c, &[]).0;
    assert_eq!(keys(&errs), vec!["ca_file"]);
    assert!(errs[0].1.contains("cannot read"), "{errs:?}");
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let errs = check_in(dir.path(), &c, &[]).0;
    assert_eq!(keys(&errs), vec!["ca_file"]);
    assert!(errs[0].1.contains("no PEM certificate"), "{errs:?}");
    std::fs::write(
        dir.path().join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let errs = check_in(dir.path(), &c, &[]).0;
    assert_eq!(
        keys(&errs),
        vec!["ca_file"],
        "a PEM block that is no certificate: {errs:?}"
    );
    let c = config("host = \"h\"\ntls = true\ncert_file = \"c.pem\"");
    assert!(keys(&check_in(dir.path(), &c, &[]).0).contains(&"key_file"));
}

#[test]
fn unknown_fields_are_errors_at_their_index() {
    let schema = Arc::new(Schema::new("m", vec![FieldMeta::gauge("t", ValueType::Float)]));
    let dir = tempfile::tempdir().unwrap();
    let c = config("host = \"h\"\nfields = [\"t\", \"nope\"]");
    let errs = check_in(dir.path(), &c, &[schema]).0;
    assert_eq!(keys(&errs), vec!["fields[1]"]);
}

fn topics() -> Topics {
    Topics {
        prefix: "hpflow".into(),
        discovery: Some("homeassistant".into()),
    }
}

fn tags(id: &str) -> Tags {
    Tags::from([
        ("heat_pump_id".to_string(), id.to_string()),
        ("name".to_string(), "Cellar pump".to_string()),
        ("location".to_string(), "Cellar".to_string()),
        ("model".to_string(), "stiebel_eltron_wpm".to_string()),
    ])
}

/// The shipped map's models after `scale`, and the `efficiency` fields added to the WPM's.
fn shipped_schemas() -> Vec<Arc<Schema>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
    let map = RegisterMap::load(path).expect("the shipped register map loads");
    let raw: Vec<Arc<Schema>> = map.models().map(|m| m.schema().clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut cx = Check::new("scale", dir.path(), dir.path(), &raw);
    ScaleConfig::default().check(&mut cx);
    let scaled = cx.outputs.clone();
    assert_eq!(scaled.len(), raw.len());
    let wpm: Vec<Arc<Schema>> = scaled
        .iter()
        .filter(|s| s.model == "stiebel_eltron_wpm")
        .cloned()
        .collect();
    let eff: EfficiencyConfig = toml::from_str("").unwrap();
    let mut cx = Check::new("efficiency", dir.path(), dir.path(), &wpm);
    eff.check(&mut cx);
    assert!(!cx.has_errors(), "{:?}", cx.errors());
    let mut out = scaled.clone();
    out.extend(cx.outputs.iter().cloned());
    out
}

fn discovery_of(schemas: &[Arc<Schema>]) -> Vec<(String, Json)> {
    let t = topics();
    let mut all = Vec::new();
    for (i, s) in schemas.iter().enumerate() {
        let dev = format!("hp{i}");
        for e in payload::discovery(&t, &dev, &tags(&dev), s, None) {
            all.push((e.topic, e.payload));
        }
    }
    all.extend(payload::bridge(&t, "0.1.0").map(|e| (e.topic, e.payload)));
    all
}

#[test]
fn discovery_of_every_shipped_field_follows_home_assistants_rules() {
    let schemas = shipped_schemas();
    let all = discovery_of(&schemas);
    let texts: Vec<(String, String)> = all.iter().map(|(t, p)| (t.clone(), p.to_string())).collect();
    let n = ha::check(&texts).unwrap_or_else(|p| panic!("{} problems:\n{}", p.len(), p.join("\n")));
    let fields: usize = schemas.iter().map(|s| s.fields.len()).sum();
    assert_eq!(n, fields + 1, "one entity per field and one for hpflow");
    println!("{n} discovery configs checked against Home Assistant's rules");
}

#[test]
fn efficiency_fields_come_out_as_home_assistant_expects() {
    let schemas = shipped_schemas();
    let eff = schemas.last().unwrap();
    let get = |field: &str| -> Json {
        payload::discovery(&topics(), "hp1", &tags("hp1"), eff, Some(&[field.to_string()]))
            .pop()
            .unwrap_or_else(|| panic!("an entity for {field}"))
            .payload
    };
    for f in ["heat_kwh", "electricity_kwh", "heat_heating_kwh", "booster_kwh"] {
        let p = get(f);
        assert_eq!(p["device_class"], "energy", "{f}");
        assert_eq!(p["state_class"], "total_increasing", "{f}");
        assert_eq!(p["unit_of_measurement"], "kWh", "{f}");
        assert_eq!(p["suggested_display_precision"], 3, "{f}");
    }
    let cop = get("cop_today");
    assert_eq!(cop["state_class"], "measurement");
    assert!(cop.get("device_class").is_none() && cop.get("unit_of_measurement").is_none());
    let sc = get("short_cycling");
    assert!(
        payload::discovery(&topics(), "hp1", &tags("hp1"), eff, Some(&["short_cycling".into()]))[0]
            .topic
            .starts_with("homeassistant/binary_sensor/")
    );
    assert_eq!(sc["payload_on"], "ON");
    let starts = get("compressor_starts");
    assert_eq!(starts["state_class"], "total_increasing");
    let run = get("compressor_run_seconds");
    assert_eq!(
        (&run["device_class"], &run["unit_of_measurement"]),
        (&json!("duration"), &json!("s"))
    );
}

#[test]
fn register_fields_get_classes_units_and_categories_from_the_map() {
    let schemas = shipped_schemas();
    let wpm = schemas.iter().find(|s| s.model == "stiebel_eltron_wpm").unwrap();
    let by_field: BTreeMap<String, (String, Json)> = payload::discovery(&topics(), "hp1", &tags("hp1"), wpm, None)
        .into_iter()
        .map(|e| (e.topic.split('/').nth(3).unwrap().to_string(), (e.topic, e.payload)))
        .collect();
    let mut seen_classes = std::collections::BTreeSet::new();
    for f in &wpm.fields {
        let (topic, p) = &by_field[&payload::slug(&f.name)];
        if let Some(c) = p.get("device_class").and_then(Json::as_str) {
            seen_classes.insert(c.to_string());
        }
        match f.unit.as_deref() {
            Some("celsius") => assert_eq!(p["unit_of_measurement"], "°C", "{}", f.name),
            Some("l/min") => assert_eq!(p["unit_of_measurement"], "L/min", "{}", f.name),
            Some("kwh") => assert_eq!(p["state_class"], "total_increasing", "{}", f.name),
            Some("hours") if f.kind == FieldKind::Counter => {
                assert_eq!(p["state_class"], "total_increasing", "{}", f.name)
            }
            _ => {}
        }
        let holding = f.source.as_deref().is_some_and(|s| s.starts_with("holding"));
        assert_eq!(p.get("entity_category").is_some(), holding, "{}", f.name);
        if f.labels.is_some() {
            assert_eq!(p["device_class"], "enum", "{}", f.name);
            let opts = p["options"].as_array().unwrap();
            assert!(opts.iter().any(|o| f.labels.as_ref().unwrap().values().any(|l| o == l)));
        }
        if f.value_type == ValueType::Bool {
            assert!(topic.starts_with("homeassistant/binary_sensor/"), "{}", f.name);
        }
        assert_eq!(p["device"]["via_device"], "hpflow");
        assert_eq!(p["device"]["name"], "Cellar pump");
        assert_eq!(p["state_topic"], "hpflow/hp1/state");
    }
    for c in [
        "temperature",
        "pressure",
        "volume_flow_rate",
        "energy",
        "power",
        "duration",
        "enum",
    ] {
        assert!(
            seen_classes.contains(c),
            "no {c} entity in the WPM map: {seen_classes:?}"
        );
    }
}

#[test]
fn the_checker_itself_catches_what_home_assistant_refuses() {
    let ok = json!({
        "unique_id": "a", "state_topic": "s", "value_template": "{{ 1 }}",
        "device": {"identifiers": ["d"], "name": "D"},
        "device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement",
    });
    let t = "homeassistant/sensor/n/o/config".to_string();
    assert_eq!(ha::check(&[(t.clone(), ok.to_string())]), Ok(1));
    let mutate = |k: &str, v: Json| {
        let mut p = ok.clone();
        p[k] = v;
        ha::check(&[(t.clone(), p.to_string())]).is_err()
    };
    assert!(mutate("unit_of_measurement", json!("celsius")));
    assert!(mutate("state_class", json!("total_increasing")));
    assert!(mutate("device_class", json!("energy")));
    assert!(mutate("entity_category", json!("config")));
    assert!(mutate("unique_id", json!("")));
    assert!(ha::check(&[(t.clone(), ok.to_string()), (t.clone(), ok.to_string())]).is_err());
    assert!(ha::check(&[(t.clone(), "{".into())]).is_err());
    let bin = "homeassistant/binary_sensor/n/o/config".to_string();
    assert!(ha::check(&[(bin, ok.to_string())]).is_err());
}

#[test]
fn state_json_is_what_read_json_prints() {
    let mut t = FieldMeta::gauge("t", ValueType::Int);
    t.scale = 0.1;
    t.decimals = Some(1);
    let mut mode = FieldMeta::gauge("mode", ValueType::Int);
    mode.labels = Some(BTreeMap::from([(3, "Comfort mode".to_string())]));
    let schema = Arc::new(Schema::new(
        "m",
        vec![
            t,
            mode,
            FieldMeta::gauge("on", ValueType::Bool),
            FieldMeta::gauge("gone", ValueType::Int),
        ],
    ));
    let mut m = Metric::new("hp1", Arc::default(), SystemTime::UNIX_EPOCH, schema);
    m.fields.insert("t".into(), Value::Int(215));
    m.fields.insert("mode".into(), Value::Int(3));
    m.fields.insert("on".into(), Value::Bool(true));
    let state = payload::state_json(&m, None);
    assert_eq!(state, crate::display::engineering_json(m.clone()));
    assert_eq!(
        Json::Object(state),
        json!({"t": 21.5, "mode": "Comfort mode", "on": true})
    );
    let only = payload::state_json(&m, Some(&["on".to_string()]));
    assert_eq!(Json::Object(only), json!({"on": true}));
    assert_eq!(payload::field_payload(&json!("Comfort mode")), "Comfort mode");
    assert_eq!(payload::field_payload(&json!(21.5)), "21.5");
}

#[test]
fn topics_and_ids_are_safe() {
    let t = topics();
    assert_eq!(t.state("a/b+c#"), "hpflow/a_b_c_/state");
    assert_eq!(t.node_id("WP 1"), "hpflow_wp_1");
    assert_eq!(
        t.parse_config_topic("homeassistant/sensor/hpflow_hp1/t/config"),
        Some(("sensor", "hpflow_hp1", "t"))
    );
    assert_eq!(t.parse_config_topic("homeassistant/sensor/x/config"), None);
    assert_eq!(t.parse_config_topic("other/sensor/a/b/config"), None);
}

/// With no broker to talk to, the sink still takes every event at once (it
/// keeps the newest per device), counts the failed connects, and stops when
/// its input closes.
#[tokio::test]
async fn the_sink_drains_its_input_while_the_broker_is_unreachable() {
    use crate::component::{BuildContext, Input, SinkContext};
    use crate::event::Event;
    use crate::telemetry::Registry;
    use std::time::{Duration, Instant};

    // A port nobody listens on: every connect is refused.
    let port = crate::test_net::free_port();
    let c = config(&format!("host = \"127.0.0.1\"\nport = {port}"));
    let registry = Arc::new(Registry::default());
    let dir = tempfile::tempdir().unwrap();
    let sink = BuildContext::alone("mqtt", dir.path(), &[], &registry, |cx| c.build(cx)).expect("the sink builds");
    let metrics = registry.component("mqtt", "sink", "mqtt");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let input = Input::new(rx, metrics.clone());
    let task = tokio::spawn(sink.run(
        input,
        SinkContext {
            id: "mqtt".into(),
            metrics: metrics.clone(),
        },
    ));
    let schema = Arc::new(Schema::new("m", vec![FieldMeta::gauge("t", ValueType::Float)]));
    let start = Instant::now();
    let n = 20_000u64;
    for i in 0..n {
        let mut m = Metric::new(
            &format!("hp{}", i % 10),
            Arc::default(),
            SystemTime::now(),
            schema.clone(),
        );
        m.fields.insert("t".into(), Value::Float(i as f64));
        tokio::time::timeout(Duration::from_secs(5), tx.send(Event::from(m)))
            .await
            .expect("the sink takes every event without waiting for the broker")
            .unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    // Let the event loop report at least one refused connect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the sink stops when its input closes")
        .unwrap()
        .expect("the sink returns Ok");
    let counts = metrics.counts();
    assert_eq!(counts.events_in, n);
    assert_eq!(counts.events_out, 0, "nothing was published");
    assert!(counts.errors >= 1, "the refused connects are counted: {counts:?}");
}

#[test]
fn state_classes_follow_the_device_class_whatever_the_kind() {
    let t = topics();
    let field = |unit: &str, kind: FieldKind| {
        let mut f = FieldMeta::gauge("x", ValueType::Float);
        f.unit = Some(unit.to_string());
        f.kind = kind;
        let schema = Schema::new("m", vec![f]);
        let e = payload::discovery(&t, "hp1", &tags("hp1"), &schema, None)
            .pop()
            .unwrap();
        let texts = [(e.topic.clone(), e.payload.to_string())];
        ha::check(&texts).unwrap_or_else(|p| panic!("{unit} {kind:?}: {p:?}"));
        e.payload.get("state_class").cloned()
    };
    assert_eq!(field("celsius", FieldKind::Counter), Some(json!("measurement")));
    assert_eq!(field("kw", FieldKind::Counter), Some(json!("measurement")));
    assert_eq!(field("kwh", FieldKind::Gauge), Some(json!("total_increasing")));
    assert_eq!(field("m3", FieldKind::Gauge), Some(json!("total_increasing")));
    assert_eq!(field("hours", FieldKind::Counter), Some(json!("total_increasing")));
    assert_eq!(field("hours", FieldKind::Gauge), Some(json!("measurement")));
    assert_eq!(field("", FieldKind::Counter), Some(json!("total_increasing")));
    assert_eq!(field("bitmap", FieldKind::State), None);
    assert_eq!(field("furlongs", FieldKind::Gauge), Some(json!("measurement")));
}

#[test]
fn every_unit_mapping_is_in_home_assistants_table() {
    let spellings = [
        "celsius",
        "kelvin",
        "bar",
        "mbar",
        "l/min",
        "l/h",
        "m3/h",
        "w",
        "kw",
        "wh",
        "kwh",
        "mwh",
        "m3",
        "l",
        "seconds",
        "s",
        "minutes",
        "hours",
        "h",
        "days",
        "percent",
        "hz",
        "dimensionless",
        "enum",
        "bitmap",
    ];
    let mut with_class = 0;
    for u in spellings {
        if let (Some(unit), Some(class)) = payload::ha_unit(u) {
            let allowed = ha::UNITS
                .iter()
                .find(|(c, _)| *c == class)
                .unwrap_or_else(|| panic!("{class} is in the table"))
                .1;
            assert!(allowed.contains(&unit), "{u} → {unit} is not a {class} unit HA accepts");
            with_class += 1;
        }
    }
    assert_eq!(with_class, 20, "every spelling with a device class was checked");
}
