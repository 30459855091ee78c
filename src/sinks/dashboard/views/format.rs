//! How values, units, names and times read on the pages. Everything here
//! returns plain text; escaping is the templates' job.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::event::{FieldKind, FieldMeta, Value, ValueType};

/// The symbol a register map's unit name is shown with.
pub fn unit_symbol(unit: Option<&str>) -> &str {
    let Some(u) = unit else { return "" };
    match u.to_ascii_lowercase().as_str() {
        "celsius" | "degc" | "°c" => "°C",
        "kelvin" => "K",
        "percent" | "%" => "%",
        "kw" => "kW",
        "kwh" => "kWh",
        "mwh" => "MWh",
        "w" => "W",
        "wh" => "Wh",
        "hours" | "h" => "h",
        "m3" => "m³",
        "m3/h" => "m³/h",
        "dimensionless" | "enum" | "bitmap" | "none" => "",
        _ => u,
    }
}

/// The page groups, by unit and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Temperatures,
    Pressures,
    Flow,
    PowerAndEnergy,
    Runtimes,
    Status,
    Parameters,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Temperatures,
        Group::Pressures,
        Group::Flow,
        Group::PowerAndEnergy,
        Group::Runtimes,
        Group::Status,
        Group::Parameters,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Temperatures => "Temperatures",
            Group::Pressures => "Pressures",
            Group::Flow => "Flow",
            Group::PowerAndEnergy => "Power and energy",
            Group::Runtimes => "Runtimes",
            Group::Status => "Status",
            Group::Parameters => "Parameters",
        }
    }

    pub fn of(meta: &FieldMeta) -> Group {
        if is_state(meta) {
            return Group::Status;
        }
        match meta.unit.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("celsius" | "degc" | "°c" | "kelvin" | "fahrenheit") => Group::Temperatures,
            Some("bar" | "mbar" | "pa" | "kpa" | "psi") => Group::Pressures,
            Some("l/min" | "l/h" | "m3/h") => Group::Flow,
            Some("w" | "kw" | "wh" | "kwh" | "mwh" | "va" | "a" | "v") => Group::PowerAndEnergy,
            Some("hours" | "h" | "min" | "s") => Group::Runtimes,
            _ => Group::Parameters,
        }
    }
}

/// Operating states: shown as words with "since", never charted.
pub fn is_state(meta: &FieldMeta) -> bool {
    meta.kind == FieldKind::State
        || meta.value_type == ValueType::Bool
        || meta.labels.is_some()
        || matches!(meta.unit.as_deref(), Some("enum" | "bitmap"))
}

/// Numbers worth a chart: gauges and counters that are neither states nor text.
pub fn is_chartable(meta: &FieldMeta) -> bool {
    !is_state(meta) && matches!(meta.value_type, ValueType::Int | ValueType::Float)
}

/// `outside_temperature` → `Outside temperature`; known abbreviations upper-cased.
pub fn field_label(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, word) in name.split(['_', '-']).filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = word.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "dhw" | "hc1" | "hc2" | "hc3" | "hk1" | "hk2" | "hk3" | "evu" | "nhz" | "iws" | "cop" | "wp" | "hp" | "sg"
        ) {
            out.push_str(&lower.to_ascii_uppercase());
        } else if i == 0 {
            let mut c = lower.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push_str(&lower);
        }
    }
    if out.is_empty() {
        name.to_string()
    } else {
        out
    }
}

/// A number with the field's decimals (or as short as it prints).
pub fn number_text(meta: Option<&FieldMeta>, v: f64) -> String {
    match meta.and_then(|m| m.decimals) {
        Some(d) => format!("{v:.*}", usize::from(d)),
        None => {
            let s = format!("{v}");
            if s.len() > 10 {
                let mut t = format!("{v:.3}");
                while t.contains('.') && (t.ends_with('0') || t.ends_with('.')) {
                    t.pop();
                }
                t
            } else {
                s
            }
        }
    }
}

/// A value as the page shows it: enum labels, on/off, decimals.
pub fn value_text(meta: Option<&FieldMeta>, v: &Value) -> String {
    if let Some(label) = meta.and_then(|m| m.label(v)) {
        return label.to_string();
    }
    match v {
        Value::Bool(b) => if *b { "on" } else { "off" }.to_string(),
        Value::Int(i) => match meta {
            Some(m) if m.unit.as_deref() == Some("bitmap") => format!("0x{i:04X}"),
            Some(m) if m.decimals.is_some_and(|d| d > 0) => number_text(Some(m), *i as f64),
            _ => i.to_string(),
        },
        Value::Float(f) => number_text(meta, *f),
        Value::Text(t) => t.to_string(),
    }
}

/// True when a state value means "active" (on, non-zero).
pub fn is_on(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Text(t) => !t.is_empty(),
    }
}

/// Wall-clock text for a moment: `09:12` today-ish, `2025-03-01 09:12` when
/// it is more than a day before `now`.
pub fn clock_text(t: SystemTime, now: SystemTime, tz: &TimeZone) -> String {
    let Some(ts) = timestamp(t) else {
        return "?".to_string();
    };
    let zoned = ts.to_zoned_datetime(tz.clone());
    let old = now.duration_since(t).is_ok_and(|d| d > Duration::from_secs(24 * 3600));
    let format = if old { "%Y-%m-%d %H:%M" } else { "%H:%M" };
    zoned.strftime(format).to_string()
}

/// Full local time with seconds (the "updated" stamp).
pub fn time_of_day(t: SystemTime, tz: &TimeZone) -> String {
    match timestamp(t) {
        Some(ts) => ts.to_zoned_datetime(tz.clone()).strftime("%H:%M:%S").to_string(),
        None => "?".to_string(),
    }
}

fn timestamp(t: SystemTime) -> Option<Timestamp> {
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

/// "since 09:12", "since 2025-03-01 09:12", or "since unknown".
pub fn since_text(since: Option<SystemTime>, now: SystemTime, tz: &TimeZone) -> String {
    match since {
        Some(t) => format!("since {}", clock_text(t, now, tz)),
        None => "since unknown".to_string(),
    }
}

/// "4 s", "3 min", "5 h", "2 d".
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// How the window selector names a window.
pub fn window_label(minutes: u32) -> String {
    if minutes >= 60 && minutes.is_multiple_of(60) {
        format!("{} h", minutes / 60)
    } else {
        format!("{minutes} min")
    }
}

/// Percent-encodes a path segment (a pump id or field name in a link).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(unit: Option<&str>, value_type: ValueType, decimals: Option<u8>) -> FieldMeta {
        let mut m = FieldMeta::gauge("x", value_type);
        m.unit = unit.map(str::to_string);
        m.decimals = decimals;
        m
    }

    #[test]
    fn values_read_with_units_decimals_and_labels() {
        let t = meta(Some("celsius"), ValueType::Float, Some(1));
        assert_eq!(value_text(Some(&t), &Value::Float(21.0)), "21.0");
        assert_eq!(unit_symbol(t.unit.as_deref()), "°C");
        let mut e = meta(Some("enum"), ValueType::Int, None);
        e.labels = Some(BTreeMap::from([(2, "Programmed operation".to_string())]));
        assert_eq!(value_text(Some(&e), &Value::Int(2)), "Programmed operation");
        assert_eq!(value_text(Some(&e), &Value::Int(9)), "9");
        assert_eq!(value_text(None, &Value::Bool(true)), "on");
        assert_eq!(number_text(None, 0.1 + 0.2), "0.3");
    }

    #[test]
    fn fields_are_grouped_by_unit_and_kind() {
        assert_eq!(
            Group::of(&meta(Some("celsius"), ValueType::Float, None)),
            Group::Temperatures
        );
        assert_eq!(Group::of(&meta(Some("bar"), ValueType::Float, None)), Group::Pressures);
        assert_eq!(Group::of(&meta(Some("l/min"), ValueType::Float, None)), Group::Flow);
        assert_eq!(
            Group::of(&meta(Some("kwh"), ValueType::Int, None)),
            Group::PowerAndEnergy
        );
        assert_eq!(Group::of(&meta(None, ValueType::Bool, None)), Group::Status);
        assert_eq!(
            Group::of(&meta(Some("percent"), ValueType::Int, None)),
            Group::Parameters
        );
    }

    #[test]
    fn names_become_labels() {
        assert_eq!(field_label("actual_dhw_temperature"), "Actual DHW temperature");
        assert_eq!(field_label("hc1_pump"), "HC1 pump");
        assert_eq!(field_label("x"), "X");
    }

    #[test]
    fn since_shows_the_time_today_and_the_date_when_older() {
        let tz = TimeZone::UTC;
        let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        assert_eq!(
            since_text(Some(now - Duration::from_secs(3600)), now, &tz),
            "since 14:06"
        );
        assert_eq!(
            since_text(Some(now - Duration::from_secs(3 * 86_400)), now, &tz),
            "since 2025-06-12 15:06"
        );
        assert_eq!(since_text(None, now, &tz), "since unknown");
    }

    #[test]
    fn ids_are_encoded_for_links() {
        assert_eq!(path_segment("hp 1/<x>"), "hp%201%2F%3Cx%3E");
    }
}
