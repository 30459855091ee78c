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
//! - a tab or NUL at the start of a measurement or field key would be skipped as
//!   whitespace by InfluxDB 1.x, so it becomes a space too;
//! - a backslash is written as is, except one (or a run) right before a character
//!   that InfluxDB 1.x unescapes there, or at the very end: that would escape the
//!   delimiter after it and InfluxDB 1.x has no way to write it, so it is left out.
//!   Its reader unescapes more than it asks to be escaped: besides the escaped
//!   characters, `"` in measurements and field keys and `=` in measurements.
//!
//! A tag or field whose key comes out as `time` is left out: InfluxDB rejects the
//! whole point. So is a tag or field whose key comes out equal to one already in the
//! line (two names that a line break or a left-out backslash made equal; the first
//! one, in key order, stays): InfluxDB refuses duplicate tags and keeps only one field.
//!
//! An event whose time InfluxDB cannot store (before 1677-09-21 00:12:43.145224194
//! or after 2262-04-11 23:47:16.854775806 UTC, at the configured precision) is
//! written as nothing, like one without fields; the sink counts both as skipped.
//! [`Encoder::check_measurement`] says which measurement names cannot be written.

use std::io::Write as _;
use std::ops::Range;
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

/// How InfluxDB 1.x reads one kind of name.
#[derive(Debug)]
struct Ident {
    /// Written with a backslash before them.
    escaped: &'static [u8],
    /// Read as escaped after a backslash: `escaped` and more.
    unescaped: &'static [u8],
    /// A tab or NUL at its start is skipped as whitespace.
    leading_blank: bool,
    /// The bytes that need a look (`unescaped`, backslash, line breaks), by
    /// value: most names have none and are copied as they are.
    special: [bool; 256],
}

const fn special(unescaped: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < unescaped.len() {
        table[unescaped[i] as usize] = true;
        i += 1;
    }
    table[b'\\' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table
}

const MEASUREMENT: Ident = Ident {
    escaped: b", ",
    unescaped: b", \"=",
    leading_blank: true,
    special: special(b", \"="),
};
const TAG: Ident = Ident {
    escaped: b",= ",
    unescaped: b",= ",
    leading_blank: false,
    special: special(b",= "),
};
const FIELD_KEY: Ident = Ident {
    escaped: b",= ",
    unescaped: b",= \"",
    leading_blank: true,
    special: special(b",= \""),
};

/// InfluxDB's range of times in nanoseconds; it keeps the two lowest values for itself.
const MIN_NANOS: i128 = i64::MIN as i128 + 2;
const MAX_NANOS: i128 = i64::MAX as i128 - 1;

/// The keys of one line's tag or field section written so far.
struct Keys {
    /// Where the section starts in the output.
    start: usize,
    /// A key came out changed (a line break, a left-out backslash, a leading
    /// blank): from then on two keys may come out equal, so each is checked.
    changed: bool,
    fields: bool,
}

impl Encoder {
    /// An encoder writing enum fields as their labels; see [`Encoder::with_enum_values`].
    pub fn new(measurement: &str, state_measurement: &str, precision: Precision) -> Self {
        let mut m = Vec::new();
        write_ident(&mut m, measurement, &MEASUREMENT);
        let mut s = Vec::new();
        write_ident(&mut s, state_measurement, &MEASUREMENT);
        Encoder {
            measurement: m,
            state_measurement: s,
            precision,
            enum_values: EnumValues::default(),
        }
    }

    /// Why a measurement name cannot be written, if it cannot: the pipeline's
    /// check of the `measurement` and `state_measurement` keys.
    pub fn check_measurement(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.starts_with('#') {
            return Err("must not start with `#` (line protocol reads it as a comment)");
        }
        if name.contains(['\n', '\r']) {
            return Err("must not contain a line break");
        }
        let mut out = Vec::new();
        write_ident(&mut out, name, &MEASUREMENT);
        if out.is_empty() {
            return Err("must not be made of backslashes only (line protocol cannot write them)");
        }
        Ok(())
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
        let Some(time) = self.timestamp(m.time) else {
            return false;
        };
        out.extend_from_slice(&self.measurement);
        let mut tags = Keys::new(out, false);
        for (k, v) in m.tags.iter() {
            write_tag(out, k, v, &mut tags);
        }
        out.push(b' ');
        let mut fields = Keys::new(out, true);
        for (k, v) in &m.fields {
            // Enums are never scaled, so their codes are always `Int`: the schema
            // lookup is only paid for integer fields.
            if let (EnumValues::Label, Value::Int(code)) = (self.enum_values, v) {
                let labels = m.meta(k).and_then(|f| f.labels.as_ref()).filter(|l| !l.is_empty());
                if let Some(labels) = labels {
                    if write_key(out, k, &mut fields) {
                        match labels.get(code) {
                            Some(label) => write_string(out, label),
                            None => write_string(out, &format!("Unknown({code})")),
                        }
                    }
                    continue;
                }
            }
            write_field(out, k, v, &mut fields);
        }
        if out.len() == fields.start {
            return false;
        }
        write_time(out, time);
        true
    }

    fn encode_state_change(&self, s: &StateChange, out: &mut Vec<u8>) -> bool {
        let Some(time) = self.timestamp(s.at) else {
            return false;
        };
        out.extend_from_slice(&self.state_measurement);
        // Tags stay sorted by key (InfluxDB's preferred order); ours wins over a user tag `field`.
        let mut tags = Keys::new(out, false);
        let mut field_written = false;
        for (k, v) in s.tags.iter() {
            if k.as_str() == "field" {
                continue;
            }
            if !field_written && k.as_str() > "field" {
                write_tag(out, "field", &s.field, &mut tags);
                field_written = true;
            }
            write_tag(out, k, v, &mut tags);
        }
        if !field_written {
            write_tag(out, "field", &s.field, &mut tags);
        }
        out.push(b' ');
        let mut fields = Keys::new(out, true);
        // One measurement holds the changes of every state field, and InfluxDB fixes a
        // field's type per measurement: so the field name carries the type. Integers and
        // bools (as 0/1, by type, never by value) share `from`/`to`, so bool states
        // and enum codes can live side by side.
        if let Some(from) = &s.from {
            write_state_value(out, "from", from, &mut fields);
        }
        write_state_value(out, "to", &s.to, &mut fields);
        if let Some(since) = s.from_since {
            if let Ok(d) = s.at.duration_since(since) {
                let secs = d.as_millis() as f64 / 1000.0;
                write_field(out, "from_since", &Value::Float(secs), &mut fields);
            }
        }
        if out.len() == fields.start {
            return false;
        }
        write_time(out, time);
        true
    }

    /// The time at the precision, if InfluxDB can store it.
    fn timestamp(&self, t: SystemTime) -> Option<i64> {
        let units = timestamp(t, self.precision);
        (MIN_NANOS..=MAX_NANOS)
            .contains(&(i128::from(units) * self.precision.nanos()))
            .then_some(units)
    }
}

fn write_time(out: &mut Vec<u8>, time: i64) {
    out.push(b' ');
    write_int(out, time);
    out.push(b'\n');
}

fn nanos(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The time as an integer count of `precision` units since the Unix epoch
/// (negative before it, rounded towards the past).
pub fn timestamp(t: SystemTime, precision: Precision) -> i64 {
    let v = nanos(t).div_euclid(precision.nanos());
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn write_state_value(out: &mut Vec<u8>, name: &str, v: &Value, fields: &mut Keys) {
    match v {
        Value::Int(_) => write_field(out, name, v, fields),
        Value::Bool(b) => write_field(out, name, &Value::Int(i64::from(*b)), fields),
        Value::Float(_) => write_field(out, &format!("{name}_float"), v, fields),
        Value::Text(_) => write_field(out, &format!("{name}_text"), v, fields),
    }
}

fn write_tag(out: &mut Vec<u8>, k: &str, v: &str, tags: &mut Keys) {
    if k.is_empty() || v.is_empty() {
        return;
    }
    let start = out.len();
    out.push(b',');
    let changed = write_ident(out, k, &TAG);
    let key = start + 1..out.len();
    out.push(b'=');
    let value_start = out.len();
    write_ident(out, v, &TAG);
    // A key or value made only of left-out backslashes ends up empty.
    if out.len() == value_start || !tags.admit(out, key, changed) {
        out.truncate(start);
    }
}

fn write_field(out: &mut Vec<u8>, k: &str, v: &Value, fields: &mut Keys) {
    if let Value::Float(f) = v {
        if !f.is_finite() {
            return;
        }
    }
    if !write_key(out, k, fields) {
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
fn write_key(out: &mut Vec<u8>, k: &str, fields: &mut Keys) -> bool {
    if k.is_empty() {
        return false;
    }
    let start = out.len();
    if start > fields.start {
        out.push(b',');
    }
    let key_start = out.len();
    let changed = write_ident(out, k, &FIELD_KEY);
    if !fields.admit(out, key_start..out.len(), changed) {
        out.truncate(start);
        return false;
    }
    out.push(b'=');
    true
}

impl Keys {
    fn new(out: &[u8], fields: bool) -> Self {
        Keys {
            start: out.len(),
            changed: false,
            fields,
        }
    }

    /// Whether the key just written at `key` may stay: not empty, not `time`, and
    /// not one already in the section.
    fn admit(&mut self, out: &[u8], key: Range<usize>, changed: bool) -> bool {
        let k = &out[key.clone()];
        if k.is_empty() || k == b"time" {
            return false;
        }
        self.changed |= changed;
        !self.changed || !section_keys(&out[self.start..key.start], self.fields).any(|seen| seen == k)
    }
}

/// The keys of a tag section (`,k=v,k=v`) or a field section (`k=v,k=v`) as this
/// encoder writes them: a delimiter after a backslash is escaped (a run of
/// backslashes is never written before one), and a string value is skipped whole.
fn section_keys(section: &[u8], fields: bool) -> impl Iterator<Item = &[u8]> {
    let unescaped = move |i: usize, c: u8| section[i] == c && (i == 0 || section[i - 1] != b'\\');
    let mut i = usize::from(!fields);
    std::iter::from_fn(move || {
        if i >= section.len() {
            return None;
        }
        let start = i;
        while i < section.len() && !unescaped(i, b'=') {
            i += 1;
        }
        let key = &section[start..i];
        i += 1;
        if fields && section.get(i) == Some(&b'"') {
            i += 1;
            while i < section.len() && section[i] != b'"' {
                i += if section[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            while i < section.len() && !unescaped(i, b',') {
                i += 1;
            }
        }
        i += 1;
        Some(key)
    })
}

/// Writes a float so that it parses back as the same float and as a float, byte
/// for byte as Rust's `Debug` writes it (what this encoder always wrote): the
/// shortest decimal that reads back as the same float, with a `.` (`21.0`) or,
/// below 1e-4 and from 1e16 on, an exponent (`1e-7`, `1.5e300`).
///
/// Register readings take a short way around `core::fmt`, which cost more than
/// the rest of a line together. Everything else goes through `Debug` itself: Ryu
/// (the `ryu` crate) would be faster but breaks exact ties the other way
/// (724536712681840.25 is `…840.2` there, `…840.3` in `Debug`).
fn write_float(out: &mut Vec<u8>, f: f64) {
    if !write_short_decimal(out, f) {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{f:?}");
    }
}

/// The scales a register reading takes: most floats are n / 10^d (the `scale`
/// transform rounds them to their register's decimals), with d = 1, 2 or 3.
const DECIMAL_SCALES: [f64; 3] = [10.0, 100.0, 1000.0];

/// Writes `f` if it is n / 10^d for one of [`DECIMAL_SCALES`] and |n| < 10^14, as
/// `Debug` would; false (nothing written) otherwise.
///
/// Why the digits of n are the shortest round-trip form: `n as f64 / 10^d` is the
/// correctly rounded n / 10^d (both are exact), so if it equals `f` the decimal
/// x = n / 10^d reads back as `f` (x is never a tie: a dyadic x that small is
/// itself a float). Say |x| has k ≤ 14 significant digits, the last at 10^q.
/// Another decimal that reads back as `f` lies within one ulp of x, less than
/// 10^(k+q) × 2^-52 < 10^(q-1); another decimal of at most k digits is at least
/// 10^(q-1) away from x: with its last digit at 10^q or above it is another
/// multiple of 10^q, with it below it is at most (10^k - 1) × 10^(q-1), which is
/// 10^(q-1) short of 10^(k-1+q) ≤ |x|. So x is the only shortest one, and `Debug`
/// writes it without an exponent since 1e-4 < |x| < 1e16.
fn write_short_decimal(out: &mut Vec<u8>, f: f64) -> bool {
    for (d, scale) in DECIMAL_SCALES.iter().enumerate() {
        let y = f * scale;
        if y.abs() >= 1e14 {
            return false;
        }
        // Any integer near y will do as n: the check decides.
        let n = (y + 0.5f64.copysign(y)) as i64;
        if n as f64 / scale != f {
            continue;
        }
        if f.is_sign_negative() {
            out.push(b'-');
        }
        let decimals = d + 1;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n.unsigned_abs()).as_bytes();
        let point = digits.len().saturating_sub(decimals);
        out.extend_from_slice(if point == 0 { b"0" } else { &digits[..point] });
        out.push(b'.');
        let mut fraction = [b'0'; DECIMAL_SCALES.len()];
        fraction[decimals - (digits.len() - point)..decimals].copy_from_slice(&digits[point..]);
        // Trailing zeros go, but one digit stays after the point: `21.0`.
        let keep = fraction[..decimals]
            .iter()
            .rposition(|&c| c != b'0')
            .map_or(1, |p| p + 1);
        out.extend_from_slice(&fraction[..keep]);
        return true;
    }
    false
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
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
/// Returns whether the name came out changed (beyond its escapes).
fn write_ident(out: &mut Vec<u8>, s: &str, ident: &Ident) -> bool {
    let bytes = s.as_bytes();
    let unescaped = |b: u8| ident.unescaped.contains(&b) || b == b'\n' || b == b'\r';
    let blank_start = ident.leading_blank && matches!(bytes.first(), Some(b'\t' | 0));
    if !blank_start && !bytes.iter().any(|&b| ident.special[usize::from(b)]) {
        out.extend_from_slice(bytes);
        return false;
    }
    let mut changed = false;
    let mut i = 0;
    if blank_start {
        out.extend_from_slice(b"\\ ");
        changed = true;
        i = 1;
    }
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            let run_end = bytes[i..]
                .iter()
                .position(|&c| c != b'\\')
                .map_or(bytes.len(), |p| i + p);
            let next = bytes.get(run_end).copied();
            if next.is_some_and(|n| !unescaped(n)) {
                out.extend_from_slice(&bytes[i..run_end]);
            } else {
                changed = true;
            }
            i = run_end;
            continue;
        }
        if b == b'\n' || b == b'\r' {
            out.extend_from_slice(b"\\ ");
            changed = true;
        } else {
            if ident.escaped.contains(&b) {
                out.push(b'\\');
            }
            out.push(b);
        }
        i += 1;
    }
    changed
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

    fn ident(s: &str, kind: &Ident) -> String {
        let mut out = Vec::new();
        write_ident(&mut out, s, kind);
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

    fn assert_debug(f: f64, out: &mut Vec<u8>) {
        out.clear();
        write_float(out, f);
        let want = format!("{f:?}");
        assert_eq!(std::str::from_utf8(out).unwrap(), want, "bits {:#018x}", f.to_bits());
    }

    #[test]
    fn floats_are_written_byte_for_byte_as_debug_writes_them() {
        let mut out = Vec::new();
        let mut edges = vec![
            0.0,
            -0.0,
            1e-4,
            -1e-4,
            1e-5,
            9.999e-5,
            1e16,
            9.999999999999998e15,
            1e15,
            99999999999999.9,
            9999999999999.9,
            0.001,
            0.0015,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            5e-324,
            9007199254740992.0,
            9007199254740993.0,
            0.1 + 0.2,
            1.0 / 3.0,
            123456789.125,
        ];
        for e in (-330..=310).map(|e| 10f64.powi(e)) {
            edges.extend([e, -e, e.next_up(), e.next_down(), 2.5 * e, 1.5 * e]);
        }
        for f in edges.into_iter().filter(|f| f.is_finite()) {
            assert_debug(f, &mut out);
        }
        let mut rng = fastrand::Rng::with_seed(0x1f1f_2026_1207_0016);
        // Any bit pattern: every exponent, subnormals, huge and tiny values.
        for _ in 0..300_000 {
            let f = f64::from_bits(rng.u64(..));
            if f.is_finite() {
                assert_debug(f, &mut out);
            }
        }
        // Everyday magnitudes, 1e-6 to 1e17, with random mantissas.
        for _ in 0..300_000 {
            let bits = (rng.u64(1003..1080) << 52) | rng.u64(..1 << 52);
            let f = f64::from_bits(bits | (u64::from(rng.bool()) << 63));
            assert_debug(f, &mut out);
        }
        // Register readings n / 10^d (the fast path and its edges: more decimals
        // than it takes, |n| near 10^14, neighbours one ulp away).
        for _ in 0..300_000 {
            let d = rng.i32(0..=5);
            let n = match rng.u8(0..4) {
                0 => rng.i64(-2000..=2000),
                1 => rng.i64(-1_000_000_000..=1_000_000_000),
                2 => rng.i64(99_999_999_999_000..=100_000_000_001_000),
                _ => rng.i64(-(1 << 53)..=1 << 53),
            };
            let f = n as f64 / 10f64.powi(d);
            for g in [f, f.next_up(), f.next_down(), -f] {
                assert_debug(g, &mut out);
            }
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
        assert_eq!(ident("a\nb\r\nc", &TAG), "a\\ b\\ \\ c");
    }

    #[test]
    fn backslashes_stay_unless_they_would_escape_a_delimiter() {
        assert_eq!(ident("a\\b", &TAG), "a\\b");
        assert_eq!(ident("a\\\\b", &TAG), "a\\\\b");
        assert_eq!(ident("C:\\", &TAG), "C:");
        assert_eq!(ident("a\\\\", &TAG), "a");
        assert_eq!(ident("a\\,b", &TAG), "a\\,b");
        assert_eq!(ident("a\\ b", &TAG), "a\\ b");
        assert_eq!(ident("a\\\"b", &TAG), "a\\\"b");
    }

    // Regression cases of the line-protocol property test (tests/fuzz/line_protocol.rs),
    // each a line InfluxDB 1.x read differently from what the event said.

    #[test]
    fn a_backslash_before_a_quote_or_equals_sign_in_a_measurement_or_field_key_is_left_out() {
        // InfluxDB 1.x read `m\=x` as the measurement `m=x`, `f\"k` as the field `f"k`.
        assert_eq!(ident("a\\=b", &MEASUREMENT), "a=b");
        assert_eq!(ident("a\\\\\"b", &MEASUREMENT), "a\"b");
        assert_eq!(ident("a\\\"b", &FIELD_KEY), "a\"b");
        assert_eq!(ident("a\\=b", &FIELD_KEY), "a\\=b");
    }

    #[test]
    fn a_leading_tab_or_nul_of_a_measurement_or_field_key_becomes_a_space() {
        // InfluxDB 1.x skipped them as whitespace: `\tm` arrived as the measurement `m`.
        let e = metric(&[("\tk", "\tv")], vec![("\tf", Value::Int(1)), ("\0g", Value::Int(2))]);
        let mut out = Vec::new();
        assert!(Encoder::new("\tm", "s", Precision::S).encode(&e, &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\\ m,\tk=\tv \\ g=2i,\\ f=1i 1700000000\n"
        );
    }

    #[test]
    fn a_key_that_comes_out_as_time_is_left_out() {
        // `time\` lost its backslash and arrived as `time`, which InfluxDB refuses.
        let e = metric(
            &[("time\\", "x")],
            vec![("time\\", Value::Int(1)), ("v", Value::Int(2))],
        );
        assert_eq!(line(&e), "heatpump_metrics v=2i 1700000000123\n");
    }

    #[test]
    fn keys_that_come_out_equal_are_written_once_the_first_in_key_order() {
        // `a\n` and `a ` both came out as `a\ `: InfluxDB refused the duplicate tag,
        // and kept one of the two fields.
        let e = metric(
            &[("a\n", "1"), ("a ", "2"), ("b", "3"), ("b\\", "4")],
            vec![
                ("x\r", Value::Text("a,b=\"c\"".into())),
                ("x ", Value::Int(2)),
                ("y", Value::Int(3)),
                ("y\\", Value::Int(4)),
            ],
        );
        assert_eq!(
            line(&e),
            "heatpump_metrics,a\\ =1,b=3 x\\ =\"a,b=\\\"c\\\"\",y=3i 1700000000123\n"
        );
        let e = state_change(None, Value::Int(1), &[("field\\", "user")]);
        assert_eq!(
            line(&e),
            "heatpump_state_changes,field=compressor to=1i,from_since=3.5 10000\n"
        );
    }

    #[test]
    fn an_event_at_a_time_influxdb_cannot_store_is_written_as_nothing() {
        let enc = Encoder::new("m", "s", Precision::Ns);
        let latest = SystemTime::UNIX_EPOCH + Duration::from_nanos(i64::MAX as u64 - 1);
        let mut out = Vec::new();
        let at = |t| {
            let mut m = Metric::new("hp1", Arc::default(), t, Arc::new(Schema::default()));
            m.fields.insert("v".into(), Value::Int(1));
            Event::from(m)
        };
        assert!(enc.encode(&at(latest), &mut out));
        assert_eq!(out, b"m v=1i 9223372036854775806\n");
        out.clear();
        assert!(!enc.encode(&at(latest + Duration::from_nanos(1)), &mut out));
        let earliest = SystemTime::UNIX_EPOCH - Duration::from_nanos(i64::MAX as u64 - 1);
        assert!(enc.encode(&at(earliest), &mut out));
        assert!(!enc.encode(&at(earliest - Duration::from_nanos(1)), &mut out));
        // Rounding towards the past at a coarser precision must not cross the limit either.
        assert!(!Encoder::new("m", "s", Precision::S).encode(&at(earliest), &mut out));
        assert_eq!(out, b"m v=1i -9223372036854775806\n");
    }

    #[test]
    fn measurement_names_line_protocol_cannot_write_are_refused() {
        assert!(Encoder::check_measurement("heatpump_metrics").is_ok());
        assert!(Encoder::check_measurement("\tm").is_ok());
        for bad in ["", "#m", "a\nb", "a\rb", "\\", "\\\\"] {
            assert!(Encoder::check_measurement(bad).is_err(), "{bad:?}");
        }
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
