//! `InfluxdbConfig`: the sink's keys, their defaults and the checks `hpflow validate` runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::component::Check;

/// Which write API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// InfluxDB 1.x: `POST /write?db=&rp=&precision=`, basic auth.
    V1,
    /// InfluxDB 2.x/3.x, VictoriaMetrics: `POST /api/v2/write?org=&bucket=&precision=`, token auth.
    V2,
}

/// Timestamp precision of the written points (and the `precision` URL parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Ns,
    Us,
    /// The default: keeps the poll's scheduled instant exactly (polls are never
    /// sub-millisecond apart) and is VictoriaMetrics' native resolution.
    #[default]
    Ms,
    S,
}

impl Precision {
    /// Nanoseconds per unit.
    pub fn nanos(self) -> i128 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }

    /// The URL parameter value; v1 and v2 spell nano/microseconds differently.
    pub fn param(self, api: Api) -> &'static str {
        match (self, api) {
            (Precision::Ns, Api::V1) => "n",
            (Precision::Us, Api::V1) => "u",
            (Precision::Ns, Api::V2) => "ns",
            (Precision::Us, Api::V2) => "us",
            (Precision::Ms, _) => "ms",
            (Precision::S, _) => "s",
        }
    }
}

/// How enum fields (fields whose codes have labels) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EnumValues {
    /// The label string (`operating_mode="Comfort mode"`; an unknown code as
    /// `"Unknown(7)"`), as HPManager wrote them: the default, so hpflow can write
    /// into a database HPManager started (InfluxDB fixes a field's type per shard).
    #[default]
    Label,
    /// The integer code (`operating_mode=3i`), for new databases.
    Code,
}

/// The `influxdb` sink: writes every event as line protocol to InfluxDB 1.x
/// (`api = "v1"`), InfluxDB 2.x/3.x or VictoriaMetrics (`api = "v2"`), through a
/// durable disk buffer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxdbConfig {
    /// Base URL of the server, e.g. `http://localhost:8086` (a path prefix is kept).
    pub endpoint: String,
    /// `v1` or `v2`. When left out: `v1` if `database` is set, else `v2`.
    #[serde(default)]
    pub api: Option<Api>,
    /// v1: the database to write to (required).
    #[serde(default)]
    pub database: Option<String>,
    /// v1: the retention policy (the database's default when left out).
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: basic-auth user name.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: basic-auth password (use `${ENV}` interpolation).
    #[serde(default)]
    pub password: Option<String>,
    /// v2: the organisation (required).
    #[serde(default)]
    pub org: Option<String>,
    /// v2: the bucket (required).
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: API token, sent as `Authorization: Token …` (VictoriaMetrics needs none).
    #[serde(default)]
    pub token: Option<String>,
    /// Measurement of the polled values.
    #[serde(default = "default_measurement")]
    pub measurement: String,
    /// Measurement of the state-change events.
    #[serde(default = "default_state_measurement")]
    pub state_measurement: String,
    /// `ns`, `us`, `ms` (default) or `s`.
    #[serde(default)]
    pub precision: Precision,
    /// Enum fields as `label` strings (default, HPManager's type) or integer `code`s.
    #[serde(default)]
    pub enum_values: EnumValues,
    /// Most points in one write request.
    #[serde(default = "default_batch_max_points")]
    pub batch_max_points: usize,
    /// Most bytes (uncompressed line protocol) in one write request.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// How long a batch that is not full may wait for more points.
    #[serde(default = "default_batch_timeout", with = "crate::component::duration")]
    pub batch_timeout: Duration,
    /// Timeout of one HTTP request.
    #[serde(default = "default_request_timeout", with = "crate::component::duration")]
    pub request_timeout: Duration,
    /// Compress request bodies with gzip.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// First wait before retrying a failed write; doubles up to `retry_max` (with jitter).
    #[serde(default = "default_retry_initial", with = "crate::component::duration")]
    pub retry_initial: Duration,
    #[serde(default = "default_retry_max", with = "crate::component::duration")]
    pub retry_max: Duration,
    /// Bound of `dead-letter.lp` and the previous `dead-letter.lp.1` together; the
    /// oldest points go beyond it (counted).
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    #[serde(default)]
    pub buffer: BufferConfig,
}

/// The `buffer` table: where events wait until the server has accepted them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Keep events on disk (`<data_dir>/influxdb/<id>/`) instead of in memory.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Bound of the events waiting (on disk or in memory); the oldest are dropped beyond it.
    #[serde(default = "default_buffer_max_bytes")]
    pub max_bytes: u64,
    /// How often appended events are fsynced (also on shutdown).
    #[serde(default = "default_sync_interval", with = "crate::component::duration")]
    pub sync_interval: Duration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            enabled: true,
            max_bytes: default_buffer_max_bytes(),
            sync_interval: default_sync_interval(),
        }
    }
}

fn default_measurement() -> String {
    "heatpump_metrics".into()
}
fn default_state_measurement() -> String {
    "heatpump_state_changes".into()
}
fn default_batch_max_points() -> usize {
    5000
}
fn default_batch_max_bytes() -> usize {
    1 << 20
}
fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_dead_letter_max_bytes() -> u64 {
    16 << 20
}
fn default_buffer_max_bytes() -> u64 {
    256 << 20
}
fn default_sync_interval() -> Duration {
    Duration::from_secs(1)
}

/// Smallest buffer bound that makes sense: a few segments of a few records.
const MIN_BUFFER_BYTES: u64 = 64 << 10;
/// Smallest dead-letter bound: a few rejected points in each of the two files.
const MIN_DEAD_LETTER_BYTES: u64 = 16 << 10;

fn set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

impl InfluxdbConfig {
    /// The API in use: as written, else inferred from the keys present.
    pub fn api(&self) -> Api {
        self.api.unwrap_or(if set(&self.database) && !set(&self.bucket) {
            Api::V1
        } else {
            Api::V2
        })
    }

    pub fn check(&self, cx: &mut Check<'_>) {
        match parse_endpoint(&self.endpoint) {
            Ok(_) => {}
            Err(e) => cx.error(Some("endpoint"), e),
        }
        let api = self.api();
        if self.api.is_none() && set(&self.database) && set(&self.bucket) {
            cx.error(
                Some("api"),
                "both `database` (v1) and `bucket` (v2) are set; choose with `api = \"v1\"` or `api = \"v2\"`",
            );
        }
        match api {
            Api::V1 => {
                if !set(&self.database) {
                    cx.error(Some("database"), "`api = \"v1\"` needs `database`");
                }
                for (key, v) in [("org", &self.org), ("bucket", &self.bucket), ("token", &self.token)] {
                    if v.is_some() && self.api.is_some() {
                        cx.warn(
                            Some(key),
                            format!("`{key}` is a v2 key and is ignored with `api = \"v1\"`"),
                        );
                    }
                }
                if set(&self.password) && !set(&self.username) {
                    cx.error(Some("password"), "`password` needs `username`");
                }
            }
            Api::V2 => {
                if !set(&self.bucket) {
                    cx.error(Some("bucket"), "`api = \"v2\"` needs `bucket`");
                }
                if !set(&self.org) {
                    cx.error(Some("org"), "`api = \"v2\"` needs `org`");
                }
                if !set(&self.token) {
                    cx.warn(
                        Some("token"),
                        "no `token`: InfluxDB 2.x refuses writes without one (points then wait in the buffer); \
                         set it, e.g. `token = \"${INFLUXDB_TOKEN}\"` (VictoriaMetrics needs none)",
                    );
                }
                for (key, v) in [
                    ("database", &self.database),
                    ("retention_policy", &self.retention_policy),
                    ("username", &self.username),
                    ("password", &self.password),
                ] {
                    if v.is_some() {
                        cx.warn(
                            Some(key),
                            format!("`{key}` is a v1 key and is ignored with `api = \"v2\"`"),
                        );
                    }
                }
            }
        }
        for (key, m) in [
            ("measurement", &self.measurement),
            ("state_measurement", &self.state_measurement),
        ] {
            if let Err(why) = super::Encoder::check_measurement(m) {
                cx.error(Some(key), format!("`{key}` {why}"));
            }
        }
        if self.batch_max_points == 0 {
            cx.error(Some("batch_max_points"), "`batch_max_points` must be at least 1");
        }
        if self.batch_max_bytes == 0 {
            cx.error(Some("batch_max_bytes"), "`batch_max_bytes` must be at least 1");
        }
        for (key, d) in [
            ("request_timeout", self.request_timeout),
            ("retry_initial", self.retry_initial),
            ("retry_max", self.retry_max),
            ("buffer.sync_interval", self.buffer.sync_interval),
        ] {
            if d.is_zero() {
                cx.error(Some(key), format!("`{key}` must be longer than zero"));
            }
        }
        if self.retry_max < self.retry_initial {
            cx.error(
                Some("retry_max"),
                "`retry_max` must not be shorter than `retry_initial`",
            );
        }
        if self.dead_letter_max_bytes < MIN_DEAD_LETTER_BYTES {
            cx.error(
                Some("dead_letter_max_bytes"),
                format!("`dead_letter_max_bytes` must be at least {MIN_DEAD_LETTER_BYTES} (16 KiB)"),
            );
        }
        if self.buffer.max_bytes == 0 {
            cx.error(Some("buffer.max_bytes"), "`buffer.max_bytes` must be larger than zero");
        } else if self.buffer.max_bytes < MIN_BUFFER_BYTES {
            cx.error(
                Some("buffer.max_bytes"),
                format!("`buffer.max_bytes` must be at least {MIN_BUFFER_BYTES} (64 KiB)"),
            );
        }
        // InfluxDB drops a whole point that has a field or tag named `time`; the
        // encoder leaves such keys out, so say so before it happens.
        let mut time_fields: Vec<&str> = Vec::new();
        for schema in cx.input_schemas {
            if schema.field("time").is_some() && !time_fields.contains(&schema.model.as_str()) {
                time_fields.push(&schema.model);
            }
        }
        if !time_fields.is_empty() {
            cx.warn(
                None,
                format!(
                    "InfluxDB rejects a field named `time`; it is not written (models: {}). Rename it with a `rename` transform",
                    time_fields.join(", ")
                ),
            );
        }
    }
}

/// `<data_dir>/influxdb/<id>/`: the buffer's segments, ack file and dead letters.
pub fn buffer_dir(data_dir: &Path, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("influxdb").join(safe)
}

/// The endpoint as a URL, or a sentence saying what is wrong with it.
pub fn parse_endpoint(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL ({e}); write e.g. `http://localhost:8086`"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{s}`: the scheme must be `http` or `https`"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{s}`: leave out the query and fragment; use the sink's keys instead"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::Problem;

    fn problems(toml_text: &str) -> Vec<String> {
        let c: InfluxdbConfig = toml::from_str(toml_text).unwrap();
        let dir = Path::new("/tmp");
        let mut cx = Check::new("influx", dir, dir, &[]);
        c.check(&mut cx);
        cx.problems
            .iter()
            .map(|p| match p {
                Problem::Error { key, message } => format!("error {}: {message}", key.as_deref().unwrap_or("-")),
                Problem::Warning { key, message } => format!("warn {}: {message}", key.as_deref().unwrap_or("-")),
                Problem::External(d) => format!("{d:?}"),
            })
            .collect()
    }

    #[test]
    fn a_v2_config_with_bucket_and_org_checks_clean_and_takes_the_defaults() {
        let text = "endpoint = \"http://localhost:8086\"\nbucket = \"b\"\norg = \"o\"\ntoken = \"t\"";
        assert_eq!(problems(text), Vec::<String>::new());
        let c: InfluxdbConfig = toml::from_str(text).unwrap();
        assert_eq!(c.api(), Api::V2);
        assert_eq!(c.measurement, "heatpump_metrics");
        assert_eq!(c.state_measurement, "heatpump_state_changes");
        assert_eq!(c.precision, Precision::Ms);
        assert_eq!(c.enum_values, EnumValues::Label);
        assert_eq!((c.batch_max_points, c.batch_max_bytes), (5000, 1 << 20));
        assert_eq!(c.batch_timeout, Duration::from_secs(1));
        assert!(c.gzip && c.buffer.enabled);
        assert_eq!(c.buffer.max_bytes, 256 << 20);
        assert_eq!(c.dead_letter_max_bytes, 16 << 20);
    }

    #[test]
    fn the_sample_in_the_module_docs_parses_and_shows_the_defaults() {
        let docs: String = include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .skip_while(|l| *l != "```toml")
            .skip(1)
            .take_while(|l| *l != "```")
            .collect::<Vec<_>>()
            .join("\n");
        let table: toml::Table = toml::from_str(&docs).unwrap();
        let mut sink = table["sinks"]["influx"].as_table().unwrap().clone();
        assert_eq!(sink.remove("type").unwrap().as_str(), Some("influxdb"));
        sink.remove("inputs");
        let c: InfluxdbConfig = toml::Value::Table(sink).try_into().unwrap();
        let d: InfluxdbConfig =
            toml::from_str("endpoint = \"http://localhost:8086\"\nbucket = \"b\"\norg = \"o\"").unwrap();
        assert_eq!(c.token.as_deref(), Some("${INFLUXDB_TOKEN}"));
        assert_eq!(
            format!(
                "{:?}",
                (
                    &c.measurement,
                    &c.state_measurement,
                    c.precision,
                    c.batch_max_points,
                    c.batch_max_bytes
                )
            ),
            format!(
                "{:?}",
                (
                    &d.measurement,
                    &d.state_measurement,
                    d.precision,
                    d.batch_max_points,
                    d.batch_max_bytes
                )
            )
        );
        assert_eq!(
            (c.batch_timeout, c.request_timeout, c.gzip, c.retry_initial, c.retry_max),
            (d.batch_timeout, d.request_timeout, d.gzip, d.retry_initial, d.retry_max)
        );
        assert_eq!(c.dead_letter_max_bytes, d.dead_letter_max_bytes);
        assert_eq!(
            (c.buffer.enabled, c.buffer.max_bytes, c.buffer.sync_interval),
            (d.buffer.enabled, d.buffer.max_bytes, d.buffer.sync_interval)
        );
    }

    #[test]
    fn the_api_is_inferred_from_database() {
        let c: InfluxdbConfig = toml::from_str("endpoint = \"http://h:8086\"\ndatabase = \"d\"").unwrap();
        assert_eq!(c.api(), Api::V1);
    }

    #[test]
    fn missing_keys_for_the_chosen_api_are_errors() {
        let p = problems("endpoint = \"http://h:8086\"\napi = \"v2\"");
        assert!(
            p.contains(&"error bucket: `api = \"v2\"` needs `bucket`".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(&"error org: `api = \"v2\"` needs `org`".to_string()),
            "{p:?}"
        );
        let p = problems("endpoint = \"http://h:8086\"\napi = \"v1\"");
        assert_eq!(p, vec!["error database: `api = \"v1\"` needs `database`".to_string()]);
    }

    #[test]
    fn bad_urls_zero_sizes_and_zero_durations_are_errors() {
        let p = problems(
            "endpoint = \"localhost:8086\"\ndatabase = \"d\"\nbatch_max_points = 0\nbatch_max_bytes = 0\n\
             request_timeout = \"0s\"\n[buffer]\nmax_bytes = 0\nsync_interval = \"0s\"",
        );
        let keys: Vec<&str> = p.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "error endpoint",
                "error batch_max_points",
                "error batch_max_bytes",
                "error request_timeout",
                "error buffer.sync_interval",
                "error buffer.max_bytes"
            ],
            "{p:?}"
        );
        assert!(parse_endpoint("ftp://h").is_err());
        assert!(parse_endpoint("http://h:8086/prefix").is_ok());
    }

    #[test]
    fn a_dead_letter_bound_below_16_kib_is_an_error() {
        let p = problems("endpoint = \"http://h:8086\"\ndatabase = \"d\"\ndead_letter_max_bytes = 1000");
        assert_eq!(
            p,
            ["error dead_letter_max_bytes: `dead_letter_max_bytes` must be at least 16384 (16 KiB)"]
        );
        assert!(problems("endpoint = \"http://h:8086\"\ndatabase = \"d\"\ndead_letter_max_bytes = 16384").is_empty());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<InfluxdbConfig>("endpoint = \"http://h\"\nbukket = \"b\"").is_err());
    }

    #[test]
    fn precision_parameters_follow_each_api() {
        assert_eq!(Precision::Ns.param(Api::V1), "n");
        assert_eq!(Precision::Ns.param(Api::V2), "ns");
        assert_eq!(Precision::Us.param(Api::V1), "u");
        assert_eq!(Precision::Ms.param(Api::V2), "ms");
    }

    #[test]
    fn component_ids_make_safe_folder_names() {
        assert_eq!(buffer_dir(Path::new("/d"), "a/b c"), Path::new("/d/influxdb/a_b_c"));
    }
}
