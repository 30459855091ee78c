//! Turns a read HPManager folder into the text of an hpflow pipeline shaped
//! like `pipelines/heatpump.toml`, with a comment wherever a value came from,
//! and the record of what was carried over for the report.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Duration;

use super::folder::Folder;
use crate::diagnostic::{Diagnostic, Severity};
use crate::hpmanager::heatpumps::{entry_path, Link, Pump, Serial};
use crate::hpmanager::{Dropped, Found};
use crate::interpolate::interpolate;
use crate::modbus::Parity;

/// HPManager's collector defaults (src/collector/main.py), used for keys its
/// collector.yml leaves out or when there is no collector.yml.
const POLL_SECONDS: u64 = 10;
const BATCH_SIZE: u64 = 100;
const BATCH_SECONDS: u64 = 5;
const TIMEOUT_SECONDS: u64 = 10;
const RETRY_SECONDS: u64 = 30;
/// HPManager's per-pump `modbus.timeout` default, for a bus whose entries leave it out.
const MODBUS_TIMEOUT_SECONDS: u64 = 5;

/// One HPManager setting and where it went.
pub(super) struct Carried {
    pub from: String,
    pub to: String,
}

/// An environment variable the pipeline reads without a default.
pub(super) struct EnvNeed {
    pub name: String,
    /// A value that lets the import check the pipeline while the variable is unset.
    pub stand_in: String,
}

/// The pipeline's text and what the report says about it.
pub(super) struct Pipeline {
    pub text: String,
    pub carried: Vec<Carried>,
    pub dropped: Vec<Dropped>,
    pub env: Vec<EnvNeed>,
    /// The source each pump's entry is read by, by index in heatpumps.yml.
    pub source_of: Vec<(usize, String)>,
    pub source_ids: Vec<String>,
}

/// Where things are named in the pipeline and the report.
pub(super) struct Names<'a> {
    /// The config folder relative to the pipeline file (`imported`).
    pub files_dir: &'a str,
    /// The pipeline as the user named it, for the commands in the header.
    pub pipeline: &'a str,
    /// The HPManager folder, for the header.
    pub from: &'a str,
    /// RFC 3339 time of the import.
    pub now: &'a str,
}

struct Bus {
    id: String,
    port: String,
    serial: Serial,
    /// Indexes (in heatpumps.yml) of the pumps on it.
    pumps: Vec<usize>,
    /// Some entry leaves `modbus.timeout` out: HPManager gave it 5 s.
    needs_timeout: bool,
}

/// Builds the pipeline; fails only when the enabled rtu entries of one port disagree
/// on the serial line.
pub(super) fn build(folder: &Folder, names: &Names<'_>) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut dropped = Vec::new();
    let buses = buses(folder, &mut dropped)?;
    let has_tcp = folder.pumps.iter().any(|p| matches!(p.link, Link::Tcp { .. }));
    let mut t = Text::default();
    let mut carried = Vec::new();
    let mut source_ids = Vec::new();
    let mut source_of = Vec::new();
    let c = &folder.collector;
    let collector_yml = c
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "collector.yml (missing)".into());

    header(&mut t, folder, names);
    t.line("");
    t.kv(
        "data_dir",
        q("data"),
        "state kept across restarts, beside this file; HPFLOW_DATA_DIR overrides it",
    );

    let (interval, interval_from) = seconds_or(c.poll_interval.as_ref(), POLL_SECONDS, "collector.poll_interval");
    let devices = q(&format!("{}/heatpumps.yml", names.files_dir));
    let registers = q(&format!("{}/registers.yml", names.files_dir));
    if has_tcp || buses.is_empty() {
        let id = "heatpumps".to_string();
        let (on, off) = pump_lists(folder, |l| matches!(l, Link::Tcp { .. }));
        t.line("");
        t.comment(&format!("Modbus TCP heat pumps of heatpumps.yml: {on}{off}."));
        t.comment("Each pump's host, port, unit_id and timeout are read from that file as they are.");
        t.table(&format!("sources.{id}"));
        t.kv("type", q("modbus_tcp"), "");
        t.kv("devices", devices.clone(), "HPManager's inventory, copied unchanged");
        t.kv("registers", registers.clone(), "");
        t.kv("interval", q(&interval), &interval_from);
        carried.push(Carried {
            from: format!("{interval_from}{}", at(c.poll_interval.as_ref())),
            to: format!("sources.{id}.interval = \"{interval}\""),
        });
        for p in folder.pumps.iter().filter(|p| matches!(p.link, Link::Tcp { .. })) {
            source_of.push((p.index, id.clone()));
        }
        source_ids.push(id);
    }
    for bus in &buses {
        let names_on: Vec<&str> = bus.pumps.iter().filter_map(|i| pump_id(folder, *i)).collect();
        t.line("");
        t.comment(&format!(
            "Modbus RTU heat pumps on {}: {}.",
            bus.port,
            names_on.join(", ")
        ));
        t.comment("Serial settings from their entries (pymodbus' 9600 8N1 where left out).");
        t.table(&format!("sources.{}", bus.id));
        t.kv("type", q("modbus_rtu"), "");
        t.kv("port", q(&bus.port), "modbus.port");
        t.kv("baud", bus.serial.baud.to_string(), "modbus.baudrate");
        t.kv("parity", q(parity_name(bus.serial.parity)), "modbus.parity");
        t.kv("data_bits", bus.serial.data_bits.to_string(), "modbus.bytesize");
        t.kv("stop_bits", bus.serial.stop_bits.to_string(), "modbus.stopbits");
        if bus.needs_timeout {
            t.kv(
                "timeout",
                q(&format!("{MODBUS_TIMEOUT_SECONDS}s")),
                "HPManager's default modbus.timeout (hpflow's own for a bus is 1s); a pump's own timeout wins",
            );
        }
        t.kv("devices", devices.clone(), "its `rtu` entries on this port");
        t.kv("registers", registers.clone(), "");
        t.kv("interval", q(&interval), &interval_from);
        carried.push(Carried {
            from: format!(
                "rtu entries on {}: modbus.port/baudrate/parity/bytesize/stopbits",
                bus.port
            ),
            to: format!("sources.{} (modbus_rtu)", bus.id),
        });
        carried.push(Carried {
            from: format!("{interval_from}{}", at(c.poll_interval.as_ref())),
            to: format!("sources.{}.interval = \"{interval}\"", bus.id),
        });
        for i in &bus.pumps {
            source_of.push((*i, bus.id.clone()));
        }
        source_ids.push(bus.id.clone());
    }

    t.line("");
    t.table("transforms.scaled");
    t.kv(
        "type",
        q("scale"),
        "the register map's scale factors, as HPManager applied them",
    );
    t.kv("inputs", list(&source_ids), "");
    t.line("");
    t.table("transforms.efficiency");
    t.kv(
        "type",
        q("efficiency"),
        "energy counters, daily COP and SCOP, compressor cycles (local days of the system's time zone)",
    );
    t.kv("inputs", list(&["scaled".to_string()]), "");
    t.line("");
    t.table("transforms.states");
    t.kv("type", q("state_diff"), "since when each operating state holds");
    t.kv("inputs", list(&["efficiency".to_string()]), "");

    t.line("");
    t.comment(
        "InfluxDB 2 with HPManager's schema: measurement heatpump_metrics, the same tags, fields and field types.",
    );
    t.comment("Points wait in a disk buffer while InfluxDB is unreachable.");
    t.table("sinks.influxdb");
    t.kv("type", q("influxdb"), "");
    t.kv("inputs", list(&["states".to_string()]), "");
    t.kv("api", q("v2"), "");
    // Written out although it is the default: the existing database holds enum
    // fields as strings, and InfluxDB refuses points that change a field's type.
    t.kv(
        "enum_values",
        q("label"),
        "enums as label strings, the type HPManager gave them; \"code\" only for a new database",
    );
    let mut env_values = Vec::new();
    for (key, hp_key, var, default, found) in [
        (
            "endpoint",
            "url",
            "INFLUXDB_URL",
            "http://localhost:8086",
            c.url.as_ref(),
        ),
        ("org", "org", "INFLUXDB_ORG", "heatpump-monitoring", c.org.as_ref()),
        (
            "bucket",
            "bucket",
            "INFLUXDB_BUCKET",
            "heatpump-data",
            c.bucket.as_ref(),
        ),
    ] {
        let (value, from) = env_setting(found, hp_key, var, default, &collector_yml);
        t.kv(key, q(&value), &from);
        carried.push(Carried {
            from: format!("{from}{}", at(found)),
            to: format!("sinks.influxdb.{key} = \"{value}\""),
        });
        env_values.push((key, value));
    }
    let (token, token_from) = token_setting(c.token.as_ref(), &mut dropped);
    t.kv("token", q(&token), &token_from);
    carried.push(Carried {
        from: format!("{token_from}{}", at(c.token.as_ref())),
        to: format!("sinks.influxdb.token = \"{token}\""),
    });
    env_values.push(("token", token));
    let (timeout, from) = seconds_or(c.timeout.as_ref(), TIMEOUT_SECONDS, "influxdb.timeout");
    t.kv("request_timeout", q(&timeout), &from);
    carried.push(Carried {
        from: format!("{from}{}", at(c.timeout.as_ref())),
        to: format!("sinks.influxdb.request_timeout = \"{timeout}\""),
    });
    let (batch, from) = match &c.batch_size {
        Some(f) => (f.value, format!("collector.batch_size: {}", f.raw)),
        None => (
            BATCH_SIZE,
            format!("HPManager's default collector.batch_size ({BATCH_SIZE})"),
        ),
    };
    t.kv("batch_max_points", batch.to_string(), &from);
    carried.push(Carried {
        from: format!("{from}{}", at(c.batch_size.as_ref())),
        to: format!("sinks.influxdb.batch_max_points = {batch}"),
    });
    let (batch_timeout, from) = seconds_or(c.batch_interval.as_ref(), BATCH_SECONDS, "collector.batch_interval");
    t.kv("batch_timeout", q(&batch_timeout), &from);
    carried.push(Carried {
        from: format!("{from}{}", at(c.batch_interval.as_ref())),
        to: format!(
            "sinks.influxdb.batch_timeout = \"{batch_timeout}\" (a batch that is not full is sent after this long)"
        ),
    });
    let retry = c
        .retry_interval
        .as_ref()
        .map(|f| f.value)
        .unwrap_or(Duration::from_secs(RETRY_SECONDS));
    let (retry_max, from) = seconds_or(c.retry_interval.as_ref(), RETRY_SECONDS, "influxdb.retry_interval");
    t.kv(
        "retry_max",
        q(&retry_max),
        &format!("{from} (the longest wait between retries)"),
    );
    let mut to = format!(
        "sinks.influxdb.retry_max = \"{retry_max}\" (HPManager waited this long between reconnection attempts; \
         hpflow retries with backoff from retry_initial up to retry_max)"
    );
    if retry < Duration::from_secs(1) {
        // retry_initial (1s by default) may not exceed retry_max.
        t.kv("retry_initial", q(&retry_max), "no longer than retry_max");
        to.push_str(&format!("; retry_initial = \"{retry_max}\" too"));
    }
    carried.push(Carried {
        from: format!("{from}{}", at(c.retry_interval.as_ref())),
        to,
    });

    t.line("");
    t.comment("New in hpflow: a Prometheus scrape endpoint (/metrics). Remove this table if you do not want it.");
    t.table("sinks.metrics");
    t.kv("type", q("prometheus"), "");
    t.kv("inputs", list(&["states".to_string()]), "");
    t.kv("address", q("${HPFLOW_METRICS_ADDRESS:-127.0.0.1:9464}"), "");

    t.line("");
    t.comment("HPManager's web dashboard. Changing settings on its /settings page needs HPFLOW_ADMIN_TOKEN.");
    t.table("sinks.dashboard");
    t.kv("type", q("dashboard"), "");
    t.kv("inputs", list(&["states".to_string()]), "");
    t.kv("address", q("${HPFLOW_DASHBOARD_ADDRESS:-127.0.0.1:8080}"), "");
    if let Some(d) = &folder.display {
        let path = format!("{}/display.yml", names.files_dir);
        t.kv(
            "display",
            q(&path),
            "HPManager's display.yml, copied unchanged: the initial dashboard settings",
        );
        let fields = if d.fields_ignored { "" } else { ", visible_fields" };
        carried.push(Carried {
            from: format!("{}: refresh_interval, sparkline_minutes{fields}", d.path.display()),
            to: format!("sinks.dashboard.display = \"{path}\" (read as it is)"),
        });
    }

    let mut env: Vec<EnvNeed> = Vec::new();
    for (key, value) in &env_values {
        for name in required_vars(value) {
            if env.iter().all(|e| e.name != name) {
                let stand_in = match (*key, value.as_str() == format!("${{{name}}}")) {
                    ("endpoint", true) => "http://localhost:8086",
                    ("endpoint", false) => "localhost",
                    _ => "unset",
                };
                env.push(EnvNeed {
                    name,
                    stand_in: stand_in.into(),
                });
            }
        }
    }
    Ok(Pipeline {
        text: t.out,
        carried,
        dropped,
        env,
        source_of,
        source_ids,
    })
}

fn header(t: &mut Text, folder: &Folder, names: &Names<'_>) {
    t.comment(&format!(
        "Imported from HPManager by `hpflow import` (hpflow {}) on {},",
        env!("CARGO_PKG_VERSION"),
        names.now
    ));
    t.comment(&format!("from {}.", names.from));
    t.comment("");
    t.comment("HPManager's collector and dashboard in one process:");
    t.comment(&format!(
        "  {0}/heatpumps.yml + {0}/registers.yml → scale → efficiency → state_diff",
        names.files_dir
    ));
    t.comment("    → InfluxDB 2 (for Grafana) + Prometheus /metrics + the live dashboard");
    t.comment("");
    let registers = match &folder.registers.from {
        Some(_) => "registers.yml",
        None => "hpflow's built-in registers.yml (HPManager's folder had none)",
    };
    let display = if folder.display.is_some() { ", display.yml" } else { "" };
    t.comment(&format!(
        "{}/ holds HPManager's heatpumps.yml{display} and {registers}, copied unchanged:",
        names.files_dir
    ));
    t.comment("edit them there (enabling a pump is still one `enabled: true`).");
    t.comment("");
    t.comment("Environment, with HPManager's names:");
    t.comment("  INFLUXDB_URL, INFLUXDB_ORG, INFLUXDB_BUCKET, INFLUXDB_TOKEN   (see the influxdb sink)");
    t.comment("  HPFLOW_DATA_DIR   HPFLOW_ADMIN_TOKEN (dashboard settings)");
    t.comment("  HPFLOW_DASHBOARD_ADDRESS (127.0.0.1:8080)   HPFLOW_METRICS_ADDRESS (127.0.0.1:9464)");
    t.comment("");
    t.comment(&format!("  hpflow validate {}", names.pipeline));
    t.comment(&format!("  hpflow run {}", names.pipeline));
}

/// Groups the rtu entries by serial port; enabled entries of one port must agree
/// on the line, which is the first enabled entry's. A disabled entry that does
/// not agree is not polled either way: it is reported in `dropped`.
fn buses(folder: &Folder, dropped: &mut Vec<Dropped>) -> Result<Vec<Bus>, Vec<Diagnostic>> {
    let mut buses: Vec<Bus> = Vec::new();
    // The pump whose serial line each bus takes.
    let mut set_by: Vec<&Pump> = Vec::new();
    for p in &folder.pumps {
        let Link::Rtu { port, serial } = &p.link else {
            continue;
        };
        match buses.iter().position(|b| &b.port == port) {
            Some(i) => {
                let b = &mut buses[i];
                if p.enabled && !set_by[i].enabled {
                    b.serial = *serial;
                    set_by[i] = p;
                }
                b.pumps.push(p.index);
                b.needs_timeout |= !p.has_timeout;
            }
            None => {
                buses.push(Bus {
                    id: String::new(),
                    port: port.clone(),
                    serial: *serial,
                    pumps: vec![p.index],
                    needs_timeout: !p.has_timeout,
                });
                set_by.push(p);
            }
        }
    }
    let mut errors = Vec::new();
    for p in &folder.pumps {
        let Link::Rtu { port, serial } = &p.link else {
            continue;
        };
        let Some(i) = buses.iter().position(|b| &b.port == port) else {
            continue;
        };
        let (b, first) = (&buses[i], &set_by[i].id);
        if b.serial == *serial {
            continue;
        }
        let path = entry_path(p.index, &["modbus"]);
        if p.enabled {
            errors.push(folder.heatpumps.diag(
                Severity::Error,
                &path,
                format!(
                    "heat pump `{}` on {port} is set to {} but `{first}` on the same port to {}; \
                     the pumps of one serial bus share its settings",
                    p.id,
                    describe(serial),
                    describe(&b.serial)
                ),
            ));
        } else {
            dropped.push(Dropped {
                what: format!("the serial line of `{}`: {}", p.id, describe(serial)),
                at: folder.heatpumps.place(&path),
                why: format!(
                    "`{}` is disabled, and the pumps of one serial bus share its settings: {port} runs at {} \
                     (`{first}`'s); make them agree before enabling it",
                    p.id,
                    describe(&b.serial)
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let single = buses.len() == 1;
    let mut taken = vec!["heatpumps".to_string()];
    for b in &mut buses {
        let base = if single {
            "heatpumps_rtu".to_string()
        } else {
            let name = std::path::Path::new(&b.port)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let clean: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .collect();
            format!("heatpumps_{clean}")
        };
        let mut id = base.clone();
        let mut n = 2;
        while taken.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        taken.push(id.clone());
        b.id = id;
    }
    Ok(buses)
}

fn pump_id(folder: &Folder, index: usize) -> Option<&str> {
    folder.pumps.iter().find(|p| p.index == index).map(|p| p.id.as_str())
}

/// "hp1, hp2" and " (disabled: hp3)" for the pumps of one transport.
fn pump_lists(folder: &Folder, mine: impl Fn(&Link) -> bool) -> (String, String) {
    let ids = |enabled: bool| -> Vec<&str> {
        folder
            .pumps
            .iter()
            .filter(|p| mine(&p.link) && p.enabled == enabled)
            .map(|p| p.id.as_str())
            .collect()
    };
    let on = ids(true);
    let off = ids(false);
    let on = if on.is_empty() {
        "none enabled".to_string()
    } else {
        on.join(", ")
    };
    let off = if off.is_empty() {
        String::new()
    } else {
        format!(" (disabled: {})", off.join(", "))
    };
    (on, off)
}

fn parity_name(p: Parity) -> &'static str {
    match p {
        Parity::None => "none",
        Parity::Even => "even",
        Parity::Odd => "odd",
    }
}

fn describe(s: &Serial) -> String {
    let p = match s.parity {
        Parity::None => 'N',
        Parity::Even => 'E',
        Parity::Odd => 'O',
    };
    format!("{} baud {}{p}{}", s.baud, s.data_bits, s.stop_bits)
}

/// " (file:line:column)" of a value that was in a file.
fn at<T>(found: Option<&Found<T>>) -> String {
    found.map(|f| format!(" ({})", f.at)).unwrap_or_default()
}

/// A duration in hpflow's notation ("10s", "2s 500ms").
pub(super) fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The duration and a note on where it came from.
fn seconds_or(found: Option<&Found<Duration>>, default: u64, key: &str) -> (String, String) {
    match found {
        Some(f) => (duration(f.value), format!("{key}: {}", f.raw)),
        None => (
            duration(Duration::from_secs(default)),
            format!("HPManager's default {key} ({default})"),
        ),
    }
}

/// url/org/bucket: HPManager let INFLUXDB_URL etc. override the file, so a
/// plain value becomes that variable's default; a `${…}` placeholder is kept
/// verbatim (hpflow reads the same syntax).
fn env_setting(found: Option<&Found<String>>, key: &str, var: &str, default: &str, file: &str) -> (String, String) {
    match found {
        None => (
            format!("${{{var}:-{default}}}"),
            format!("influxdb.{key} (not in {file}): {var}, else HPManager's usual {default}"),
        ),
        Some(f) if f.value.contains("${") => (f.value.clone(), format!("influxdb.{key}: kept as written")),
        Some(f) if f.value.contains(['$', '}']) => (
            f.value.replace('$', "$$"),
            format!(
                "influxdb.{key}: {} (written out: it cannot be a ${{{var}:-…}} default)",
                f.raw
            ),
        ),
        Some(f) => (
            format!("${{{var}:-{}}}", f.value),
            format!("influxdb.{key}: {}; {var} still overrides it, as in HPManager", f.raw),
        ),
    }
}

/// The token never goes into the pipeline file: a written-out one is replaced
/// by `${INFLUXDB_TOKEN}`, which HPManager also read.
fn token_setting(found: Option<&Found<String>>, dropped: &mut Vec<Dropped>) -> (String, String) {
    const STRICT: &str = "${INFLUXDB_TOKEN}";
    match found {
        None => (
            STRICT.into(),
            "influxdb.token (not in collector.yml): INFLUXDB_TOKEN, required".into(),
        ),
        Some(f) if f.value.is_empty() => (
            "${INFLUXDB_TOKEN:-}".into(),
            "influxdb.token: empty, so no token unless INFLUXDB_TOKEN is set".into(),
        ),
        Some(f) if f.value.contains("${") => (
            f.value.clone(),
            if required_vars(&f.value).is_empty() {
                "influxdb.token: kept as written".into()
            } else {
                "influxdb.token: kept as written; required, hpflow will not start while it is unset".into()
            },
        ),
        Some(f) => {
            dropped.push(Dropped {
                what: "influxdb.token (its value)".into(),
                at: f.at.clone(),
                why: "secrets stay out of pipeline files: the pipeline reads ${INFLUXDB_TOKEN}; \
                      set INFLUXDB_TOKEN to the token from collector.yml"
                    .into(),
            });
            (
                STRICT.into(),
                "influxdb.token: written in collector.yml; not copied, read from INFLUXDB_TOKEN".into(),
            )
        }
    }
}

/// Variables `value` reads without a default, by hpflow's own interpolation.
pub(super) fn required_vars(value: &str) -> Vec<String> {
    let mut need: Vec<String> = Vec::new();
    loop {
        let last = RefCell::new(None::<String>);
        let result = interpolate(value, &|name: &str| {
            *last.borrow_mut() = Some(name.to_string());
            need.iter().any(|n| n == name).then(String::new)
        });
        match (result, last.into_inner()) {
            (Err(_), Some(name)) if !need.contains(&name) => need.push(name),
            _ => return need,
        }
    }
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The pipeline text being written, with comments lined up.
#[derive(Default)]
struct Text {
    out: String,
}

/// Column where end-of-line comments start.
const COMMENT_COLUMN: usize = 44;

impl Text {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn comment(&mut self, s: &str) {
        let s = one_line(s);
        if s.is_empty() {
            self.line("#");
        } else {
            self.line(&format!("# {s}"));
        }
    }

    fn table(&mut self, name: &str) {
        self.line(&format!("[{name}]"));
    }

    fn kv(&mut self, key: &str, value: String, comment: &str) {
        let mut l = format!("{key} = {value}");
        let comment = one_line(comment);
        if !comment.is_empty() {
            let pad = COMMENT_COLUMN.saturating_sub(l.chars().count()).max(1);
            let _ = write!(l, "{:pad$}# {comment}", "");
        }
        self.line(&l);
    }
}

/// User text inside a comment stays on its line.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(v: &str) -> Found<String> {
        Found {
            value: v.into(),
            raw: v.into(),
            at: "collector.yml:7:3".into(),
        }
    }

    #[test]
    fn placeholders_are_kept_and_plain_values_keep_hpmanagers_env_override() {
        let f = found("${INFLUXDB_URL:-http://influxdb:8086}");
        assert_eq!(
            env_setting(Some(&f), "url", "INFLUXDB_URL", "http://localhost:8086", "c").0,
            "${INFLUXDB_URL:-http://influxdb:8086}"
        );
        let f = found("http://10.0.0.5:8086");
        assert_eq!(
            env_setting(Some(&f), "url", "INFLUXDB_URL", "http://localhost:8086", "c").0,
            "${INFLUXDB_URL:-http://10.0.0.5:8086}"
        );
        let f = found("a$b}");
        assert_eq!(env_setting(Some(&f), "org", "INFLUXDB_ORG", "x", "c").0, "a$$b}");
        assert_eq!(
            env_setting(None, "bucket", "INFLUXDB_BUCKET", "heatpump-data", "c").0,
            "${INFLUXDB_BUCKET:-heatpump-data}"
        );
    }

    #[test]
    fn a_written_out_token_is_not_copied_into_the_pipeline() {
        let mut dropped = Vec::new();
        let (v, _) = token_setting(Some(&found("my-super-secret")), &mut dropped);
        assert_eq!(v, "${INFLUXDB_TOKEN}");
        assert_eq!(dropped.len(), 1);
        assert!(!dropped[0].why.contains("my-super-secret"));
        let (v, _) = token_setting(Some(&found("${INFLUXDB_TOKEN}")), &mut dropped);
        assert_eq!(v, "${INFLUXDB_TOKEN}");
        let (v, _) = token_setting(Some(&found("")), &mut dropped);
        assert_eq!(v, "${INFLUXDB_TOKEN:-}");
    }

    #[test]
    fn required_variables_are_those_without_a_default() {
        assert_eq!(required_vars("${INFLUXDB_TOKEN}"), vec!["INFLUXDB_TOKEN"]);
        assert_eq!(required_vars("${A:-x}/${B}/${C}"), vec!["B", "C"]);
        assert!(required_vars("${INFLUXDB_TOKEN:-}").is_empty());
        assert!(required_vars("plain $$ text").is_empty());
    }

    #[test]
    fn durations_read_back_as_hpflow_writes_them() {
        assert_eq!(duration(Duration::from_secs(10)), "10s");
        assert_eq!(duration(Duration::from_secs_f64(2.5)), "2s 500ms");
        let d = humantime::parse_duration(&duration(Duration::from_secs_f64(0.25))).unwrap();
        assert_eq!(d, Duration::from_millis(250));
    }

    #[test]
    fn comments_line_up_and_user_text_cannot_break_a_line() {
        let mut t = Text::default();
        t.kv("interval", q("10s"), "collector.poll_interval: 10\nx = 1");
        assert_eq!(t.out.lines().count(), 1);
        assert_eq!(t.out.find('#'), Some(COMMENT_COLUMN));
        assert!(toml::from_str::<toml::Table>(&t.out).is_ok());
    }
}
