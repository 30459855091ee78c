//! Home Assistant's rules for MQTT discovery configs of sensors and binary
//! sensors, written down from HA's documentation (the sensor device classes
//! with their units, the state classes each device class allows, the
//! binary-sensor device classes, entity categories), to check what the `mqtt`
//! sink publishes. No server: plain JSON checks.
//!
//! Entity ids: since HA 2025.10 a config suggests its entity id with
//! `default_entity_id` (`<domain>.<object id>`, the domain being the
//! component); `object_id` is deprecated (a warning per entity, and from
//! 2026.4 ignored). A config may carry `object_id` for older HA only next to a
//! `default_entity_id` naming the same id. The id must be one HA's
//! `valid_entity_id` accepts (`[a-z0-9_]`, no leading, trailing or doubled `_`).
//!
//! The `mqtt` sink's own unit tests include this file (`#[path]`, as module
//! `ha`), so it uses nothing else of `support`.

#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::Value as Json;

/// The units HA accepts per sensor device class (HA's sensor documentation,
/// "Device class" table), for the classes that have units.
pub const UNITS: &[(&str, &[&str])] = &[
    ("temperature", &["°C", "°F", "K"]),
    ("power", &["mW", "W", "kW", "MW", "GW", "TW", "BTU/h"]),
    (
        "energy",
        &[
            "J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal",
        ],
    ),
    (
        "pressure",
        &["mPa", "Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"],
    ),
    (
        "volume_flow_rate",
        &[
            "m³/h", "m³/min", "m³/s", "ft³/min", "L/h", "L/min", "L/s", "gal/h", "gal/min", "mL/s",
        ],
    ),
    ("duration", &["d", "h", "min", "s", "ms", "μs"]),
    ("volume", &["L", "mL", "gal", "fl. oz.", "m³", "ft³", "CCF", "MCF"]),
    ("frequency", &["Hz", "kHz", "MHz", "GHz"]),
];

/// The state classes HA allows per sensor device class (none for `enum`).
pub const STATE_CLASSES: &[(&str, &[&str])] = &[
    ("temperature", &["measurement"]),
    ("power", &["measurement"]),
    ("energy", &["total", "total_increasing"]),
    ("pressure", &["measurement"]),
    ("volume_flow_rate", &["measurement"]),
    ("duration", &["measurement", "total", "total_increasing"]),
    ("volume", &["total", "total_increasing"]),
    ("frequency", &["measurement"]),
    ("enum", &[]),
];

/// HA's binary sensor device classes.
pub const BINARY_CLASSES: &[&str] = &[
    "battery",
    "battery_charging",
    "carbon_monoxide",
    "cold",
    "connectivity",
    "door",
    "garage_door",
    "gas",
    "heat",
    "light",
    "lock",
    "moisture",
    "motion",
    "moving",
    "occupancy",
    "opening",
    "plug",
    "power",
    "presence",
    "problem",
    "running",
    "safety",
    "smoke",
    "sound",
    "tamper",
    "update",
    "vibration",
    "window",
];

/// One part of an entity id as HA's `VALID_ENTITY_ID` wants it.
fn entity_id_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
}

/// An entity id HA accepts: `<domain>.<object id>`.
pub fn valid_entity_id(id: &str) -> bool {
    match id.split_once('.') {
        Some((domain, object)) => entity_id_part(domain) && entity_id_part(object),
        None => false,
    }
}

fn id_like(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn lookup<'a>(table: &'a [(&str, &'a [&str])], key: &str) -> Option<&'a [&'a str]> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Checks discovery configs, given as (topic, payload text), against HA's
/// rules; `Ok(number of entities)` or every problem found. An empty payload
/// (a removed entity) is skipped.
pub fn check(configs: &[(String, String)]) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut unique = BTreeSet::new();
    let mut n = 0;
    for (topic, text) in configs {
        if text.is_empty() {
            continue;
        }
        let mut bad = |m: String| problems.push(format!("{topic}: {m}"));
        let levels: Vec<&str> = topic.split('/').collect();
        if levels.len() != 5 || levels[4] != "config" || !id_like(levels[2]) || !id_like(levels[3]) {
            bad("not <prefix>/<component>/<node_id>/<object_id>/config with [a-zA-Z0-9_-] ids".into());
            continue;
        }
        let component = levels[1];
        if !matches!(component, "sensor" | "binary_sensor") {
            bad(format!("unexpected component {component}"));
        }
        let p: Json = match serde_json::from_str(text) {
            Ok(Json::Object(o)) => Json::Object(o),
            Ok(_) => {
                bad("payload is not a JSON object".into());
                continue;
            }
            Err(e) => {
                bad(format!("payload is not JSON: {e}"));
                continue;
            }
        };
        n += 1;
        let s = |k: &str| p.get(k).and_then(Json::as_str);
        match s("unique_id") {
            Some(u) if !u.is_empty() => {
                if !unique.insert(u.to_string()) {
                    bad(format!("unique_id {u} is used twice"));
                }
            }
            _ => bad("no unique_id".into()),
        }
        match (s("default_entity_id"), p.get("object_id")) {
            (Some(d), object) => {
                if !valid_entity_id(d) {
                    bad(format!("default_entity_id {d} is not an entity id HA accepts"));
                } else if d.split_once('.').map(|(domain, _)| domain) != Some(component) {
                    bad(format!("default_entity_id {d} is not in the {component} domain"));
                } else if let Some(o) = object {
                    if o.as_str() != d.split_once('.').map(|(_, id)| id) {
                        bad(format!(
                            "object_id {o} does not name the entity default_entity_id {d} names"
                        ));
                    }
                }
            }
            (None, Some(o)) => bad(format!(
                "object_id {o} without default_entity_id: deprecated since HA 2025.10, ignored since 2026.4"
            )),
            (None, None) => {}
        }
        if p.get("default_entity_id").is_some_and(|d| !d.is_string()) {
            bad("default_entity_id is not text".into());
        }
        match s("state_topic") {
            Some(t) if !t.is_empty() && !t.contains(['+', '#']) => {}
            _ => bad("no usable state_topic".into()),
        }
        match p.get("device") {
            Some(d) => {
                let ids = d.get("identifiers").and_then(Json::as_array);
                if !ids.is_some_and(|i| !i.is_empty() && i.iter().all(Json::is_string)) {
                    bad("device without identifiers".into());
                }
                if d.get("name").and_then(Json::as_str).is_none_or(str::is_empty) {
                    bad("device without a name".into());
                }
            }
            None => bad("no device".into()),
        }
        if let Some(a) = p.get("availability") {
            let ok = a
                .as_array()
                .is_some_and(|l| l.iter().all(|e| e.get("topic").and_then(Json::as_str).is_some()));
            if !ok {
                bad("availability entries need a topic".into());
            }
        }
        if let Some(c) = p.get("entity_category") {
            // HA refuses `config` for sensors and binary sensors.
            if c != "diagnostic" {
                bad(format!("entity_category {c} is not allowed for a {component}"));
            }
        }
        let class = s("device_class");
        let state_class = s("state_class");
        let unit = s("unit_of_measurement");
        if let Some(sc) = state_class {
            if !matches!(sc, "measurement" | "total" | "total_increasing") {
                bad(format!("unknown state_class {sc}"));
            }
        }
        if component == "binary_sensor" {
            if let Some(c) = class {
                if !BINARY_CLASSES.contains(&c) {
                    bad(format!("device_class {c} is not a binary sensor class"));
                }
            }
            for k in [
                "state_class",
                "unit_of_measurement",
                "options",
                "suggested_display_precision",
            ] {
                if p.get(k).is_some() {
                    bad(format!("a binary_sensor has no {k}"));
                }
            }
            if s("payload_on").is_none() || s("payload_off").is_none() {
                bad("binary_sensor without payload_on/payload_off".into());
            }
            continue;
        }
        match class {
            Some("enum") => {
                let opts = p.get("options").and_then(Json::as_array);
                if !opts.is_some_and(|o| !o.is_empty() && o.iter().all(Json::is_string)) {
                    bad("enum sensor without options".into());
                } else if let Some(o) = opts {
                    let set: BTreeSet<&str> = o.iter().filter_map(Json::as_str).collect();
                    if set.len() != o.len() {
                        bad("enum options repeat".into());
                    }
                }
                for k in ["unit_of_measurement", "state_class", "suggested_display_precision"] {
                    if p.get(k).is_some() {
                        bad(format!("an enum sensor has no {k}"));
                    }
                }
            }
            Some(c) => match lookup(UNITS, c) {
                Some(units) => match unit {
                    Some(u) if units.contains(&u) => {}
                    other => bad(format!(
                        "unit {other:?} is not one HA accepts for device_class {c}: {units:?}"
                    )),
                },
                None => bad(format!("device_class {c} is not in the table this check knows")),
            },
            None => {
                if p.get("options").is_some() {
                    bad("options without device_class enum".into());
                }
            }
        }
        if let (Some(c), Some(sc)) = (class, state_class) {
            if let Some(allowed) = lookup(STATE_CLASSES, c) {
                if !allowed.contains(&sc) {
                    bad(format!(
                        "state_class {sc} is not allowed for device_class {c} ({allowed:?})"
                    ));
                }
            }
        }
        if let Some(d) = p.get("suggested_display_precision") {
            if d.as_u64().is_none_or(|d| d > 10) {
                bad(format!("suggested_display_precision {d} is not a small whole number"));
            }
        }
        if s("value_template").is_none() {
            bad("no value_template to pick the field from the state JSON".into());
        }
    }
    if problems.is_empty() {
        Ok(n)
    } else {
        Err(problems)
    }
}

/// What HA's MQTT integration makes of a state message for an entity: the
/// entity's `value_template` rendered with `value` (the payload) and
/// `value_json` (the payload as JSON), as HA renders it (Jinja; minijinja
/// here, with `none` written as Python's `None`, HA's "unknown").
pub fn render(template: &str, payload: &str) -> Result<String, String> {
    let value_json: Json = serde_json::from_str(payload).map_err(|e| format!("the state is not JSON: {e}"))?;
    let env = minijinja::Environment::new();
    let out = env
        .render_str(
            template,
            minijinja::context! { value => payload, value_json => minijinja::value::Serde(&value_json) },
        )
        .map_err(|e| format!("template {template:?} fails: {e}"))?;
    Ok(if out == "none" { "None".to_string() } else { out })
}

/// Checks that every entity among `configs` whose state topic has a payload
/// in `states` gets a state HA accepts from it, as HA's MQTT sensor and
/// binary sensor treat a rendered value: `None` is unknown; a binary sensor
/// needs its `payload_on`/`payload_off`; an enum sensor one of its `options`
/// (anything else HA ignores, keeping a stale state); a sensor with a device
/// class, unit, state class or display precision a number. Returns how many
/// entities got a value (not unknown).
pub fn check_states(
    configs: &[(String, String)],
    states: &std::collections::BTreeMap<String, String>,
) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut known = 0;
    for (topic, text) in configs {
        let Ok(p) = serde_json::from_str::<Json>(text) else {
            continue;
        };
        let s = |k: &str| p.get(k).and_then(Json::as_str);
        let Some(payload) = s("state_topic").and_then(|t| states.get(t)) else {
            continue;
        };
        let Some(template) = s("value_template") else { continue };
        let value = match render(template, payload) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{topic}: {e}"));
                continue;
            }
        };
        if value == "None" {
            continue;
        }
        let component = topic.split('/').nth(1).unwrap_or("");
        let fine = if component == "binary_sensor" {
            Some(value.as_str()) == s("payload_on") || Some(value.as_str()) == s("payload_off")
        } else if let Some(options) = p.get("options").and_then(Json::as_array) {
            options.iter().any(|o| o.as_str() == Some(&value))
        } else if p.get("device_class").is_some()
            || p.get("unit_of_measurement").is_some()
            || p.get("state_class").is_some()
            || p.get("suggested_display_precision").is_some()
        {
            value.parse::<f64>().is_ok_and(f64::is_finite)
        } else {
            true
        };
        if fine {
            known += 1;
        } else {
            problems.push(format!("{topic}: HA would refuse the state {value:?}"));
        }
    }
    if problems.is_empty() {
        Ok(known)
    } else {
        Err(problems)
    }
}
