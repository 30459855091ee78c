//! The Grafana dashboards against real data: a real `hpflow run` polls two
//! simulated heat pumps (`hpflow simulate`, 3000 times faster than real time, so
//! compressors cycle and a controller's midnight passes within seconds) through
//! `scale` and `state_diff` into a real InfluxDB 1.x (`influxd`, Debian package
//! `influxdb`). Then every query of every dashboard in `grafana/dashboards/`
//! (panels, rows' nested panels, template variables) is interpolated as Grafana
//! does and run on InfluxDB's `/query` API: it must parse, and every column it
//! selects must hold data. The compressor-start and energy panels are checked
//! against the polled values themselves.
//!
//! Grafana itself does not run here: the provisioning files are checked as YAML,
//! and every data source a dashboard names must be one they provision.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;
use support::grafana::{check_answer, columns, dashboards, interpolate, maps_value, panels, queries, Vars};
use support::influxd::Influxd;
use support::process::{hpflow, simulator_with, Killed};
use support::{repo, shipped_registers, SCALED_STATES};

const DB: &str = "hpflow";
const SPEED: u32 = 3000;
const PUMPS: [&str; 2] = ["hp1", "hp2"];

/// Queries in `grafana/dashboards/` (panel targets and template variables). A
/// panel added or removed changes it: update it then, so that a dashboard folder
/// that lost its files cannot pass.
const EXPECTED_QUERIES: usize = 17;

/// Bare words a dashboard query may use; every field, tag and measurement is written in double quotes.
const INFLUXQL_WORDS: &str = "select from where and or as group by time fill null none previous \
    mean last first max min count spread sum non_negative_difference show tag values with key";

/// Tags hpflow writes, and the fields of the state-change measurement.
const SCHEMA_NAMES: &[&str] = &[
    "heatpump_metrics",
    "heatpump_state_changes",
    "heat_pump_id",
    "name",
    "location",
    "model",
    "field",
    "from",
    "to",
    "from_since",
];

/// The names a query reads: (double-quoted identifiers that are not aliases,
/// single-quoted strings, bare words).
fn names(q: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut quoted, mut strings, mut words) = (Vec::new(), Vec::new(), Vec::<String>::new());
    let c: Vec<char> = q.chars().collect();
    let mut i = 0;
    let until = |i: usize, end: char| (i + 1..c.len()).find(|&j| c[j] == end).unwrap_or(c.len());
    while i < c.len() {
        match c[i] {
            '"' | '\'' => {
                let j = until(i, c[i]);
                let s: String = c[i + 1..j].iter().collect();
                if c[i] == '\'' {
                    strings.push(s);
                } else if !words.last().is_some_and(|w| w.eq_ignore_ascii_case("as")) {
                    quoted.push(s);
                }
                // An alias ends the AS: it must not make the next name an alias too.
                words.push(String::new());
                i = j + 1;
            }
            '/' => i = until(i, '/') + 1, // a regex
            '$' => {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || "_{}".contains(c[i])) {
                    i += 1;
                }
            }
            ch if ch.is_ascii_alphabetic() || ch == '_' => {
                let j = (i..c.len())
                    .find(|&j| !(c[j].is_ascii_alphanumeric() || c[j] == '_'))
                    .unwrap_or(c.len());
                words.push(c[i..j].iter().collect());
                i = j;
            }
            ch if ch.is_ascii_digit() => {
                // Numbers and durations (`1h`, `0`).
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    words.retain(|w| !w.is_empty());
    (quoted, strings, words)
}

/// Every field name of every model of `config/registers.yml`, bitmap bits included.
fn register_fields() -> BTreeSet<String> {
    let path = shipped_registers();
    let map: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for (_, model) in map["models"].as_mapping().expect("models") {
        for r in model["registers"].as_sequence().expect("registers") {
            out.insert(r["name"].as_str().expect("a register name").to_string());
            for (_, bit) in r["bitmap_fields"].as_mapping().into_iter().flatten() {
                out.insert(bit.as_str().expect("a bitmap field name").to_string());
            }
        }
    }
    out
}

fn yaml(relative: &str) -> serde_yaml::Value {
    let path = repo().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn provisioning_files_parse_and_every_dashboard_uses_the_provisioned_data_source() {
    let ds = yaml("grafana/provisioning/datasources/influxdb.yml");
    let sources = ds["datasources"].as_sequence().expect("datasources");
    let provisioned: BTreeMap<&str, &str> = sources
        .iter()
        .map(|s| (s["uid"].as_str().expect("a fixed uid"), s["type"].as_str().unwrap()))
        .collect();
    let influx = sources
        .iter()
        .find(|s| s["type"] == "influxdb")
        .expect("an influxdb data source");
    assert_eq!(influx["url"], "http://influxdb:8086");
    assert_eq!(influx["jsonData"]["version"], "InfluxQL");
    assert_eq!(influx["jsonData"]["dbName"], "${INFLUXDB_BUCKET}");
    assert_eq!(influx["jsonData"]["httpHeaderName1"], "Authorization");
    assert_eq!(influx["secureJsonData"]["httpHeaderValue1"], "Token ${INFLUXDB_TOKEN}");

    let providers = yaml("grafana/provisioning/dashboards/hpflow.yml");
    let p = &providers["providers"][0];
    assert_eq!(p["type"], "file");
    assert_eq!(p["folder"], "hpflow");
    assert_eq!(p["options"]["path"], "/var/lib/grafana/dashboards");

    let mut uids = BTreeSet::new();
    for (name, dash) in dashboards() {
        let uid = dash["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uids.insert(uid.to_string()),
            "{name}: a missing or repeated uid"
        );
        // Grafana 11.x writes schemaVersion 39 to 41; newer Grafanas migrate it up.
        let schema = dash["schemaVersion"].as_u64().unwrap_or_default();
        assert!((39..=41).contains(&schema), "{name}: schemaVersion {schema}");
        let mut ids = BTreeSet::new();
        for panel in panels(&dash["panels"]) {
            let title = &panel["title"];
            assert!(
                ids.insert(panel["id"].as_u64().expect("a panel id")),
                "{name}: panel id repeated: {title}"
            );
            for ds in [&panel["datasource"]]
                .into_iter()
                .chain(
                    panel["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| &t["datasource"]),
                )
                .filter(|d| !d.is_null())
            {
                let uid = ds["uid"].as_str().unwrap_or_default();
                let kind = provisioned.get(uid);
                assert!(
                    kind.is_some(),
                    "{name}: panel {title}: data source {ds} is not provisioned"
                );
                assert_eq!(
                    Some(&ds["type"].as_str().unwrap_or_default()),
                    kind,
                    "{name}: panel {title}"
                );
            }
        }
    }
    for q in queries() {
        let uid = q.datasource.as_deref().unwrap_or_default();
        assert!(
            provisioned.contains_key(uid),
            "{} / {}: data source {uid:?} is not provisioned",
            q.dashboard,
            q.panel
        );
    }
}

#[test]
fn dashboard_queries_name_only_fields_the_register_map_defines() {
    let fields = register_fields();
    let qs = queries();
    assert_eq!(qs.len(), EXPECTED_QUERIES, "queries in grafana/dashboards/: {qs:#?}");
    for q in qs {
        let (quoted, strings, words) = names(&q.text);
        let at = format!("{} / {}: {}", q.dashboard, q.panel, q.text);
        for n in &quoted {
            assert!(
                fields.contains(n) || SCHEMA_NAMES.contains(&n.as_str()),
                "{at}\n  {n:?} is no field of config/registers.yml and no tag or measurement of hpflow's"
            );
        }
        for s in &strings {
            assert!(fields.contains(s), "{at}\n  '{s}' is no field of config/registers.yml");
        }
        for w in &words {
            assert!(
                INFLUXQL_WORDS.split_whitespace().any(|k| k.eq_ignore_ascii_case(w)),
                "{at}\n  bare word {w:?}: write field, tag and measurement names in double quotes"
            );
        }
    }
}

/// Enum fields (with labels) of a register map: name → (code, label) pairs.
fn enum_labels(relative: &str) -> BTreeMap<String, Vec<(i64, String)>> {
    let map = yaml(relative);
    let mut out = BTreeMap::new();
    for (_, model) in map["models"].as_mapping().expect("models") {
        for r in model["registers"].as_sequence().expect("registers") {
            let Some(values) = r["enum_values"].as_mapping().filter(|m| !m.is_empty()) else {
                continue;
            };
            let labels = values
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_i64().expect("an integer code"),
                        v.as_str().expect("a label").to_string(),
                    )
                })
                .collect();
            out.insert(r["name"].as_str().unwrap().to_string(), labels);
        }
    }
    out
}

#[test]
fn enum_panels_map_codes_and_labels_and_never_aggregate_an_enum_arithmetically() {
    // hpflow writes labels by default (HPManager's strings) and codes with
    // `enum_values = "code"`: a panel must show either, with either register map.
    let mut enums = enum_labels("config/registers.yml");
    for (field, labels) in enum_labels("tests/fixtures/hpmanager-config/registers.yml") {
        enums.entry(field).or_default().extend(labels);
    }
    let mut checked = 0;
    for q in queries().iter().filter(|q| !q.template_variable) {
        for (_, field) in columns(&q.text) {
            let Some(labels) = enums.get(&field) else {
                continue;
            };
            let at = format!("{} / {}: {}", q.dashboard, q.panel, q.text);
            for f in ["mean", "sum", "spread", "non_negative_difference", "max", "min"] {
                assert!(
                    !q.text.contains(&format!("{f}(\"{field}\")")),
                    "{at}\n  {f}() of the enum {field}: a label string has no {f}"
                );
            }
            for (code, label) in labels {
                for value in [Json::from(*code), Json::from(label.as_str())] {
                    assert!(
                        maps_value(&q.mappings, &value),
                        "{at}\n  no value mapping for {field} = {value}"
                    );
                }
            }
            assert!(
                maps_value(&q.mappings, &Json::from("Unknown(9)")) || has_unknown_pattern(&q.mappings),
                "{at}\n  an unknown code (`Unknown(<code>)`) is not mapped"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "enum panels checked: {checked}");
}

/// Whether a regex mapping catches HPManager's `Unknown(<code>)` labels.
fn has_unknown_pattern(mappings: &Json) -> bool {
    mappings
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["type"] == "regex" && m["options"]["pattern"].as_str().is_some_and(|p| p.contains("Unknown")))
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis()
}

/// Values of column `col` per `heat_pump_id` tag, over every series of the first statement.
fn per_pump(j: &Json, col: usize) -> BTreeMap<String, Vec<Json>> {
    let mut out: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for s in j["results"][0]["series"].as_array().into_iter().flatten() {
        let pump = s["tags"]["heat_pump_id"].as_str().unwrap_or_default().to_string();
        let values = s["values"].as_array().into_iter().flatten().map(|r| r[col].clone());
        out.entry(pump).or_default().extend(values);
    }
    out
}

fn sum(values: &[Json]) -> f64 {
    values.iter().filter_map(Json::as_f64).sum()
}

/// Each pump's polled (`heating`, `dhw`) day counters, in time order.
fn day_counters(influxd: &Influxd, heating: &str, dhw: &str) -> BTreeMap<String, Vec<(i64, i64)>> {
    let j = influxd.query(
        DB,
        &format!("SELECT \"{heating}\", \"{dhw}\" FROM \"heatpump_metrics\" GROUP BY \"heat_pump_id\""),
    );
    let (h, d) = (per_pump(&j, 1), per_pump(&j, 2));
    h.into_iter()
        .map(|(pump, h)| {
            let pairs = h
                .iter()
                .zip(&d[&pump])
                .filter_map(|(h, d)| Some((h.as_i64()?, d.as_i64()?)))
                .collect();
            (pump, pairs)
        })
        .collect()
}

/// Whether the summed day counters grew, fell (the controller's midnight) and grew again.
fn grew_across_a_reset(days: &[(i64, i64)]) -> bool {
    let v: Vec<i64> = days.iter().map(|(h, d)| h + d).collect();
    (1..v.len()).any(|i| v[i] < v[i - 1] && v[i - 1] > v[0] && v[i..].iter().any(|x| *x > v[i]))
}

#[test]
fn every_dashboard_query_returns_data_written_by_a_simulated_pipeline() {
    let started = Instant::now();
    let since = SystemTime::now() - Duration::from_secs(3600);
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(&dir.path().join("influxd"));
    influxd.query(DB, &format!("CREATE DATABASE {DB}"));

    // 3000× real time: a simulated day passes in 29 s, so the controller's midnight
    // (when the day counters reset) comes within the test whenever it runs; a poll
    // every 100 ms sees 5 minutes of the plant, shorter than its compressor's runs
    // and pauses (30-minute cycles, on for 10 minutes to 95 %).
    let (sim, modbus_port) = simulator_with(&["--devices", "2", "--speed", &SPEED.to_string()]);
    let pipeline = dir.path().join("pipeline.toml");
    let registers = shipped_registers();
    let devices: String = PUMPS
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "[[sources.heatpumps.devices]]\nid = \"{id}\"\nname = \"Heat pump {n}\"\nlocation = \"Cellar\"\n\
                 model = \"stiebel_eltron_wpm\"\nhost = \"127.0.0.1\"\nport = {modbus_port}\nunit_id = {n}\n\n",
                n = i + 1
            )
        })
        .collect();
    std::fs::write(
        &pipeline,
        format!(
            r#"
[sources.heatpumps]
type = "modbus_tcp"
registers = "{registers}"
interval = "100ms"
timeout = "1s"
phase_spread = false

{devices}
{SCALED_STATES}
[sinks.db]
type = "influxdb"
inputs = ["states"]
endpoint = "{url}"
database = "{DB}"
batch_timeout = "200ms"
"#,
            registers = registers.display(),
            url = influxd.url(),
        ),
    )
    .unwrap();
    let log_path = dir.path().join("hpflow.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut run = Killed(
        hpflow()
            .arg("run")
            .arg(&pipeline)
            .env_remove("HPFLOW_DATA_DIR")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hpflow run starts"),
    );
    let hpflow_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Wait until every pump has started its compressor and its day counters have
    // grown, reset at the controller's midnight and grown again.
    let deadline = Duration::from_secs(86_400 / u64::from(SPEED) + 15);
    let poll_start = Instant::now();
    loop {
        let starts = influxd.query(
            DB,
            "SELECT count(\"to\") FROM \"heatpump_state_changes\" WHERE \"field\" = 'compressor_running' \
             AND \"from\" = 0 AND \"to\" = 1 GROUP BY \"heat_pump_id\"",
        );
        let starts = per_pump(&starts, 1);
        let days = day_counters(&influxd, "heat_meter_heating_day", "heat_meter_dhw_day");
        let missing: Vec<String> = PUMPS
            .iter()
            .flat_map(|p| {
                let no_start = sum(starts.get(*p).map(Vec::as_slice).unwrap_or_default()) < 1.0;
                let no_midnight = !days.get(*p).is_some_and(|d| grew_across_a_reset(d));
                [
                    no_start.then(|| format!("{p}: a compressor start")),
                    no_midnight.then(|| format!("{p}: heat made before and after the controller's midnight")),
                ]
            })
            .flatten()
            .collect();
        if missing.is_empty() {
            break;
        }
        if let Ok(Some(status)) = run.0.try_wait() {
            panic!("hpflow run exited with {status}:\n{}", hpflow_log());
        }
        assert!(
            poll_start.elapsed() < deadline,
            "after {deadline:?} InfluxDB still lacks {missing:?}\nhpflow log:\n{}",
            hpflow_log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Stop hpflow (it drains into InfluxDB on SIGTERM) so that the data holds still.
    let status = support::process::terminate(&mut run.0, Duration::from_secs(15));
    assert!(status.success(), "hpflow run: {status}\n{}", hpflow_log());
    drop(sim);

    let vars = Vars {
        from_ms: unix_ms(since),
        to_ms: unix_ms(SystemTime::now()),
        pumps: PUMPS.iter().map(|p| p.to_string()).collect(),
    };
    let qs = queries();
    assert_eq!(qs.len(), EXPECTED_QUERIES, "queries in grafana/dashboards/: {qs:#?}");
    let mut answers = BTreeMap::new();
    for q in &qs {
        let sent = interpolate(q, &vars);
        let j = influxd.query_raw(DB, &sent);
        check_answer(q, &sent, &j);
        if q.template_variable {
            let values: BTreeSet<&str> = j["results"][0]["series"][0]["values"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|kv| kv[1].as_str())
                .collect();
            assert_eq!(values, BTreeSet::from(PUMPS), "{} / {}: {j}", q.dashboard, q.panel);
        }
        answers.insert(q.panel.clone(), j);
    }

    let answer = |panel: &str| {
        answers
            .get(panel)
            .unwrap_or_else(|| panic!("no panel {panel:?} in grafana/dashboards/"))
    };
    // The compressor starts per hour add up to the off→on flips of each pump's polled values.
    let starts = per_pump(answer("Compressor starts per hour"), 1);
    for pump in PUMPS {
        let j = influxd.query(
            DB,
            &format!(
                "SELECT \"compressor_running\" FROM \"heatpump_metrics\" WHERE \"heat_pump_id\" = '{pump}' \
                 GROUP BY \"heat_pump_id\""
            ),
        );
        let polled: Vec<bool> = per_pump(&j, 1)[pump].iter().map(|v| v.as_bool().unwrap()).collect();
        let flips = polled.windows(2).filter(|w| !w[0] && w[1]).count();
        assert!(flips >= 1, "{pump}: no compressor start polled");
        assert_eq!(
            sum(&starts[pump]),
            flips as f64,
            "{pump}: starts per hour against the polled values {polled:?}"
        );
    }
    // The per-day energy panels add up every kWh the day counters counted, across
    // their midnight reset (which the heat counters went through, see above).
    for (panel, heating, dhw) in [
        ("Heat produced per day", "heat_meter_heating_day", "heat_meter_dhw_day"),
        (
            "Electricity consumed per day",
            "power_consumption_heating_day",
            "power_consumption_dhw_day",
        ),
    ] {
        let j = answer(panel);
        let (shown_heating, shown_dhw) = (per_pump(j, 1), per_pump(j, 2));
        let polled = day_counters(&influxd, heating, dhw);
        for pump in PUMPS {
            let (h, d): (Vec<i64>, Vec<i64>) = polled[pump].iter().copied().unzip();
            let counted = |v: &[i64]| v.windows(2).map(|w| (w[1] - w[0]).max(0)).sum::<i64>() as f64;
            assert_eq!(
                sum(&shown_heating[pump]),
                counted(&h),
                "{panel}, {pump}, heating: {h:?}"
            );
            assert_eq!(sum(&shown_dhw[pump]), counted(&d), "{panel}, {pump}, hot water: {d:?}");
            if panel.starts_with("Heat") {
                assert!(
                    grew_across_a_reset(&polled[pump]),
                    "{panel}, {pump}: {:?}",
                    polled[pump]
                );
            }
        }
    }
    eprintln!(
        "{} dashboard queries checked against {} s of simulated data in {:?}",
        qs.len(),
        poll_start.elapsed().as_secs(),
        started.elapsed()
    );
}
