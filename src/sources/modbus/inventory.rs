//! The device inventory of a source: inline tables or HPManager's
//! `heatpumps.yml` (read by [`crate::hpmanager::heatpumps`]), checked and
//! turned into [`DeviceSpec`]s. Problems are reported at the key
//! (`devices[1].port`) or in the file they are in.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::component::Check;
use crate::diagnostic::{Diagnostic, Severity};
use crate::event::Tags;
use crate::hpmanager::heatpumps::{
    self, bad_port, bad_timeout, bad_unit_id, entry_path, in_disabled_entry, needs_host, no_modbus, timeout_ok, Ids,
    DEFAULT_PORT, DEFAULT_TYPE, DEFAULT_UNIT_ID,
};
use crate::registers::RegisterMap;
use crate::yaml::{locate, scalar};

pub(crate) fn default_true() -> bool {
    true
}
pub(crate) fn default_port() -> i64 {
    502
}
fn default_unit_id() -> i64 {
    1
}

/// `devices = "heatpumps.yml"` or `[[sources.x.devices]]` tables.
#[derive(Debug, Clone, PartialEq)]
pub enum Devices {
    File(PathBuf),
    Inline(Vec<DeviceConfig>),
}

// Written by hand rather than `#[serde(untagged)]`, which would swallow the
// element's own error (and its location) into "data did not match any variant".
impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Devices;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path to a heatpumps.yml file, or an array of device tables ([[sources.ID.devices]])")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Devices, E> {
                if v.is_empty() {
                    return Err(E::custom("`devices` path is empty"));
                }
                Ok(Devices::File(PathBuf::from(v)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Devices, A::Error> {
                let mut out = Vec::new();
                while let Some(d) = seq.next_element::<DeviceConfig>()? {
                    out.push(d);
                }
                Ok(Devices::Inline(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One device written inline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unique within the source; the `heat_pump_id` tag.
    pub id: String,
    /// Display name (`name` tag); defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// `location` tag.
    #[serde(default)]
    pub location: Option<String>,
    /// A model of the register map.
    pub model: String,
    /// Host name or IP address (TCP only).
    #[serde(default)]
    pub host: Option<String>,
    /// TCP port (1-65535, TCP only).
    #[serde(default = "default_port")]
    pub port: i64,
    /// Modbus unit (slave) id, 0-247.
    #[serde(default = "default_unit_id")]
    pub unit_id: i64,
    /// Overrides the source's `timeout` for this device.
    #[serde(default, with = "crate::component::duration")]
    pub timeout: Option<Duration>,
    /// Extra tags on every event of the device.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `false` keeps the device in the file without polling it.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// What a Modbus source's check read: its register map, its checked devices
/// and (RTU) the bus they share. The check keeps it for the build and for
/// `hpflow demo`, so neither reads the files again.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub map: Arc<RegisterMap>,
    pub devices: Vec<DeviceSpec>,
    pub bus: Option<PathBuf>,
}

/// The same devices, on the same bus, reading the same definitions of their
/// models (the rest of the map does not matter to the source).
impl PartialEq for Inventory {
    fn eq(&self, other: &Inventory) -> bool {
        self.devices == other.devices
            && self.bus == other.bus
            && (self.devices.iter()).all(|d| self.map.model(&d.model) == other.map.model(&d.model))
    }
}

/// How a device is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Rtu { path: PathBuf },
}

/// A device after the inventory was read and checked: everything the poll loop needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub id: Arc<str>,
    pub model: Arc<str>,
    pub endpoint: Endpoint,
    pub unit_id: u8,
    pub timeout: Option<Duration>,
    pub tags: Arc<Tags>,
}

/// Collects problems located either at a key of the component or in another file.
pub(crate) trait Report {
    fn error(&mut self, key: Option<&str>, msg: String);
    fn warn(&mut self, key: Option<&str>, msg: String);
    fn external(&mut self, d: Diagnostic);
    /// A file the source reads (the pipeline reloads when it changes).
    fn reads(&mut self, _path: &Path) {}
}

impl Report for Check<'_> {
    fn error(&mut self, key: Option<&str>, msg: String) {
        Check::error(self, key, msg)
    }
    fn warn(&mut self, key: Option<&str>, msg: String) {
        Check::warn(self, key, msg)
    }
    fn external(&mut self, d: Diagnostic) {
        Check::external(self, d)
    }
    fn reads(&mut self, path: &Path) {
        Check::reads(self, path)
    }
}

/// Gathers errors as text when building (the pipeline was checked before, so
/// anything here is a file that changed in between).
#[derive(Default)]
pub(crate) struct Errors(pub Vec<String>);

impl Report for Errors {
    fn error(&mut self, key: Option<&str>, msg: String) {
        match key {
            Some(k) => self.0.push(format!("{k}: {msg}")),
            None => self.0.push(msg),
        }
    }
    fn warn(&mut self, _key: Option<&str>, _msg: String) {}
    fn external(&mut self, d: Diagnostic) {
        if d.is_error() {
            self.0.push(d.to_string());
        }
    }
}

/// Which transport a source is, for the checks that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Rtu,
}

/// Loads the register map, reporting its problems as diagnostics in its own file.
pub(crate) fn load_map(path: &Path, r: &mut impl Report) -> Option<Arc<RegisterMap>> {
    r.reads(path);
    match RegisterMap::load_shared(path) {
        Ok(m) => Some(m),
        Err(diags) => {
            let mut any = false;
            for d in diags {
                any |= d.is_error();
                r.external(d);
            }
            if !any {
                r.error(
                    Some("registers"),
                    format!("cannot load register map {}", path.display()),
                );
            }
            None
        }
    }
}

/// Reads and checks the device inventory of a source. `bus` is the RTU source's
/// own port (for picking `rtu` entries from a heatpumps.yml).
pub(crate) fn resolve_devices(
    devices: &Devices,
    transport: Transport,
    bus: Option<&Path>,
    dir: &Path,
    map: Option<&RegisterMap>,
    r: &mut impl Report,
) -> Vec<DeviceSpec> {
    let mut out = Vec::new();
    // Whether any device is meant to be polled, valid or not: an invalid one
    // has its own error, and a warning about "no devices" would only add noise.
    let wanted = match devices {
        Devices::Inline(list) => {
            let mut seen = HashSet::new();
            for (i, d) in list.iter().enumerate() {
                let key = |k: &str| format!("devices[{i}].{k}");
                inline_device(d, i, transport, bus, map, &mut seen, &key, r, &mut out);
            }
            list.iter().any(|d| d.enabled)
        }
        Devices::File(path) => {
            let path = crate::component::resolve(dir, path);
            r.reads(&path);
            heatpumps_file(&path, transport, bus, map, r, &mut out)
        }
    };
    if !wanted {
        r.warn(
            Some("devices"),
            "no enabled devices: this source will poll nothing".into(),
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn inline_device(
    d: &DeviceConfig,
    i: usize,
    transport: Transport,
    bus: Option<&Path>,
    map: Option<&RegisterMap>,
    seen: &mut HashSet<String>,
    key: &dyn Fn(&str) -> String,
    r: &mut impl Report,
    out: &mut Vec<DeviceSpec>,
) {
    let mut ok = true;
    if d.id.trim().is_empty() {
        r.error(Some(&key("id")), "device `id` is empty".into());
        ok = false;
    } else if !seen.insert(d.id.clone()) {
        r.error(Some(&key("id")), format!("device id `{}` is used twice", d.id));
        ok = false;
    }
    if let Some(map) = map {
        if map.model(&d.model).is_none() {
            r.error(Some(&key("model")), map.unknown_model(&d.model));
            ok = false;
        }
    }
    if !(0..=247).contains(&d.unit_id) {
        r.error(
            Some(&key("unit_id")),
            format!("`unit_id` must be 0-247, not {}", d.unit_id),
        );
        ok = false;
    }
    if d.timeout.is_some_and(|t| t.is_zero()) {
        r.error(Some(&key("timeout")), "`timeout` must be longer than 0s".into());
        ok = false;
    }
    for k in ["heat_pump_id", "name", "location", "model"] {
        if d.tags.contains_key(k) {
            r.error(
                Some(&format!("devices[{i}].tags.{k}")),
                format!(
                    "tag `{k}` is set from the device's own keys; use the `{}` key",
                    if k == "heat_pump_id" { "id" } else { k }
                ),
            );
            ok = false;
        }
    }
    let endpoint = match transport {
        Transport::Tcp => {
            let host = d.host.as_deref().unwrap_or("").trim();
            if host.is_empty() {
                r.error(Some(&key("host")), format!("device `{}` needs a `host`", d.id));
                ok = false;
            }
            if !(1..=65535).contains(&d.port) {
                r.error(Some(&key("port")), format!("`port` must be 1-65535, not {}", d.port));
                ok = false;
            }
            Endpoint::Tcp {
                host: host.to_string(),
                port: d.port.clamp(1, 65535) as u16,
            }
        }
        Transport::Rtu => {
            if d.host.is_some() {
                r.error(
                    Some(&key("host")),
                    "RTU devices have no `host`: they share the source's serial `port`".into(),
                );
                ok = false;
            }
            if d.port != default_port() {
                r.error(
                    Some(&key("port")),
                    "RTU devices have no `port` of their own: set the serial `port` on the source".into(),
                );
                ok = false;
            }
            Endpoint::Rtu {
                path: bus.map(Path::to_path_buf).unwrap_or_default(),
            }
        }
    };
    if ok && d.enabled {
        out.push(DeviceSpec {
            id: d.id.as_str().into(),
            model: d.model.as_str().into(),
            endpoint,
            unit_id: d.unit_id as u8,
            timeout: d.timeout,
            tags: Arc::new(tags(&d.id, d.name.as_deref(), d.location.as_deref(), &d.model, &d.tags)),
        });
    }
}

fn tags(id: &str, name: Option<&str>, location: Option<&str>, model: &str, extra: &BTreeMap<String, String>) -> Tags {
    let mut t = extra.clone();
    t.insert("heat_pump_id".into(), id.into());
    t.insert("name".into(), name.filter(|n| !n.is_empty()).unwrap_or(id).into());
    if let Some(l) = location.filter(|l| !l.is_empty()) {
        t.insert("location".into(), l.into());
    }
    t.insert("model".into(), model.into());
    t
}

/// Reads a heatpumps.yml; problems point into that file.
fn heatpumps_file(
    path: &Path,
    transport: Transport,
    bus: Option<&Path>,
    map: Option<&RegisterMap>,
    r: &mut impl Report,
    out: &mut Vec<DeviceSpec>,
) -> bool {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            r.error(
                Some("devices"),
                format!("cannot read device file {}: {e}", path.display()),
            );
            return true;
        }
    };
    let file = match heatpumps::parse(path, &text) {
        Ok(f) => f,
        Err(d) => {
            r.external(d);
            return true;
        }
    };
    let ids: Vec<String> = file
        .heatpumps
        .iter()
        .map(|h| scalar(&h.id).unwrap_or_default())
        .collect();
    // Where entry `index`'s `field` is written (`modbus.` keys under `modbus:`),
    // else the entry itself; (0, 0), naming the file alone, when neither is found.
    let place = |index: usize, field: &str| {
        let entry = entry_path(index, &[]);
        let at = if matches!(field, "id" | "model") {
            entry_path(index, &[field])
        } else {
            entry_path(index, &["modbus", field])
        };
        locate(&text, &at).or_else(|| locate(&text, &entry)).unwrap_or((0, 0))
    };
    // A problem of an entry: an error, or a warning when the entry is disabled
    // (HPManager read nothing else of a disabled entry).
    let err = |r: &mut dyn FnMut(Diagnostic), index: usize, field: &str, msg: String| {
        let (line, col) = place(index, field);
        let d = Diagnostic::at(path, line, col, msg);
        r(if file.heatpumps[index].enabled {
            d
        } else {
            Diagnostic {
                severity: Severity::Warning,
                message: in_disabled_entry(&d.message),
                ..d
            }
        });
    };
    let mut ids_seen = Ids::default();
    let mut push = |d: Diagnostic| r.external(d);
    let mut warnings = Vec::new();
    let mut wanted = false;
    for (index, (h, id)) in file.heatpumps.iter().zip(&ids).enumerate() {
        let mut ok = true;
        if id.is_empty() {
            err(&mut push, index, "id", "heat pump entry without an `id`".into());
            continue;
        }
        if let Some((severity, message)) = ids_seen.add(id, h.enabled) {
            let (line, col) = place(index, "id");
            push(Diagnostic {
                severity,
                ..Diagnostic::at(path, line, col, message)
            });
            ok = false;
        }
        let model = h.model.clone().unwrap_or_default();
        match map {
            Some(m) if m.model(&model).is_none() => {
                err(
                    &mut push,
                    index,
                    "model",
                    format!("heat pump `{id}`: {}", m.unknown_model(&model)),
                );
                ok = false;
            }
            _ => {}
        }
        let Some(mb) = &h.modbus else {
            err(&mut push, index, "id", no_modbus(id));
            continue;
        };
        let kind = mb.kind.as_deref().unwrap_or(DEFAULT_TYPE).to_ascii_lowercase();
        let mine = matches!(
            (kind.as_str(), transport),
            ("tcp", Transport::Tcp) | ("rtu", Transport::Rtu)
        );
        wanted |= mine && h.enabled;
        let unit_id = mb.unit_id.unwrap_or(DEFAULT_UNIT_ID.into());
        if !(0..=247).contains(&unit_id) {
            err(&mut push, index, "unit_id", bad_unit_id(id, &unit_id.to_string()));
            ok = false;
        }
        let timeout = match mb.timeout {
            Some(t) if timeout_ok(t) => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                err(&mut push, index, "timeout", bad_timeout(id, &t.to_string()));
                ok = false;
                None
            }
            None => None,
        };
        let endpoint = match (kind.as_str(), transport) {
            ("tcp", Transport::Tcp) => {
                let host = mb.host.clone().unwrap_or_default();
                if host.trim().is_empty() {
                    err(&mut push, index, "host", needs_host(id));
                    ok = false;
                }
                let port = match &mb.port {
                    None => DEFAULT_PORT,
                    Some(v) => match v.as_i64() {
                        Some(p) if (1..=65535).contains(&p) => p as u16,
                        _ => {
                            err(&mut push, index, "port", bad_port(id, &scalar(v).unwrap_or_default()));
                            ok = false;
                            DEFAULT_PORT
                        }
                    },
                };
                Endpoint::Tcp {
                    host: host.trim().to_string(),
                    port,
                }
            }
            ("rtu", Transport::Rtu) => {
                let p = mb.port.as_ref().and_then(scalar).unwrap_or_default();
                if p.is_empty() {
                    err(
                        &mut push,
                        index,
                        "port",
                        format!("heat pump `{id}`: an rtu entry needs the serial device in `port`"),
                    );
                    continue;
                }
                let p = PathBuf::from(p);
                if let Some(bus) = bus {
                    if bus != p {
                        warnings.push(format!(
                            "heat pump `{id}` is on {}, not on this source's port {}; skipped",
                            p.display(),
                            bus.display()
                        ));
                        continue;
                    }
                }
                Endpoint::Rtu { path: p }
            }
            ("rtu", Transport::Tcp) => {
                warnings.push(format!(
                    "heat pump `{id}` is an rtu device; skipped (a `modbus_rtu` source reads it)"
                ));
                continue;
            }
            ("tcp", Transport::Rtu) => {
                warnings.push(format!(
                    "heat pump `{id}` is a tcp device; skipped (a `modbus_tcp` source reads it)"
                ));
                continue;
            }
            (other, _) => {
                err(
                    &mut push,
                    index,
                    "type",
                    format!("heat pump `{id}`: unknown modbus type `{other}`; expected tcp or rtu"),
                );
                continue;
            }
        };
        if ok && h.enabled {
            out.push(DeviceSpec {
                id: id.as_str().into(),
                model: model.as_str().into(),
                endpoint,
                unit_id: unit_id.clamp(0, 247) as u8,
                timeout,
                tags: Arc::new(tags(
                    id,
                    h.name.as_deref(),
                    h.location.as_deref(),
                    &model,
                    &BTreeMap::new(),
                )),
            });
        }
    }
    for w in warnings {
        r.warn(Some("devices"), w);
    }
    if transport == Transport::Rtu && bus.is_none() {
        let paths: HashSet<&Endpoint> = out.iter().map(|d| &d.endpoint).collect();
        if paths.len() > 1 {
            r.error(
                Some("devices"),
                format!(
                    "the rtu entries of {} name {} serial ports; set `port` on the source (one source per bus)",
                    path.display(),
                    paths.len()
                ),
            );
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heatpumps_yml_problems_point_at_their_own_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heatpumps.yml");
        let text = "\
heatpumps:
- id: hp1
  model: m
  modbus:
    host: 192.0.2.1
- id: hp1
  model: m
  modbus:
    port: 99999
- id: hp3
  model: m
  modbus: {type: tcp}
";
        std::fs::write(&path, text).unwrap();
        let mut errors = Errors::default();
        heatpumps_file(&path, Transport::Tcp, None, None, &mut errors, &mut Vec::new());
        let at = |line: &str| {
            errors
                .0
                .iter()
                .find(|e| e.contains(line))
                .unwrap_or_else(|| panic!("no `{line}` in {:#?}", errors.0))
                .clone()
        };
        let shown = path.display();
        // The second hp1, not the first, is the duplicate.
        assert!(at("is used twice").starts_with(&format!("{shown}:6:3: error:")));
        assert!(at("`port` must be 1-65535").starts_with(&format!("{shown}:9:5: error:")));
        // `host` is not written at all: the entry that lacks it (flow style is not followed).
        assert!(at("`hp1` needs `modbus.host`").starts_with(&format!("{shown}:6:1: error:")));
        assert!(at("`hp3` needs `modbus.host`").starts_with(&format!("{shown}:10:1: error:")));
    }
}
