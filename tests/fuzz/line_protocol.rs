//! Line protocol of arbitrary names, tags, strings, numbers and times: what the
//! `influxdb` sink's encoder writes is read back by a parser of our own, written
//! from InfluxDB's line-protocol reference, and must give back the event, or
//! what the encoder documents for input line protocol cannot carry (a line break
//! in a name, a backslash right before a character InfluxDB unescapes, a
//! non-finite float, a key named `time`, a time outside InfluxDB's range, two
//! names that such changes made equal). A smaller set goes through a real
//! InfluxDB 1.x and comes back through its `/query` API.
//!
//! Where InfluxDB 1.x reads more than the reference says, the parser reads as
//! InfluxDB does (checked against `influxd` 1.6 and its parser's source):
//! - measurements are unescaped like field keys, so `\"` and `\=` lose their
//!   backslash there too, and field keys lose it before `"`;
//! - a line starting with `#` is a comment, and leading spaces, tabs and NULs
//!   of a line and of its field section are skipped;
//! - a tag or field named `time` is refused, as are duplicate tag keys, and a
//!   time outside −9223372036854775806 … 9223372036854775806 ns.
//!
//! Two or more backslashes right before an escapable character, or one at the
//! end of a name, are refused as ambiguous: InfluxDB's tokenizer and its
//! unescaper disagree on them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hpflow::event::{Event, Metric, Schema, StateChange, Tags, Value};
use hpflow::sinks::influxdb::{Encoder, Precision};
use proptest::prelude::*;

use super::{runner, runner_with};
use crate::support::influxd::Influxd;
use crate::support::net::{encode, http_get_any, http_post};

/// InfluxDB 1.x's range of times, in nanoseconds (its two lowest values are sentinels).
const MIN_NANOS: i128 = i64::MIN as i128 + 2;
const MAX_NANOS: i128 = i64::MAX as i128 - 1;

// ---------------------------------------------------------------------------
// The parser.

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Int(i64),
    /// The bits, so that -0.0 and 0.0 differ and the comparison is exact.
    Float(u64),
    Bool(bool),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Point {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Field>,
    /// In the precision's units.
    time: i64,
}

/// One kind of name: what a backslash escapes in it as InfluxDB 1.x reads it,
/// what ends it, and what may not appear in it unescaped.
struct Kind {
    what: &'static str,
    unescaped: &'static [u8],
    ends: &'static [u8],
    forbidden: &'static [u8],
    /// InfluxDB skips a tab or NUL at its start (the line's, or the field section's).
    leading_blank: bool,
}

const MEASUREMENT: Kind = Kind {
    what: "measurement",
    unescaped: b", \"=",
    ends: b", ",
    forbidden: b"",
    leading_blank: true,
};
const TAG_KEY: Kind = Kind {
    what: "tag key",
    unescaped: b",= ",
    ends: b"=",
    forbidden: b", ",
    leading_blank: false,
};
const TAG_VALUE: Kind = Kind {
    what: "tag value",
    unescaped: b",= ",
    ends: b", ",
    forbidden: b"=",
    leading_blank: false,
};
const FIELD_KEY: Kind = Kind {
    what: "field key",
    unescaped: b",= \"",
    ends: b"=",
    forbidden: b", ",
    leading_blank: true,
};

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.at).copied()
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {what} at byte {}", self.at))
        }
    }

    fn name(&mut self, kind: &Kind) -> Result<String, String> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(format!("the line ends inside a {}", kind.what)),
                Some(b'\\') => {
                    let run = self.buf[self.at..].iter().take_while(|&&c| c == b'\\').count();
                    match self.buf.get(self.at + run).copied() {
                        Some(c) if kind.unescaped.contains(&c) => {
                            if run > 1 {
                                return Err(format!("{run} backslashes before {:?} in a {}", c as char, kind.what));
                            }
                            out.push(c);
                            self.at += 2;
                        }
                        None | Some(b'\n') => return Err(format!("a backslash ends a {}", kind.what)),
                        Some(_) => {
                            out.extend(std::iter::repeat_n(b'\\', run));
                            self.at += run;
                        }
                    }
                }
                Some(c) if kind.ends.contains(&c) => break,
                Some(c) if kind.forbidden.contains(&c) => {
                    return Err(format!("an unescaped {:?} in a {}", c as char, kind.what))
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
        if out.is_empty() {
            return Err(format!("an empty {}", kind.what));
        }
        String::from_utf8(out).map_err(|e| format!("a {} of invalid UTF-8: {e}", kind.what))
    }

    fn field_value(&mut self) -> Result<Field, String> {
        if self.peek() == Some(b'"') {
            self.at += 1;
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    None => return Err("a string never closed".into()),
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(b'\\') if matches!(self.buf.get(self.at + 1), Some(b'\\' | b'"')) => {
                        out.push(self.buf[self.at + 1]);
                        self.at += 2;
                    }
                    Some(c) => {
                        out.push(c);
                        self.at += 1;
                    }
                }
            }
            return String::from_utf8(out)
                .map(Field::Str)
                .map_err(|e| format!("a string of invalid UTF-8: {e}"));
        }
        let start = self.at;
        while !matches!(self.peek(), None | Some(b',' | b' ' | b'\n')) {
            self.at += 1;
        }
        let token = std::str::from_utf8(&self.buf[start..self.at]).map_err(|e| e.to_string())?;
        match token {
            "t" | "T" | "true" | "True" | "TRUE" => return Ok(Field::Bool(true)),
            "f" | "F" | "false" | "False" | "FALSE" => return Ok(Field::Bool(false)),
            _ => {}
        }
        if let Some(int) = token.strip_suffix('i') {
            return int
                .parse::<i64>()
                .map(Field::Int)
                .map_err(|e| format!("integer {token:?}: {e}"));
        }
        // Only digits, a sign, a point and an exponent: Rust would also read "inf" and "NaN".
        if token.is_empty() || !token.bytes().all(|b| b"0123456789.-+eE".contains(&b)) {
            return Err(format!("no number: {token:?}"));
        }
        let f: f64 = token.parse().map_err(|e| format!("float {token:?}: {e}"))?;
        if !f.is_finite() {
            return Err(format!("a float out of range: {token:?}"));
        }
        Ok(Field::Float(f.to_bits()))
    }

    /// One line, its newline included.
    fn line(&mut self, precision: Precision) -> Result<Point, String> {
        match self.peek() {
            Some(b'#') => return Err("the line is a comment".into()),
            Some(b' ' | b'\t' | 0) => return Err("the line starts with whitespace, which is skipped".into()),
            _ => {}
        }
        let measurement = self.name(&MEASUREMENT)?;
        let mut tags = BTreeMap::new();
        while self.peek() == Some(b',') {
            self.at += 1;
            let k = self.name(&TAG_KEY)?;
            self.expect(b'=', "`=` after a tag key")?;
            let v = self.name(&TAG_VALUE)?;
            if k == "time" {
                return Err("a tag named time".into());
            }
            if tags.insert(k.clone(), v).is_some() {
                return Err(format!("tag {k:?} twice"));
            }
        }
        self.expect(b' ', "a space before the fields")?;
        if matches!(self.peek(), Some(b' ' | b'\t' | 0)) {
            return Err("the fields start with whitespace, which is skipped".into());
        }
        let mut fields = BTreeMap::new();
        loop {
            let k = self.name(&FIELD_KEY)?;
            self.expect(b'=', "`=` after a field key")?;
            let v = self.field_value()?;
            if k == "time" {
                return Err("a field named time".into());
            }
            if fields.insert(k.clone(), v).is_some() {
                return Err(format!("field {k:?} twice"));
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                _ => break,
            }
        }
        self.expect(b' ', "a space before the time")?;
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.buf[start..self.at]).unwrap_or_default();
        let time: i64 = text.parse().map_err(|e| format!("time {text:?}: {e}"))?;
        let nanos = i128::from(time) * precision.nanos();
        if !(MIN_NANOS..=MAX_NANOS).contains(&nanos) {
            return Err(format!("time {time} is outside InfluxDB's range"));
        }
        self.expect(b'\n', "the end of the line")?;
        Ok(Point {
            measurement,
            tags,
            fields,
            time,
        })
    }
}

fn parse(buf: &[u8], precision: Precision) -> Result<Vec<Point>, String> {
    let mut r = Reader { buf, at: 0 };
    let mut points = Vec::new();
    while r.at < buf.len() {
        let start = r.at;
        let p = r
            .line(precision)
            .map_err(|e| format!("{e} in {:?}", String::from_utf8_lossy(&buf[start..])))?;
        points.push(p);
    }
    Ok(points)
}

// ---------------------------------------------------------------------------
// What the encoder documents.

/// A name as the encoder writes it (see its module documentation): line breaks
/// (and a measurement's or field key's leading tab or NUL) become spaces, and a
/// run of backslashes right before a character InfluxDB unescapes in this kind
/// of name, or at its end, is left out.
fn written(name: &str, kind: &Kind) -> String {
    let mut chars: Vec<char> = name
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if kind.leading_blank && matches!(chars.first(), Some('\t' | '\0')) {
        chars[0] = ' ';
    }
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            let end = (i..chars.len()).find(|&j| chars[j] != '\\').unwrap_or(chars.len());
            let escapes_next = chars
                .get(end)
                .is_some_and(|&c| c.is_ascii() && kind.unescaped.contains(&(c as u8)));
            if !escapes_next && end < chars.len() {
                out.extend(&chars[i..end]);
            }
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Whether the sink refuses a measurement name (its configuration check): it
/// must be, exactly when line protocol cannot carry it.
fn refused_measurement(name: &str) -> bool {
    let cannot = name.starts_with('#') || name.contains(['\n', '\r']) || written(name, &MEASUREMENT).is_empty();
    let refused = Encoder::check_measurement(name).is_err();
    assert_eq!(refused, cannot, "{name:?}");
    refused
}

fn nanos_of(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn time_of(nanos: i128) -> SystemTime {
    let d = Duration::new(
        (nanos.unsigned_abs() / 1_000_000_000) as u64,
        (nanos.unsigned_abs() % 1_000_000_000) as u32,
    );
    if nanos >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

/// The time in the precision's units, if InfluxDB can store it.
fn expected_time(t: SystemTime, precision: Precision) -> Option<i64> {
    let units = nanos_of(t).div_euclid(precision.nanos());
    (MIN_NANOS..=MAX_NANOS)
        .contains(&(units * precision.nanos()))
        .then_some(units as i64)
}

fn field_of(v: &Value) -> Option<Field> {
    Some(match v {
        Value::Int(i) => Field::Int(*i),
        Value::Float(f) if f.is_finite() => Field::Float(f.to_bits()),
        Value::Float(_) => return None,
        Value::Bool(b) => Field::Bool(*b),
        Value::Text(s) => Field::Str(s.to_string()),
    })
}

/// Adds a tag unless it cannot be written or its key is taken (the first one wins).
fn add_tag(tags: &mut BTreeMap<String, String>, k: &str, v: &str) {
    let (k, v) = (written(k, &TAG_KEY), written(v, &TAG_VALUE));
    if !k.is_empty() && !v.is_empty() && k != "time" && !tags.contains_key(&k) {
        tags.insert(k, v);
    }
}

fn add_field(fields: &mut BTreeMap<String, Field>, k: &str, v: &Value) {
    let Some(v) = field_of(v) else { return };
    let k = written(k, &FIELD_KEY);
    if !k.is_empty() && k != "time" && !fields.contains_key(&k) {
        fields.insert(k, v);
    }
}

/// The point the encoder documents for `e`, or `None` when it writes nothing.
fn expected(e: &Event, measurement: &str, state_measurement: &str, precision: Precision) -> Option<Point> {
    let (m, tags, fields, at) = match e {
        Event::Metric(m) => {
            let mut tags = BTreeMap::new();
            for (k, v) in m.tags.iter() {
                add_tag(&mut tags, k, v);
            }
            let mut fields = BTreeMap::new();
            for (k, v) in &m.fields {
                add_field(&mut fields, k, v);
            }
            (measurement, tags, fields, m.time)
        }
        Event::StateChange(s) => {
            let mut tags = BTreeMap::new();
            let mut ours = false;
            for (k, v) in s.tags.iter() {
                if k == "field" {
                    continue;
                }
                if !ours && k.as_str() > "field" {
                    add_tag(&mut tags, "field", &s.field);
                    ours = true;
                }
                add_tag(&mut tags, k, v);
            }
            if !ours {
                add_tag(&mut tags, "field", &s.field);
            }
            let mut fields = BTreeMap::new();
            let mut state = |name: &str, v: &Value| match v {
                Value::Int(_) => add_field(&mut fields, name, v),
                Value::Bool(b) => add_field(&mut fields, name, &Value::Int(i64::from(*b))),
                Value::Float(_) => add_field(&mut fields, &format!("{name}_float"), v),
                Value::Text(_) => add_field(&mut fields, &format!("{name}_text"), v),
            };
            if let Some(from) = &s.from {
                state("from", from);
            }
            state("to", &s.to);
            if let Some(Ok(d)) = s.from_since.map(|since| s.at.duration_since(since)) {
                add_field(&mut fields, "from_since", &Value::Float(d.as_millis() as f64 / 1000.0));
            }
            (state_measurement, tags, fields, s.at)
        }
    };
    if fields.is_empty() {
        return None;
    }
    Some(Point {
        measurement: written(m, &MEASUREMENT),
        tags,
        fields,
        time: expected_time(at, precision)?,
    })
}

// ---------------------------------------------------------------------------
// Generators.

/// Names and texts full of what line protocol must escape or cannot carry.
fn name() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '"', '\\', ',', ' ', '=', '\n', '\r', '\t', '\0', '#', 'ä', '✓', '\u{2028}', '😀', '\u{7f}',
    ]);
    let c = prop_oneof![4 => special, 3 => prop::char::range('a', 'c'), 1 => any::<char>()];
    prop_oneof![
        1 => prop::sample::select(vec!["time", "time\\", "time\n", "field", "field\\", "", "\\", "#x", "\tx", "a\\", "a\n", "a "])
            .prop_map(String::from),
        8 => prop::collection::vec(c, 0..8).prop_map(|v| v.into_iter().collect()),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let int = prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -3i64..3];
    let float = prop_oneof![
        4 => any::<f64>(),
        1 => prop::sample::select(vec![
            f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, -0.0, 0.0, f64::EPSILON, 1e21, 1e-7, 0.1, 21.0,
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY,
        ]),
    ];
    prop_oneof![
        int.prop_map(Value::Int),
        float.prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![name(), ".{0,40}"].prop_map(|s| Value::Text(s.into())),
    ]
}

fn time() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        3 => 1_600_000_000_000_000_000i128..1_900_000_000_000_000_000,
        2 => any::<i64>().prop_map(i128::from),
        1 => (-3i128..3).prop_map(|d| MIN_NANOS + d),
        1 => (-3i128..3).prop_map(|d| MAX_NANOS + d),
        1 => -(1i128 << 70)..(1i128 << 70),
    ]
    .prop_map(time_of)
}

fn precision() -> impl Strategy<Value = Precision> {
    prop::sample::select(vec![Precision::Ns, Precision::Us, Precision::Ms, Precision::S])
}

fn tags() -> impl Strategy<Value = Tags> {
    prop::collection::btree_map(name(), name(), 0..5)
}

fn metric() -> impl Strategy<Value = Event> {
    (tags(), prop::collection::vec((name(), value()), 0..6), time()).prop_map(|(tags, fields, t)| {
        let mut m = Metric::new("hp", Arc::new(tags), t, Arc::new(Schema::default()));
        for (k, v) in fields {
            m.fields.insert(k.into(), v);
        }
        Event::from(m)
    })
}

fn state_change() -> impl Strategy<Value = Event> {
    (
        tags(),
        name(),
        proptest::option::of(value()),
        value(),
        time(),
        proptest::option::of(time()),
    )
        .prop_map(|(tags, field, from, to, at, from_since)| {
            Event::from(StateChange {
                device: "hp".into(),
                tags: Arc::new(tags),
                field: field.into(),
                from,
                to,
                at,
                from_since,
                meta: None,
            })
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![3 => metric(), 1 => state_change()]
}

// ---------------------------------------------------------------------------
// The properties.

#[test]
fn line_protocol_of_any_names_values_and_times_parses_back_to_the_event() {
    let (cases, lines, skipped, refused) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let input = (name(), name(), precision(), prop::collection::vec(event(), 1..5));
    runner()
        .run(&input, |(measurement, state_measurement, precision, events)| {
            cases.fetch_add(1, Ordering::Relaxed);
            // A name the configuration refuses never reaches an encoder.
            let usable = |name: String, default: &str| {
                if refused_measurement(&name) {
                    refused.fetch_add(1, Ordering::Relaxed);
                    default.to_string()
                } else {
                    name
                }
            };
            let measurement = usable(measurement, "heatpump_metrics");
            let state_measurement = usable(state_measurement, "heatpump_state_changes");
            let encoder = Encoder::new(&measurement, &state_measurement, precision);
            let mut out = Vec::new();
            let mut want = Vec::new();
            for e in &events {
                let expect = expected(e, &measurement, &state_measurement, precision);
                let before = out.len();
                let written = encoder.encode(e, &mut out);
                prop_assert_eq!(written, expect.is_some(), "encode of {:?}", e);
                if !written {
                    prop_assert_eq!(out.len(), before, "a refused event leaves nothing behind");
                    skipped.fetch_add(1, Ordering::Relaxed);
                }
                want.extend(expect);
            }
            let got = parse(&out, precision).map_err(|e| TestCaseError::fail(format!("{e}\nfrom {events:?}")))?;
            prop_assert_eq!(&got, &want, "{}", String::from_utf8_lossy(&out));
            lines.fetch_add(got.len(), Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "line protocol: {} cases, {} lines parsed back equal, {} events written as nothing \
         (no field or time out of range), {} measurement names refused by the configuration check",
        cases.load(Ordering::Relaxed),
        lines.load(Ordering::Relaxed),
        skipped.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    assert!(
        lines.load(Ordering::Relaxed) > super::CASES as usize,
        "most cases write lines"
    );
}

/// InfluxDB's answer to one statement, its values kept as the JSON text it sent,
/// so that floats are read by Rust's exact parser.
#[derive(serde::Deserialize)]
struct Answer {
    results: Vec<Statement>,
}

#[derive(serde::Deserialize)]
struct Statement {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Series {
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    columns: Vec<String>,
    values: Vec<Vec<Box<serde_json::value::RawValue>>>,
}

/// What InfluxDB answered for one point, as the parser's `Point` (times in ns).
fn read_back(select: &Statement, field_keys: &Statement) -> Result<Point, String> {
    let [s] = &select.series[..] else {
        return Err(format!("{} series", select.series.len()));
    };
    let [row] = &s.values[..] else {
        return Err(format!("{} rows", s.values.len()));
    };
    let types: BTreeMap<String, String> = field_keys
        .series
        .iter()
        .flat_map(|s| s.values.iter())
        .map(|r| {
            let text = |v: &serde_json::value::RawValue| serde_json::from_str::<String>(v.get()).unwrap();
            (text(&r[0]), text(&r[1]))
        })
        .collect();
    let mut fields = BTreeMap::new();
    for (column, raw) in s.columns.iter().zip(row).skip(1) {
        let raw = raw.get();
        if raw == "null" {
            continue;
        }
        let v = match types.get(column).map(String::as_str) {
            Some("integer") => Field::Int(raw.parse().map_err(|e| format!("{column}: {raw}: {e}"))?),
            Some("float") => Field::Float(
                raw.parse::<f64>()
                    .map_err(|e| format!("{column}: {raw}: {e}"))?
                    .to_bits(),
            ),
            Some("boolean") => Field::Bool(raw == "true"),
            Some("string") => Field::Str(serde_json::from_str(raw).map_err(|e| e.to_string())?),
            other => return Err(format!("field {column:?} of type {other:?}")),
        };
        fields.insert(column.clone(), v);
    }
    Ok(Point {
        measurement: s.name.clone(),
        tags: s
            .tags
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        fields,
        time: row[0]
            .get()
            .parse()
            .map_err(|e| format!("time {}: {e}", row[0].get()))?,
    })
}

/// Times mostly within two weeks (a few shards), some at InfluxDB's limits and beyond.
fn db_time() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        8 => 1_704_067_200_000_000_000i128..1_705_276_800_000_000_000,
        1 => prop::sample::select(vec![MIN_NANOS, MIN_NANOS - 1, MAX_NANOS, MAX_NANOS + 1, 0, -1]),
        1 => any::<i64>().prop_map(i128::from),
    ]
    .prop_map(time_of)
}

#[test]
fn line_protocol_points_come_back_equal_from_a_real_influxdb() {
    const BATCHES: u32 = 4;
    const POINTS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(&dir.path().join("influxd"));
    influxd.query("fuzz", "CREATE DATABASE fuzz");
    let (batches, written, skipped) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    let event = prop_oneof![
        3 => (tags(), prop::collection::vec((name(), value()), 0..6), db_time()).prop_map(|(tags, fields, t)| {
            let mut m = Metric::new("hp", Arc::new(tags), t, Arc::new(Schema::default()));
            for (k, v) in fields {
                m.fields.insert(k.into(), v);
            }
            Event::from(m)
        }),
        1 => (tags(), name(), value(), value(), db_time()).prop_map(|(tags, field, from, to, at)| {
            Event::from(StateChange {
                device: "hp".into(),
                tags: Arc::new(tags),
                field: field.into(),
                from: Some(from),
                to,
                at,
                from_since: Some(at - Duration::from_millis(1500)),
                meta: None,
            })
        }),
    ];
    let input = (precision(), prop::collection::vec((name(), event), POINTS..=POINTS));
    runner_with(BATCHES)
        .run(&input, |(precision, points)| {
            let batch = batches.fetch_add(1, Ordering::Relaxed);
            // Each point has a measurement of its own (so fields of one name may
            // differ in type), named arbitrarily but ending in a unique suffix.
            let mut body = Vec::new();
            let mut want = Vec::new();
            for (i, (name, e)) in points.iter().enumerate() {
                let name = if refused_measurement(name) { "m" } else { name.as_str() };
                let measurement = format!("{name}_p{batch}x{i}");
                let encoder = Encoder::new(&measurement, &measurement, precision);
                let expect = expected(e, &measurement, &measurement, precision);
                prop_assert_eq!(encoder.encode(e, &mut body), expect.is_some());
                want.push(expect);
            }
            let lines: Vec<Point> = want.iter().flatten().cloned().collect();
            prop_assert_eq!(&parse(&body, precision).map_err(TestCaseError::fail)?, &lines);
            let p = match precision {
                Precision::Ns => "n",
                Precision::Us => "u",
                Precision::Ms => "ms",
                Precision::S => "s",
            };
            let (status, answer) = http_post(influxd.port, &format!("/write?db=fuzz&precision={p}"), &body);
            prop_assert_eq!(status, 204, "InfluxDB takes every line: {}", answer);
            let queries: String = (0..POINTS)
                .map(|i| format!("SELECT * FROM /_p{batch}x{i}$/ GROUP BY *; SHOW FIELD KEYS FROM /_p{batch}x{i}$/;"))
                .collect();
            let path = format!("/query?db=fuzz&epoch=ns&q={}", encode(&queries));
            let (status, json) = http_get_any(influxd.port, &path).expect("influxd answers");
            prop_assert_eq!(status, 200, "{}", json);
            let answer: Answer =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(answer.results.len(), 2 * POINTS);
            for (i, expect) in want.iter().enumerate() {
                let (select, keys) = (&answer.results[2 * i], &answer.results[2 * i + 1]);
                prop_assert!(select.error.is_none() && keys.error.is_none(), "{:?}", select.error);
                match expect {
                    None => {
                        prop_assert!(select.series.is_empty(), "point {} was not to be written", i);
                        skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(p) => {
                        let got =
                            read_back(select, keys).map_err(|e| TestCaseError::fail(format!("point {i}: {e}")))?;
                        let mut p = p.clone();
                        p.time = (i128::from(p.time) * precision.nanos()) as i64;
                        prop_assert_eq!(got, p, "point {} of {:?}", i, points[i].1);
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let count = influxd.query("fuzz", "SHOW MEASUREMENTS");
    let measurements = count["results"][0]["series"][0]["values"]
        .as_array()
        .map_or(0, Vec::len);
    eprintln!(
        "line protocol through InfluxDB 1.x: {} batches, {} points read back equal, {} not written \
         (no field or time out of range)",
        batches.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
        skipped.load(Ordering::Relaxed)
    );
    assert_eq!(measurements, written.load(Ordering::Relaxed), "nothing else arrived");
    assert_eq!(
        written.load(Ordering::Relaxed) + skipped.load(Ordering::Relaxed),
        BATCHES as usize * POINTS
    );
}
