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

#[test]
fn the_protocol_is_3_1_1_by_default_or_5_and_nothing_else() {
    use super::Protocol;
    assert_eq!(config("host = \"h\"").protocol(), Protocol::V311);
    for (text, want) in [
        ("\"3.1.1\"", Protocol::V311),
        ("\"5\"", Protocol::V5),
        ("5", Protocol::V5),
    ] {
        let c = config(&format!("host = \"h\"\nprotocol = {text}"));
        assert_eq!(errors(&c), vec![], "{text}");
        assert_eq!(c.protocol(), want, "{text}");
    }
    for bad in ["\"4\"", "\"v5\"", "3", "\"3.1\"", "\"\"", "5.5"] {
        let c = config(&format!("host = \"h\"\nprotocol = {bad}"));
        let errs = errors(&c);
        assert_eq!(keys(&errs), vec!["protocol"], "{bad}: {errs:?}");
        assert!(
            errs[0].1.contains("\"3.1.1\"") && errs[0].1.contains("\"5\""),
            "{errs:?}"
        );
    }
}

/// A schema with one enum field whose map knows codes 1 and 2 only.
fn enum_schema() -> Arc<Schema> {
    let mut mode = FieldMeta::gauge("operating_mode", ValueType::Int);
    mode.kind = FieldKind::State;
    mode.labels = Some(BTreeMap::from([
        (1, "Standby".to_string()),
        (2, "Heating".to_string()),
        (3, "Heating".to_string()),
    ]));
    Arc::new(Schema::new("m", vec![mode]))
}

#[test]
fn an_enum_code_without_a_label_is_unknown_in_home_assistant_never_a_refused_option() {
    let schema = enum_schema();
    let entity = payload::discovery(&topics(), "hp1", &tags("hp1"), &schema, None).remove(0);
    assert_eq!(
        entity.payload["options"],
        json!(["Standby", "Heating"]),
        "each label once"
    );
    let configs = [(entity.topic.clone(), entity.payload.to_string())];
    ha::check(&configs).unwrap();
    let template = entity.payload["value_template"].as_str().unwrap();
    let state_of = |code: i64| {
        let mut m = Metric::new("hp1", Arc::default(), SystemTime::UNIX_EPOCH, schema.clone());
        m.fields.insert("operating_mode".into(), Value::Int(code));
        let state = payload::state_json(&m, None);
        // The state JSON is what `hpflow read --json` prints, labelled or not.
        assert_eq!(state, crate::display::engineering_json(m.clone()));
        Json::Object(state).to_string()
    };
    assert_eq!(state_of(2), r#"{"operating_mode":"Heating"}"#);
    assert_eq!(ha::render(template, &state_of(2)).unwrap(), "Heating");
    // Code 7 has no label: the state keeps the number, HA is told `None` (unknown).
    assert_eq!(state_of(7), r#"{"operating_mode":7}"#);
    assert_eq!(ha::render(template, &state_of(7)).unwrap(), "None");
    // Absent (a failed read): unknown as well.
    assert_eq!(ha::render(template, "{}").unwrap(), "None");
    for code in [1, 2, 3, 7, 0, -1] {
        let states = BTreeMap::from([("hpflow/hp1/state".to_string(), state_of(code))]);
        let known = ha::check_states(&configs, &states).unwrap_or_else(|p| panic!("code {code}: {p:?}"));
        assert_eq!(known, usize::from((1..=3).contains(&code)), "code {code}");
    }
    // The check itself: the plain template HA would be handed 7 through is refused.
    let mut plain = entity.payload.clone();
    plain["value_template"] = json!("{{ value_json['operating_mode'] }}");
    let states = BTreeMap::from([("hpflow/hp1/state".to_string(), state_of(7))]);
    assert!(ha::check_states(&[(entity.topic.clone(), plain.to_string())], &states).is_err());
}

#[test]
fn entities_suggest_their_entity_id_for_current_and_older_home_assistant() {
    let mut on = FieldMeta::gauge("compressor_running", ValueType::Bool);
    on.kind = FieldKind::State;
    let schema = Schema::new("m", vec![FieldMeta::gauge("flow_temperature", ValueType::Float), on]);
    let e = payload::discovery(&topics(), "hp1", &tags("hp1"), &schema, None);
    assert_eq!(e[0].payload["default_entity_id"], "sensor.hp1_flow_temperature");
    assert_eq!(e[0].payload["object_id"], "hp1_flow_temperature");
    assert_eq!(
        e[1].payload["default_entity_id"],
        "binary_sensor.hp1_compressor_running"
    );
    let bridge = payload::bridge(&topics(), "0.1.0").unwrap();
    assert_eq!(bridge.payload["default_entity_id"], "binary_sensor.hpflow_connection");
    // Names HA's entity ids cannot hold are folded as HA's slugify does;
    // unique ids stay as they always were.
    let e = payload::discovery(&topics(), "WP 1-", &tags("x"), &schema, None);
    assert_eq!(e[0].payload["default_entity_id"], "sensor.wp_1_flow_temperature");
    assert_eq!(e[0].payload["unique_id"], "hpflow_wp_1__flow_temperature");
    let texts: Vec<(String, String)> = e.iter().map(|e| (e.topic.clone(), e.payload.to_string())).collect();
    ha::check(&texts).unwrap();
    assert_eq!(payload::entity_slug("__a__b__"), "a_b");
    assert_eq!(payload::entity_slug("Ä"), "unnamed");
}

#[test]
fn the_manufacturer_comes_from_the_register_map_unless_a_tag_says_otherwise() {
    // The shipped map names Stiebel Eltron; `scale` and `efficiency` keep it.
    let schemas = shipped_schemas();
    let wpm = schemas.iter().find(|s| s.model == "stiebel_eltron_wpm").unwrap();
    let eff = schemas.last().unwrap();
    for s in [wpm, eff] {
        assert_eq!(s.manufacturer.as_deref(), Some("Stiebel Eltron"));
        let d = payload::ha_device(&topics(), "hp1", &tags("hp1"), s);
        assert_eq!(d["manufacturer"], "Stiebel Eltron");
        assert_eq!(d["model"], "stiebel_eltron_wpm");
    }
    let mut t = tags("hp1");
    t.insert("manufacturer".into(), "Tecalor".into());
    assert_eq!(payload::ha_device(&topics(), "hp1", &t, wpm)["manufacturer"], "Tecalor");
    // A map that does not say, and no tag: no manufacturer at all (not a guess).
    let plain = Schema::new("m", vec![]);
    assert!(payload::ha_device(&topics(), "hp1", &tags("hp1"), &plain)
        .get("manufacturer")
        .is_none());
}

#[test]
fn the_checker_knows_home_assistants_entity_id_rules() {
    let ok = json!({
        "unique_id": "a", "state_topic": "s", "value_template": "{{ 1 }}",
        "device": {"identifiers": ["d"], "name": "D"},
        "default_entity_id": "sensor.hp1_t", "object_id": "hp1_t",
    });
    let t = "homeassistant/sensor/n/o/config".to_string();
    assert_eq!(ha::check(&[(t.clone(), ok.to_string())]), Ok(1));
    let with = |k: &str, v: Json| {
        let mut p = ok.clone();
        p[k] = v;
        ha::check(&[(t.clone(), p.to_string())]).is_err()
    };
    assert!(
        with("default_entity_id", json!("binary_sensor.hp1_t")),
        "another domain"
    );
    assert!(with("default_entity_id", json!("sensor.hp1__t")), "a doubled _");
    assert!(with("default_entity_id", json!("sensor.HP1_t")), "capitals");
    assert!(with("default_entity_id", json!("hp1_t")), "no domain");
    assert!(with("object_id", json!("hp1_u")), "object_id naming another entity");
    let mut only_object = ok.clone();
    only_object.as_object_mut().unwrap().remove("default_entity_id");
    assert!(
        ha::check(&[(t.clone(), only_object.to_string())]).is_err(),
        "object_id alone"
    );
}

/// The README's table of what one pump's entities look like, and its counts,
/// are what discovery publishes for the shipped map through `scale` and
/// `efficiency`.
#[test]
fn the_readmes_entity_table_is_what_discovery_publishes() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Home Assistant over MQTT")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Home Assistant over MQTT section");
    let schemas = shipped_schemas();
    let entities = payload::discovery(&topics(), "hp1", &tags("hp1"), schemas.last().unwrap(), None);
    let by_id: BTreeMap<String, (&str, &Json)> = entities
        .iter()
        .map(|e| {
            (
                e.payload["default_entity_id"].as_str().unwrap().to_string(),
                (e.topic.split('/').nth(1).unwrap(), &e.payload),
            )
        })
        .collect();
    let binary = by_id.values().filter(|(p, _)| *p == "binary_sensor").count();
    let enums = by_id.values().filter(|(_, p)| p["device_class"] == "enum").count();
    let diagnostic = by_id
        .values()
        .filter(|(_, p)| p["entity_category"] == "diagnostic")
        .count();
    let counts = format!(
        "{} entities, {binary} of them binary sensors, {enums} enums, {diagnostic} in\nthe diagnostic category",
        entities.len()
    );
    assert!(section.contains(&counts), "README should say: {counts}");
    let cell = |p: &Json, k: &str| p.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let mut rows = 0;
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let id = cells[0].split('`').nth(1).unwrap();
        let (platform, p) = by_id
            .get(id)
            .unwrap_or_else(|| panic!("README names {id}, which discovery does not publish"));
        assert_eq!(
            cells[0].contains("(diagnostic)"),
            p["entity_category"] == "diagnostic",
            "{id}"
        );
        assert_eq!(cells[1], *platform, "{id}");
        let class = cells[2].split(' ').next().unwrap();
        assert_eq!(class, cell(p, "device_class"), "{id}");
        if class == "enum" {
            for option in cells[2].split('`').skip(1).step_by(2) {
                assert!(
                    p["options"].as_array().unwrap().iter().any(|o| o == option),
                    "{id}: {option}"
                );
            }
        }
        assert_eq!(cells[3], cell(p, "unit_of_measurement"), "{id}");
        assert_eq!(cells[4], cell(p, "state_class"), "{id}");
        rows += 1;
    }
    assert!(rows >= 10, "the table has its sample rows: {rows}");
}
