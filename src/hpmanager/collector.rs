//! `collector.yml`: HPManager's collector settings (poll interval, batches,
//! InfluxDB, logging), read by `hpflow import`, which turns them into the
//! pipeline itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::{read_optional, Dropped, Found, Reader, Text, COLLECTOR};
use crate::yaml::{dotted, key, scalar, with, Seg};

/// What import takes from collector.yml, each value with where it was written.
#[derive(Default)]
pub(crate) struct Collector {
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

impl Reader {
    pub(crate) fn collector(&mut self, dir: &Path) -> Option<Collector> {
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
                if let Err(e) = crate::interpolate::interpolate(&f.value, &|_| Some("x".into())) {
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
}
