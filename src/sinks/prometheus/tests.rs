use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tokio::sync::mpsc;
use tower::ServiceExt;

// The integration tests' Prometheus starter, shared rather than written twice.
use crate::test_net as net;
#[path = "../../../tests/support/prometheus.rs"]
mod prometheus_support;

use super::*;
use crate::component::{Check, Claim, Input, Sink, SinkContext};
use crate::event::{Event, FieldKind, FieldMeta, Metric, Schema, Tags, Value, ValueType};
use crate::telemetry::Registry;

use prometheus_support::start_prometheus;

/// Prometheus' own Accept header (2.4x).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const T0: u64 = 1_700_000_000;

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(UNIX_EPOCH + Duration::from_secs(T0))))
    }

    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }

    fn clock(&self) -> Clock {
        let t = self.0.clone();
        Arc::new(move || *t.lock().unwrap())
    }
}

fn meta(name: &str, unit: Option<&str>, kind: FieldKind, value_type: ValueType, description: &str) -> FieldMeta {
    let mut m = FieldMeta::gauge(name, value_type);
    m.unit = unit.map(str::to_string);
    m.kind = kind;
    if !description.is_empty() {
        m.description = Some(description.to_string());
    }
    m
}

fn schema() -> Arc<Schema> {
    use FieldKind::*;
    use ValueType::*;
    let mut mode = meta("operating_mode", Some("enum"), State, Int, "operating mode");
    mode.labels = Some(BTreeMap::from([
        (1, "Standby".to_string()),
        (2, "Heating".to_string()),
        (3, "Hot \"water\"".to_string()),
    ]));
    Arc::new(Schema::new(
        "wpm",
        vec![
            meta(
                "outside_temperature",
                Some("celsius"),
                Gauge,
                Float,
                "outside temperature\n(manual 507) \\ \"A\"",
            ),
            meta("low_pressure", Some("bar"), Gauge, Float, "low pressure"),
            meta("flow_rate", Some("l/min"), Gauge, Float, ""),
            meta("power", Some("kw"), Gauge, Float, "electrical power"),
            meta("pump_speed", Some("percent"), Gauge, Int, "pump speed"),
            meta("heat_total", Some("kwh"), Counter, Int, "heat produced"),
            meta("runtime_hours", Some("hours"), Counter, Int, "compressor runtime"),
            meta("compressor_running", None, State, Bool, "compressor running"),
            meta("firmware", None, Gauge, Text, "firmware version"),
            mode,
        ],
    ))
}

fn tags(id: &str) -> Arc<Tags> {
    Arc::new(
        [
            ("heat_pump_id", id),
            ("name", "Heat Pump 1"),
            ("location", "Basement"),
            ("model", "wpm"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
}

fn poll(schema: &Arc<Schema>, device: &str, tags: Arc<Tags>, fields: &[(&str, Value)]) -> Event {
    let mut m = Metric::new(device, tags, UNIX_EPOCH + Duration::from_secs(T0), schema.clone());
    for (k, v) in fields {
        m.fields.insert((*k).into(), v.clone());
    }
    Event::from(m)
}

fn full_poll(schema: &Arc<Schema>, device: &str) -> Event {
    poll(
        schema,
        device,
        tags(device),
        &[
            ("outside_temperature", Value::Float(5.5)),
            ("low_pressure", Value::Float(2.25)),
            ("flow_rate", Value::Float(12.5)),
            ("power", Value::Float(1.75)),
            ("pump_speed", Value::Int(40)),
            ("heat_total", Value::Int(1234)),
            ("runtime_hours", Value::Int(5678)),
            ("compressor_running", Value::Bool(true)),
            ("firmware", Value::Text("1.2.3".into())),
            ("operating_mode", Value::Int(2)),
        ],
    )
}

const HP1: &str = r#"heat_pump_id="hp1",location="Basement",model="wpm",name="Heat Pump 1""#;

fn exporter(clock: &ManualClock, registry: Option<Arc<Registry>>) -> Arc<Exporter> {
    Arc::new(Exporter::new(
        "heatpump",
        Duration::from_secs(300),
        clock.clock(),
        registry,
    ))
}

async fn scrape(exporter: &Arc<Exporter>, accept: Option<&str>) -> (String, String) {
    let mut req = Request::get("/metrics");
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let resp = router(exporter.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (ct, String::from_utf8(body.to_vec()).unwrap())
}

fn has_line(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

#[track_caller]
fn assert_line(body: &str, line: &str) {
    assert!(has_line(body, line), "missing line\n  {line}\nin\n{body}");
}

#[track_caller]
fn assert_no_series(body: &str, name: &str) {
    let prefix = format!("{name}{{");
    assert!(
        !body.lines().any(|l| l.starts_with(&prefix)),
        "unexpected {name} series in\n{body}"
    );
}

#[tokio::test]
async fn text_format_is_the_default_with_help_types_and_unit_suffixes() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    ex.update(&full_poll(&schema(), "hp1"));
    let (ct, body) = scrape(&ex, None).await;
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert_line(&body, "# TYPE heatpump_outside_temperature_celsius gauge");
    assert_line(
        &body,
        r#"# HELP heatpump_outside_temperature_celsius outside temperature\n(manual 507) \\ "A""#,
    );
    assert_line(&body, &format!("heatpump_outside_temperature_celsius{{{HP1}}} 5.5"));
    assert_line(&body, &format!("heatpump_low_pressure_bar{{{HP1}}} 2.25"));
    assert_line(&body, &format!("heatpump_flow_rate_liters_per_minute{{{HP1}}} 12.5"));
    assert_line(&body, &format!("heatpump_power_kilowatts{{{HP1}}} 1.75"));
    assert_line(&body, &format!("heatpump_pump_speed_percent{{{HP1}}} 40"));
    assert_line(&body, "# HELP heatpump_flow_rate_liters_per_minute flow_rate (l/min)");
    assert_line(&body, &format!("heatpump_up{{{HP1}}} 1"));
    assert!(!body.contains("firmware"), "text fields are skipped:\n{body}");
    assert!(!body.contains("# EOF"));
    // No sample carries a timestamp: two fields only.
    assert!(body.lines().filter(|l| !l.starts_with('#')).all(|l| l
        .rsplit('}')
        .next()
        .unwrap()
        .split_whitespace()
        .count()
        == 1));
}

#[tokio::test]
async fn openmetrics_is_served_when_accept_asks_for_it() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, Some(Arc::new(Registry::default())));
    ex.update(&full_poll(&schema(), "hp1"));
    let (ct, body) = scrape(&ex, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(ct, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(body.matches("# EOF").count(), 1);
    assert_line(&body, "# TYPE heatpump_heat_kilowatt_hours counter");
    assert_line(&body, "# UNIT heatpump_heat_kilowatt_hours kilowatt_hours");
    assert_line(&body, &format!("heatpump_heat_kilowatt_hours_total{{{HP1}}} 1234"));
    assert_line(&body, "# UNIT heatpump_outside_temperature_celsius celsius");
    // OpenMetrics escapes quotes in HELP too.
    assert_line(
        &body,
        r#"# HELP heatpump_outside_temperature_celsius outside temperature\n(manual 507) \\ \"A\""#,
    );
    assert_line(&body, "# TYPE hpflow_build info");
    assert_line(
        &body,
        &format!("hpflow_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    );

    // Plain text when OpenMetrics is not preferred.
    let (ct, _) = scrape(
        &ex,
        Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
    )
    .await;
    assert!(ct.starts_with("text/plain"));
    let (ct, _) = scrape(&ex, Some("*/*")).await;
    assert!(ct.starts_with("text/plain"));
}

#[test]
fn accept_headers_are_negotiated_by_quality() {
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(Format::negotiate(Some(PROMETHEUS_ACCEPT)), Format::OpenMetrics);
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text")),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0")),
        Format::Text
    );
    assert_eq!(
        Format::negotiate(Some("text/plain, application/openmetrics-text;q=0.9")),
        Format::Text
    );
    assert_eq!(Format::negotiate(Some("garbage;;q=x,")), Format::Text);
}

#[tokio::test]
async fn label_values_are_escaped_and_label_names_sanitised() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    let mut t = (*tags("hp\"1")).clone();
    t.insert("name".into(), "Quote \" back\\slash\nnewline".into());
    t.insert("room.floor".into(), "1st".into());
    t.insert("field".into(), "user's".into());
    ex.update(&poll(
        &schema(),
        "hp\"1",
        Arc::new(t),
        &[("low_pressure", Value::Float(1.5))],
    ));
    let (_, body) = scrape(&ex, None).await;
    assert_line(
        &body,
        r#"heatpump_low_pressure_bar{heat_pump_id="hp\"1",location="Basement",model="wpm",name="Quote \" back\\slash\nnewline",room_floor="1st",tag_field="user's"} 1.5"#,
    );
}

#[tokio::test]
async fn enums_are_a_state_set_with_one_series_per_label() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    let s = schema();
    ex.update(&full_poll(&s, "hp1"));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, "# TYPE heatpump_operating_mode gauge");
    assert_line(
        &body,
        &format!("heatpump_operating_mode{{{HP1},operating_mode=\"Standby\"}} 0"),
    );
    assert_line(
        &body,
        &format!("heatpump_operating_mode{{{HP1},operating_mode=\"Heating\"}} 1"),
    );
    assert_line(
        &body,
        &format!(r#"heatpump_operating_mode{{{HP1},operating_mode="Hot \"water\""}} 0"#),
    );

    // A code the map has no label for shows by number.
    ex.update(&poll(&s, "hp1", tags("hp1"), &[("operating_mode", Value::Int(9))]));
    let (_, body) = scrape(&ex, None).await;
    assert_line(
        &body,
        &format!("heatpump_operating_mode{{{HP1},operating_mode=\"Heating\"}} 0"),
    );
    assert_line(
        &body,
        &format!("heatpump_operating_mode{{{HP1},operating_mode=\"9\"}} 1"),
    );
}

#[tokio::test]
async fn bools_are_0_or_1() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    let s = schema();
    ex.update(&poll(
        &s,
        "hp1",
        tags("hp1"),
        &[("compressor_running", Value::Bool(true))],
    ));
    ex.update(&poll(
        &s,
        "hp2",
        tags("hp2"),
        &[("compressor_running", Value::Bool(false))],
    ));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, "# TYPE heatpump_compressor_running gauge");
    assert_line(&body, &format!("heatpump_compressor_running{{{HP1}}} 1"));
    assert_line(
        &body,
        &format!("heatpump_compressor_running{{{}}} 0", HP1.replace("hp1", "hp2")),
    );
}

#[tokio::test]
async fn counters_are_typed_counter_and_end_in_total() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    ex.update(&full_poll(&schema(), "hp1"));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, "# TYPE heatpump_heat_kilowatt_hours_total counter");
    assert_line(&body, &format!("heatpump_heat_kilowatt_hours_total{{{HP1}}} 1234"));
    // The unit is not repeated when the field already names it.
    assert_line(&body, "# TYPE heatpump_runtime_hours_total counter");
    assert_line(&body, &format!("heatpump_runtime_hours_total{{{HP1}}} 5678"));
}

#[tokio::test]
async fn base_units_convert_time_energy_and_power() {
    let clock = ManualClock::new();
    let ex = Arc::new(Exporter::new("heatpump", Duration::from_secs(300), clock.clock(), None).with_base_units(true));
    let s = {
        let mut s = (*schema()).clone();
        s.fields = s
            .fields
            .iter()
            .map(|f| {
                let mut f = (**f).clone();
                if &*f.name == "power" {
                    f.decimals = Some(2);
                }
                Arc::new(f)
            })
            .collect();
        s.reindex();
        Arc::new(s)
    };
    ex.update(&poll(
        &s,
        "hp1",
        tags("hp1"),
        &[
            ("heat_total", Value::Int(1234)),
            ("runtime_hours", Value::Int(5678)),
            ("power", Value::Float(1.13)),
            ("outside_temperature", Value::Float(5.5)),
        ],
    ));
    let (_, body) = scrape(&ex, Some("application/openmetrics-text")).await;
    assert_line(&body, "# TYPE heatpump_heat_joules counter");
    assert_line(&body, "# UNIT heatpump_heat_joules joules");
    assert_line(&body, &format!("heatpump_heat_joules_total{{{HP1}}} 4442400000"));
    assert_line(&body, &format!("heatpump_runtime_seconds_total{{{HP1}}} 20440800"));
    // 1.13 × 1000 is 1129.9999999999998 in floating point; the register's decimals round it.
    assert_line(&body, &format!("heatpump_power_watts{{{HP1}}} 1130"));
    assert_line(&body, &format!("heatpump_outside_temperature_celsius{{{HP1}}} 5.5"));
}

#[tokio::test]
async fn state_since_is_a_unix_timestamp_and_absent_when_unknown() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    let s = schema();
    let Event::Metric(mut m) = full_poll(&s, "hp1") else {
        unreachable!()
    };
    let m_mut = Arc::make_mut(&mut m);
    m_mut.since.insert(
        "compressor_running".into(),
        Some(UNIX_EPOCH + Duration::from_millis(T0 * 1000 - 1500)),
    );
    m_mut.since.insert("operating_mode".into(), None);
    ex.update(&Event::Metric(m));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, "# TYPE heatpump_state_since_seconds gauge");
    assert_line(
        &body,
        &format!("heatpump_state_since_seconds{{{HP1},field=\"compressor_running\"}} 1699999998.5"),
    );
    assert!(!body.contains(r#"field="operating_mode""#), "{body}");
}

#[tokio::test]
async fn stale_devices_lose_gauges_and_states_but_keep_up_at_0_and_counters() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    let s = schema();
    ex.update(&full_poll(&s, "hp1"));
    clock.advance(Duration::from_secs(200));
    ex.update(&full_poll(&s, "hp2"));
    let hp2 = HP1.replace("hp1", "hp2");

    // hp1 is 5 min old exactly: still fresh.
    clock.advance(Duration::from_secs(100));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, &format!("heatpump_up{{{HP1}}} 1"));

    clock.advance(Duration::from_secs(1));
    for round in ["before sweep", "after sweep"] {
        let (_, body) = scrape(&ex, None).await;
        assert_line(&body, &format!("heatpump_up{{{HP1}}} 0"));
        assert!(
            !body
                .lines()
                .any(|l| l.contains(HP1) && !l.starts_with("heatpump_up{") && !l.contains("_total{")),
            "{round}: hp1 keeps only up and its counters:\n{body}"
        );
        assert_line(&body, &format!("heatpump_heat_kilowatt_hours_total{{{HP1}}} 1234"));
        assert_line(&body, &format!("heatpump_runtime_hours_total{{{HP1}}} 5678"));
        assert_line(&body, &format!("heatpump_up{{{hp2}}} 1"));
        assert_line(&body, &format!("heatpump_outside_temperature_celsius{{{hp2}}} 5.5"));
        assert_line(
            &body,
            &format!("heatpump_operating_mode{{{hp2},operating_mode=\"Heating\"}} 1"),
        );
        ex.sweep();
    }

    // Much later, hp1 is still listed as down.
    clock.advance(Duration::from_secs(86_400));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, &format!("heatpump_up{{{HP1}}} 0"));
    assert_line(&body, &format!("heatpump_up{{{hp2}}} 0"));
    assert_no_series(&body, "heatpump_outside_temperature_celsius");

    // It answers again: everything is back.
    ex.update(&full_poll(&s, "hp1"));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, &format!("heatpump_up{{{HP1}}} 1"));
    assert_line(&body, &format!("heatpump_outside_temperature_celsius{{{HP1}}} 5.5"));
}

#[tokio::test]
async fn a_poll_that_misses_a_field_drops_its_sample_but_never_a_counter() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    let s = schema();
    ex.update(&full_poll(&s, "hp1"));
    ex.update(&poll(&s, "hp1", tags("hp1"), &[("low_pressure", Value::Float(2.0))]));
    let (_, body) = scrape(&ex, None).await;
    assert_no_series(&body, "heatpump_outside_temperature_celsius");
    assert_line(&body, &format!("heatpump_low_pressure_bar{{{HP1}}} 2"));
    assert_line(&body, &format!("heatpump_heat_kilowatt_hours_total{{{HP1}}} 1234"));

    // A poll that brought nothing at all: the device is down at once.
    ex.update(&poll(&s, "hp1", tags("hp1"), &[]));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, &format!("heatpump_up{{{HP1}}} 0"));
    assert_line(&body, &format!("heatpump_heat_kilowatt_hours_total{{{HP1}}} 1234"));
}

#[tokio::test]
async fn clashing_names_skip_the_later_field_instead_of_breaking_the_scrape() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    let other = Arc::new(Schema::new(
        "other",
        vec![
            FieldMeta::gauge("up", ValueType::Int),
            meta("operating_mode", None, FieldKind::Gauge, ValueType::Int, ""),
        ],
    ));
    ex.update(&full_poll(&schema(), "hp1"));
    ex.update(&poll(
        &other,
        "x1",
        tags("x1"),
        &[("up", Value::Int(7)), ("operating_mode", Value::Int(3))],
    ));
    let (_, body) = scrape(&ex, None).await;
    assert_eq!(body.matches("# TYPE heatpump_up ").count(), 1);
    assert_eq!(body.matches("# TYPE heatpump_operating_mode ").count(), 1);
    assert!(!body.contains("} 7\n"), "{body}");
    assert!(!body
        .lines()
        .any(|l| l.starts_with("heatpump_operating_mode{") && l.contains("x1")));
}

#[tokio::test]
async fn fields_without_a_description_are_plain_gauges() {
    let clock = ManualClock::new();
    let ex = exporter(&clock, None);
    ex.update(&poll(
        &schema(),
        "hp1",
        tags("hp1"),
        &[("derived-cop", Value::Float(3.25))],
    ));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, "# TYPE heatpump_derived_cop gauge");
    assert_line(&body, &format!("heatpump_derived_cop{{{HP1}}} 3.25"));
}

#[tokio::test]
async fn internal_metrics_come_from_the_registry_unless_disabled() {
    let clock = ManualClock::new();
    let registry = Arc::new(Registry::default());
    let m = registry.component("metrics", "sink", "prometheus");
    m.received(3);
    m.error();
    let ex = exporter(&clock, Some(registry.clone()));
    let (_, body) = scrape(&ex, None).await;
    let labels = r#"component_id="metrics",component_kind="sink",component_type="prometheus""#;
    assert_line(&body, "# TYPE hpflow_component_events_in_total counter");
    assert_line(&body, &format!("hpflow_component_events_in_total{{{labels}}} 3"));
    assert_line(&body, &format!("hpflow_component_errors_total{{{labels}}} 1"));
    assert_line(
        &body,
        &format!("hpflow_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    );

    let ex = exporter(&clock, None);
    let (_, body) = scrape(&ex, None).await;
    assert!(!body.contains("hpflow_"), "{body}");
}

#[tokio::test]
async fn a_device_its_source_reports_down_is_down_at_once_with_modbus_metrics() {
    use crate::telemetry::{HealthRegistry, RequestResult};
    let clock = ManualClock::new();
    let health = Arc::new(HealthRegistry::default());
    let h1 = health.register("heatpumps", "hp1");
    let h2 = health.register("heatpumps", "hp2");
    for _ in 0..3 {
        h1.request(RequestResult::Ok);
    }
    h1.request(RequestResult::Timeout);
    h1.poll_done(
        true,
        UNIX_EPOCH + Duration::from_millis(T0 * 1000 + 250),
        Duration::from_millis(120),
    );
    h1.poll_done(
        false,
        UNIX_EPOCH + Duration::from_secs(T0 + 10),
        Duration::from_millis(3000),
    );
    h2.poll_done(true, UNIX_EPOCH + Duration::from_secs(T0), Duration::from_millis(80));
    let source = health.clone();
    let ex = Arc::new(
        Exporter::new(
            "heatpump",
            Duration::from_secs(300),
            clock.clock(),
            Some(Arc::new(Registry::default())),
        )
        .with_health(Arc::new(move || source.snapshot())),
    );
    let s = schema();
    ex.update(&full_poll(&s, "hp1"));
    ex.update(&full_poll(&s, "hp2"));
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, &format!("heatpump_up{{{HP1}}} 0"));
    assert_line(&body, &format!("heatpump_up{{{}}} 1", HP1.replace("hp1", "hp2")));
    // Its last values stay until they expire.
    assert_line(&body, &format!("heatpump_outside_temperature_celsius{{{HP1}}} 5.5"));

    let l = r#"component_id="heatpumps",device="hp1""#;
    assert_line(&body, "# TYPE hpflow_modbus_requests_total counter");
    assert_line(&body, &format!("hpflow_modbus_requests_total{{{l},result=\"ok\"}} 3"));
    assert_line(
        &body,
        &format!("hpflow_modbus_requests_total{{{l},result=\"timeout\"}} 1"),
    );
    assert_line(&body, &format!("hpflow_modbus_requests_total{{{l},result=\"busy\"}} 0"));
    assert_line(&body, &format!("hpflow_modbus_polls_total{{{l}}} 2"));
    assert_line(&body, &format!("hpflow_modbus_polls_failed_total{{{l}}} 1"));
    assert_line(&body, &format!("hpflow_modbus_device_up{{{l}}} 0"));
    assert_line(&body, &format!("hpflow_modbus_consecutive_failures{{{l}}} 1"));
    assert_line(
        &body,
        &format!("hpflow_modbus_last_success_timestamp_seconds{{{l}}} 1700000000.25"),
    );
    assert_line(&body, &format!("hpflow_modbus_last_poll_duration_seconds{{{l}}} 3"));
}

#[tokio::test]
async fn modbus_durations_are_histograms_with_cumulative_buckets_and_polls_on_time_are_counted() {
    use crate::telemetry::{HealthRegistry, RequestResult};
    let health = Arc::new(HealthRegistry::default());
    let h = health.register("heatpumps", "hp1");
    for ms in [4, 20, 20, 300] {
        h.request_done(RequestResult::Ok, Duration::from_millis(ms));
    }
    h.request_done(RequestResult::Timeout, Duration::from_secs(30));
    h.poll_done(true, UNIX_EPOCH + Duration::from_secs(T0), Duration::from_millis(350));
    h.poll_started(Duration::from_millis(5), Duration::from_secs(10));
    h.poll_started(Duration::from_secs(4), Duration::from_secs(10));
    h.poll_started(Duration::from_secs(2), Duration::from_secs(10));
    let source = health.clone();
    let ex = Arc::new(
        Exporter::new(
            "heatpump",
            Duration::from_secs(300),
            ManualClock::new().clock(),
            Some(Arc::new(Registry::default())),
        )
        .with_health(Arc::new(move || source.snapshot())),
    );
    let l = r#"component_id="heatpumps",device="hp1""#;
    let r = "hpflow_modbus_request_duration_seconds";
    let (_, body) = scrape(&ex, None).await;
    assert_line(&body, &format!("# TYPE {r} histogram"));
    let expected = [
        ("0.005", 1),
        ("0.01", 1),
        ("0.025", 3),
        ("0.05", 3),
        ("0.1", 3),
        ("0.25", 3),
        ("0.5", 4),
        ("1.0", 4),
        ("2.5", 4),
        ("5.0", 4),
        ("10.0", 4),
        ("+Inf", 5),
    ];
    for (le, n) in expected {
        assert_line(&body, &format!("{r}_bucket{{{l},le=\"{le}\"}} {n}"));
    }
    let sum = |name: &str| -> f64 {
        let prefix = format!("{name}_sum{{{l}}} ");
        let line = body.lines().find_map(|line| line.strip_prefix(&prefix));
        line.unwrap_or_else(|| panic!("no {name}_sum in\n{body}"))
            .parse()
            .unwrap()
    };
    assert!((sum(r) - 30.344).abs() < 1e-9);
    assert_line(&body, &format!("{r}_count{{{l}}} 5"));
    // Buckets come in increasing order, each holding at least the one before.
    let counts: Vec<u64> = body
        .lines()
        .filter(|line| line.starts_with(&format!("{r}_bucket{{")))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), expected.len());
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");

    let p = "hpflow_modbus_poll_duration_seconds";
    assert_line(&body, &format!("{p}_bucket{{{l},le=\"0.25\"}} 0"));
    assert_line(&body, &format!("{p}_bucket{{{l},le=\"0.5\"}} 1"));
    assert_line(&body, &format!("{p}_bucket{{{l},le=\"+Inf\"}} 1"));
    assert!((sum(p) - 0.35).abs() < 1e-9);
    assert_line(&body, &format!("{p}_count{{{l}}} 1"));
    // Of 5 ms, 4 s and 2 s after a 10 s tick, only 5 ms is within 1 s (or a tenth of the interval).
    assert_line(&body, &format!("hpflow_modbus_polls_on_time_total{{{l}}} 1"));
    assert_line(&body, &format!("hpflow_modbus_polls_late_total{{{l}}} 2"));

    let (_, body) = scrape(&ex, Some(PROMETHEUS_ACCEPT)).await;
    assert_line(&body, &format!("# TYPE {r} histogram"));
    assert_line(&body, &format!("# UNIT {r} seconds"));
    assert_line(&body, &format!("{r}_bucket{{{l},le=\"+Inf\"}} 5"));
}

fn check(config: &PrometheusConfig) -> Check<'static> {
    let mut cx = Check::new("metrics", Path::new("."), Path::new("."), &[]);
    config.check(&mut cx);
    cx
}

#[test]
fn config_has_defaults_and_rejects_unknown_keys() {
    let c: PrometheusConfig = toml::from_str("").unwrap();
    assert_eq!(c.address, "127.0.0.1:9464");
    assert_eq!(c.namespace, "heatpump");
    assert_eq!(c.expire_after, Duration::from_secs(300));
    assert!(c.include_internal);
    assert_eq!(c.units, Units::Base);
    let c: PrometheusConfig = toml::from_str(
        "address = \"0.0.0.0:9100\"\nnamespace = \"hp\"\nexpire_after = \"90s\"\ninclude_internal = false\nunits = \"base\"",
    )
    .unwrap();
    assert_eq!(c.expire_after, Duration::from_secs(90));
    assert!(!c.include_internal);
    assert_eq!(c.units, Units::Base);
    assert!(toml::from_str::<PrometheusConfig>("adress = \"x\"").is_err());
}

#[test]
fn config_claims_its_address_and_reports_bad_values() {
    let cx = check(&PrometheusConfig::default());
    assert!(!cx.has_errors());
    assert_eq!(
        cx.claims,
        vec![(
            Claim::Listen("127.0.0.1:9464".parse().unwrap()),
            Some("address".to_string())
        )]
    );

    let bad = PrometheusConfig {
        address: "localhost".into(),
        namespace: "9heat-pump".into(),
        expire_after: Duration::ZERO,
        include_internal: true,
        units: Units::Register,
        header_read_timeout: Duration::ZERO,
        max_connections: 0,
    };
    let cx = check(&bad);
    let keys: Vec<_> = cx
        .problems
        .iter()
        .filter_map(|p| match p {
            crate::component::Problem::Error { key, .. } => key.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        keys,
        [
            "header_read_timeout",
            "max_connections",
            "address",
            "namespace",
            "expire_after"
        ]
    );
}

#[test]
fn an_address_in_use_is_an_error_naming_the_address_and_component() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let ex = exporter(&ManualClock::new(), None);
    let err = Prometheus::bind("metrics", addr, ex)
        .err()
        .expect("binding a taken port fails");
    let msg = err.to_string();
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("`metrics`"), "{msg}");
    assert!(msg.contains("another program"), "{msg}");
}

/// Runs the sink on 127.0.0.1:0 fed by a channel; returns the sender, the address and the task.
fn spawn_sink(
    ex: Arc<Exporter>,
    registry: &Arc<Registry>,
) -> (mpsc::Sender<Event>, std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let sink = Prometheus::bind("metrics", "127.0.0.1:0".parse().unwrap(), ex).unwrap();
    let addr = sink.local_addr().unwrap();
    let metrics = registry.component("metrics", "sink", "prometheus");
    let (tx, rx) = mpsc::channel(16);
    let input = Input::new(rx, metrics.clone());
    let cx = SinkContext {
        id: "metrics".into(),
        metrics,
    };
    let task = tokio::spawn(async move { Box::new(sink).run(input, cx).await.unwrap() });
    (tx, addr, task)
}

#[tokio::test]
async fn the_sink_serves_its_input_and_stops_when_the_input_closes() {
    let registry = Arc::new(Registry::default());
    let ex = Arc::new(Exporter::new(
        "heatpump",
        Duration::from_secs(300),
        system_clock(),
        Some(registry.clone()),
    ));
    let (tx, addr, task) = spawn_sink(ex.clone(), &registry);
    tx.send(full_poll(&schema(), "hp1")).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = http.get(&url).send().await.unwrap().text().await.unwrap();
        if body.contains("heatpump_outside_temperature_celsius{") || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_line(&body, &format!("heatpump_outside_temperature_celsius{{{HP1}}} 5.5"));
    assert_eq!(registry.get("metrics").unwrap().counts().events_out, 1);

    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the sink stops")
        .unwrap();
    assert!(
        http.get(&url).send().await.is_err(),
        "the port is closed after shutdown"
    );
}

// ---------------------------------------------------------------------------
// A real Prometheus server scrapes the sink.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::default());
    let ex = Arc::new(Exporter::new(
        "heatpump",
        Duration::from_secs(300),
        system_clock(),
        Some(registry.clone()),
    ));
    let (tx, addr, task) = spawn_sink(ex, &registry);
    let s = schema();
    tx.send(full_poll(&s, "hp1")).await.unwrap();
    let mut hp2 = poll(&s, "hp2", tags("hp2"), &[("outside_temperature", Value::Float(-3.25))]);
    if let Event::Metric(m) = &mut hp2 {
        let mut t = (*m.tags).clone();
        t.insert("name".into(), "Quote \" back\\slash\nnewline".into());
        Arc::make_mut(m).tags = Arc::new(t);
    }
    tx.send(hp2).await.unwrap();

    let (mut server, port) = start_prometheus(dir.path(), addr);
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let result = loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "prometheus exited with {status}:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        let r = http
            .get(format!("{api}/query"))
            .query(&[("query", "heatpump_outside_temperature_celsius")])
            .send()
            .await;
        if let Ok(r) = r {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap_or_default()) {
                let result = json["data"]["result"].as_array().cloned().unwrap_or_default();
                if result.len() >= 2 {
                    break result;
                }
            }
        }
        if std::time::Instant::now() > deadline {
            let targets = match http.get(format!("{api}/targets")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            panic!(
                "prometheus did not return both devices within 15 s\ntargets: {targets}\nlog:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let value = |id: &str| {
        result
            .iter()
            .find(|r| r["metric"]["heat_pump_id"] == id)
            .map(|r| r["value"][1].as_str().unwrap().to_string())
    };
    assert_eq!(value("hp1").as_deref(), Some("5.5"));
    assert_eq!(value("hp2").as_deref(), Some("-3.25"));
    let hp2 = result.iter().find(|r| r["metric"]["heat_pump_id"] == "hp2").unwrap();
    assert_eq!(hp2["metric"]["name"], "Quote \" back\\slash\nnewline");
    assert_eq!(hp2["metric"]["job"], "hpflow");

    // The target is healthy: the whole scrape parsed (OpenMetrics, as Prometheus asks for it).
    let targets = http
        .get(format!("{api}/targets"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let targets: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");

    drop(server);
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the sink stops")
        .unwrap();
}

#[tokio::test]
async fn a_scrape_streamed_in_pieces_is_the_whole_exposition_cut_at_line_ends() {
    let clock = ManualClock::new();
    let registry = Arc::new(Registry::default());
    let ex = exporter(&clock, Some(registry));
    for i in 0..300 {
        ex.update(&full_poll(&schema(), &format!("hp{i:03}")));
    }
    for format in [Format::Text, Format::OpenMetrics] {
        let whole = ex.render(format);
        let mut pieces = Vec::new();
        ex.render_chunked(format, 4096, &mut |p| pieces.push(p));
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        for p in &pieces {
            assert!(p.ends_with('\n'), "a piece ends inside a line");
        }
        // Each piece stops at the first line end past the size, except the last
        // (the internal metrics and `# EOF` come in one).
        for p in &pieces[..pieces.len() - 1] {
            assert!(p.len() < 4096 + 1024, "a piece of {} bytes", p.len());
        }
        assert_eq!(pieces.concat(), whole);
    }
    // And through the router, streamed, the same text.
    let (_, body) = scrape(&ex, None).await;
    assert_eq!(body, ex.render(Format::Text));
    let big = router(ex.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        big.headers().get(header::CONTENT_LENGTH).is_none(),
        "an exposition of many pieces is streamed"
    );

    // One that fits in a piece goes out whole, with its length.
    let small = exporter(&clock, None);
    small.update(&full_poll(&schema(), "hp1"));
    let resp = router(small.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let len: usize = resp.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, small.render(Format::Text).len());
}
