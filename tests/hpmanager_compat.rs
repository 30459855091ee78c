//! hpflow writing into a database HPManager started. A real InfluxDB 1.x is seeded
//! with HPManager's own line protocol (tests/fixtures/hpmanager/, captured from the
//! original collector), then a real `hpflow run` in the shape of
//! pipelines/heatpump.toml (modbus_tcp → scale → state_diff → influxdb, a v1 sink
//! here) polls two simulated heat pumps into the same database: once with
//! HPManager's register map, once with hpflow's own. InfluxDB fixes a field's type
//! per shard, so a single field written with another type than HPManager's would
//! be refused. Checked: every poll hpflow made (counted from a `file` sink, not
//! from the sink's own counters) is in the database, nothing was dead-lettered,
//! every field kept HPManager's type, and every Grafana panel query returns
//! HPManager's rows and hpflow's. A second test: with `enum_values = "code"` a
//! fresh database gets integer enum fields, and the enum panels map those too.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;
use support::grafana::{check_answer, columns, interpolate, maps_value, queries, Query, Vars};
use support::influxd::Influxd;
use support::process::{hpflow, simulator_with, Killed};
use support::{encode, http_post, repo, shipped_registers, SCALED_STATES};

const FIXTURE: &str = include_str!("fixtures/hpmanager/heatpump_metrics.lp");
const PUMPS: [&str; 2] = ["hp1", "hp2"];
/// hpflow's polls per pump and run.
const POLLS: usize = 6;

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Writes the fixture's points, moved in time so the last lies at `end_ms` (their
/// spacing kept), through InfluxDB 1.x's `/write`. Returns their first and last
/// time in ms.
fn seed(influxd: &Influxd, db: &str, end_ms: i64) -> (i64, i64) {
    let points: Vec<(&str, i64)> = FIXTURE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (point, ts) = l.rsplit_once(' ').expect("a timestamp ends each fixture line");
            (point, ts.parse::<i64>().expect("a timestamp in ns"))
        })
        .collect();
    assert!(points.len() >= 10, "the fixture holds HPManager's polls");
    let last = points.iter().map(|p| p.1).max().unwrap();
    let shift = end_ms * 1_000_000 - last;
    let body: String = points.iter().map(|(p, ts)| format!("{p} {}\n", ts + shift)).collect();
    let (status, answer) = http_post(
        influxd.port,
        &format!("/write?db={}&precision=ns", encode(db)),
        body.as_bytes(),
    );
    assert_eq!(status, 204, "InfluxDB takes HPManager's points: {answer}");
    let first = points.iter().map(|p| p.1).min().unwrap();
    ((first + shift) / 1_000_000, end_ms)
}

/// Field name → InfluxDB's type(s) for it, as `SHOW FIELD KEYS` lists them.
fn field_types(influxd: &Influxd, db: &str) -> BTreeMap<String, BTreeSet<String>> {
    let j = influxd.query(db, "SHOW FIELD KEYS FROM \"heatpump_metrics\"");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in j["results"][0]["series"][0]["values"].as_array().into_iter().flatten() {
        let (name, kind) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        out.entry(name.to_string()).or_default().insert(kind.to_string());
    }
    out
}

/// What one `hpflow run` did: each pump's poll times (ms), from its `file` sink.
struct Run {
    polls: BTreeMap<String, BTreeSet<i64>>,
    first_ms: i64,
}

/// Runs hpflow in the shape of pipelines/heatpump.toml (devices from an
/// HPManager heatpumps.yml) against a fresh simulator with two pumps until each
/// pump was polled `POLLS` times, then stops it with SIGTERM (it drains its buffer).
fn run_hpflow(dir: &Path, influxd: &Influxd, db: &str, registers: &Path, sink_extra: &str) -> Run {
    std::fs::create_dir_all(dir).unwrap();
    let (sim, port) = simulator_with(&["--devices", "2", "--speed", "600"]);
    let devices = dir.join("heatpumps.yml");
    let inventory: String = [("hp1", "Heat Pump 1", 1), ("hp2", "Heat Pump2", 2)]
        .iter()
        .map(|(id, name, unit)| {
            format!(
                "- id: {id}\n  name: {name}\n  location: Garage\n  model: stiebel_eltron_wpm\n  enabled: true\n  \
                 modbus:\n    type: tcp\n    host: 127.0.0.1\n    port: {port}\n    unit_id: {unit}\n    timeout: 2.0\n"
            )
        })
        .collect();
    std::fs::write(&devices, format!("heatpumps:\n{inventory}")).unwrap();
    let polls_file = dir.join("polls.jsonl");
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"data_dir = "{data}"

[sources.heatpumps]
type = "modbus_tcp"
devices = "{devices}"
registers = "{registers}"
interval = "300ms"

{SCALED_STATES}
[sinks.influxdb]
type = "influxdb"
inputs = ["states"]
api = "v1"
endpoint = "{url}"
database = "{db}"
batch_timeout = "200ms"
{sink_extra}

[sinks.polls]
type = "file"
inputs = ["states"]
path = "{polls}"
"#,
            data = dir.join("data").display(),
            devices = devices.display(),
            registers = registers.display(),
            url = influxd.url(),
            polls = polls_file.display(),
        ),
    )
    .unwrap();
    let log_path = dir.join("hpflow.log");
    let mut run = Killed(
        hpflow()
            .arg("run")
            .arg(&pipeline)
            .env_remove("HPFLOW_DATA_DIR")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("hpflow run starts"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let polls = || -> BTreeMap<String, BTreeSet<i64>> {
        let text = std::fs::read_to_string(&polls_file).unwrap_or_default();
        let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        // The last line may be half written while hpflow runs.
        for j in text.lines().filter_map(|l| serde_json::from_str::<Json>(l).ok()) {
            if j["type"] == "metric" {
                let t = humantime::parse_rfc3339(j["time"].as_str().unwrap()).unwrap();
                out.entry(j["device"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(unix_ms(t));
            }
        }
        out
    };
    let start = Instant::now();
    while PUMPS.iter().any(|p| polls().get(*p).is_none_or(|s| s.len() < POLLS)) {
        if let Ok(Some(status)) = run.0.try_wait() {
            panic!("hpflow run exited with {status}:\n{}", log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{POLLS} polls per pump within 30 s: {:?}\n{}",
            polls(),
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = support::process::terminate(&mut run.0, Duration::from_secs(15));
    assert!(status.success(), "hpflow run: {status}\n{}", log());
    drop(sim);

    // Nothing was refused: InfluxDB 1.x answers a type conflict with 400 and the
    // sink sets such points aside in its dead-letter file.
    let dead_letter = dir.join("data/influxdb/influxdb/dead-letter.lp");
    let set_aside = std::fs::read_to_string(&dead_letter).unwrap_or_default();
    assert!(
        set_aside.is_empty(),
        "points refused by InfluxDB:\n{set_aside}\n{}",
        log()
    );
    let polls = polls();
    let first_ms = polls.values().flatten().copied().min().unwrap();
    Run { polls, first_ms }
}

/// Each pump's point times (ms) in `heatpump_metrics` after `after_ms`.
fn stored_polls(influxd: &Influxd, db: &str, after_ms: i64) -> BTreeMap<String, BTreeSet<i64>> {
    let j = influxd.query(
        db,
        &format!("SELECT * FROM \"heatpump_metrics\" WHERE time > {after_ms}ms GROUP BY \"heat_pump_id\""),
    );
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for s in j["results"][0]["series"].as_array().into_iter().flatten() {
        let pump = s["tags"]["heat_pump_id"].as_str().unwrap().to_string();
        let times = s["values"].as_array().unwrap().iter().map(|r| r[0].as_i64().unwrap());
        out.entry(pump).or_default().extend(times);
    }
    out
}

/// Runs a panel query over `[from_ms, to_ms]`.
fn ask(influxd: &Influxd, db: &str, q: &Query, from_ms: i64, to_ms: i64) -> (String, Json) {
    let vars = Vars {
        from_ms: from_ms as u128,
        to_ms: to_ms as u128,
        pumps: PUMPS.iter().map(|p| p.to_string()).collect(),
        time_zone: "Europe/Berlin".to_string(),
    };
    let sent = interpolate(q, &vars);
    let j = influxd.query_raw(db, &sent);
    (sent, j)
}

/// Whether some series of the answer has column `alias`.
fn has_column(j: &Json, alias: &str) -> bool {
    j["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["columns"].as_array().is_some_and(|c| c.iter().any(|c| c == alias)))
}

/// The non-null (time, value) pairs of column `alias`, over every series of the answer.
fn column_values(j: &Json, alias: &str) -> Vec<(i64, Json)> {
    let mut out = Vec::new();
    for s in j["results"][0]["series"].as_array().into_iter().flatten() {
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let Some(i) = cols.iter().position(|c| *c == alias) else {
            continue;
        };
        for row in s["values"].as_array().into_iter().flatten() {
            if !row[i].is_null() {
                out.push((row[0].as_i64().unwrap_or_default(), row[i].clone()));
            }
        }
    }
    out
}

#[test]
fn hpflow_writes_into_a_database_hpmanager_started_with_nothing_refused() {
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(&dir.path().join("influxd"));
    let db = "heatpump_data";
    influxd.query(db, &format!("CREATE DATABASE {db}"));

    // HPManager's points, ending two minutes ago (before hpflow's first poll).
    let now = unix_ms(SystemTime::now());
    let (hpm_from, hpm_to) = seed(&influxd, db, now - 120_000);
    let hpmanager_types = field_types(&influxd, db);
    assert_eq!(
        hpmanager_types["operating_mode"],
        BTreeSet::from(["string".to_string()])
    );
    assert_eq!(hpmanager_types["fault_status"], BTreeSet::from(["string".to_string()]));

    // hpflow with HPManager's own register map (what `hpflow import` uses), then
    // with hpflow's shipped map, into the same database, with the default settings.
    let hpm_map = repo().join("tests/fixtures/hpmanager-config/registers.yml");
    let own_map = shipped_registers();
    let a = run_hpflow(&dir.path().join("a"), &influxd, db, &hpm_map, "");
    let b = run_hpflow(&dir.path().join("b"), &influxd, db, &own_map, "");

    // Every poll of both runs is stored, and nothing else after HPManager's points.
    let stored = stored_polls(&influxd, db, hpm_to);
    let mut polled: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for run in [&a, &b] {
        for (pump, times) in &run.polls {
            polled.entry(pump.clone()).or_default().extend(times);
        }
    }
    assert_eq!(stored, polled, "every poll of hpflow's is in the database");
    let hpm_rows = stored_polls(&influxd, db, hpm_from - 1);
    for pump in PUMPS {
        let before: usize = hpm_rows[pump].iter().filter(|t| **t <= hpm_to).count();
        assert!(before >= 5, "{pump}: HPManager's points are still there ({before})");
    }

    // Every field HPManager wrote kept its type; the enums are still strings and
    // hpflow's values of them are HPManager's labels.
    let types = field_types(&influxd, db);
    for (field, kinds) in &hpmanager_types {
        assert_eq!(&types[field], kinds, "{field}: HPManager's type");
    }
    for (field, kinds) in &types {
        assert_eq!(kinds.len(), 1, "{field} has one type: {kinds:?}");
    }
    let labels = influxd.query(
        db,
        &format!(
            "SELECT \"operating_mode\", \"fault_status\" FROM \"heatpump_metrics\" WHERE time >= {}ms",
            a.first_ms
        ),
    );
    let rows = labels["results"][0]["series"][0]["values"].as_array().unwrap();
    assert!(rows.len() >= 4 * POLLS, "hpflow's rows of both runs: {}", rows.len());
    for row in rows {
        let (mode, fault) = (row[1].as_str().unwrap_or_default(), row[2].as_str().unwrap_or_default());
        assert!(
            [
                "Emergency operation",
                "Standby mode",
                "Programmed operation",
                "Comfort mode",
                "ECO mode",
                "DHW mode"
            ]
            .contains(&mode),
            "operating_mode {:?} is one of HPManager's labels",
            row[1]
        );
        assert!(["No fault", "Fault"].contains(&fault), "fault_status {:?}", row[2]);
    }

    // Every panel: HPManager's rows and hpflow's. A panel reading fields HPManager
    // wrote must show data for them from both writers; the rest (fields only
    // hpflow's map has, the state-change measurement HPManager never had) only
    // must run without error.
    let now = unix_ms(SystemTime::now());
    let hpm_fields: BTreeSet<&str> = hpmanager_types.keys().map(String::as_str).collect();
    let (mut both, mut hpflow_only) = (Vec::new(), Vec::new());
    for q in queries() {
        if q.template_variable {
            let (_, j) = ask(&influxd, db, &q, hpm_from, now);
            check_answer(&q, &q.text, &j);
            continue;
        }
        let shared: Vec<(String, String)> = columns(&q.text)
            .into_iter()
            .filter(|(_, field)| hpm_fields.contains(field.as_str()))
            .collect();
        let (sent, whole) = ask(&influxd, db, &q, hpm_from - 1000, now);
        assert!(
            whole.get("error").is_none() && whole["results"][0].get("error").is_none(),
            "{sent}: {whole}"
        );
        if shared.is_empty() {
            hpflow_only.push(q.panel.clone());
            continue;
        }
        for (range, from, to) in [("HPManager's", hpm_from - 1000, hpm_to), ("hpflow's", a.first_ms, now)] {
            let (sent, j) = ask(&influxd, db, &q, from, to);
            assert!(
                j.get("error").is_none() && j["results"][0].get("error").is_none(),
                "{sent}: {j}"
            );
            // An inner query's aliases are no columns of the answer.
            let shown: Vec<&(String, String)> = shared.iter().filter(|(alias, _)| has_column(&j, alias)).collect();
            assert!(!shown.is_empty(), "{sent}: none of {shared:?} in {j}");
            for (alias, field) in shown {
                let values = column_values(&j, alias);
                assert!(
                    !values.is_empty(),
                    "{} / {}: no {field} over {range} time range:\n  {sent}\n  {j}",
                    q.dashboard,
                    q.panel
                );
                // A value mapping (the enums) names every value shown, label or code.
                if q.mappings.as_array().is_some_and(|m| !m.is_empty()) {
                    for (_, v) in &values {
                        assert!(maps_value(&q.mappings, v), "{}: {v} has no value mapping", q.panel);
                    }
                }
            }
        }
        // Panels over time show both writers side by side in one answer.
        if q.text.contains("GROUP BY time($__interval)") {
            for (alias, field) in shared.iter().filter(|(alias, _)| has_column(&whole, alias)) {
                let times: Vec<i64> = column_values(&whole, alias).iter().map(|(t, _)| *t).collect();
                assert!(
                    times.iter().any(|t| *t <= hpm_to) && times.iter().any(|t| *t >= a.first_ms - 10_000),
                    "{}: {field} from both writers in one answer: {times:?}",
                    q.panel
                );
            }
        }
        both.push(q.panel.clone());
    }
    assert!(both.len() >= 10, "panels showing both writers: {both:?}");
    eprintln!(
        "HPManager's {} points + hpflow's {} polls (runs with HPManager's map and hpflow's), 0 refused; \
         panels with both writers: {both:?}; hpflow-only panels (fields HPManager never wrote): {hpflow_only:?}",
        FIXTURE.lines().count(),
        polled.values().map(BTreeSet::len).sum::<usize>(),
    );
}

#[test]
fn the_code_option_gives_a_new_database_integer_enums_that_the_panels_map() {
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(&dir.path().join("influxd"));
    let db = "fresh";
    influxd.query(db, &format!("CREATE DATABASE {db}"));
    let own_map = shipped_registers();
    let run = run_hpflow(
        &dir.path().join("run"),
        &influxd,
        db,
        &own_map,
        "enum_values = \"code\"",
    );
    assert_eq!(stored_polls(&influxd, db, 0), run.polls, "every poll is stored");

    let types = field_types(&influxd, db);
    let one = |t: &str| BTreeSet::from([t.to_string()]);
    for field in ["operating_mode", "fault_status"] {
        assert_eq!(types[field], one("integer"), "{field}");
    }
    assert_eq!(types["compressor_running"], one("boolean"), "bits stay booleans");
    assert_eq!(types["operating_status"], one("integer"), "bitmap words stay integers");

    // The enum panels run on integer codes and map every code shown.
    let now = unix_ms(SystemTime::now());
    let mut enum_panels = 0;
    for q in queries().into_iter().filter(|q| !q.template_variable) {
        let reads_enum = columns(&q.text)
            .iter()
            .any(|(_, f)| f == "operating_mode" || f == "fault_status");
        if !reads_enum {
            continue;
        }
        let (sent, j) = ask(&influxd, db, &q, run.first_ms - 1000, now);
        check_answer(&q, &sent, &j);
        for (alias, _) in columns(&q.text) {
            for (_, v) in column_values(&j, &alias) {
                assert!(v.is_i64(), "{}: {v} is a code", q.panel);
                assert!(
                    maps_value(&q.mappings, &v),
                    "{}: code {v} has no value mapping",
                    q.panel
                );
            }
        }
        enum_panels += 1;
    }
    assert_eq!(enum_panels, 3, "Fault status, Operating mode, Operating mode over time");
}
