//! The sink against real servers: InfluxDB 1.x (`influxd`, Debian package
//! `influxdb`) for the v1 API and InfluxQL read-back, VictoriaMetrics (Debian
//! package `victoria-metrics`) for the v2 API. Each test starts its own server on
//! free loopback ports in a temporary folder and kills it at the end. A missing
//! binary fails the test, saying which package to install.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

// The integration tests' influxd starter, shared rather than written twice.
#[path = "../../../tests/support/influxd.rs"]
mod influxd_support;
use crate::test_net as net;

use super::*;
use crate::component::{BuildContext, Input};
use crate::event::{Metric, Schema, StateChange, Tags, Value};
use crate::telemetry::{DeliverySnapshot, Registry};

use net::free_port;

fn binary(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: this test needs a real server; install it with `apt-get install {package}` \
         (scripts/test installs it)"
    );
    p
}

async fn wait_until_up(url: &str, what: &str, child: &mut Child, log: &Path) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not come up at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An `influxd` of our own.
struct Influxd {
    child: Option<Child>,
    dir: PathBuf,
    http_port: u16,
    extra_http: String,
}

impl Influxd {
    async fn start(dir: &Path) -> Influxd {
        Self::start_with(dir, "").await
    }

    async fn start_with(dir: &Path, extra_http: &str) -> Influxd {
        let mut s = Influxd {
            child: None,
            dir: dir.to_path_buf(),
            http_port: free_port(),
            extra_http: extra_http.to_string(),
        };
        s.restart().await;
        s
    }

    /// Starts (again) on the same port and data.
    async fn restart(&mut self) {
        let bin = binary("/usr/bin/influxd", "influxdb");
        let config = influxd_support::config(&self.dir, self.http_port, &self.extra_http);
        std::fs::create_dir_all(&self.dir).unwrap();
        let conf = self.dir.join("influxd.conf");
        std::fs::write(&conf, config).unwrap();
        let log = self.dir.join("influxd.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(bin)
            .arg("-config")
            .arg(&conf)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_until_up(&format!("{}/ping", self.url()), "influxd", &mut child, &log).await;
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Kills it hard (its WAL keeps what it accepted).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn query(&self, db: &str, q: &str) -> Json {
        let r = reqwest::Client::new()
            .post(format!("{}/query", self.url()))
            .query(&[("db", db), ("q", q), ("epoch", "ms")])
            .send()
            .await
            .unwrap();
        let j: Json = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(j["results"][0].get("error").is_none(), "{q}: {j}");
        j
    }

    async fn create_db(&self, db: &str) {
        self.query(db, &format!("CREATE DATABASE \"{db}\"")).await;
    }

    /// The series' rows as column name → value maps.
    /// One integer column of a query's rows.
    async fn ints(&self, db: &str, q: &str, column: &str) -> Vec<i64> {
        let rows = self.rows(db, q).await;
        rows.iter().map(|r| r[column].as_i64().unwrap()).collect()
    }

    async fn rows(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, Json>> {
        let j = self.query(db, q).await;
        let mut out = Vec::new();
        for series in j["results"][0]["series"].as_array().cloned().unwrap_or_default() {
            let cols: Vec<String> = series["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            for row in series["values"].as_array().unwrap() {
                let mut m = serde_json::Map::new();
                for (c, v) in cols.iter().zip(row.as_array().unwrap()) {
                    if !v.is_null() {
                        m.insert(c.clone(), v.clone());
                    }
                }
                out.push(m);
            }
        }
        out
    }

    async fn count(&self, db: &str, q: &str) -> i64 {
        let j = self.query(db, q).await;
        j["results"][0]["series"][0]["values"][0][1].as_i64().unwrap_or(0)
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A VictoriaMetrics of our own.
struct Victoria {
    child: Child,
    port: u16,
}

impl Victoria {
    async fn start(dir: &Path) -> Victoria {
        let bin = binary("/usr/bin/victoria-metrics", "victoria-metrics");
        let port = free_port();
        let log = dir.join("vm.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(bin)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.join("vm").display()))
            .arg("-loggerLevel=ERROR")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_until_up(
            &format!("http://127.0.0.1:{port}/health"),
            "victoria-metrics",
            &mut child,
            &log,
        )
        .await;
        Victoria { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every sample of the series matching `selector`, as (name, labels, values, timestamps).
    async fn export(&self, selector: &str) -> Vec<Json> {
        let http = reqwest::Client::new();
        http.post(format!("{}/internal/force_flush", self.url()))
            .send()
            .await
            .unwrap();
        let text = http
            .post(format!("{}/api/v1/export", self.url()))
            .form(&[("match[]", selector)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sink running in its own task, fed through a channel like the topology does.
struct RunningSink {
    tx: Option<mpsc::Sender<Event>>,
    task: JoinHandle<()>,
    stats: Arc<DeliveryStats>,
}

fn start_sink(id: &str, config: &str, data_dir: &Path) -> RunningSink {
    let cfg: InfluxdbConfig = toml::from_str(config).unwrap();
    let mut check = crate::component::Check::new(id, data_dir, data_dir, &[]);
    cfg.check(&mut check);
    assert!(!check.has_errors(), "{:?}", check.problems);
    start_checked(id, cfg, data_dir)
}

/// Starts a sink from a configuration as given, checked or not.
fn start_checked(id: &str, cfg: InfluxdbConfig, data_dir: &Path) -> RunningSink {
    let registry = Arc::new(Registry::default());
    let bcx = BuildContext {
        control: &Default::default(),
        prepared: None,
        id,
        pipeline_dir: data_dir,
        data_dir,
        input_schemas: &[],
        registry: &registry,
    };
    let sink = cfg.build(&bcx).unwrap();
    let metrics = registry.component(id, "sink", "influxdb");
    let (tx, rx) = mpsc::channel(8192);
    let input = Input::new(rx, metrics.clone());
    let cx = SinkContext { id: id.into(), metrics };
    let task = tokio::spawn(async move { sink.run(input, cx).await.unwrap() });
    RunningSink {
        tx: Some(tx),
        task,
        stats: registry.delivery(id).unwrap(),
    }
}

impl RunningSink {
    async fn send(&self, events: impl IntoIterator<Item = Event>) {
        let tx = self.tx.as_ref().unwrap();
        for e in events {
            tx.send(e).await.unwrap();
        }
    }

    /// Upstream closes: the sink flushes and returns.
    async fn shutdown(mut self) {
        self.tx = None;
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("the sink stops in time")
            .unwrap();
    }

    /// Like SIGKILL: the task is dropped wherever it is, with no flush or fsync.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        // The delivery task is aborted with it; let the abort land.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Waits until nothing waits in the buffer, stops the sink and returns its counters.
    async fn settle(self, what: &str, timeout: Duration) -> DeliverySnapshot {
        self.wait_for(what, timeout, |s| s.points_buffered == 0).await;
        let stats = self.stats.clone();
        self.shutdown().await;
        stats.snapshot()
    }

    async fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&DeliverySnapshot) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats.snapshot();
            if ok(&s) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Recent whole seconds, so VictoriaMetrics' retention keeps them.
fn base_time() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now - 3600)
}

fn ms(t: SystemTime) -> i64 {
    crate::event::unix_millis(t)
}

fn tags(pairs: &[(&str, &str)]) -> Arc<Tags> {
    Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn metric(tags: &Arc<Tags>, time: SystemTime, fields: Vec<(&str, Value)>) -> Event {
    let mut m = Metric::new(
        tags.get("heat_pump_id").map_or("hp", |s| s.as_str()),
        tags.clone(),
        time,
        Arc::new(Schema::default()),
    );
    for (k, v) in fields {
        m.fields.insert(k.into(), v);
    }
    Event::from(m)
}

/// A numbered point of measurement `heatpump_metrics`, one per millisecond step.
fn numbered(i: i64, base: SystemTime) -> Event {
    let t = tags(&[("heat_pump_id", "hp1")]);
    metric(
        &t,
        base + Duration::from_millis(i as u64 * 10),
        vec![("seq", Value::Int(i)), ("temp", Value::Float(20.0 + i as f64 / 10.0))],
    )
}

fn v1_config(url: &str, db: &str, extra: &str) -> String {
    format!(
        "endpoint = \"{url}\"\napi = \"v1\"\ndatabase = \"{db}\"\nbatch_timeout = \"50ms\"\n\
         retry_initial = \"50ms\"\nretry_max = \"300ms\"\nrequest_timeout = \"2s\"\n{extra}\n\
         [buffer]\nsync_interval = \"200ms\"\n"
    )
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_points_read_back_with_their_values_types_tags_and_times() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let sink = start_sink("influx_v1_roundtrip", &v1_config(&db.url(), "hp", ""), tmp.path());

    let base = base_time() + Duration::from_millis(123);
    let hp1 = tags(&[
        ("heat_pump_id", "hp1"),
        ("name", "Main Unit"),
        ("location", "Basement, left"),
        ("model", "wpl_25"),
        ("note", ""),
    ]);
    let hp2 = tags(&[
        ("heat_pump_id", "hp2"),
        ("name", "Annex"),
        ("location", "Garage"),
        ("model", "wpm"),
    ]);
    let mut sent = Vec::new();
    for i in 0..3u64 {
        for t in [&hp1, &hp2] {
            sent.push(metric(
                t,
                base + Duration::from_secs(10 * i),
                vec![
                    ("flow_temp", Value::Float(35.5 + i as f64)),
                    ("outdoor_temp", Value::Float(21.0)),
                    ("operating_mode", Value::Int(3)),
                    ("compressor", Value::Bool(i % 2 == 0)),
                    ("firmware", Value::Text("v1.2 \"beta\"".into())),
                    ("bad", Value::Float(f64::NAN)),
                ],
            ));
        }
    }
    sent.push(Event::from(StateChange {
        device: "hp1".into(),
        tags: hp1.clone(),
        field: "compressor".into(),
        from: Some(Value::Bool(true)),
        to: Value::Bool(false),
        at: base + Duration::from_secs(10),
        from_since: Some(base - Duration::from_secs(90)),
        meta: None,
    }));
    sent.push(Event::from(StateChange {
        device: "hp1".into(),
        tags: hp1.clone(),
        field: "operating_mode".into(),
        from: Some(Value::Int(2)),
        to: Value::Int(3),
        at: base + Duration::from_secs(20),
        from_since: None,
        meta: None,
    }));
    sink.send(sent).await;
    let stats = sink.stats.clone();
    sink.shutdown().await;
    let s = stats.snapshot();
    assert_eq!((s.points_written, s.points_buffered, s.failures), (8, 0, 0), "{s:?}");

    let fields = db.rows("hp", "SHOW FIELD KEYS FROM heatpump_metrics").await;
    let types: Vec<(String, String)> = fields
        .iter()
        .map(|r| {
            (
                r["fieldKey"].as_str().unwrap().into(),
                r["fieldType"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("compressor", "boolean"),
        ("firmware", "string"),
        ("flow_temp", "float"),
        ("operating_mode", "integer"),
        ("outdoor_temp", "float"),
    ];
    assert_eq!(
        types,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    let tag_keys = db.rows("hp", "SHOW TAG KEYS FROM heatpump_metrics").await;
    let tag_keys: Vec<&str> = tag_keys.iter().map(|r| r["tagKey"].as_str().unwrap()).collect();
    assert_eq!(
        tag_keys,
        ["heat_pump_id", "location", "model", "name"],
        "empty tags are left out"
    );

    let rows = db
        .rows(
            "hp",
            "SELECT * FROM heatpump_metrics WHERE heat_pump_id = 'hp1' ORDER BY time",
        )
        .await;
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["time"], ms(base + Duration::from_secs(10 * i as u64)), "{r:?}");
        assert_eq!(r["flow_temp"], 35.5 + i as f64);
        assert_eq!(r["outdoor_temp"], 21.0);
        assert_eq!(r["operating_mode"], 3);
        assert_eq!(r["compressor"], i % 2 == 0);
        assert_eq!(r["firmware"], "v1.2 \"beta\"");
        assert_eq!(r["name"], "Main Unit");
        assert_eq!(r["location"], "Basement, left");
        assert_eq!(r["model"], "wpl_25");
        assert!(!r.contains_key("bad") && !r.contains_key("note"));
    }
    assert_eq!(
        db.count(
            "hp",
            "SELECT count(flow_temp) FROM heatpump_metrics WHERE heat_pump_id = 'hp2'"
        )
        .await,
        3
    );

    let changes = db
        .rows("hp", "SELECT * FROM heatpump_state_changes ORDER BY time")
        .await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["time"], ms(base + Duration::from_secs(10)));
    assert_eq!(changes[0]["field"], "compressor");
    assert_eq!(
        (&changes[0]["from"], &changes[0]["to"]),
        (&Json::from(1), &Json::from(0))
    );
    assert_eq!(changes[0]["from_since"], 100.0);
    assert_eq!(changes[0]["heat_pump_id"], "hp1");
    assert_eq!(changes[1]["field"], "operating_mode");
    assert_eq!(
        (&changes[1]["from"], &changes[1]["to"]),
        (&Json::from(2), &Json::from(3))
    );
    assert!(!changes[1].contains_key("from_since"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_escaping_cases_round_trip() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("esc").await;
    let config = v1_config(
        &db.url(),
        "esc",
        "measurement = \"hp metrics,x=1\"\nprecision = \"ns\"\ngzip = false",
    );
    let sink = start_sink("influx_v1_escaping", &config, tmp.path());
    let time = base_time() + Duration::new(0, 123_456_789);
    let t = tags(&[
        ("heat_pump_id", "hp 1,a=b"),
        ("loc ation", "Küche ✓"),
        ("path", "C:\\temp\\x"),
        ("k=v", "x=y"),
    ]);
    let text = "quote \" backslash \\ newline\nend ✓ äöü, comma=equals";
    sink.send([metric(
        &t,
        time,
        vec![
            ("field with space", Value::Float(1.25)),
            ("f,comma=eq", Value::Int(-7)),
            ("text", Value::Text(text.into())),
            ("trailing\\", Value::Text("ends with \\".into())),
        ],
    )])
    .await;
    sink.shutdown().await;

    let m = db.rows("esc", "SHOW MEASUREMENTS").await;
    assert_eq!(m[0]["name"], "hp metrics,x=1");
    let rows = db.rows("esc", "SELECT * FROM \"hp metrics,x=1\"").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    let want = serde_json::json!({
        "time": crate::event::unix_millis(time),
        "heat_pump_id": "hp 1,a=b",
        "loc ation": "Küche ✓",
        "path": "C:\\temp\\x",
        "k=v": "x=y",
        "field with space": 1.25,
        "f,comma=eq": -7,
        "text": text,
        "trailing": "ends with \\",
    });
    assert_eq!(Json::Object(r.clone()), want);
    // Full nanosecond precision arrives.
    let ns = reqwest::Client::new()
        .post(format!("{}/query", db.url()))
        .query(&[
            ("db", "esc"),
            ("q", "SELECT \"f,comma=eq\" FROM \"hp metrics,x=1\""),
            ("epoch", "ns"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ns: Json = serde_json::from_str(&ns).unwrap();
    assert_eq!(
        ns["results"][0]["series"][0]["values"][0][0].as_i64().unwrap(),
        line_protocol::timestamp(time, Precision::Ns)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_writes_reach_victoria_metrics() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let vm = Victoria::start(tmp.path()).await;
    let config = format!(
        "endpoint = \"{}\"\napi = \"v2\"\norg = \"home\"\nbucket = \"heatpumps\"\nbatch_timeout = \"50ms\"\n",
        vm.url()
    );
    let sink = start_sink("influx_v2_vm", &config, tmp.path());
    let base = base_time();
    let t = tags(&[("heat_pump_id", "hp1"), ("name", "Main Unit"), ("location", "")]);
    let events: Vec<Event> = (0..5)
        .map(|i| {
            metric(
                &t,
                base + Duration::from_secs(10 * i),
                vec![
                    ("flow_temp", Value::Float(30.0 + i as f64 / 4.0)),
                    ("operating_mode", Value::Int(i as i64)),
                    ("compressor", Value::Bool(i % 2 == 1)),
                ],
            )
        })
        .collect();
    sink.send(events).await;
    let stats = sink.stats.clone();
    sink.shutdown().await;
    assert_eq!(stats.snapshot().points_written, 5);

    let series = vm.export("{__name__=~\"heatpump_metrics_.*\"}").await;
    let mut names: Vec<&str> = series
        .iter()
        .map(|s| s["metric"]["__name__"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "heatpump_metrics_compressor",
            "heatpump_metrics_flow_temp",
            "heatpump_metrics_operating_mode"
        ]
    );
    let times: Vec<i64> = (0..5).map(|i| ms(base + Duration::from_secs(10 * i))).collect();
    for s in &series {
        assert_eq!(s["metric"]["heat_pump_id"], "hp1");
        assert_eq!(s["metric"]["name"], "Main Unit");
        assert!(s["metric"].get("location").is_none());
        let ts: Vec<i64> = s["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        assert_eq!(ts, times);
        let values: Vec<f64> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want: Vec<f64> = match s["metric"]["__name__"].as_str().unwrap() {
            "heatpump_metrics_flow_temp" => (0..5).map(|i| 30.0 + i as f64 / 4.0).collect(),
            "heatpump_metrics_operating_mode" => (0..5).map(|i| i as f64).collect(),
            _ => (0..5).map(|i| (i % 2) as f64).collect(),
        };
        assert_eq!(values, want, "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_a_crash_lose_nothing_and_send_nothing_twice() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let config = v1_config(&db.url(), "hp", "batch_max_points = 500");
    let base = base_time();
    let id = "influx_outage";

    // Delivered while the server is up.
    let a = start_sink(id, &config, &data);
    a.send((0..100).map(|i| numbered(i, base))).await;
    a.wait_for("the first 100 points", Duration::from_secs(10), |s| {
        s.points_written == 100
    })
    .await;

    // The server goes away; points keep coming and wait on disk.
    db.stop();
    a.send((100..2100).map(|i| numbered(i, base))).await;
    a.wait_for("2000 buffered points", Duration::from_secs(10), |s| {
        s.points_buffered == 2000
    })
    .await;
    a.wait_for("a failed write", Duration::from_secs(10), |s| s.retries > 0)
        .await;
    // Longer than sync_interval (200ms): the periodic fsync has covered them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written_by_a = a.stats.snapshot().points_written;
    a.kill().await;

    // A new process on the same data_dir, the server still down.
    let b = start_sink(id, &config, &data);
    b.wait_for("the replayed points", Duration::from_secs(5), |s| {
        s.points_buffered == 2000
    })
    .await;
    b.send((2100..2600).map(|i| numbered(i, base))).await;
    b.wait_for("2500 buffered points", Duration::from_secs(5), |s| {
        s.points_buffered == 2500
    })
    .await;

    db.restart().await;
    b.wait_for("the backlog delivered", Duration::from_secs(15), |s| {
        s.points_buffered == 0
    })
    .await;
    let s = b.stats.snapshot();
    assert_eq!(written_by_a + s.points_written, 2600, "every point sent once: {s:?}");
    assert_eq!(s.dropped, 0);
    b.shutdown().await;

    assert_eq!(db.count("hp", "SELECT count(seq) FROM heatpump_metrics").await, 2600);
    let rows = db.rows("hp", "SELECT seq FROM heatpump_metrics ORDER BY time").await;
    let got: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| (r["time"].as_i64().unwrap(), r["seq"].as_i64().unwrap()))
        .collect();
    let want: Vec<(i64, i64)> = (0..2600)
        .map(|i| (ms(base + Duration::from_millis(i as u64 * 10)), i))
        .collect();
    assert!(got == want, "times and values differ from what was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_buffer_is_reported_and_new_points_still_flow() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let id = "influx_corrupt";
    let base = base_time();
    // First run: nowhere to deliver, so everything stays in the buffer.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let a = start_sink(id, &v1_config(&nowhere, "hp", ""), &data);
    a.send((0..50).map(|i| numbered(i, base))).await;
    a.wait_for("50 buffered points", Duration::from_secs(5), |s| {
        s.points_buffered == 50
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.kill().await;

    // Flip a byte in the middle of the segment and tear its tail.
    let dir = config::buffer_dir(&data, id);
    let seg = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
    std::fs::write(&seg, &bytes).unwrap();

    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let b = start_sink(id, &v1_config(&db.url(), "hp", ""), &data);
    b.wait_for("the intact part delivered", Duration::from_secs(10), |s| {
        s.points_buffered == 0 && s.writes_ok >= 1
    })
    .await;
    let s = b.stats.snapshot();
    assert!(s.corrupt_bytes > 0 && s.corrupt_bytes < bytes.len() as u64, "{s:?}");
    let kept = s.points_written as i64;
    assert!((10..40).contains(&kept), "the intact first part is delivered: {kept}");
    b.send((50..70).map(|i| numbered(i, base))).await;
    b.wait_for("the new points", Duration::from_secs(10), |s| {
        s.points_written == kept as u64 + 20
    })
    .await;
    assert!(std::fs::read_dir(dir.join("corrupt")).unwrap().count() >= 1);
    b.shutdown().await;

    let rows = db.rows("hp", "SELECT seq FROM heatpump_metrics ORDER BY time").await;
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    let want: Vec<i64> = (0..kept).chain(50..70).collect();
    assert_eq!(seqs, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_goes_to_the_dead_letter_file_and_delivery_goes_on() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let id = "influx_dead_letter";
    let sink = start_sink(id, &v1_config(&db.url(), "hp", ""), &data);
    let base = base_time();
    let t = tags(&[("heat_pump_id", "hp1")]);
    sink.send([metric(&t, base, vec![("x", Value::Int(1))])]).await;
    sink.wait_for("the first point", Duration::from_secs(5), |s| s.points_written == 1)
        .await;
    // The same field as a float: InfluxDB answers 400 (field type conflict).
    sink.send([metric(
        &t,
        base + Duration::from_secs(1),
        vec![("x", Value::Float(1.5))],
    )])
    .await;
    sink.wait_for("the rejection", Duration::from_secs(5), |s| s.dead_lettered == 1)
        .await;
    sink.send([metric(&t, base + Duration::from_secs(2), vec![("x", Value::Int(3))])])
        .await;
    sink.wait_for("the next point", Duration::from_secs(5), |s| s.points_written == 2)
        .await;
    let stats = sink.stats.clone();
    sink.shutdown().await;
    assert_eq!(stats.snapshot().points_buffered, 0);
    let dead = std::fs::read_to_string(config::buffer_dir(&data, id).join("dead-letter.lp")).unwrap();
    let lines: Vec<&str> = dead.lines().collect();
    assert_eq!(lines.len(), 2, "{dead}");
    assert!(lines[0].starts_with("# ") && lines[0].contains("HTTP 400") && lines[0].contains("conflict"));
    assert_eq!(
        lines[1],
        format!(
            "heatpump_metrics,heat_pump_id=hp1 x=1.5 {}",
            ms(base + Duration::from_secs(1))
        )
    );
    assert_eq!(db.count("hp", "SELECT count(x) FROM heatpump_metrics").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_wait_while_the_database_is_missing_and_arrive_once_it_exists() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    // No database yet: InfluxDB answers 404. That is a setup problem, not bad points.
    let id = "influx_missing_db";
    let sink = start_sink(id, &v1_config(&db.url(), "later", ""), &data);
    let base = base_time();
    sink.send((0..20).map(|i| numbered(i, base))).await;
    sink.wait_for("failed writes", Duration::from_secs(5), |s| s.failures >= 2)
        .await;
    let s = sink.stats.snapshot();
    assert_eq!((s.points_written, s.dead_lettered), (0, 0), "{s:?}");
    assert!(!config::buffer_dir(&data, id).join("dead-letter.lp").exists());
    db.create_db("later").await;
    sink.wait_for("every point", Duration::from_secs(10), |s| s.points_written == 20)
        .await;
    sink.shutdown().await;
    assert_eq!(db.count("later", "SELECT count(seq) FROM heatpump_metrics").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_for_the_server_is_split() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let db = Influxd::start_with(&tmp.path().join("influxd"), "max-body-size = 3000").await;
    db.create_db("hp").await;
    let sink = start_sink("influx_split", &v1_config(&db.url(), "hp", "gzip = false"), tmp.path());
    let base = base_time();
    sink.send((0..200).map(|i| numbered(i, base))).await;
    sink.wait_for("all points", Duration::from_secs(10), |s| s.points_written == 200)
        .await;
    let s = sink.stats.snapshot();
    assert!(s.failures > 0 && s.dead_lettered == 0, "{s:?}");
    sink.shutdown().await;
    assert_eq!(db.count("hp", "SELECT count(seq) FROM heatpump_metrics").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_reports_a_missing_database_and_a_dead_server() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    let client = Client::new(&toml::from_str(&v1_config(&db.url(), "nope", "")).unwrap()).unwrap();
    let problems = client.health().await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("database `nope` does not exist"), "{problems:?}");
    db.create_db("nope").await;
    assert!(client.health().await.is_empty());
    let down = Client::new(&toml::from_str(&v1_config("http://127.0.0.1:1", "x", "")).unwrap()).unwrap();
    assert!(down.health().await[0].contains("does not answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_without_waiting_for_the_batch_timeout() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let config = v1_config(&db.url(), "hp", "").replace("batch_timeout = \"50ms\"", "batch_timeout = \"60s\"");
    let sink = start_sink("influx_shutdown_flush", &config, &tmp.path().join("data"));
    let base = base_time();
    sink.send((0..10).map(|i| numbered(i, base))).await;
    sink.wait_for("10 buffered points", Duration::from_secs(5), |s| {
        s.points_buffered == 10
    })
    .await;
    assert_eq!(sink.stats.snapshot().writes_ok, 0, "the batch waits for more");
    let started = Instant::now();
    let stats = sink.stats.clone();
    sink.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.snapshot().points_written, 10);
    assert_eq!(db.count("hp", "SELECT count(seq) FROM heatpump_metrics").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_never_holds_up_receiving() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let config = v1_config(&url, "hp", "").replace("request_timeout = \"2s\"", "request_timeout = \"30s\"");
    let sink = start_sink("influx_hanging", &config, &tmp.path().join("data"));
    let base = base_time();
    let started = Instant::now();
    sink.send((0..5000).map(|i| numbered(i, base))).await;
    sink.wait_for("5000 buffered points", Duration::from_secs(5), |s| {
        s.points_buffered == 5000
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sink.stats.snapshot().writes_ok, 0);
    sink.kill().await;
    hold.abort();
}

/// Points of `dead-letter.lp` (and `.1`) that are not comments, as text.
fn dead_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("# "))
        .map(str::to_string)
        .collect()
}

/// Leaves raw lines in the sink's buffer, as if an earlier run had received them
/// (the sink's own encoder never writes an unparsable line).
fn prefill(data: &Path, id: &str, lines: &[String]) {
    let max = BufferConfig::default().max_bytes;
    let (mut b, _) = buffer::Buffer::open(&config::buffer_dir(data, id), max, buffer::segment_bytes_for(max)).unwrap();
    let raw: Vec<Vec<u8>> = lines.iter().map(|l| format!("{l}\n").into_bytes()).collect();
    let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    let a = b.append(&refs);
    assert!(a.error.is_none() && a.dropped_records == 0, "{a:?}");
    b.close().unwrap();
}

fn x_point(t: &Arc<Tags>, base: SystemTime, i: u64, x: Value) -> Event {
    metric(t, base + Duration::from_secs(i), vec![("x", x)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_good_and_conflicting_points_keeps_the_good_ones() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let id = "influx_mixed_conflict";
    let sink = start_sink(id, &v1_config(&db.url(), "hp", ""), &data);
    let base = base_time();
    let t = tags(&[("heat_pump_id", "hp1")]);
    // x becomes an integer field.
    sink.send([x_point(&t, base, 0, Value::Int(0))]).await;
    sink.wait_for("the first point", Duration::from_secs(5), |s| s.points_written == 1)
        .await;
    // One batch: 96 integers and 4 floats, which InfluxDB refuses (type conflict).
    let bad = [3u64, 41, 42, 97];
    let batch: Vec<Event> = (1..=100)
        .map(|i| {
            let x = if bad.contains(&i) {
                Value::Float(i as f64 + 0.5)
            } else {
                Value::Int(i as i64)
            };
            x_point(&t, base, i, x)
        })
        .collect();
    sink.send(batch).await;
    sink.wait_for("every point settled", Duration::from_secs(15), |s| {
        s.points_buffered == 0 && s.points_written + s.dead_lettered == 101
    })
    .await;
    let stats = sink.stats.clone();
    sink.shutdown().await;
    let s = stats.snapshot();
    assert_eq!((s.points_written, s.dead_lettered, s.dropped), (97, 4, 0), "{s:?}");
    eprintln!(
        "4 refused points among 100 isolated with {} rejected requests",
        s.failures
    );

    let rows = db.rows("hp", "SELECT x FROM heatpump_metrics ORDER BY time").await;
    let got: Vec<i64> = rows.iter().map(|r| r["x"].as_i64().unwrap()).collect();
    let want: Vec<i64> = (0..=100).filter(|i| !bad.contains(&(*i as u64))).collect();
    assert_eq!(got, want, "every good point is stored, once");

    let path = config::buffer_dir(&data, id).join("dead-letter.lp");
    let dead = dead_lines(&path);
    let want: Vec<String> = bad
        .iter()
        .map(|&i| {
            format!(
                "heatpump_metrics,heat_pump_id=hp1 x={} {}",
                i as f64 + 0.5,
                ms(base + Duration::from_secs(i))
            )
        })
        .collect();
    assert_eq!(dead, want, "only the refused points are set aside, in order");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# ") && text.contains("HTTP 400") && text.contains("field type conflict"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_lines_are_set_aside_by_name_and_the_rest_is_written_once() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let id = "influx_unparsable";
    let t0 = ms(base_time());
    let mut lines: Vec<String> = (0..10).map(|i| format!("m x={i}i {}", t0 + i)).collect();
    lines[2] = format!("m x= {}", t0 + 2);
    lines[7] = format!("m,bad tag x=7i {}", t0 + 7);
    prefill(&data, id, &lines);

    let sink = start_sink(id, &v1_config(&db.url(), "hp", ""), &data);
    let s = sink.settle("every point settled", Duration::from_secs(10)).await;
    // influxd 1.x names each unparsable line and writes the others: one request.
    assert_eq!((s.points_written, s.dead_lettered, s.failures), (8, 2, 1), "{s:?}");
    let got: Vec<i64> = db.ints("hp", "SELECT x FROM m ORDER BY time", "x").await;
    assert_eq!(got, [0, 1, 3, 4, 5, 6, 8, 9]);
    let path = config::buffer_dir(&data, id).join("dead-letter.lp");
    assert_eq!(dead_lines(&path), [lines[2].clone(), lines[7].clone()]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("HTTP 400 (1 point): unable to parse: missing field value"),
        "{text}"
    );
    assert!(
        text.contains("HTTP 400 (1 point): unable to parse: missing tag value"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_hiding_a_parse_error_is_bisected_down_to_both() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let id = "influx_conflict_and_parse";
    let t0 = ms(base_time());
    // x is an integer in the database already.
    let first = format!("m x=0i {t0}");
    let w = reqwest::Client::new()
        .post(format!("{}/write?db=hp&precision=ms", db.url()))
        .body(first)
        .send()
        .await
        .unwrap();
    assert!(w.status().is_success());
    // influxd 1.6 answers this batch with the conflict only (`dropped=1`): the
    // unparsable line is not mentioned, yet it was refused as well.
    let mut lines: Vec<String> = (1..=32).map(|i| format!("m x={i}i {}", t0 + i)).collect();
    lines[4] = format!("m x=5.5 {}", t0 + 5);
    lines[20] = format!("m x= {}", t0 + 21);
    prefill(&data, id, &lines);
    let sink = start_sink(id, &v1_config(&db.url(), "hp", ""), &data);
    let s = sink.settle("every point settled", Duration::from_secs(10)).await;
    assert_eq!((s.points_written, s.dead_lettered), (30, 2), "{s:?}");
    let got: Vec<i64> = db.ints("hp", "SELECT x FROM m ORDER BY time", "x").await;
    let want: Vec<i64> = (0..=32).filter(|i| *i != 5 && *i != 21).collect();
    assert_eq!(got, want);
    let path = config::buffer_dir(&data, id).join("dead-letter.lp");
    assert_eq!(dead_lines(&path), [lines[4].clone(), lines[20].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_takes_a_batch_with_an_unparsable_line_and_skips_it_silently() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let vm = Victoria::start(tmp.path()).await;
    let id = "influx_vm_unparsable";
    let t0 = ms(base_time());
    let lines = vec![
        format!("m x=1 {t0}"),
        format!("m x= {}", t0 + 1000),
        format!("m x=3 {}", t0 + 2000),
    ];
    prefill(&data, id, &lines);
    let config = format!(
        "endpoint = \"{}\"\napi = \"v2\"\norg = \"home\"\nbucket = \"heatpumps\"\nbatch_timeout = \"50ms\"\n",
        vm.url()
    );
    let sink = start_sink(id, &config, &data);
    let s = sink.settle("the batch sent", Duration::from_secs(10)).await;
    // VictoriaMetrics answers 204: the sink cannot tell, and nothing is set aside.
    assert_eq!((s.points_written, s.dead_lettered, s.failures), (3, 0, 0), "{s:?}");
    assert!(!config::buffer_dir(&data, id).join("dead-letter.lp").exists());
    let series = vm.export("{__name__=\"m_x\"}").await;
    assert_eq!(series.len(), 1, "{series:?}");
    let ts: Vec<i64> = series[0]["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(ts, [t0, t0 + 2000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_file_is_bounded_and_rotated_with_the_drop_counted() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let id = "influx_dead_letter_bound";
    let max = 16384u64;
    let sink = start_sink(
        id,
        &v1_config(&db.url(), "hp", &format!("dead_letter_max_bytes = {max}")),
        &data,
    );
    let base = base_time();
    let t = tags(&[("heat_pump_id", "hp1")]);
    sink.send([x_point(&t, base, 0, Value::Int(0))]).await;
    sink.wait_for("the first point", Duration::from_secs(5), |s| s.points_written == 1)
        .await;
    // 12 batches of 50 refused points, about 3 KB each: several rotations.
    let mut sent = 0;
    for round in 0..12u64 {
        let batch: Vec<Event> = (0..50)
            .map(|k| x_point(&t, base, 1 + round * 50 + k, Value::Float(0.5)))
            .collect();
        sink.send(batch).await;
        sent += 50;
        sink.wait_for("the batch set aside", Duration::from_secs(10), |s| {
            s.dead_lettered == sent
        })
        .await;
    }
    let stats = sink.stats.clone();
    sink.shutdown().await;
    let s = stats.snapshot();
    let dir = config::buffer_dir(&data, id);
    let (cur, old) = (dir.join("dead-letter.lp"), dir.join("dead-letter.lp.1"));
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    assert!(size(&cur) + size(&old) <= max, "{} + {}", size(&cur), size(&old));
    let kept = (dead_lines(&cur).len() + dead_lines(&old).len()) as u64;
    assert!(s.dead_letter_dropped > 0 && s.dead_letter_dropped_bytes > 0, "{s:?}");
    assert_eq!(
        kept + s.dead_letter_dropped,
        600,
        "every refused point is kept or counted: {s:?}"
    );
    // The newest are kept: the last point refused is the last line.
    let last = format!(
        "heatpump_metrics,heat_pump_id=hp1 x=0.5 {}",
        ms(base + Duration::from_secs(600))
    );
    assert_eq!(dead_lines(&cur).last(), Some(&last));
    eprintln!(
        "dead letters: {kept} kept in {} + {} bytes, {} points ({} bytes) rotated away",
        size(&cur),
        size(&old),
        s.dead_letter_dropped,
        s.dead_letter_dropped_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_write_keeps_the_batch_in_the_buffer_until_it_works() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    let id = "influx_dead_letter_fails";
    // A folder where the file should be: every write of it fails.
    let path = config::buffer_dir(&data, id).join("dead-letter.lp");
    std::fs::create_dir_all(&path).unwrap();
    let sink = start_sink(id, &v1_config(&db.url(), "hp", ""), &data);
    let base = base_time();
    let t = tags(&[("heat_pump_id", "hp1")]);
    sink.send([x_point(&t, base, 0, Value::Int(0))]).await;
    sink.wait_for("the first point", Duration::from_secs(5), |s| s.points_written == 1)
        .await;
    sink.send([
        x_point(&t, base, 1, Value::Int(1)),
        x_point(&t, base, 2, Value::Float(2.5)),
        x_point(&t, base, 3, Value::Int(3)),
    ])
    .await;
    sink.wait_for("failed dead-letter writes", Duration::from_secs(10), |s| {
        s.dead_letter_failures >= 3
    })
    .await;
    let s = sink.stats.snapshot();
    // The refused point and what follows it stay; nothing is counted as set aside.
    assert_eq!((s.points_buffered, s.dead_lettered, s.dropped), (2, 0, 0), "{s:?}");
    std::fs::remove_dir(&path).unwrap();
    let s = sink.settle("the batch settled", Duration::from_secs(10)).await;
    assert_eq!((s.dead_lettered, s.dropped), (1, 0), "{s:?}");
    assert_eq!(
        dead_lines(&path),
        [format!(
            "heatpump_metrics,heat_pump_id=hp1 x=2.5 {}",
            ms(base + Duration::from_secs(2))
        )]
    );
    let got: Vec<i64> = db.ints("hp", "SELECT x FROM heatpump_metrics ORDER BY time", "x").await;
    assert_eq!(got, [0, 1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_full_buffer_dropped_points_does_not_send_them() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    db.stop();
    let id = "influx_drop_then_retry";
    let sink = start_sink(
        id,
        &v1_config(&db.url(), "hp", "batch_max_points = 5000\n[buffer]\nmax_bytes = 65536")
            .replace("\n[buffer]\nsync_interval = \"200ms\"\n", "\n"),
        &data,
    );
    let base = base_time();
    // The delivery task takes these in hand and keeps retrying them.
    sink.send((0..500).map(|i| numbered(i, base))).await;
    sink.wait_for("a batch in hand, retried", Duration::from_secs(10), |s| {
        s.points_buffered == 500 && s.retries >= 2
    })
    .await;
    // More than the buffer holds: the oldest, those in hand among them, are dropped.
    for chunk in (500..2500).collect::<Vec<i64>>().chunks(100) {
        sink.send(chunk.iter().map(|&i| numbered(i, base))).await;
    }
    sink.wait_for("the drops", Duration::from_secs(10), |s| s.dropped > 500)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sink.stats.snapshot();
    assert_eq!(before.points_written, 0);
    assert_eq!(before.points_buffered + before.dropped, 2500, "{before:?}");
    db.restart().await;
    let s = sink.settle("the buffer delivered", Duration::from_secs(15)).await;
    assert_eq!(
        s.points_written, before.points_buffered,
        "what was written is what the buffer held: {s:?}"
    );
    let seqs: Vec<i64> = db
        .ints("hp", "SELECT seq FROM heatpump_metrics ORDER BY time", "seq")
        .await;
    let want: Vec<i64> = (2500 - before.points_buffered as i64..2500).collect();
    assert_eq!(seqs, want, "exactly the newest points arrive, no dropped one");
    eprintln!(
        "buffer of 64 KiB: {} dropped, {} delivered after the outage",
        s.dropped, s.points_written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_timeout_at_the_top_of_its_range_does_not_panic() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let db = Influxd::start(&tmp.path().join("influxd")).await;
    db.create_db("hp").await;
    // `hpflow validate` bounds durations at a year; the delivery task does not
    // count on it: these cannot be added to a clock reading.
    let mut cfg: InfluxdbConfig = toml::from_str(&v1_config(&db.url(), "hp", "")).unwrap();
    cfg.batch_timeout = Duration::MAX;
    cfg.retry_max = Duration::MAX;
    let sink = start_checked("influx_huge_timeout", cfg, &tmp.path().join("data"));
    let base = base_time();
    sink.send((0..10).map(|i| numbered(i, base))).await;
    sink.wait_for("10 buffered points", Duration::from_secs(5), |s| {
        s.points_buffered == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = sink.stats.clone();
    assert_eq!(stats.snapshot().writes_ok, 0, "the batch waits to be full");
    // Shutdown sends it.
    sink.shutdown().await;
    assert_eq!(stats.snapshot().points_written, 10);
    assert_eq!(db.count("hp", "SELECT count(seq) FROM heatpump_metrics").await, 10);
}
