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
//! Both take HPManager's defaults from here and name an entry's keys with
//! `entry_path`, so their messages point at the same lines.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::{Dropped, Reader, Text, HEATPUMPS};
use crate::diagnostic::Diagnostic;
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
    pub id: serde_yaml::Value,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "enabled_by_default")]
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

/// Reads a heatpumps.yml typed; a syntax error, or a value of the wrong type,
/// is reported at its line and column in `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<HeatpumpsFile, Diagnostic> {
    serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        Diagnostic::at(path, line, col, e.to_string())
    })
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
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            if let Some(pump) = self.pump(t, entry, i, &models) {
                if !seen.insert(pump.id.clone()) {
                    self.error(t, &entry_path(i, &["id"]), used_twice(&pump.id));
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
        let Some(id) = m.get("id").and_then(scalar).filter(|s| !s.trim().is_empty()) else {
            self.error(t, &p, format!("heat pump #{} has no `id`", index + 1));
            return None;
        };
        let model = m.get("model").and_then(scalar).unwrap_or_default();
        if !models.iter().any(|x| x.name() == model) {
            let known: Vec<&str> = models.iter().map(|x| x.name()).collect();
            self.error(
                t,
                &with(&p, key("model")),
                format!(
                    "heat pump `{id}`: model `{model}` is not in the register map (it has: {})",
                    known.join(", ")
                ),
            );
        }
        let enabled = match m.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.error(
                    t,
                    &with(&p, key("enabled")),
                    format!(
                        "heat pump `{id}`: `enabled` must be true or false, not `{}`",
                        scalar(v).unwrap_or_default()
                    ),
                );
                true
            }
        };
        let mp = with(&p, key("modbus"));
        let Some(mb) = m.get("modbus").and_then(|v| self.mapping(t, v, &mp, "`modbus`")) else {
            self.error(t, &p, format!("heat pump `{id}` has no `modbus` section"));
            return None;
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
                    self.error(t, &mp, format!("heat pump `{id}`: a tcp entry needs `host`"));
                }
                Link::Tcp {
                    host,
                    port: port.unwrap_or_else(|| DEFAULT_PORT.to_string()),
                }
            }
            "rtu" => {
                let serial = self.serial(t, mb, &mp, &id);
                match port.filter(|s| !s.trim().is_empty()) {
                    Some(port) if Path::new(&port).is_absolute() => Link::Rtu { port, serial },
                    Some(port) => {
                        self.error(
                            t,
                            &with(&mp, key("port")),
                            format!(
                                "heat pump `{id}`: `port` of an rtu entry must be the full path of the serial \
                                 device (e.g. /dev/ttyUSB0), not `{port}`"
                            ),
                        );
                        return None;
                    }
                    None => {
                        self.error(
                            t,
                            &mp,
                            format!("heat pump `{id}`: an rtu entry needs its serial device in `port`"),
                        );
                        return None;
                    }
                }
            }
            other => {
                self.error(
                    t,
                    &with(&mp, key("type")),
                    format!("heat pump `{id}`: unknown modbus type `{other}`; HPManager knows tcp and rtu"),
                );
                return None;
            }
        };
        Some(Pump {
            index,
            id,
            name: m.get("name").and_then(scalar),
            location: m.get("location").and_then(scalar),
            model,
            enabled,
            unit_id: mb
                .get("unit_id")
                .and_then(scalar)
                .unwrap_or_else(|| DEFAULT_UNIT_ID.to_string()),
            has_timeout: mb.get("timeout").is_some_and(|v| !v.is_null()),
            link,
        })
    }

    /// The serial line of an rtu entry, pymodbus' defaults for what it leaves out.
    fn serial(&mut self, t: &Text, mb: &Mapping, mp: &[Seg], id: &str) -> Serial {
        let mut s = SERIAL_DEFAULTS;
        let bad = |r: &mut Reader, k: &str, v: &Value, want: &str| {
            r.error(
                t,
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
