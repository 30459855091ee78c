//! Metric and label names, unit suffixes and escaping.
//!
//! # Units
//! Prometheus wants the unit in the metric name. hpflow keeps the register's unit
//! (no conversion: a `kwh` register stays in kilowatt-hours, so values match the
//! device's display and InfluxDB) and spells it out as a plural suffix:
//!
//! | register unit                         | suffix                    |
//! |---------------------------------------|---------------------------|
//! | `celsius`, `°C`, `degC`               | `_celsius`                |
//! | `kelvin`, `K`                         | `_kelvin`                 |
//! | `bar` / `mbar` / `Pa` / `kPa`         | `_bar` / `_millibar` / `_pascals` / `_kilopascals` |
//! | `kwh` / `wh` / `MWh`                  | `_kilowatt_hours` / `_watt_hours` / `_megawatt_hours` |
//! | `kw` / `w`                            | `_kilowatts` / `_watts`   |
//! | `l/min` / `l/h` / `l`                 | `_liters_per_minute` / `_liters_per_hour` / `_liters` |
//! | `m3/h` / `m3`                         | `_cubic_meters_per_hour` / `_cubic_meters` |
//! | `percent`, `%`                        | `_percent`                |
//! | `h` / `min` / `s` / `ms` / `d`        | `_hours` / `_minutes` / `_seconds` / `_milliseconds` / `_days` |
//! | `Hz` / `rpm` / `V` / `A`              | `_hertz` / `_rpm` / `_volts` / `_amperes` |
//! | `enum`, `bitmap`, `dimensionless`, `` | none                      |
//! | anything else                         | the unit, lower-cased, other characters as `_` |
//!
//! A field whose name already ends with the suffix does not get it twice
//! (`runtime_hours` stays `heatpump_runtime_hours`). Counters lose a trailing
//! `_total` of their own before the unit and get `_total` after it
//! (`heat_total` in kWh → `heatpump_heat_kilowatt_hours_total`).
//!
//! With `units = "base"` the values are converted to the base units Prometheus'
//! naming guide asks for, and `promtool check metrics` (which flags `hours`,
//! `minutes` and `days`) has nothing to say: time → `_seconds` (h ×3600, min ×60,
//! d ×86400, ms ÷1000), energy → `_joules` (kWh ×3.6e6, Wh ×3600, MWh ×3.6e9),
//! power → `_watts` (kW ×1000). A field named after its register unit drops it
//! (`runtime_hours` → `heatpump_runtime_seconds_total`). Other units are kept.

use std::borrow::Cow;

/// How a register's unit shows in a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The suffix, without the leading `_`.
    pub suffix: Cow<'static, str>,
    /// What the register's value is multiplied by (1 unless converting to base units).
    pub factor: f64,
    /// The suffix the register's own unit would have had (what a field name may already end with).
    pub register_suffix: Cow<'static, str>,
}

/// The unit suffix and conversion for a register's unit; `base` converts time,
/// energy and power to seconds, joules and watts.
pub fn unit(unit: &str, base: bool) -> Option<Unit> {
    let register_suffix = unit_suffix(unit)?;
    let converted = match (base, &*register_suffix) {
        (true, "hours") => Some(("seconds", 3600.0)),
        (true, "minutes") => Some(("seconds", 60.0)),
        (true, "days") => Some(("seconds", 86_400.0)),
        (true, "milliseconds") => Some(("seconds", 0.001)),
        (true, "kilowatt_hours") => Some(("joules", 3.6e6)),
        (true, "watt_hours") => Some(("joules", 3600.0)),
        (true, "megawatt_hours") => Some(("joules", 3.6e9)),
        (true, "kilowatts") => Some(("watts", 1000.0)),
        _ => None,
    };
    Some(match converted {
        Some((suffix, factor)) => Unit {
            suffix: Cow::Borrowed(suffix),
            factor,
            register_suffix,
        },
        None => Unit {
            suffix: register_suffix.clone(),
            factor: 1.0,
            register_suffix,
        },
    })
}

/// The unit suffix (without the leading `_`) for a register's unit.
pub fn unit_suffix(unit: &str) -> Option<Cow<'static, str>> {
    let lower = unit.trim().to_lowercase();
    let known = match lower.as_str() {
        "" | "-" | "enum" | "bitmap" | "dimensionless" | "bool" | "boolean" | "state" => return None,
        "celsius" | "°c" | "degc" | "deg c" | "c" => "celsius",
        "kelvin" | "k" => "kelvin",
        "bar" => "bar",
        "mbar" => "millibar",
        "pa" => "pascals",
        "kpa" => "kilopascals",
        "kwh" => "kilowatt_hours",
        "wh" => "watt_hours",
        "mwh" => "megawatt_hours",
        "kw" => "kilowatts",
        "w" => "watts",
        "l/min" | "lpm" => "liters_per_minute",
        "l/h" => "liters_per_hour",
        "l" => "liters",
        "m3/h" | "m³/h" => "cubic_meters_per_hour",
        "m3" | "m³" => "cubic_meters",
        "percent" | "%" => "percent",
        "h" | "hour" | "hours" => "hours",
        "min" | "minute" | "minutes" => "minutes",
        "s" | "sec" | "second" | "seconds" => "seconds",
        "ms" => "milliseconds",
        "d" | "day" | "days" => "days",
        "hz" => "hertz",
        "rpm" => "rpm",
        "v" => "volts",
        "a" => "amperes",
        _ => {
            let s = squeeze(&lower);
            return (!s.is_empty()).then_some(Cow::Owned(s));
        }
    };
    Some(Cow::Borrowed(known))
}

/// Lower-case ASCII letters and digits; every run of anything else becomes one `_`.
fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// A valid metric or label name: characters outside `[a-zA-Z0-9_]` become `_`,
/// and a leading digit gets a `_` in front. (`:` is left to recording rules.)
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }),
    );
    out
}

/// A label name from a user's tag: sanitised, and never in the `__` space that
/// Prometheus reserves for itself.
pub fn label_name(tag: &str) -> String {
    let s = sanitize(tag);
    if s.starts_with("__") {
        format!("tag{s}")
    } else {
        s
    }
}

/// The names of the series of one field: `(family, sample)`. They differ for
/// counters only, whose samples end in `_total` (OpenMetrics names the family
/// without it; the text format's `# TYPE` line names the sample).
pub fn field_metric_names(prefix: &str, field: &str, unit: Option<&Unit>, counter: bool) -> (String, String) {
    let mut base = sanitize(field);
    if counter {
        if let Some(stripped) = base.strip_suffix("_total") {
            if !stripped.is_empty() {
                base.truncate(stripped.len());
            }
        }
    }
    if let Some(u) = unit {
        // A field named after its unit's short spelling (`heat_kwh`) keeps one unit.
        if let Some(short) = short_unit(&u.register_suffix) {
            if let Some(stripped) = base.strip_suffix(&format!("_{short}")) {
                if !stripped.is_empty() {
                    base.truncate(stripped.len());
                }
            }
        }
        if u.suffix != u.register_suffix {
            // Converted: a field named after its register unit loses it.
            if let Some(stripped) = base.strip_suffix(&format!("_{}", u.register_suffix)) {
                base.truncate(stripped.len());
            }
        }
        if base != u.suffix && !base.ends_with(&format!("_{}", u.suffix)) {
            base.push('_');
            base.push_str(&u.suffix);
        }
    }
    let family = format!("{prefix}{base}");
    let sample = if counter {
        format!("{family}_total")
    } else {
        family.clone()
    };
    (family, sample)
}

/// The short spelling of a unit suffix, as field names carry it.
fn short_unit(suffix: &str) -> Option<&'static str> {
    Some(match suffix {
        "kilowatt_hours" => "kwh",
        "watt_hours" => "wh",
        "megawatt_hours" => "mwh",
        "kilowatts" => "kw",
        "watts" => "w",
        _ => return None,
    })
}

/// Appends a label value escaped for both formats: `\` `"` and newline.
pub fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `name="value"` (the value escaped).
pub fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    push_label_value(out, value);
    out.push('"');
}

/// Appends a HELP text: the text format escapes `\` and newline only, OpenMetrics
/// also `"`.
pub fn push_help(out: &mut String, help: &str, openmetrics: bool) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            '"' if openmetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// True for a name Prometheus accepts as a metric name prefix (empty included).
pub fn is_valid_prefix(s: &str) -> bool {
    s.is_empty()
        || (s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_become_plural_suffixes() {
        let s = |u: &str| unit_suffix(u).map(|c| c.into_owned());
        assert_eq!(s("celsius").as_deref(), Some("celsius"));
        assert_eq!(s("°C").as_deref(), Some("celsius"));
        assert_eq!(s("kwh").as_deref(), Some("kilowatt_hours"));
        assert_eq!(s("kW").as_deref(), Some("kilowatts"));
        assert_eq!(s("l/min").as_deref(), Some("liters_per_minute"));
        assert_eq!(s("%").as_deref(), Some("percent"));
        assert_eq!(s("h").as_deref(), Some("hours"));
        assert_eq!(s("m3/h").as_deref(), Some("cubic_meters_per_hour"));
        assert_eq!(s("enum"), None);
        assert_eq!(s("µg/m³ (PM2.5)").as_deref(), Some("g_m_pm2_5"));
    }

    #[test]
    fn a_name_never_gets_its_unit_twice_and_counters_end_in_total() {
        let n = |f: &str, u: Option<&str>, c: bool| {
            field_metric_names("heatpump_", f, u.and_then(|u| unit(u, false)).as_ref(), c)
        };
        assert_eq!(
            n("runtime_hours", Some("hours"), true).1,
            "heatpump_runtime_hours_total"
        );
        assert_eq!(
            n("heat_total", Some("kwh"), true).1,
            "heatpump_heat_kilowatt_hours_total"
        );
        assert_eq!(n("heat_total", Some("kwh"), true).0, "heatpump_heat_kilowatt_hours");
        assert_eq!(n("flow", Some("l/min"), false).0, "heatpump_flow_liters_per_minute");
        assert_eq!(n("heat_kwh", Some("kwh"), true).1, "heatpump_heat_kilowatt_hours_total");
        assert_eq!(n("power_kw", Some("kw"), false).0, "heatpump_power_kilowatts");
        assert_eq!(n("2nd-stage", None, false).0, "heatpump__2nd_stage");
    }

    #[test]
    fn base_units_convert_time_energy_and_power() {
        let n = |f: &str, u: &str, c: bool| {
            let u = unit(u, true);
            (field_metric_names("heatpump_", f, u.as_ref(), c).1, u.map(|u| u.factor))
        };
        assert_eq!(
            n("runtime_hours", "h", true),
            ("heatpump_runtime_seconds_total".into(), Some(3600.0))
        );
        assert_eq!(
            n("heat_today_kwh", "kwh", false),
            ("heatpump_heat_today_joules".into(), Some(3.6e6))
        );
        assert_eq!(
            n("heat_total", "kwh", true),
            ("heatpump_heat_joules_total".into(), Some(3.6e6))
        );
        assert_eq!(n("power", "kw", false), ("heatpump_power_watts".into(), Some(1000.0)));
        assert_eq!(n("temp", "celsius", false), ("heatpump_temp_celsius".into(), Some(1.0)));
    }

    #[test]
    fn label_values_escape_quotes_backslashes_and_newlines() {
        let mut s = String::new();
        push_label(&mut s, "name", "a \"b\" \\ c\nd");
        assert_eq!(s, r#"name="a \"b\" \\ c\nd""#);
        assert_eq!(label_name("__x"), "tag__x");
        assert_eq!(label_name("room.floor"), "room_floor");
    }
}
