//! What the `modbus_tcp` source makes of a device's answers: every data type
//! and byte order, sentinels, split counters, refused requests, busy devices.
//! Each test runs the real source against an in-process tokio-modbus server.

mod support;

use std::time::Duration;

use hpflow::event::Value;
use hpflow::telemetry::RequestResult;
use support::modbus::{run_tcp, serve_fake, write_map, FakeDevice};
use tokio_modbus::ExceptionCode;

const WAIT: Duration = Duration::from_secs(5);

fn source_toml(map: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
registers = "{map}"
interval = "200ms"
timeout = "1s"
phase_spread = false
{extra}

[[devices]]
id = "dev"
model = "m"
host = "127.0.0.1"
port = {port}
"#
    )
}

const TYPES_MAP: &str = r#"
models:
  m:
    registers:
      - {name: i16, address: 0, data_type: int16}
      - {name: u16, address: 1, data_type: uint16}
      - {name: i32_abcd, address: 2, data_type: int32, byte_order: ABCD}
      - {name: i32_cdab, address: 4, data_type: int32, byte_order: CDAB}
      - {name: u32_badc, address: 6, data_type: uint32, byte_order: BADC}
      - {name: u32_dcba, address: 8, data_type: uint32, byte_order: DCBA}
      - {name: i64, address: 10, data_type: int64}
      - {name: u64_cdab, address: 14, data_type: uint64, byte_order: CDAB}
      - {name: f32, address: 18, data_type: float32}
      - {name: f32_cdab, address: 20, data_type: float32, byte_order: CDAB}
      - {name: f64, address: 22, data_type: float64}
      - {name: f64_dcba, address: 26, data_type: float64, byte_order: DCBA}
      - {name: text, address: 30, data_type: string, length: 3}
      - {name: text_badc, address: 33, data_type: string, length: 2, byte_order: BADC}
      - {name: high_byte, address: 35, data_type: uint8_high}
      - {name: low_byte, address: 35, data_type: uint8_low}
      - {name: signed_byte, address: 36, data_type: int8_low}
      - {name: flag, address: 37, data_type: bool}
      - {name: scaled, address: 100, register_type: input, data_type: int16, scale: 0.1, unit: celsius}
      - {name: coil0, address: 0, register_type: coil}
      - {name: coil1, address: 1, register_type: coil}
      - {name: di5, address: 5, register_type: discrete}
"#;

#[tokio::test]
async fn every_data_type_and_byte_order_decodes_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path(), TYPES_MAP);
    let dev = FakeDevice::new();
    // Words written out by hand, in the order each byte order puts them on the wire.
    dev.set(3, 0, &[0xFF85]); // -123
    dev.set(3, 1, &[0xFF85]); // 65413
    dev.set(3, 2, &[0xFFFE, 0x1DC0]); // -123456 ABCD
    dev.set(3, 4, &[0x1DC0, 0xFFFE]); // -123456 CDAB (words swapped)
    dev.set(3, 6, &[0x3412, 0x7856]); // 0x12345678 BADC (bytes swapped per word)
    dev.set(3, 8, &[0x7856, 0x3412]); // 0x12345678 DCBA (little-endian)
    dev.set(3, 10, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]); // -2
    dev.set(3, 14, &[0x0004, 0x0003, 0x0002, 0x0001]); // 0x0001000200030004, words reversed
    dev.set(3, 18, &[0x3FC0, 0x0000]); // 1.5
    dev.set(3, 20, &[0x0000, 0xC010]); // -2.25, words swapped
    dev.set(3, 22, &[0x3FB9, 0x9999, 0x9999, 0x999A]); // 0.1
    dev.set(3, 26, &[0x0000, 0x0000, 0x0000, 0xF03F]); // 1.0 little-endian
    dev.set(3, 30, &[0x4850, 0x2D31, 0x0000]); // "HP-1"
    dev.set(3, 33, &[0x6261, 0x6463]); // "abcd", bytes swapped
    dev.set(3, 35, &[0x12FE]); // high 0x12, low 0xFE
    dev.set(3, 36, &[0x00FE]); // -2 in the low byte
    dev.set(3, 37, &[0x0001]);
    dev.set(4, 100, &[0x00D7]); // 215 raw: the source emits raw, `scale` makes 21.5
    dev.set_bit(1, 0, true);
    dev.set_bit(1, 1, false);
    dev.set_bit(2, 5, true);
    let server = serve_fake(dev.clone()).await;

    let mut src = run_tcp("types", dir.path(), &source_toml(map, server.addr.port(), ""));
    let m = src.next(WAIT, "a poll of every data type").await;
    let expect: Vec<(&str, Value)> = vec![
        ("i16", Value::Int(-123)),
        ("u16", Value::Int(65413)),
        ("i32_abcd", Value::Int(-123_456)),
        ("i32_cdab", Value::Int(-123_456)),
        ("u32_badc", Value::Int(0x1234_5678)),
        ("u32_dcba", Value::Int(0x1234_5678)),
        ("i64", Value::Int(-2)),
        ("u64_cdab", Value::Int(0x0001_0002_0003_0004)),
        ("f32", Value::Float(1.5)),
        ("f32_cdab", Value::Float(-2.25)),
        ("f64", Value::Float(0.1)),
        ("f64_dcba", Value::Float(1.0)),
        ("text", Value::Text("HP-1".into())),
        ("text_badc", Value::Text("abcd".into())),
        ("high_byte", Value::Int(0x12)),
        ("low_byte", Value::Int(0xFE)),
        ("signed_byte", Value::Int(-2)),
        ("flag", Value::Bool(true)),
        ("scaled", Value::Int(215)),
        ("coil0", Value::Bool(true)),
        ("coil1", Value::Bool(false)),
        ("di5", Value::Bool(true)),
    ];
    for (name, want) in &expect {
        assert_eq!(m.fields.get(name), Some(want), "field {name}");
    }
    assert_eq!(m.fields.len(), expect.len(), "no other fields: {:?}", m.fields);
    assert_eq!(m.tags.get("heat_pump_id").map(String::as_str), Some("dev"));
    assert_eq!(m.tags.get("model").map(String::as_str), Some("m"));
    // Four reads: holding, input, coils, discrete inputs.
    let mut seen = dev.take_log();
    seen.truncate(4);
    seen.sort();
    assert_eq!(seen, [(1, 0, 2), (2, 5, 1), (3, 0, 38), (4, 100, 1)]);
    src.stop().await;
}

const WPM_MAP: &str = r#"
models:
  m:
    not_available: [0x8000]
    registers:
      - {name: outside_temperature, address: 506, register_type: input, data_type: int16, scale: 0.1}
      - {name: hc1_temperature, address: 507, register_type: input, data_type: int16, scale: 0.1}
      - name: heat_total
        register_type: input
        data_type: uint16
        kind: counter
        parts: [{address: 3501, factor: 1}, {address: 3502, factor: 1000}]
      - name: power_total
        register_type: input
        data_type: uint16
        parts: [{address: 3511, factor: 1}, {address: 3512, factor: 1000}]
      - name: operating_status
        address: 2500
        register_type: input
        data_type: uint16
        unit: bitmap
        bitmap_fields: {0: hc1_pump, 6: compressor_running, 9: defrost_mode}
"#;

#[tokio::test]
async fn sentinels_are_absent_and_split_counters_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path(), WPM_MAP);
    let dev = FakeDevice::new();
    dev.set(4, 506, &[0xFFEC, 0x8000]); // -2.0 °C; HC1 sensor not fitted
    dev.set(4, 3501, &[345, 12]); // 12 MWh + 345 kWh
    dev.set(4, 3511, &[0x8000, 3]); // one half unavailable: the whole counter is
    dev.set(4, 2500, &[0x0041]); // bits 0 and 6
    let server = serve_fake(dev).await;

    let mut src = run_tcp("sentinels", dir.path(), &source_toml(map, server.addr.port(), ""));
    let m = src.next(WAIT, "a poll with sentinels").await;
    assert_eq!(m.fields.get("outside_temperature"), Some(&Value::Int(-20)));
    assert_eq!(m.fields.get("hc1_temperature"), None, "0x8000 is absent, never -3276.8");
    assert_eq!(m.fields.get("heat_total"), Some(&Value::Int(12_345)));
    assert_eq!(
        m.fields.get("power_total"),
        None,
        "a split counter with a 0x8000 half is absent"
    );
    assert_eq!(m.fields.get("hc1_pump"), Some(&Value::Bool(true)));
    assert_eq!(m.fields.get("compressor_running"), Some(&Value::Bool(true)));
    assert_eq!(m.fields.get("defrost_mode"), Some(&Value::Bool(false)));
    assert_eq!(m.fields.get("operating_status"), Some(&Value::Int(0x41)));
    src.stop().await;
}

const FIVE_MAP: &str = r#"
models:
  m:
    registers:
      - {name: a, address: 100, register_type: input}
      - {name: b, address: 101, register_type: input}
      - {name: c, address: 102, register_type: input}
      - {name: d, address: 103, register_type: input}
      - {name: e, address: 104, register_type: input}
"#;

#[tokio::test]
async fn a_request_refused_with_exception_02_is_split_and_the_rest_still_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path(), FIVE_MAP);
    let dev = FakeDevice::new();
    dev.set(4, 100, &[1, 2, 3, 4, 5]);
    // Address 102 is not served: any read that touches it is refused.
    dev.refuse(|_, start, count| (start <= 102 && 102 < start + count).then_some(ExceptionCode::IllegalDataAddress));
    let server = serve_fake(dev.clone()).await;

    let mut src = run_tcp("split", dir.path(), &source_toml(map, server.addr.port(), ""));
    let m = src.next(WAIT, "the first poll").await;
    let want: Vec<(&str, Value)> = vec![
        ("a", Value::Int(1)),
        ("b", Value::Int(2)),
        ("d", Value::Int(4)),
        ("e", Value::Int(5)),
    ];
    for (k, v) in &want {
        assert_eq!(m.fields.get(k), Some(v), "{k}");
    }
    assert!(!m.fields.contains_key("c"), "the refused value is absent");
    // Split in halves until the refusing value stands alone: 100x5 → 100x2 + 102x3 → 102x1 + 103x2.
    assert_eq!(
        dev.take_log(),
        vec![(4, 100, 5), (4, 100, 2), (4, 102, 3), (4, 102, 1), (4, 103, 2)]
    );
    // The next poll sends only what works: the refused value waits for its re-probe.
    let m2 = src.next(WAIT, "the second poll").await;
    assert_eq!(m2.fields.len(), 4);
    assert_eq!(dev.take_log(), vec![(4, 100, 2), (4, 103, 2)]);
    src.stop().await;
}

#[tokio::test]
async fn a_busy_device_is_asked_again_and_its_values_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path(), FIVE_MAP);
    let dev = FakeDevice::new();
    dev.set(4, 100, &[1, 2, 3, 4, 5]);
    dev.busy_first.store(2, std::sync::atomic::Ordering::SeqCst);
    let server = serve_fake(dev.clone()).await;

    let mut src = run_tcp("busy", dir.path(), &source_toml(map, server.addr.port(), ""));
    let m = src.next(WAIT, "a poll of a busy device").await;
    assert_eq!(m.fields.len(), 5, "{:?}", m.fields);
    assert_eq!(dev.take_log(), vec![(4, 100, 5); 3], "busy twice, then answered");
    let h = src.devices().get("busy", "dev").expect("health entry");
    assert_eq!(h.requests(RequestResult::Busy), 2);
    assert_eq!(h.requests(RequestResult::Ok), 1);
    assert!(h.up);
    src.stop().await;
}

#[tokio::test]
async fn other_exceptions_leave_only_that_requests_fields_absent() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(
        dir.path(),
        r#"
models:
  m:
    registers:
      - {name: a, address: 100, register_type: input}
      - {name: h, address: 1500, register_type: holding}
"#,
    );
    let dev = FakeDevice::new();
    dev.set(4, 100, &[7]);
    dev.set(3, 1500, &[9]);
    dev.refuse(|fc, _, _| (fc == 3).then_some(ExceptionCode::ServerDeviceFailure));
    let server = serve_fake(dev).await;
    let mut src = run_tcp("exc04", dir.path(), &source_toml(map, server.addr.port(), ""));
    let m = src.next(WAIT, "a partly refused poll").await;
    assert_eq!(m.fields.get("a"), Some(&Value::Int(7)));
    assert!(!m.fields.contains_key("h"));
    src.stop().await;
}

#[tokio::test]
async fn a_poll_where_nothing_succeeds_emits_nothing_and_a_gateway_failure_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path(), FIVE_MAP);
    let dev = FakeDevice::new();
    dev.refuse(|_, _, _| Some(ExceptionCode::GatewayTargetDevice));
    let server = serve_fake(dev).await;
    let mut src = run_tcp("gw", dir.path(), &source_toml(map, server.addr.port(), ""));
    let got = tokio::time::timeout(Duration::from_millis(700), src.rx.recv()).await;
    assert!(got.is_err(), "no event from a device its gateway cannot reach: {got:?}");
    let h = src.devices().get("gw", "dev").expect("health entry");
    assert!(!h.up);
    assert!(h.requests(RequestResult::GatewayFailed) >= 2);
    assert!(h.consecutive_failures >= 2);
    src.stop().await;
}

#[tokio::test]
async fn a_reply_of_the_wrong_length_is_an_error_in_the_health_and_its_fields_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(
        dir.path(),
        r#"
models:
  m:
    registers:
      - {name: a, address: 100, register_type: input}
      - {name: b, address: 101, register_type: input}
      - {name: h, address: 1500, register_type: holding}
"#,
    );
    let dev = FakeDevice::new();
    dev.set(4, 100, &[7, 8]);
    dev.set(3, 1500, &[9]);
    // Input registers come back one word short: 1 value to a read of 2.
    dev.short_fc.store(4, std::sync::atomic::Ordering::SeqCst);
    let server = serve_fake(dev).await;
    let mut src = run_tcp("short", dir.path(), &source_toml(map, server.addr.port(), ""));
    for _ in 0..3 {
        let m = src.next(WAIT, "polls with a short reply").await;
        assert_eq!(
            m.fields.get("h"),
            Some(&Value::Int(9)),
            "the good request's field stays"
        );
        assert!(
            !m.fields.contains_key("a") && !m.fields.contains_key("b"),
            "{:?}",
            m.fields
        );
    }
    let h = src.devices().get("short", "dev").expect("health entry");
    assert!(h.requests(RequestResult::WrongLength) >= 3, "{h:?}");
    assert_eq!(
        h.requests(RequestResult::Ok),
        h.requests(RequestResult::WrongLength),
        "only the holding read counts as answered"
    );
    src.stop().await;
}
