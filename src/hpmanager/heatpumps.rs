//! `heatpumps.yml`: HPManager's inventory of heat pumps, read two ways.
//!
//! - `parse` is hpflow's own reading, typed, of the file a Modbus source
//!   polls as it is (`devices = "heatpumps.yml"`); the source's inventory
//!   checks the values. Unknown keys are ignored, as HPManager ignored them.
//! - `Reader::pumps` is `hpflow import`'s reading, key by key: which pumps,
//!   how each is reached, the keys only HPManager used (the serial line of
//!   `rtu` entries, `retries`), unknown keys warned about, each problem at its
//!   key.
//!
//! Both take HPManager's defaults and its reading of `enabled` from here, make
//! a disabled entry's problems warnings (HPManager read nothing else of it),
//! and name an entry's keys with `entry_path`, so their messages point at the
//! same lines.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::{Dropped, Reader, Text, HEATPUMPS};
use crate::diagnostic::{Diagnostic, Severity};
use crate::modbus::Parity;
use crate::registers::{Model, RegisterMap};
use crate::yaml::{key, scalar, with, Seg};

/// HPManager's `modbus.type` when an entry leaves it out.
pub(crate) const DEFAULT_TYPE: &str = "tcp";
/// HPManager's `modbus.port` of a `tcp` entry that leaves it out.
pub(crate) const DEFAULT_PORT: u16 = 502;
/// HPManager's `modbus.unit_id` when an entry leaves it out.
pub(crate) const DEFAULT_UNIT_ID: u8 = 1;

/// The messages about an entry, the same from the Modbus source's check of the
/// file and from the dashboard's API.
pub(crate) fn used_twice(id: &str) -> String {
    format!("heat pump id `{id}` is used twice")
}

pub(crate) fn no_modbus(id: &str) -> String {
    format!("heat pump `{id}` has no `modbus` section")
}

pub(crate) fn needs_host(id: &str) -> String {
    format!("heat pump `{id}` needs `modbus.host`")
}

pub(crate) fn bad_port(id: &str, port: &str) -> String {
    format!("heat pump `{id}`: `port` must be 1-65535, not {port}")
}

pub(crate) fn bad_unit_id(id: &str, unit_id: &str) -> String {
    format!("heat pump `{id}`: `unit_id` must be 0-247, not {unit_id}")
}

pub(crate) fn bad_timeout(id: &str, timeout: &str) -> String {
    format!("heat pump `{id}`: `timeout` must be a positive number of seconds, not {timeout}")
}

/// A `modbus.timeout` (seconds) hpflow accepts.
pub(crate) fn timeout_ok(t: f64) -> bool {
    t.is_finite() && t > 0.0 && t < 1e6
}

/// The key path of entry `index` of heatpumps.yml, then `keys`.
pub(crate) fn entry_path(index: usize, keys: &[&str]) -> Vec<Seg> {
    let mut p = vec![key("heatpumps"), Seg::Index(index)];
    p.extend(keys.iter().map(|k| key(k)));
    p
}

/// HPManager's `heatpumps.yml`, read as it is (unknown keys ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct HeatpumpsFile {
    #[serde(default)]
    pub heatpumps: Vec<HeatpumpEntry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeatpumpEntry {
    /// Null when missing: an entry without one is an error unless it is disabled.
    #[serde(default)]
    pub id: serde_yaml::Value,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "enabled_by_default", deserialize_with = "deserialize_enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub modbus: Option<HeatpumpModbus>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeatpumpModbus {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// TCP port number, or the serial device path of an `rtu` entry.
    #[serde(default)]
    pub port: Option<serde_yaml::Value>,
    #[serde(default)]
    pub unit_id: Option<i64>,
    /// Seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
}

/// HPManager polled an entry that does not say `enabled`.
fn enabled_by_default() -> bool {
    true
}

/// `enabled` as HPManager read it: it skipped an entry when `not
/// entry.get("enabled", True)` on what PyYAML (YAML 1.1) made of the value, so
/// `yes`/`no`/`on`/`off` are booleans and an empty `enabled:` (null) or `0`
/// disables the entry. `None` for other values, which hpflow refuses.
pub(crate) fn enabled(v: &Value) -> Option<bool> {
    match v {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64() != Some(0.0)),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Why an `enabled` value is refused.
pub(crate) fn enabled_refused(v: &Value) -> String {
    format!(
        "`enabled` must be true or false (or, as HPManager read them, yes/no, on/off, 1/0, or empty for false), \
         not `{}`",
        scalar(v).unwrap_or_else(|| "(a list or mapping)".into())
    )
}

fn deserialize_enabled<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    enabled(&v).ok_or_else(|| serde::de::Error::custom(enabled_refused(&v)))
}

/// Appended to a problem of a disabled entry, which is a warning: HPManager
/// skipped disabled entries before reading anything else of them, and hpflow
/// does not poll them either.
const DISABLED_ENTRY: &str = "the entry is disabled, so it is not polled (HPManager did not read it either)";

/// What ends every warning about a disabled entry (`hpflow import` reports
/// them from HPManager's file, so it leaves out hpflow's check's copies).
pub(crate) const FIX_BEFORE_ENABLING: &str = "fix this before enabling it";

/// A problem of a disabled entry, as the warning it is.
pub(crate) fn in_disabled_entry(problem: &str) -> String {
    format!("{problem}; {DISABLED_ENTRY}; {FIX_BEFORE_ENABLING}")
}

/// Reads a heatpumps.yml typed; a syntax error, or a value of the wrong type,
/// is reported at its line and column in `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<HeatpumpsFile, Diagnostic> {
    serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        Diagnostic::at(path, line, col, e.to_string())
    })
}

/// The ids of heatpumps.yml's entries, for the duplicate check both readers make.
#[derive(Default)]
pub(crate) struct Ids(HashMap<String, bool>);

impl Ids {
    /// Records an entry's id; for one seen before, the problem: an error when two
    /// enabled entries share it, else a warning (at most one of them is polled).
    pub(crate) fn add(&mut self, id: &str, enabled: bool) -> Option<(Severity, String)> {
        let Some(any_enabled) = self.0.get_mut(id) else {
            self.0.insert(id.to_string(), enabled);
            return None;
        };
        let both = *any_enabled && enabled;
        *any_enabled |= enabled;
        Some(if both {
            (Severity::Error, used_twice(id))
        } else {
            (
                Severity::Warning,
                format!(
                    "heat pump id `{id}` is used twice, by a disabled entry (not polled; HPManager did not read \
                     it either); {FIX_BEFORE_ENABLING}"
                ),
            )
        })
    }
}

/// How an entry is reached, as import read it.
pub(crate) enum Link {
    Tcp { host: String, port: String },
    Rtu { port: String, serial: Serial },
}

/// The serial line of an `rtu` entry, as HPManager passed it to pymodbus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Serial {
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
}

/// pymodbus' defaults, which HPManager used for keys left out (and hpflow's).
const SERIAL_DEFAULTS: Serial = Serial {
    baud: 9600,
    data_bits: 8,
    parity: Parity::None,
    stop_bits: 1,
};

/// One entry of the file, as import read it.
pub(crate) struct Pump {
    pub index: usize,
    pub id: String,
    pub name: Option<String>,
    pub location: Option<String>,
    pub model: String,
    pub enabled: bool,
    pub unit_id: String,
    /// Whether the entry sets `modbus.timeout` (else HPManager used 5 s).
    pub has_timeout: bool,
    pub link: Link,
}

/// Keys of an entry that neither HPManager nor hpflow reads stay in the copy.
const IGNORED: &str = "neither HPManager nor hpflow reads it; left in the copy";

impl Reader {
    pub(crate) fn pumps(&mut self, t: &Text, doc: &Value, map: &RegisterMap) -> Vec<Pump> {
        let Some(root) = self.mapping(t, doc, &[], HEATPUMPS) else {
            return Vec::new();
        };
        self.unknown_keys(t, root, &[], &["heatpumps"], IGNORED);
        let list = match root.get("heatpumps") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Sequence(s)) => s,
            Some(_) => {
                self.error(
                    t,
                    &[key("heatpumps")],
                    "`heatpumps` must be a list of heat pumps (`- id: …`)".into(),
                );
                return Vec::new();
            }
        };
        let models: Vec<Arc<Model>> = map.models().cloned().collect();
        let mut ids = Ids::default();
        let mut out = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            if let Some(pump) = self.pump(t, entry, i, &models) {
                if let Some((severity, message)) = ids.add(&pump.id, pump.enabled) {
                    self.problem(t, severity, &entry_path(i, &["id"]), message);
                }
                out.push(pump);
            }
        }
        if let Some((_, _, at)) = self.retries.first() {
            let each: Vec<String> = self.retries.iter().map(|(id, v, _)| format!("{id}: {v}")).collect();
            self.dropped.push(Dropped {
                what: format!("modbus.retries/retry_delay ({})", each.join("; ")),
                at: at.clone(),
                why: "hpflow does not repeat a failed request within a poll: that poll's fields stay absent, the \
                      link is re-opened with capped backoff (the sources' reconnect_min/reconnect_max) and the \
                      pump is read again at the next poll"
                    .into(),
            });
        }
        out
    }

    fn pump(&mut self, t: &Text, entry: &Value, index: usize, models: &[Arc<Model>]) -> Option<Pump> {
        let p = entry_path(index, &[]);
        let m = self.mapping(t, entry, &p, "a heat pump entry")?;
        self.unknown_keys(
            t,
            m,
            &p,
            &["id", "name", "location", "model", "enabled", "modbus"],
            IGNORED,
        );
        let id = m.get("id").and_then(scalar).filter(|s| !s.trim().is_empty());
        let enabled = match m.get("enabled") {
            None => true,
            Some(v) => enabled(v).unwrap_or_else(|| {
                let who = id.clone().unwrap_or_else(|| format!("#{}", index + 1));
                self.error(
                    t,
                    &with(&p, key("enabled")),
                    format!("heat pump `{who}`: {}", enabled_refused(v)),
                );
                true
            }),
        };
        // HPManager read nothing else of a disabled entry: what is wrong in one is a warning.
        let mut problem = |r: &mut Reader, path: &[Seg], message: String| {
            if enabled {
                r.error(t, path, message);
            } else {
                r.warn(t, path, in_disabled_entry(&message));
            }
        };
        let Some(id) = id else {
            problem(self, &p, format!("heat pump #{} has no `id`", index + 1));
            return None;
        };
        let model = m.get("model").and_then(scalar).unwrap_or_default();
        if !models.iter().any(|x| x.name() == model) {
            let known: Vec<&str> = models.iter().map(|x| x.name()).collect();
            problem(
                self,
                &with(&p, key("model")),
                format!(
                    "heat pump `{id}`: model `{model}` is not in the register map (it has: {})",
                    known.join(", ")
                ),
            );
        }
        let pump = |link: Link, mb: Option<&Mapping>| Pump {
            index,
            id: id.clone(),
            name: m.get("name").and_then(scalar),
            location: m.get("location").and_then(scalar),
            model: model.clone(),
            enabled,
            unit_id: mb
                .and_then(|mb| mb.get("unit_id"))
                .and_then(scalar)
                .unwrap_or_else(|| DEFAULT_UNIT_ID.to_string()),
            has_timeout: mb.and_then(|mb| mb.get("timeout")).is_some_and(|v| !v.is_null()),
            link,
        };
        let mp = with(&p, key("modbus"));
        let Some(mb) = m.get("modbus").and_then(|v| self.mapping(t, v, &mp, "`modbus`")) else {
            problem(self, &p, format!("heat pump `{id}` has no `modbus` section"));
            // Listed, and read by the tcp source (HPManager's default type) once it is complete.
            let unread = Link::Tcp {
                host: String::new(),
                port: DEFAULT_PORT.to_string(),
            };
            return (!enabled).then(|| pump(unread, None));
        };
        let kind = mb
            .get("type")
            .and_then(scalar)
            .unwrap_or_else(|| DEFAULT_TYPE.into())
            .to_ascii_lowercase();
        let mut known = vec!["type", "host", "port", "unit_id", "timeout", "retries", "retry_delay"];
        if kind == "rtu" {
            known.extend(["baudrate", "bytesize", "parity", "stopbits"]);
        }
        self.unknown_keys(t, mb, &mp, &known, IGNORED);
        let retry: Vec<(&str, String)> = ["retries", "retry_delay"]
            .into_iter()
            .filter_map(|k| mb.get(k).and_then(scalar).map(|v| (k, v)))
            .collect();
        if let Some((first, _)) = retry.first() {
            let values: Vec<String> = retry.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let at = t.place(&with(&mp, key(first)));
            self.retries.push((id.clone(), values.join(", "), at));
        }
        let port = mb.get("port").and_then(scalar);
        let link = match kind.as_str() {
            "tcp" => {
                let host = mb.get("host").and_then(scalar).unwrap_or_default();
                if host.trim().is_empty() {
                    problem(self, &mp, format!("heat pump `{id}`: a tcp entry needs `host`"));
                }
                Link::Tcp {
                    host,
                    port: port.unwrap_or_else(|| DEFAULT_PORT.to_string()),
                }
            }
            "rtu" => {
                let serial = self.serial(mb, &mp, &id, &mut problem);
                match port.filter(|s| !s.trim().is_empty()) {
                    Some(port) if Path::new(&port).is_absolute() => Link::Rtu { port, serial },
                    Some(port) => {
                        problem(
                            self,
                            &with(&mp, key("port")),
                            format!(
                                "heat pump `{id}`: `port` of an rtu entry must be the full path of the serial \
                                 device (e.g. /dev/ttyUSB0), not `{port}`"
                            ),
                        );
                        return None;
                    }
                    None => {
                        problem(
                            self,
                            &mp,
                            format!("heat pump `{id}`: an rtu entry needs its serial device in `port`"),
                        );
                        return None;
                    }
                }
            }
            other => {
                problem(
                    self,
                    &with(&mp, key("type")),
                    format!("heat pump `{id}`: unknown modbus type `{other}`; HPManager knows tcp and rtu"),
                );
                return None;
            }
        };
        Some(pump(link, Some(mb)))
    }

    /// The serial line of an rtu entry, pymodbus' defaults for what it leaves out;
    /// `problem` reports a bad value (an error, or a warning for a disabled entry).
    fn serial(
        &mut self,
        mb: &Mapping,
        mp: &[Seg],
        id: &str,
        problem: &mut impl FnMut(&mut Reader, &[Seg], String),
    ) -> Serial {
        let mut s = SERIAL_DEFAULTS;
        let mut bad = |r: &mut Reader, k: &str, v: &Value, want: &str| {
            problem(
                r,
                &with(mp, key(k)),
                format!(
                    "heat pump `{id}`: `{k}` must be {want}, not `{}`",
                    scalar(v).unwrap_or_default()
                ),
            );
        };
        if let Some(v) = mb.get("baudrate") {
            match v.as_u64().and_then(|b| u32::try_from(b).ok()) {
                Some(b) => s.baud = b,
                None => bad(self, "baudrate", v, "a line speed such as 9600"),
            }
        }
        if let Some(v) = mb.get("bytesize") {
            match v.as_u64() {
                Some(b @ (7 | 8)) => s.data_bits = b as u8,
                _ => bad(self, "bytesize", v, "7 or 8"),
            }
        }
        if let Some(v) = mb.get("stopbits") {
            match v.as_u64() {
                Some(b @ (1 | 2)) => s.stop_bits = b as u8,
                _ => bad(self, "stopbits", v, "1 or 2"),
            }
        }
        if let Some(v) = mb.get("parity") {
            match scalar(v).unwrap_or_default().to_ascii_lowercase().as_str() {
                "n" | "none" => s.parity = Parity::None,
                "e" | "even" => s.parity = Parity::Even,
                "o" | "odd" => s.parity = Parity::Odd,
                _ => bad(self, "parity", v, "N, E or O"),
            }
        }
        s
    }
}
