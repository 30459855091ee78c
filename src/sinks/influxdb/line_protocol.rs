//! Events as InfluxDB line protocol, one line per event.
//!
//! A poll becomes `<measurement>,<tags> <fields> <time>`: the event's tags (sorted,
//! empty ones left out, since InfluxDB rejects them), its fields under their own
//! names, and the poll's scheduled time at the configured precision. A state change
//! becomes a line of the state measurement with the extra tag `field`.
//!
//! Types follow the value, never its magnitude: `Int` → `5i`, `Float` → always with a
//! decimal point or exponent (`21.0`, `1e-7`), `Bool` → `true`/`false`, `Text` →
//! a quoted string. Non-finite floats are left out (line protocol cannot carry them).
//!
//! Enum fields (a [`FieldMeta`](crate::event::FieldMeta) with labels) are the one
//! exception, because InfluxDB fixes a field's type per shard and HPManager's
//! databases hold them as strings: with [`EnumValues::Label`] (the default) a code
//! is written as its label string, an unknown code as `"Unknown(<code>)"`, exactly
//! as HPManager's collector did; with [`EnumValues::Code`] as the integer. A field
//! with an empty label list is no enum (HPManager wrote those as numbers too).
//! Bitmap bits stay booleans and bitmap words integers, either way. State changes
//! keep their own encoding (see `encode_state_change`).
//!
//! Escaping, as InfluxDB 1.x and 2.x parse it:
//! - measurement: `,` and space; tag keys, tag values, field keys: `,`, `=` and space;
//! - string field values: `"` and `\`; line breaks stay as they are inside the quotes;
//! - a line break in a name or tag value cannot be written and becomes a space;
//! - a backslash is written as is, except one (or a run) right before a character
//!   that gets escaped, or at the very end: that would escape the delimiter after
//!   it and InfluxDB 1.x has no way to write it, so it is left out.
//!
//! A tag or field named `time` is left out: InfluxDB rejects the whole point.

use std::io::Write as _;
use std::time::SystemTime;

use super::config::{EnumValues, Precision};
use crate::event::{Event, Metric, StateChange, Value};

/// Encodes events for one sink: measurement names escaped once, the precision fixed.
#[derive(Debug, Clone)]
pub struct Encoder {
    measurement: Vec<u8>,
    state_measurement: Vec<u8>,
    precision: Precision,
    enum_values: EnumValues,
}

const MEASUREMENT_SPECIAL: &[u8] = b", ";
const KEY_SPECIAL: &[u8] = b",= ";

impl Encoder {
    /// An encoder writing enum fields as their labels; see [`Encoder::with_enum_values`].
    pub fn new(measurement: &str, state_measurement: &str, precision: Precision) -> Self {
        let mut m = Vec::new();
        write_ident(&mut m, measurement, MEASUREMENT_SPECIAL);
        let mut s = Vec::new();
        write_ident(&mut s, state_measurement, MEASUREMENT_SPECIAL);
        Encoder {
            measurement: m,
            state_measurement: s,
            precision,
            enum_values: EnumValues::default(),
        }
    }

    /// How enum fields of polls are written: labels (HPManager's strings) or codes.
    pub fn with_enum_values(mut self, enum_values: EnumValues) -> Self {
        self.enum_values = enum_values;
        self
    }

    /// Appends the event's line, newline included, to `out`. Returns false (and
    /// leaves `out` as it was) when the event has no field that can be written.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let ok = match event {
            Event::Metric(m) => self.encode_metric(m, out),
            Event::StateChange(s) => self.encode_state_change(s, out),
        };
        if !ok {
            out.truncate(start);
        }
        ok
    }

    fn encode_metric(&self, m: &Metric, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(&self.measurement);
        for (k, v) in m.tags.iter() {
            write_tag(out, k, v);
        }
        out.push(b' ');
        let fields_start = out.len();
        for (k, v) in &m.fields {
            // Enums are never scaled, so their codes are always `Int`: the schema
            // lookup is only paid for integer fields.
            if let (EnumValues::Label, Value::Int(code)) = (self.enum_values, v) {
                let labels = m.meta(k).and_then(|f| f.labels.as_ref()).filter(|l| !l.is_empty());
                if let Some(labels) = labels {
                    if write_key(out, k, fields_start) {
                        match labels.get(code) {
                            Some(label) => write_string(out, label),
                            None => write_string(out, &format!("Unknown({code})")),
                        }
                    }
                    continue;
                }
            }
            write_field(out, k, v, fields_start);
        }
        if out.len() == fields_start {
            return false;
        }
        self.write_time(out, m.time);
        true
    }

    fn encode_state_change(&self, s: &StateChange, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(&self.state_measurement);
        // Tags stay sorted by key (InfluxDB's preferred order); ours wins over a user tag `field`.
        let mut field_written = false;
        for (k, v) in s.tags.iter() {
            if k.as_str() == "field" {
                continue;
            }
            if !field_written && k.as_str() > "field" {
                write_tag(out, "field", &s.field);
                field_written = true;
            }
            write_tag(out, k, v);
        }
        if !field_written {
            write_tag(out, "field", &s.field);
        }
        out.push(b' ');
        let fields_start = out.len();
        // One measurement holds the changes of every state field, and InfluxDB fixes a
        // field's type per measurement: so the field name carries the type. Integers and
        // bools (as 0/1, by type, never by value) share `from`/`to`, so bool states
        // and enum codes can live side by side.
        if let Some(from) = &s.from {
            write_state_value(out, "from", from, fields_start);
        }
        write_state_value(out, "to", &s.to, fields_start);
        if let Some(since) = s.from_since {
            if let Ok(d) = s.at.duration_since(since) {
                let secs = d.as_millis() as f64 / 1000.0;
                write_field(out, "from_since", &Value::Float(secs), fields_start);
            }
        }
        if out.len() == fields_start {
            return false;
        }
        self.write_time(out, s.at);
        true
    }

    fn write_time(&self, out: &mut Vec<u8>, t: SystemTime) {
        out.push(b' ');
        write_int(out, timestamp(t, self.precision));
        out.push(b'\n');
    }
}

/// The time as an integer count of `precision` units since the Unix epoch
/// (negative before it, rounded towards the past).
pub fn timestamp(t: SystemTime, precision: Precision) -> i64 {
    let nanos: i128 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let v = nanos.div_euclid(precision.nanos());
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn write_state_value(out: &mut Vec<u8>, name: &str, v: &Value, fields_start: usize) {
    match v {
        Value::Int(_) => write_field(out, name, v, fields_start),
        Value::Bool(b) => write_field(out, name, &Value::Int(i64::from(*b)), fields_start),
        Value::Float(_) => write_field(out, &format!("{name}_float"), v, fields_start),
        Value::Text(_) => write_field(out, &format!("{name}_text"), v, fields_start),
    }
}

fn write_tag(out: &mut Vec<u8>, k: &str, v: &str) {
    if k.is_empty() || v.is_empty() || k == "time" {
        return;
    }
    let start = out.len();
    out.push(b',');
    write_ident(out, k, KEY_SPECIAL);
    out.push(b'=');
    let value_start = out.len();
    write_ident(out, v, KEY_SPECIAL);
    // A key or value made only of dropped backslashes ends up empty.
    if out.len() == value_start || out[start + 1] == b'=' {
        out.truncate(start);
    }
}

fn write_field(out: &mut Vec<u8>, k: &str, v: &Value, fields_start: usize) {
    if let Value::Float(f) = v {
        if !f.is_finite() {
            return;
        }
    }
    if !write_key(out, k, fields_start) {
        return;
    }
    match v {
        Value::Int(i) => {
            write_int(out, *i);
            out.push(b'i');
        }
        Value::Float(f) => write_float(out, *f),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Text(s) => write_string(out, s),
    }
}

/// Writes the separator (unless first), the field key and `=`; false (and nothing
/// written) when the key cannot be written.
fn write_key(out: &mut Vec<u8>, k: &str, fields_start: usize) -> bool {
    if k.is_empty() || k == "time" {
        return false;
    }
    let start = out.len();
    if start > fields_start {
        out.push(b',');
    }
    let key_start = out.len();
    write_ident(out, k, KEY_SPECIAL);
    if out.len() == key_start {
        out.truncate(start);
        return false;
    }
    out.push(b'=');
    true
}

/// Writes a float so that it parses back as the same float and as a float: Rust's
/// `Debug` is the shortest round-trip form and always has a `.` or an exponent.
fn write_float(out: &mut Vec<u8>, f: f64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{f:?}");
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    let mut buf = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[pos..]);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// A measurement, tag key, tag value or field key. Works on bytes: the special
/// characters are ASCII and never occur inside a multi-byte UTF-8 sequence.
fn write_ident(out: &mut Vec<u8>, s: &str, special: &[u8]) {
    let bytes = s.as_bytes();
    let needs_escape = |b: u8| special.contains(&b) || b == b'\n' || b == b'\r';
    if !bytes.iter().any(|&b| needs_escape(b) || b == b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            let run_end = bytes[i..]
                .iter()
                .position(|&c| c != b'\\')
                .map_or(bytes.len(), |p| i + p);
            let next = bytes.get(run_end).copied();
            if next.is_some_and(|n| !needs_escape(n)) {
                out.extend_from_slice(&bytes[i..run_end]);
            }
            i = run_end;
            continue;
        }
        if b == b'\n' || b == b'\r' {
            out.extend_from_slice(b"\\ ");
        } else {
            if special.contains(&b) {
                out.push(b'\\');
            }
            out.push(b);
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::event::{Schema, Tags};

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn metric(tags: &[(&str, &str)], fields: Vec<(&str, Value)>) -> Event {
        let tags: Tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut m = Metric::new(
            "hp1",
            Arc::new(tags),
            at(1_700_000_000_123),
            Arc::new(Schema::default()),
        );
        for (k, v) in fields {
            m.fields.insert(k.into(), v);
        }
        Event::from(m)
    }

    fn line(e: &Event) -> String {
        let mut out = Vec::new();
        assert!(Encoder::new("heatpump_metrics", "heatpump_state_changes", Precision::Ms).encode(e, &mut out));
        String::from_utf8(out).unwrap()
    }

    fn ident(s: &str, special: &[u8]) -> String {
        let mut out = Vec::new();
        write_ident(&mut out, s, special);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_poll_becomes_one_line_with_sorted_tags_typed_fields_and_the_poll_time() {
        let e = metric(
            &[
                ("name", "Main"),
                ("heat_pump_id", "hp1"),
                ("location", "Basement"),
                ("model", "wpl"),
            ],
            vec![
                ("flow_temp", Value::Float(35.5)),
                ("mode", Value::Int(3)),
                ("compressor", Value::Bool(true)),
                ("fw", Value::Text("1.2".into())),
            ],
        );
        assert_eq!(
            line(&e),
            "heatpump_metrics,heat_pump_id=hp1,location=Basement,model=wpl,name=Main \
             compressor=true,flow_temp=35.5,fw=\"1.2\",mode=3i 1700000000123\n"
        );
    }

    #[test]
    fn floats_always_parse_as_floats_and_integers_carry_i() {
        let mut out = Vec::new();
        for f in [21.0, -0.5, 1e-7, 1.5e300, 0.1, -0.0, 123456789.125] {
            out.clear();
            write_float(&mut out, f);
            let s = std::str::from_utf8(&out).unwrap();
            assert!(s.contains(['.', 'e']), "{s} must read as a float");
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{s} round-trips");
        }
        for (i, s) in [
            (0, "0"),
            (-1, "-1"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            out.clear();
            write_int(&mut out, i);
            assert_eq!(std::str::from_utf8(&out).unwrap(), s);
        }
    }

    #[test]
    fn non_finite_floats_are_never_written() {
        let e = metric(
            &[],
            vec![
                ("a", Value::Float(f64::NAN)),
                ("b", Value::Float(f64::INFINITY)),
                ("c", Value::Float(2.0)),
                ("d", Value::Float(f64::NEG_INFINITY)),
            ],
        );
        assert_eq!(line(&e), "heatpump_metrics c=2.0 1700000000123\n");
        let only_nan = metric(&[], vec![("a", Value::Float(f64::NAN))]);
        let mut out = b"keep".to_vec();
        assert!(!Encoder::new("m", "s", Precision::Ms).encode(&only_nan, &mut out));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn measurement_escapes_commas_and_spaces_but_not_equals() {
        let enc = Encoder::new("my meas,x=y", "s", Precision::S);
        let e = metric(&[], vec![("v", Value::Int(1))]);
        let mut out = Vec::new();
        enc.encode(&e, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "my\\ meas\\,x=y v=1i 1700000000\n");
    }

    #[test]
    fn tag_keys_values_and_field_keys_escape_commas_equals_and_spaces() {
        let e = metric(&[("t k=1", "v,1 x=y")], vec![("f 1=2,3", Value::Int(1))]);
        assert_eq!(
            line(&e),
            "heatpump_metrics,t\\ k\\=1=v\\,1\\ x\\=y f\\ 1\\=2\\,3=1i 1700000000123\n"
        );
    }

    #[test]
    fn string_values_escape_quotes_and_backslashes_and_keep_newlines_and_unicode() {
        let e = metric(&[], vec![("s", Value::Text("say \"hi\" C:\\temp\nnext ✓ äöü".into()))]);
        assert_eq!(
            line(&e),
            "heatpump_metrics s=\"say \\\"hi\\\" C:\\\\temp\nnext ✓ äöü\" 1700000000123\n"
        );
    }

    #[test]
    fn unicode_in_names_passes_through() {
        let e = metric(&[("ort", "Küche ✓")], vec![("temp_°C", Value::Float(1.5))]);
        assert_eq!(line(&e), "heatpump_metrics,ort=Küche\\ ✓ temp_°C=1.5 1700000000123\n");
    }

    #[test]
    fn line_breaks_in_names_become_spaces() {
        assert_eq!(ident("a\nb\r\nc", KEY_SPECIAL), "a\\ b\\ \\ c");
    }

    #[test]
    fn backslashes_stay_unless_they_would_escape_a_delimiter() {
        assert_eq!(ident("a\\b", KEY_SPECIAL), "a\\b");
        assert_eq!(ident("a\\\\b", KEY_SPECIAL), "a\\\\b");
        assert_eq!(ident("C:\\", KEY_SPECIAL), "C:");
        assert_eq!(ident("a\\\\", KEY_SPECIAL), "a");
        assert_eq!(ident("a\\,b", KEY_SPECIAL), "a\\,b");
        assert_eq!(ident("a\\ b", KEY_SPECIAL), "a\\ b");
        assert_eq!(ident("a\\=b", MEASUREMENT_SPECIAL), "a\\=b");
    }

    #[test]
    fn empty_tag_values_and_keys_are_left_out() {
        let e = metric(
            &[("location", ""), ("", "x"), ("name", "n"), ("odd", "\\")],
            vec![("v", Value::Int(1))],
        );
        assert_eq!(line(&e), "heatpump_metrics,name=n v=1i 1700000000123\n");
    }

    #[test]
    fn a_tag_or_field_named_time_is_left_out() {
        let e = metric(&[("time", "x")], vec![("time", Value::Int(1)), ("v", Value::Int(2))]);
        assert_eq!(line(&e), "heatpump_metrics v=2i 1700000000123\n");
    }

    #[test]
    fn a_poll_without_fields_writes_nothing() {
        let e = metric(&[("name", "n")], vec![]);
        let mut out = Vec::new();
        assert!(!Encoder::new("m", "s", Precision::Ms).encode(&e, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn timestamps_follow_the_precision() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(timestamp(t, Precision::Ns), 1_700_000_000_123_456_789);
        assert_eq!(timestamp(t, Precision::Us), 1_700_000_000_123_456);
        assert_eq!(timestamp(t, Precision::Ms), 1_700_000_000_123);
        assert_eq!(timestamp(t, Precision::S), 1_700_000_000);
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(timestamp(before, Precision::S), -2);
        assert_eq!(timestamp(before, Precision::Ms), -1500);
    }

    /// A poll of a model with an enum, an enum without labels, a bitmap word and its bit.
    fn enum_poll(mode: i64) -> Event {
        use crate::event::{FieldKind, FieldMeta, ValueType};
        use std::collections::BTreeMap;
        let mut operating_mode = FieldMeta::gauge("operating_mode", ValueType::Int);
        operating_mode.kind = FieldKind::State;
        operating_mode.labels = Some(BTreeMap::from([
            (2, "Programmed operation".to_string()),
            (3, "Comfort \"mode\"".to_string()),
        ]));
        let mut bare = FieldMeta::gauge("bare_enum", ValueType::Int);
        bare.labels = Some(BTreeMap::new());
        let status = FieldMeta::gauge("operating_status", ValueType::Int);
        let bit = FieldMeta::gauge("compressor_running", ValueType::Bool);
        let schema = Schema::new("wpm", vec![operating_mode, bare, status, bit]);
        let mut m = Metric::new("hp1", Arc::default(), at(1_000), Arc::new(schema));
        m.fields.insert("operating_mode".into(), Value::Int(mode));
        m.fields.insert("bare_enum".into(), Value::Int(4));
        m.fields.insert("operating_status".into(), Value::Int(65));
        m.fields.insert("compressor_running".into(), Value::Bool(true));
        Event::from(m)
    }

    fn encode_with(e: &Event, enum_values: EnumValues) -> String {
        let mut out = Vec::new();
        let enc = Encoder::new("heatpump_metrics", "s", Precision::Ms).with_enum_values(enum_values);
        assert!(enc.encode(e, &mut out));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn enum_fields_are_written_as_their_labels_by_default_as_hpmanager_did() {
        assert_eq!(
            line(&enum_poll(2)),
            "heatpump_metrics bare_enum=4i,compressor_running=true,operating_mode=\"Programmed operation\",\
             operating_status=65i 1000\n"
        );
        assert_eq!(line(&enum_poll(2)), encode_with(&enum_poll(2), EnumValues::Label));
        let quoted = line(&enum_poll(3));
        assert!(quoted.contains("operating_mode=\"Comfort \\\"mode\\\"\""), "{quoted}");
    }

    #[test]
    fn an_unknown_enum_code_is_written_as_hpmanager_wrote_it() {
        let l = line(&enum_poll(-7));
        assert!(l.contains(",operating_mode=\"Unknown(-7)\","), "{l}");
    }

    #[test]
    fn the_code_option_writes_enum_codes_as_integers_and_leaves_bits_as_booleans() {
        assert_eq!(
            encode_with(&enum_poll(3), EnumValues::Code),
            "heatpump_metrics bare_enum=4i,compressor_running=true,operating_mode=3i,operating_status=65i 1000\n"
        );
    }

    #[test]
    fn state_changes_keep_their_integer_encoding_whatever_the_enum_option() {
        let e = state_change(Some(Value::Int(2)), Value::Int(3), &[]);
        for option in [EnumValues::Label, EnumValues::Code] {
            assert_eq!(
                encode_with(&e, option),
                "s,field=compressor from=2i,to=3i,from_since=3.5 10000\n"
            );
        }
    }

    fn state_change(from: Option<Value>, to: Value, tags: &[(&str, &str)]) -> Event {
        let tags: Tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Event::from(StateChange {
            device: "hp1".into(),
            tags: Arc::new(tags),
            field: "compressor".into(),
            from,
            to,
            at: at(10_000),
            from_since: Some(at(6_500)),
            meta: None,
        })
    }

    #[test]
    fn a_state_change_goes_to_the_state_measurement_with_a_field_tag() {
        let e = state_change(
            Some(Value::Bool(false)),
            Value::Bool(true),
            &[("heat_pump_id", "hp1"), ("name", "Main")],
        );
        assert_eq!(
            line(&e),
            "heatpump_state_changes,field=compressor,heat_pump_id=hp1,name=Main from=0i,to=1i,from_since=3.5 10000\n"
        );
        let e = state_change(None, Value::Int(4), &[("a", "1"), ("field", "user")]);
        assert_eq!(
            line(&e),
            "heatpump_state_changes,a=1,field=compressor to=4i,from_since=3.5 10000\n"
        );
        let e = state_change(Some(Value::Text("off".into())), Value::Text("on".into()), &[]);
        assert_eq!(
            line(&e),
            "heatpump_state_changes,field=compressor from_text=\"off\",to_text=\"on\",from_since=3.5 10000\n"
        );
    }
}
