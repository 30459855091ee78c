//! The Grafana dashboards against real data: a real `hpflow run` polls two
//! simulated heat pumps (`hpflow simulate`, 3000 times faster than real time, so
//! compressors cycle and a controller's midnight passes within seconds) through
//! `scale`, `efficiency` and `state_diff` (as the shipped pipelines do) into a
//! real InfluxDB 1.x (`influxd`, Debian package `influxdb`). Then every query of
//! every dashboard in `grafana/dashboards/` (panels, rows' nested panels,
//! template variables) is interpolated as Grafana does and run on InfluxDB's
//! `/query` API: it must parse, and every column it selects must hold data. The
//! compressor-start, energy, COP, cycle and defrost panels are checked against
//! the polled values themselves.
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
use support::{repo, shipped_registers};

const DB: &str = "hpflow";
const SPEED: u32 = 3000;
const PUMPS: [&str; 2] = ["hp1", "hp2"];

/// Queries in `grafana/dashboards/` (panel targets and template variables). A
/// panel added or removed changes it: update it then, so that a dashboard folder
/// that lost its files cannot pass.
const EXPECTED_QUERIES: usize = 31;

/// Bare words a dashboard query may use; every field, tag and measurement is written in double quotes.
const INFLUXQL_WORDS: &str = "select from where and or as group by time fill null none previous \
    mean last first max min count spread sum non_negative_difference show tag values with key tz";

/// The days the per-day panels count in (the dashboards' `time_zone` variable) and
/// the efficiency transform's `time_zone`: one with a UTC offset, so that `tz()`
/// shows.
const TIME_ZONE: &str = "Europe/Berlin";

/// The fields hpflow's `efficiency` transform adds to every poll (README, "#### `efficiency`").
/// The live test checks that each reached InfluxDB, so the list cannot go stale.
const EFFICIENCY_FIELDS: &[&str] = &[
    "heat_heating_kwh",
    "heat_dhw_kwh",
    "heat_kwh",
    "electricity_heating_kwh",
    "electricity_dhw_kwh",
    "electricity_kwh",
    "booster_kwh",
    "heat_today_kwh",
    "heat_heating_today_kwh",
    "heat_dhw_today_kwh",
    "electricity_today_kwh",
    "electricity_heating_today_kwh",
    "electricity_dhw_today_kwh",
    "cop_today",
    "cop_today_heating",
    "cop_today_dhw",
    "cop_24h",
    "cop_24h_heating",
    "cop_24h_dhw",
    "cop_month",
    "cop_month_heating",
    "cop_month_dhw",
    "scop",
    "scop_heating",
    "scop_dhw",
    "compressor_starts",
    "compressor_run_seconds",
    "compressor_starts_per_hour",
    "compressor_last_run_seconds",
    "defrosts",
    "defrost_seconds",
    "defrost_last_seconds",
    "short_cycling",
];

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
/// single-quoted strings, bare words). An alias read in an outer query (a
/// subquery's column) is no name; nor is the time zone of `tz('…')`.
fn names(q: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut quoted, mut strings, mut words) = (Vec::new(), Vec::new(), Vec::<String>::new());
    let mut aliases = BTreeSet::new();
    let c: Vec<char> = q.chars().collect();
    let mut i = 0;
    let until = |i: usize, end: char| (i + 1..c.len()).find(|&j| c[j] == end).unwrap_or(c.len());
    while i < c.len() {
        match c[i] {
            '"' | '\'' => {
                let j = until(i, c[i]);
                let s: String = c[i + 1..j].iter().collect();
                let after = |w: &str| words.last().is_some_and(|l| l.eq_ignore_ascii_case(w));
                if c[i] == '\'' {
                    if !after("tz") {
                        strings.push(s);
                    }
                } else if after("as") {
                    aliases.insert(s);
                } else {
                    quoted.push(s);
                }
                // An alias ends the AS: it must not make the next name an alias too.
                words.push(String::new());
                i = j + 1;
            }
            // A regex follows `=~` or `!~`; any other `/` divides.
            '/' if c[..i].iter().rev().find(|ch| !ch.is_whitespace()) == Some(&'~') => i = until(i, '/') + 1,
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
    quoted.retain(|n| !aliases.contains(n));
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
fn dashboard_queries_name_only_fields_the_register_map_or_the_efficiency_transform_defines() {
    let mut fields = register_fields();
    fields.extend(EFFICIENCY_FIELDS.iter().map(|f| f.to_string()));
    let qs = queries();
    assert_eq!(qs.len(), EXPECTED_QUERIES, "queries in grafana/dashboards/: {qs:#?}");
    for q in qs {
        let (quoted, strings, words) = names(&q.text);
        let at = format!("{} / {}: {}", q.dashboard, q.panel, q.text);
        for n in &quoted {
            assert!(
                fields.contains(n) || SCHEMA_NAMES.contains(&n.as_str()),
                "{at}\n  {n:?} is no field of config/registers.yml or the efficiency transform and no tag or \
                 measurement of hpflow's"
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
    // The simulated clock starts at 04:30 UTC on a winter day, so the simulated day
    // the run covers holds both hot-water charges before the controller's midnight,
    // whatever the time of day the test runs at (a run without a charge would have
    // no hot-water COP to show).
    let (sim, modbus_port) = simulator_with(&[
        "--devices",
        "2",
        "--speed",
        &SPEED.to_string(),
        "--start",
        "2026-01-15T04:30:00Z",
        "--time-zone",
        "UTC",
    ]);
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
[transforms.scaled]
type = "scale"
inputs = ["heatpumps"]

[transforms.efficiency]
type = "efficiency"
inputs = ["scaled"]
time_zone = "{TIME_ZONE}"

[transforms.states]
type = "state_diff"
inputs = ["efficiency"]

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
    let start_hpflow = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        Killed(
            hpflow()
                .arg("run")
                .arg(&pipeline)
                .env_remove("HPFLOW_DATA_DIR")
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("hpflow run starts"),
        )
    };
    let mut run = start_hpflow();
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

    // `cop_24h` needs the efficiency transform's counter reading of 24 h ago, which a
    // test of seconds never has: move the oldest reading it saved on shutdown 25 h
    // back (its counters unchanged, so the figure becomes the COP since the first
    // poll), and run hpflow again until every pump has the figure. This also
    // restarts the transform from its saved state.
    let state = dir.path().join("data/efficiency/efficiency.json");
    let text = std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    let mut saved: Json = serde_json::from_str(&text).unwrap();
    for pump in PUMPS {
        let t = &mut saved["devices"][pump]["checkpoints"][0]["t"];
        let then = t
            .as_f64()
            .unwrap_or_else(|| panic!("{pump}: no saved counter reading in {text}"));
        *t = Json::from(then - 90_000.0);
    }
    std::fs::write(&state, saved.to_string()).unwrap();
    let mut run = start_hpflow();
    let restarted = Instant::now();
    loop {
        let j = influxd.query(
            DB,
            "SELECT last(\"cop_24h\") FROM \"heatpump_metrics\" GROUP BY \"heat_pump_id\"",
        );
        if per_pump(&j, 1).len() == PUMPS.len() {
            break;
        }
        if let Ok(Some(status)) = run.0.try_wait() {
            panic!("hpflow run (again) exited with {status}:\n{}", hpflow_log());
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "no cop_24h after the restart: {j}\nhpflow log:\n{}",
            hpflow_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = support::process::terminate(&mut run.0, Duration::from_secs(15));
    assert!(status.success(), "hpflow run (again): {status}\n{}", hpflow_log());
    drop(sim);

    let vars = Vars {
        from_ms: unix_ms(since),
        to_ms: unix_ms(SystemTime::now()),
        pumps: PUMPS.iter().map(|p| p.to_string()).collect(),
        time_zone: TIME_ZONE.to_string(),
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
        let again = answers.insert(q.panel.clone(), j);
        assert!(
            again.is_none() || q.template_variable,
            "{} / {}: a panel title used twice; the checks below find panels by title",
            q.dashboard,
            q.panel
        );
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
    efficiency_panels(&influxd, &answer, &vars);
    eprintln!(
        "{} dashboard queries checked against {} s of simulated data in {:?}",
        qs.len(),
        poll_start.elapsed().as_secs(),
        started.elapsed()
    );
}

/// (time in ms, value) of column `col` per `heat_pump_id` tag, over every series of the first statement.
fn timed(j: &Json, col: usize) -> BTreeMap<String, Vec<(i64, Json)>> {
    let mut out: BTreeMap<String, Vec<(i64, Json)>> = BTreeMap::new();
    for s in j["results"][0]["series"].as_array().into_iter().flatten() {
        let pump = s["tags"]["heat_pump_id"].as_str().unwrap_or_default().to_string();
        let rows = s["values"].as_array().into_iter().flatten();
        out.entry(pump)
            .or_default()
            .extend(rows.map(|r| (r[0].as_i64().expect("epoch ms"), r[col].clone())));
    }
    out
}

/// Each pump's polled values of `field`, in time order, with their times (ms).
fn polled(influxd: &Influxd, field: &str) -> BTreeMap<String, Vec<(i64, Json)>> {
    timed(
        &influxd.query(
            DB,
            &format!("SELECT \"{field}\" FROM \"heatpump_metrics\" GROUP BY \"heat_pump_id\""),
        ),
        1,
    )
}

/// How often a polled bool switched from off to on.
fn rises(values: &[(i64, Json)]) -> usize {
    let v: Vec<bool> = values.iter().map(|(_, v)| v.as_bool().expect("a bool")).collect();
    v.windows(2).filter(|w| !w[0] && w[1]).count()
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

/// The efficiency dashboard's panels against the values polled into InfluxDB.
fn efficiency_panels<'a>(influxd: &Influxd, answer: &dyn Fn(&str) -> &'a Json, vars: &Vars) {
    // Every field the transform adds reached InfluxDB.
    let keys = influxd.query(DB, "SHOW FIELD KEYS FROM \"heatpump_metrics\"");
    let stored: BTreeSet<&str> = keys["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|kv| kv[0].as_str())
        .collect();
    let missing: Vec<&&str> = EFFICIENCY_FIELDS.iter().filter(|f| !stored.contains(**f)).collect();
    assert!(missing.is_empty(), "efficiency fields not in InfluxDB: {missing:?}");

    // The rise of a counter over the dashboards' time range, per pump.
    let range = format!("time >= {}ms AND time <= {}ms", vars.from_ms, vars.to_ms);
    let rise = |field: &str| -> BTreeMap<String, f64> {
        let j = influxd.query(
            DB,
            &format!(
                "SELECT max(\"{field}\") - min(\"{field}\") FROM \"heatpump_metrics\" WHERE {range} \
                 GROUP BY \"heat_pump_id\""
            ),
        );
        per_pump(&j, 1).into_iter().map(|(p, v)| (p, sum(&v))).collect()
    };

    // Heat and electricity per day add up to the rise of the transform's counters.
    let mut days: BTreeMap<&str, BTreeMap<String, BTreeMap<i64, f64>>> = BTreeMap::new();
    for (panel, heating, dhw, total) in [
        ("Heat per day", "heat_heating_kwh", "heat_dhw_kwh", "heat_kwh"),
        (
            "Electricity per day",
            "electricity_heating_kwh",
            "electricity_dhw_kwh",
            "electricity_kwh",
        ),
    ] {
        let j = answer(panel);
        let (h, d) = (timed(j, 1), timed(j, 2));
        let (rise_h, rise_d, rise_total) = (rise(heating), rise(dhw), rise(total));
        for pump in PUMPS {
            let shown_h: f64 = h[pump].iter().filter_map(|(_, v)| v.as_f64()).sum();
            let shown_d: f64 = d[pump].iter().filter_map(|(_, v)| v.as_f64()).sum();
            assert!(rise_total[pump] > 0.0, "{panel}, {pump}: {total} did not rise");
            assert!(
                close(shown_h, rise_h[pump], 1e-6),
                "{panel}, {pump}: heating {shown_h} against the rise of {heating} {}",
                rise_h[pump]
            );
            assert!(
                close(shown_d, rise_d[pump], 1e-6),
                "{panel}, {pump}: hot water {shown_d} against the rise of {dhw} {}",
                rise_d[pump]
            );
            assert!(
                close(shown_h + shown_d, rise_total[pump], 0.01),
                "{panel}, {pump}: {} against the rise of {total} {}",
                shown_h + shown_d,
                rise_total[pump]
            );
            let per_day = days.entry(panel).or_default().entry(pump.to_string()).or_default();
            for ((t, h), (t2, d)) in h[pump].iter().zip(&d[pump]) {
                assert_eq!(t, t2);
                *per_day.entry(*t).or_default() += h.as_f64().unwrap_or_default() + d.as_f64().unwrap_or_default();
            }
        }
    }

    // The controller's own figures: the efficiency counters rose by what the
    // controller's day counters counted, where the day after the controller's
    // midnight (which the test waited for) starts with what it shows at the first
    // poll after the reset (energy the overview's per-day panels lose), plus the
    // electric booster's totals, which count on both sides.
    let booster = rise("booster_kwh");
    let counted = |v: &[i64]| {
        v.windows(2)
            .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
            .sum::<i64>()
    };
    for (panel, heating, dhw) in [
        ("Heat per day", "heat_meter_heating_day", "heat_meter_dhw_day"),
        (
            "Electricity per day",
            "power_consumption_heating_day",
            "power_consumption_dhw_day",
        ),
    ] {
        let polled = day_counters(influxd, heating, dhw);
        for pump in PUMPS {
            let (h, d): (Vec<i64>, Vec<i64>) = polled[pump].iter().copied().unzip();
            let controller = (counted(&h) + counted(&d)) as f64 + booster[pump];
            let shown: f64 = days[panel][pump].values().sum();
            assert!(
                close(shown, controller, 0.01),
                "{panel}, {pump}: {shown} kWh against the controller's day counters and booster totals, \
                 {controller} kWh (booster {}; {heating}, {dhw}: {:?})",
                booster[pump],
                polled[pump]
            );
        }
    }

    // Days start at local midnight in the dashboards' time zone (Europe/Berlin: 23:00
    // or 22:00 UTC), not at UTC midnight.
    for t in days["Heat per day"].values().flat_map(|d| d.keys()) {
        let utc_hour = t.rem_euclid(86_400_000) / 3_600_000;
        assert!(
            [22, 23].contains(&utc_hour),
            "a day starting at {t} ms ({utc_hour}:00 UTC)"
        );
    }

    // The COP per day is that day's heat ÷ electricity of the two panels above.
    let cop = timed(answer("COP per day"), 1);
    for pump in PUMPS {
        let (heat, elec) = (&days["Heat per day"][pump], &days["Electricity per day"][pump]);
        let expected: BTreeMap<i64, f64> = elec
            .iter()
            .filter(|(_, e)| **e > 0.0)
            .map(|(t, e)| (*t, heat.get(t).copied().unwrap_or_default() / e))
            .collect();
        let shown: BTreeMap<i64, f64> = cop[pump].iter().map(|(t, v)| (*t, v.as_f64().unwrap())).collect();
        assert_eq!(
            shown.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "COP per day, {pump}: days"
        );
        for (t, e) in &expected {
            assert!(
                close(shown[t], *e, 0.01 * e.max(1.0)),
                "COP per day, {pump}, {t}: {} against {e}",
                shown[t]
            );
        }
    }

    // The COP and energy stats show the pump's last polled values, and the COP today
    // is today's heat ÷ electricity.
    let last_polled = |field: &str| -> BTreeMap<String, Json> {
        polled(influxd, field)
            .into_iter()
            .map(|(p, v)| (p, v.last().map(|(_, v)| v.clone()).unwrap_or_default()))
            .collect()
    };
    for (panel, fields) in [
        ("COP today", ["cop_today", "cop_today_heating", "cop_today_dhw"]),
        ("COP, last 24 h", ["cop_24h", "cop_24h_heating", "cop_24h_dhw"]),
        ("COP this month", ["cop_month", "cop_month_heating", "cop_month_dhw"]),
        ("SCOP", ["scop", "scop_heating", "scop_dhw"]),
    ] {
        for (col, field) in fields.iter().enumerate() {
            let shown = per_pump(answer(panel), col + 1);
            let polled = last_polled(field);
            for pump in PUMPS {
                let v = shown[pump].last().and_then(Json::as_f64);
                assert!(
                    v.is_some_and(|v| v > 0.5 && v < 10.0),
                    "{panel}, {pump}: {field} = {v:?}"
                );
                assert_eq!(v, polled[pump].as_f64(), "{panel}, {pump}: {field}");
            }
        }
    }
    // The counter reading `cop_24h` compares with was moved back from the first
    // poll (see above): the figure is the COP over the whole run.
    let (heat_rise, electricity_rise) = (rise("heat_kwh"), rise("electricity_kwh"));
    let cop_24h = per_pump(answer("COP, last 24 h"), 1);
    for pump in PUMPS {
        let (shown, whole) = (sum(&cop_24h[pump]), heat_rise[pump] / electricity_rise[pump]);
        assert!(
            close(shown, whole, 0.006),
            "COP, last 24 h, {pump}: {shown} against {} / {} kWh since the first poll",
            heat_rise[pump],
            electricity_rise[pump]
        );
    }
    let today = answer("Energy today");
    let (heat, elec, cop_today) = (per_pump(today, 1), per_pump(today, 4), per_pump(answer("COP today"), 1));
    for pump in PUMPS {
        let (h, e) = (sum(&heat[pump]), sum(&elec[pump]));
        let parts = |a: usize, b: usize| sum(&per_pump(today, a)[pump]) + sum(&per_pump(today, b)[pump]);
        assert!(
            close(h, parts(2, 3), 0.002),
            "Energy today, {pump}: heat {h} is heating + hot water"
        );
        assert!(
            close(e, parts(5, 6), 0.002),
            "Energy today, {pump}: electricity {e} is heating + hot water"
        );
        assert!(e > 0.0, "Energy today, {pump}: no electricity");
        let c = sum(&cop_today[pump]);
        assert!(close(c, h / e, 0.006), "COP today, {pump}: {c} against {h} / {e} kWh");
    }

    // Compressor starts per day add up to the off→on flips polled; the starts within
    // the last hour (the test runs for less than an hour) end at that count.
    let compressor = polled(influxd, "compressor_running");
    let starts_per_day = per_pump(answer("Compressor starts per day"), 1);
    let last_hour = per_pump(answer("Compressor starts in the last hour"), 1);
    for pump in PUMPS {
        let flips = rises(&compressor[pump]) as f64;
        assert!(flips >= 1.0, "{pump}: no compressor start polled");
        assert_eq!(sum(&starts_per_day[pump]), flips, "Compressor starts per day, {pump}");
        let max = last_hour[pump].iter().filter_map(Json::as_f64).fold(0.0, f64::max);
        assert_eq!(max, flips, "Compressor starts in the last hour, {pump}");
    }

    // Defrosts per day add up to the off→on flips of `defrost_mode` polled.
    let defrost = polled(influxd, "defrost_mode");
    let defrosts = per_pump(answer("Defrosts per day"), 1);
    for pump in PUMPS {
        assert_eq!(
            sum(&defrosts[pump]),
            rises(&defrost[pump]) as f64,
            "Defrosts per day, {pump}"
        );
    }

    // The last run's length is that of the last whole run polled (first poll on to
    // first poll off), and runs that short (simulated 10 minutes pass in 0.2 s here)
    // are short cycling.
    let last_run = per_pump(answer("Last compressor run"), 1);
    let short = per_pump(answer("Short cycling"), 1);
    for pump in PUMPS {
        let polls = &compressor[pump];
        let (mut on_at, mut runs) = (None, Vec::new());
        for w in polls.windows(2) {
            match (w[0].1.as_bool(), w[1].1.as_bool()) {
                (Some(false), Some(true)) => on_at = Some(w[1].0),
                (Some(true), Some(false)) => runs.extend(on_at.take().map(|t| (w[1].0 - t) as f64 / 1000.0)),
                _ => {}
            }
        }
        let shown = last_run[pump].iter().filter_map(Json::as_f64).next_back();
        let polled_run = runs.last().copied();
        assert!(
            shown.zip(polled_run).is_some_and(|(s, p)| close(s, p, 0.55)),
            "Last compressor run, {pump}: {shown:?} s against the polled runs {runs:?} s"
        );
        assert_eq!(
            short[pump].iter().filter_map(Json::as_bool).next_back(),
            Some(true),
            "Short cycling, {pump}: runs of {runs:?} s"
        );
    }
    eprintln!(
        "efficiency panels: heat per day {:?}, electricity per day {:?}, COP per day {:?}, starts {:?}, \
         defrosts {:?}, last runs {:?} s",
        days["Heat per day"],
        days["Electricity per day"],
        cop,
        starts_per_day,
        defrosts,
        last_run
            .iter()
            .map(|(p, v)| (p, v.iter().filter_map(Json::as_f64).next_back()))
            .collect::<Vec<_>>(),
    );
}
