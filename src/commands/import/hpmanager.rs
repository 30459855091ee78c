//! Reads HPManager's config folder: the four files, what each key means to
//! HPManager (its collector's defaults, its env-var overrides), and every
//! problem with its file, line and column.
//!
//! Everything import itself interprets is checked here, before anything is
//! written; what hpflow reads as it is (`heatpumps.yml` port ranges, the
//! register map's details) is left to hpflow's own check afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::diagnostic::{Diagnostic, Severity};
use crate::modbus::Parity;
use crate::registers::RegisterMap;
use crate::sinks::dashboard::settings;
use crate::yaml_locate::{dotted, locate, Seg};

mod heatpumps;

pub(super) const HEATPUMPS: &str = "heatpumps.yml";
pub(super) const REGISTERS: &str = "registers.yml";
pub(super) const COLLECTOR: &str = "collector.yml";
pub(super) const DISPLAY: &str = "display.yml";

/// One file as read, for locating keys in it.
pub(super) struct Text {
    pub path: PathBuf,
    pub text: String,
}

impl Text {
    /// `path:line:column` of a key, or the path alone when it cannot be found.
    pub fn place(&self, path: &[Seg]) -> String {
        match locate(&self.text, path) {
            Some((l, c)) => format!("{}:{l}:{c}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    pub fn diag(&self, severity: Severity, path: &[Seg], message: String) -> Diagnostic {
        let (line, column) = locate(&self.text, path).unwrap_or((0, 0));
        Diagnostic {
            severity,
            ..Diagnostic::at(&self.path, line, column, message)
        }
    }
}

/// A value from a file, with its text as written and where it is.
#[derive(Debug, Clone)]
pub(super) struct Found<T> {
    pub value: T,
    pub raw: String,
    pub at: String,
}

/// A setting that does not carry over, and why.
pub(super) struct Dropped {
    pub what: String,
    pub at: String,
    pub why: String,
}

pub(super) enum Link {
    Tcp { host: String, port: String },
    Rtu { port: String, serial: Serial },
}

/// The serial line of an `rtu` entry, as HPManager passed it to pymodbus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Serial {
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

pub(super) struct Pump {
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

pub(super) struct Registers {
    pub text: String,
    /// The HPManager file, or `None` for hpflow's built-in map.
    pub from: Option<PathBuf>,
    pub map: RegisterMap,
}

#[derive(Default)]
pub(super) struct Collector {
    /// `None` when the folder has no collector.yml.
    pub file: Option<PathBuf>,
    pub poll_interval: Option<Found<Duration>>,
    pub batch_size: Option<Found<u64>>,
    pub batch_interval: Option<Found<Duration>>,
    pub url: Option<Found<String>>,
    pub org: Option<Found<String>>,
    pub bucket: Option<Found<String>>,
    pub token: Option<Found<String>>,
    pub timeout: Option<Found<Duration>>,
    pub retry_interval: Option<Found<Duration>>,
    /// `--log-level`/`--log-format` that give HPManager's logging on hpflow's command line.
    pub log_flags: Vec<String>,
}

pub(super) struct Display {
    pub text: String,
    pub path: PathBuf,
}

/// HPManager's folder, read and checked.
pub(super) struct Folder {
    pub dir: PathBuf,
    pub heatpumps: Text,
    pub pumps: Vec<Pump>,
    pub registers: Registers,
    pub collector: Collector,
    pub display: Option<Display>,
    /// Unknown keys and other things worth a look; the import goes on.
    pub warnings: Vec<Diagnostic>,
    pub dropped: Vec<Dropped>,
}

/// Reads `dir`; every problem found is returned at once.
pub(super) fn read(dir: &Path) -> Result<Folder, Vec<Diagnostic>> {
    let mut r = Reader::default();
    let heatpumps = match read_optional(&dir.join(HEATPUMPS)) {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            r.errors.push(Diagnostic::file_error(
                &dir.join(HEATPUMPS),
                format!(
                    "not found: an HPManager config folder has {HEATPUMPS} (the heat pumps to poll); \
                     is {} the right folder?",
                    dir.display()
                ),
            ));
            None
        }
        Err(d) => {
            r.errors.push(d);
            None
        }
    };
    let registers = r.registers(dir);
    let collector = r.collector(dir);
    let display = r.display(dir);
    let hp_doc = heatpumps.as_ref().and_then(|t| r.yaml(t));
    let pumps = match (&heatpumps, &hp_doc, &registers) {
        (Some(t), Some(doc), Some(reg)) => r.pumps(t, doc, &reg.map),
        _ => Vec::new(),
    };
    if let (Some(d), Some(reg)) = (&display, &registers) {
        r.display_pumps(d, &pumps, &reg.map);
    }
    match (heatpumps, registers) {
        (Some(heatpumps), Some(registers)) if r.errors.is_empty() => Ok(Folder {
            dir: dir.to_path_buf(),
            heatpumps,
            pumps,
            registers,
            collector: collector.unwrap_or_default(),
            display,
            warnings: r.warnings,
            dropped: r.dropped,
        }),
        _ => Err(r.errors),
    }
}

/// The file's text, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Text>, Diagnostic> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Text {
            path: path.to_path_buf(),
            text,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Diagnostic::file_error(path, format!("cannot read: {e}"))),
    }
}

/// The key path of entry `index` of heatpumps.yml, then `keys`.
pub(super) fn entry_path(index: usize, keys: &[&str]) -> Vec<Seg> {
    let mut p = vec![key("heatpumps"), Seg::Index(index)];
    p.extend(keys.iter().map(|k| key(k)));
    p
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// A scalar as text: strings as they are, numbers and bools as YAML writes them.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn key_text(k: &Value) -> String {
    scalar(k).unwrap_or_else(|| format!("{k:?}"))
}

#[derive(Default)]
struct Reader {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    dropped: Vec<Dropped>,
    /// Pumps with `modbus.retries`/`retry_delay`: id, the values, where.
    retries: Vec<(String, String, String)>,
}

impl Reader {
    fn error(&mut self, t: &Text, path: &[Seg], message: String) {
        self.errors.push(t.diag(Severity::Error, path, message));
    }

    fn warn(&mut self, t: &Text, path: &[Seg], message: String) {
        self.warnings.push(t.diag(Severity::Warning, path, message));
    }

    /// Parses a file; a syntax error is reported at its line and column.
    fn yaml(&mut self, t: &Text) -> Option<Value> {
        match serde_yaml::from_str::<Value>(&t.text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(yaml_error(&t.path, &e));
                None
            }
        }
    }

    /// The mapping at `path`, `None` (reported) when it is something else; null is empty.
    fn mapping<'v>(&mut self, t: &Text, v: &'v Value, path: &[Seg], what: &str) -> Option<&'v Mapping> {
        static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
        match v {
            Value::Mapping(m) => Some(m),
            Value::Null => Some(EMPTY.get_or_init(Mapping::new)),
            _ => {
                self.error(t, path, format!("{what} must be a mapping of `key: value` lines"));
                None
            }
        }
    }

    /// Warns about keys of `m` that are not in `known`.
    fn unknown_keys(&mut self, t: &Text, m: &Mapping, path: &[Seg], known: &[&str], consequence: &str) {
        for k in m.keys() {
            let name = key_text(k);
            if !known.contains(&name.as_str()) {
                let p = with(path, Seg::Key(name));
                let shown = dotted(&p);
                self.warn(
                    t,
                    &p,
                    format!(
                        "unknown key `{shown}` ({consequence}); known here: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn registers(&mut self, dir: &Path) -> Option<Registers> {
        let path = dir.join(REGISTERS);
        let (text, from) = match read_optional(&path) {
            Ok(Some(t)) => (t.text, Some(path)),
            Ok(None) => (super::super::BUILTIN_REGISTERS.to_string(), None),
            Err(d) => {
                self.errors.push(d);
                return None;
            }
        };
        let shown = from
            .clone()
            .unwrap_or_else(|| PathBuf::from("config/registers.yml (built into hpflow)"));
        match RegisterMap::parse(&shown, &text) {
            Ok(map) => Some(Registers { text, from, map }),
            Err(diags) => {
                self.errors.extend(diags);
                None
            }
        }
    }

    fn collector(&mut self, dir: &Path) -> Option<Collector> {
        let t = match read_optional(&dir.join(COLLECTOR)) {
            Ok(Some(t)) => t,
            Ok(None) => return Some(Collector::default()),
            Err(d) => {
                self.errors.push(d);
                return None;
            }
        };
        let doc = self.yaml(&t)?;
        let root = self.mapping(&t, &doc, &[], COLLECTOR)?;
        self.unknown_keys(&t, root, &[], &["collector", "influxdb", "logging"], "not carried over");
        let mut c = Collector {
            file: Some(t.path.clone()),
            ..Collector::default()
        };
        let section = |r: &mut Reader, name: &str| -> Option<Mapping> {
            let v = root.get(name)?;
            r.mapping(&t, v, &[key(name)], &format!("`{name}`")).cloned()
        };
        if let Some(m) = section(self, "collector") {
            let p = [key("collector")];
            self.unknown_keys(
                &t,
                &m,
                &p,
                &["poll_interval", "batch_size", "batch_interval"],
                "not carried over",
            );
            c.poll_interval = self.seconds(&t, &m, &p, "poll_interval");
            c.batch_interval = self.seconds(&t, &m, &p, "batch_interval");
            c.batch_size = self.count(&t, &m, &p, "batch_size");
        }
        if let Some(m) = section(self, "influxdb") {
            let p = [key("influxdb")];
            self.unknown_keys(
                &t,
                &m,
                &p,
                &["url", "org", "bucket", "token", "timeout", "retry_interval"],
                "not carried over",
            );
            c.url = self.text(&t, &m, &p, "url");
            c.org = self.text(&t, &m, &p, "org");
            c.bucket = self.text(&t, &m, &p, "bucket");
            c.token = self.text(&t, &m, &p, "token");
            // An explicit empty token (`token:`) means "none", unlike a missing key.
            if c.token.is_none() && matches!(m.get("token"), Some(Value::Null)) {
                c.token = Some(Found {
                    value: String::new(),
                    raw: String::new(),
                    at: t.place(&with(&p, key("token"))),
                });
            }
            // hpflow reads these placeholders; one it cannot read stops here.
            for (name, f) in [
                ("url", &c.url),
                ("org", &c.org),
                ("bucket", &c.bucket),
                ("token", &c.token),
            ] {
                let Some(f) = f.as_ref().filter(|f| f.value.contains("${")) else {
                    continue;
                };
                if let Err(e) = crate::config::interpolate(&f.value, &|_| Some("x".into())) {
                    self.error(&t, &with(&p, key(name)), format!("`influxdb.{name}`: {e}"));
                }
            }
            c.timeout = self.seconds(&t, &m, &p, "timeout");
            c.retry_interval = self.seconds(&t, &m, &p, "retry_interval");
        }
        if let Some(m) = section(self, "logging") {
            let p = [key("logging")];
            self.unknown_keys(&t, &m, &p, &["level", "format", "file"], "not carried over");
            c.log_flags = self.logging(&t, &m, &p);
        }
        Some(c)
    }

    /// logging.* has no place in a pipeline: hpflow takes it on its command line.
    fn logging(&mut self, t: &Text, m: &Mapping, p: &[Seg]) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(level) = self.text(t, m, p, "level") {
            let hp = match level.value.to_ascii_uppercase().as_str() {
                "DEBUG" => "debug",
                "WARNING" | "WARN" => "warn",
                "ERROR" | "CRITICAL" | "FATAL" => "error",
                _ => "info",
            };
            if hp != "info" {
                flags.push(format!("--log-level {hp}"));
            }
            self.dropped.push(Dropped {
                what: format!("logging.level: {}", level.raw),
                at: level.at,
                why: if hp == "info" {
                    "a pipeline has no log level; hpflow logs at info unless started with `--log-level`".into()
                } else {
                    format!("a pipeline has no log level; start hpflow with `hpflow --log-level {hp} run …`")
                },
            });
        }
        if let Some(format) = self.text(t, m, p, "format") {
            let hp = if format.value.eq_ignore_ascii_case("json") {
                "json"
            } else {
                "text"
            };
            if hp == "json" {
                flags.push("--log-format json".into());
            }
            self.dropped.push(Dropped {
                what: format!("logging.format: {}", format.raw),
                at: format.at,
                why: format!(
                    "a pipeline has no log format; use `hpflow --log-format {hp} run …` or HPFLOW_LOG_FORMAT={hp}"
                ),
            });
        }
        if let Some(file) = self.text(t, m, p, "file") {
            self.dropped.push(Dropped {
                what: format!("logging.file: {}", file.raw),
                at: file.at,
                why: "hpflow logs to stderr (the journal under systemd, `docker logs` in a container); \
                      redirect it if you need a file"
                    .into(),
            });
        }
        flags
    }

    fn text(&mut self, t: &Text, m: &Mapping, p: &[Seg], name: &str) -> Option<Found<String>> {
        let v = m.get(name)?;
        let path = with(p, key(name));
        match v {
            Value::Null => None,
            Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
                self.error(t, &path, format!("`{}` must be a single value", dotted(&path)));
                None
            }
            _ => {
                let s = scalar(v).unwrap_or_default();
                Some(Found {
                    value: s.clone(),
                    raw: s,
                    at: t.place(&path),
                })
            }
        }
    }

    /// A positive number of seconds (HPManager's unit for every duration).
    fn seconds(&mut self, t: &Text, m: &Mapping, p: &[Seg], name: &str) -> Option<Found<Duration>> {
        let v = m.get(name)?;
        let path = with(p, key(name));
        let secs = v.as_f64().filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9);
        match secs {
            Some(s) => Some(Found {
                value: Duration::from_secs_f64(s),
                raw: scalar(v).unwrap_or_default(),
                at: t.place(&path),
            }),
            None => {
                self.error(
                    t,
                    &path,
                    format!(
                        "`{}` must be a positive number of seconds, not `{}`",
                        dotted(&path),
                        scalar(v).unwrap_or_else(|| "(not a number)".into())
                    ),
                );
                None
            }
        }
    }

    fn count(&mut self, t: &Text, m: &Mapping, p: &[Seg], name: &str) -> Option<Found<u64>> {
        let v = m.get(name)?;
        let path = with(p, key(name));
        match v.as_u64().filter(|n| *n >= 1) {
            Some(n) => Some(Found {
                value: n,
                raw: n.to_string(),
                at: t.place(&path),
            }),
            None => {
                self.error(
                    t,
                    &path,
                    format!(
                        "`{}` must be a whole number of at least 1, not `{}`",
                        dotted(&path),
                        scalar(v).unwrap_or_else(|| "(not a number)".into())
                    ),
                );
                None
            }
        }
    }

    fn display(&mut self, dir: &Path) -> Option<Display> {
        let t = match read_optional(&dir.join(DISPLAY)) {
            Ok(Some(t)) => t,
            Ok(None) => return None,
            Err(d) => {
                self.errors.push(d);
                return None;
            }
        };
        let doc = self.yaml(&t)?;
        let root = self.mapping(&t, &doc, &[], DISPLAY)?.clone();
        let known = [
            "refresh_interval",
            "sparkline_minutes",
            "visible_fields",
            "sparkline_minutes_per_pump",
        ];
        self.unknown_keys(
            &t,
            &root,
            &[],
            &known,
            "hpflow's dashboard does not read it; left in the copy",
        );
        if let Some(per_pump) = root.get("sparkline_minutes_per_pump") {
            let p = [key("sparkline_minutes_per_pump")];
            let shown = serde_yaml::to_string(per_pump)
                .map(|s| s.trim().replace('\n', ", "))
                .unwrap_or_default();
            self.dropped.push(Dropped {
                what: format!("sparkline_minutes_per_pump: {shown}"),
                at: t.place(&p),
                why: "the dashboard reads display.yml's global window only; set a pump's own window on its \
                      /settings page (saved in the dashboard's settings.toml)"
                    .into(),
            });
        }
        // The dashboard's own reading, with its ranges: a value it would refuse
        // stops the import here rather than at `hpflow validate`.
        match settings::from_display_yml(&t.text) {
            Ok(s) => {
                for e in s.validate(&|_| None) {
                    let path: Vec<Seg> = match e.key.as_str() {
                        "refresh_interval_seconds" => vec![key("refresh_interval")],
                        "sparkline_minutes" => vec![key("sparkline_minutes")],
                        other => other
                            .strip_prefix("pumps.")
                            .and_then(|r| r.split('.').next())
                            .map(|pump| vec![key("visible_fields"), key(pump)])
                            .unwrap_or_default(),
                    };
                    self.error(&t, &path, e.message);
                }
            }
            Err(e) => self.error(&t, &[], format!("hpflow's dashboard cannot read it: {e}")),
        }
        Some(Display {
            text: t.text,
            path: t.path,
        })
    }

    /// display.yml's pumps and fields against heatpumps.yml and the register map.
    fn display_pumps(&mut self, d: &Display, pumps: &[Pump], map: &RegisterMap) {
        let t = Text {
            path: d.path.clone(),
            text: d.text.clone(),
        };
        let Ok(doc) = serde_yaml::from_str::<Value>(&d.text) else {
            return;
        };
        let Some(Value::Mapping(fields)) = doc.get("visible_fields") else {
            return;
        };
        for (k, v) in fields {
            let id = key_text(k);
            let path = [key("visible_fields"), key(&id)];
            let Some(pump) = pumps.iter().find(|p| p.id == id) else {
                self.warn(
                    &t,
                    &path,
                    format!("visible_fields names heat pump `{id}`, which heatpumps.yml does not have"),
                );
                continue;
            };
            let Some(model) = map.model(&pump.model) else {
                continue;
            };
            let unknown: Vec<String> = v
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(scalar)
                .filter(|f| model.schema().field(f).is_none())
                .collect();
            if !unknown.is_empty() {
                self.warn(
                    &t,
                    &path,
                    format!(
                        "visible_fields of `{id}` names {} that model `{}` does not have; the dashboard shows no tile for {}",
                        unknown.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
                        pump.model,
                        if unknown.len() == 1 { "it" } else { "them" }
                    ),
                );
            }
        }
    }
}

/// A YAML syntax error at its line and column.
fn yaml_error(path: &Path, e: &serde_yaml::Error) -> Diagnostic {
    let text = e.to_string();
    match e.location() {
        Some(l) => {
            let place = format!(" at line {} column {}", l.line(), l.column());
            Diagnostic::at(
                path,
                l.line(),
                l.column(),
                format!("invalid YAML: {}", text.replacen(&place, "", 1)),
            )
        }
        None => Diagnostic::file_error(path, format!("invalid YAML: {text}")),
    }
}
