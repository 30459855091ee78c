//! `display.yml`: HPManager's dashboard settings (`refresh_interval`,
//! `sparkline_minutes`, `visible_fields` per pump), and the settings model
//! hpflow's dashboard keeps them in, with its ranges and checks.
//!
//! The dashboard starts from this file while it has no settings file of its
//! own (`crate::sinks::dashboard::settings` reads and writes that one);
//! `hpflow import` checks it here the way the dashboard will, so a value the
//! dashboard would refuse stops the import rather than `hpflow validate`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::heatpumps::Pump;
use super::{read_optional, Dropped, Reader, Text, DISPLAY};
use crate::event::Schema;
use crate::registers::RegisterMap;
use crate::yaml::{key, key_text, scalar, Seg};

/// HPManager's ranges.
pub const POLL_SECONDS: RangeInclusive<u32> = 5..=120;
pub const REFRESH_SECONDS: RangeInclusive<u32> = 5..=120;
/// Wider than HPManager's 480: the history holds a day.
pub const WINDOW_MINUTES: RangeInclusive<u32> = 5..=1440;
pub const MAX_VISIBLE_FIELDS: usize = 100;

pub const DEFAULT_REFRESH_SECONDS: u32 = 10;
pub const DEFAULT_SPARKLINE_MINUTES: u32 = 60;

/// The whole settings, as the page, the API and the file see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Bumped by every save; a save must name the version it started from.
    #[serde(default)]
    pub version: u64,
    /// Applied to every polling source; `None` leaves the pipeline's intervals.
    #[serde(default)]
    pub poll_interval_seconds: Option<u32>,
    #[serde(default = "default_refresh")]
    pub refresh_interval_seconds: u32,
    #[serde(default = "default_window")]
    pub sparkline_minutes: u32,
    #[serde(default)]
    pub pumps: BTreeMap<String, PumpSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PumpSettings {
    /// This pump's sparkline window; `None`: the default.
    #[serde(default)]
    pub sparkline_minutes: Option<u32>,
    /// Tiles of the overview card, in order; `None`: a default list.
    #[serde(default)]
    pub visible_fields: Option<Vec<String>>,
}

fn default_refresh() -> u32 {
    DEFAULT_REFRESH_SECONDS
}

fn default_window() -> u32 {
    DEFAULT_SPARKLINE_MINUTES
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            version: 0,
            poll_interval_seconds: None,
            refresh_interval_seconds: DEFAULT_REFRESH_SECONDS,
            sparkline_minutes: DEFAULT_SPARKLINE_MINUTES,
            pumps: BTreeMap::new(),
        }
    }
}

/// One rejected value: which input (`refresh_interval_seconds`,
/// `pumps.hp1.visible_fields`) and why, in words for the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Settings {
    pub fn window_minutes(&self, pump: &str) -> u32 {
        self.pumps
            .get(pump)
            .and_then(|p| p.sparkline_minutes)
            .unwrap_or(self.sparkline_minutes)
    }

    pub fn visible_fields(&self, pump: &str) -> Option<&[String]> {
        self.pumps.get(pump).and_then(|p| p.visible_fields.as_deref())
    }

    /// Every problem at once. `schema_of` gives a pump's field descriptions when
    /// the pump has been seen, so field names can be checked.
    pub fn validate(&self, schema_of: &dyn Fn(&str) -> Option<std::sync::Arc<Schema>>) -> Vec<Invalid> {
        let mut errors = Vec::new();
        if let Some(p) = self.poll_interval_seconds {
            in_range(
                &mut errors,
                "poll_interval_seconds",
                "The poll interval",
                p,
                POLL_SECONDS,
                "seconds",
            );
        }
        in_range(
            &mut errors,
            "refresh_interval_seconds",
            "The refresh interval",
            self.refresh_interval_seconds,
            REFRESH_SECONDS,
            "seconds",
        );
        in_range(
            &mut errors,
            "sparkline_minutes",
            "The sparkline window",
            self.sparkline_minutes,
            WINDOW_MINUTES,
            "minutes",
        );
        for (pump, p) in &self.pumps {
            if pump.is_empty() || pump.len() > 200 {
                errors.push(Invalid::new("pumps", "A pump id must be 1 to 200 characters long."));
                continue;
            }
            if let Some(w) = p.sparkline_minutes {
                let what = format!("The sparkline window of `{pump}`");
                in_range(
                    &mut errors,
                    &format!("pumps.{pump}.sparkline_minutes"),
                    &what,
                    w,
                    WINDOW_MINUTES,
                    "minutes",
                );
            }
            let Some(fields) = &p.visible_fields else { continue };
            let key = format!("pumps.{pump}.visible_fields");
            if fields.len() > MAX_VISIBLE_FIELDS {
                errors.push(Invalid::new(
                    &key,
                    format!(
                        "`{pump}` lists {} fields; at most {MAX_VISIBLE_FIELDS} fit on a card.",
                        fields.len()
                    ),
                ));
            }
            let schema = schema_of(pump);
            let mut seen = std::collections::HashSet::new();
            for name in fields {
                if !seen.insert(name.as_str()) {
                    errors.push(Invalid::new(&key, format!("`{pump}`: `{name}` is listed twice.")));
                } else if schema.as_ref().is_some_and(|s| s.field(name).is_none()) {
                    errors.push(Invalid::new(
                        &key,
                        format!("`{pump}` has no field `{name}`; pick names from the list of its fields."),
                    ));
                }
            }
        }
        errors
    }
}

fn in_range(errors: &mut Vec<Invalid>, key: &str, what: &str, v: u32, range: RangeInclusive<u32>, unit: &str) {
    if !range.contains(&v) {
        errors.push(Invalid::new(
            key,
            format!(
                "{what} must be between {} and {} {unit} (got {v}).",
                range.start(),
                range.end()
            ),
        ));
    }
}

/// `visible_fields` when it is there but not HPManager's mapping of pump id to
/// fields: its older flat list of fields (`[outside_temperature, …]`) or a single
/// value. HPManager took that as no per-pump fields, so hpflow does too.
pub(crate) fn ignored_visible_fields(doc: &Value) -> Option<&Value> {
    doc.get("visible_fields")
        .filter(|v| !matches!(v, Value::Mapping(_) | Value::Null))
}

/// Reads HPManager's `display.yml` as initial settings, accepting what HPManager
/// accepted: an empty file (or one that is only `null`) gives the defaults, and a
/// `visible_fields` that is not a mapping ([`ignored_visible_fields`]) gives no
/// per-pump fields.
pub fn from_display_yml(text: &str) -> Result<Settings, String> {
    #[derive(Deserialize)]
    struct Display<Fields> {
        refresh_interval: Option<u32>,
        sparkline_minutes: Option<u32>,
        #[serde(default)]
        visible_fields: Fields,
    }
    type PerPump = BTreeMap<String, Option<Vec<String>>>;
    let doc: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    if doc.is_null() {
        return Ok(Settings::default());
    }
    // Typed from the text, so an error keeps its key path and line.
    let (refresh_interval, sparkline_minutes, visible_fields) = if ignored_visible_fields(&doc).is_some() {
        let d: Display<serde::de::IgnoredAny> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        (d.refresh_interval, d.sparkline_minutes, PerPump::new())
    } else {
        let d: Display<PerPump> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        (d.refresh_interval, d.sparkline_minutes, d.visible_fields)
    };
    let mut s = Settings {
        refresh_interval_seconds: refresh_interval.unwrap_or(DEFAULT_REFRESH_SECONDS),
        sparkline_minutes: sparkline_minutes.unwrap_or(DEFAULT_SPARKLINE_MINUTES),
        ..Settings::default()
    };
    for (pump, fields) in visible_fields {
        s.pumps.insert(
            pump,
            PumpSettings {
                sparkline_minutes: None,
                visible_fields: fields.filter(|f| !f.is_empty()),
            },
        );
    }
    Ok(s)
}

/// display.yml as read, for the copy import writes.
pub(crate) struct Display {
    pub text: String,
    pub path: PathBuf,
    /// `visible_fields` is not per pump, so nothing of it carries over.
    pub fields_ignored: bool,
}

/// A list as one line, `[a, b, c]`, its first few items only.
fn one_line(items: &[Value]) -> String {
    const SHOWN: usize = 4;
    let mut parts: Vec<String> = items
        .iter()
        .take(SHOWN)
        .map(|v| scalar(v).unwrap_or_else(|| "…".into()))
        .collect();
    if items.len() > SHOWN {
        parts.push(format!("… {} more", items.len() - SHOWN));
    }
    format!("[{}]", parts.join(", "))
}

impl Reader {
    pub(crate) fn display(&mut self, dir: &Path) -> Option<Display> {
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
        let fields_ignored = match ignored_visible_fields(&doc) {
            Some(v) => {
                let shown = match v {
                    Value::Sequence(items) => one_line(items),
                    other => scalar(other).unwrap_or_default(),
                };
                self.dropped.push(Dropped {
                    what: format!("visible_fields: {shown}"),
                    at: t.place(&[key("visible_fields")]),
                    why: "fields for no pump in particular (a flat list is HPManager's older format): HPManager \
                          ignored them too, so every card showed its default tiles, as hpflow's do. Choose a \
                          pump's tiles on the dashboard's /settings page, or list them under its id in \
                          display.yml before the dashboard's first start \
                          (`visible_fields: {hp1: [outside_temperature, …]}`)"
                        .into(),
                });
                true
            }
            None => false,
        };
        // An empty list showed an empty card in HPManager; hpflow takes it as "the default tiles".
        if let Some(Value::Mapping(per_pump)) = root.get("visible_fields") {
            for (pump, fields) in per_pump {
                if fields.as_sequence().is_some_and(Vec::is_empty) {
                    let id = key_text(pump);
                    self.dropped.push(Dropped {
                        what: format!("visible_fields.{id}: []"),
                        at: t.place(&[key("visible_fields"), key(&id)]),
                        why: format!(
                            "HPManager showed `{id}`'s card with no tiles; hpflow's dashboard shows its default \
                             tiles for an empty list. Choose `{id}`'s tiles on the dashboard's /settings page"
                        ),
                    });
                }
            }
        }
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
        match from_display_yml(&t.text) {
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
            fields_ignored,
        })
    }

    /// display.yml's pumps and fields against heatpumps.yml and the register map.
    pub(crate) fn display_pumps(&mut self, d: &Display, pumps: &[Pump], map: &RegisterMap) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldMeta, ValueType};
    use std::sync::Arc;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(
            "m",
            vec![
                FieldMeta::gauge("outside_temperature", ValueType::Float),
                FieldMeta::gauge("flow", ValueType::Float),
            ],
        ))
    }

    #[test]
    fn hpmanagers_display_file_gives_the_initial_settings() {
        // HPManager's own file, copied unchanged.
        let s = from_display_yml(include_str!("../../tests/fixtures/hpmanager-config/display.yml")).unwrap();
        assert_eq!(s.refresh_interval_seconds, 10);
        assert_eq!(s.sparkline_minutes, 60);
        assert_eq!(s.visible_fields("hp1").unwrap()[0], "outside_temperature");
        assert!(s.visible_fields("hp2").is_some());
    }

    #[test]
    fn shapes_hpmanager_took_as_nothing_give_the_defaults() {
        for text in [
            "",
            "# nothing yet\n",
            "~\n",
            "null\n",
            "visible_fields:\n",
            "visible_fields: {}\n",
        ] {
            assert_eq!(from_display_yml(text), Ok(Settings::default()), "{text:?}");
        }
        // Its older flat list, in either style, or a single value: no per-pump fields.
        for text in [
            "refresh_interval: 15\nvisible_fields: [outside_temperature, flow]\n",
            "refresh_interval: 15\nvisible_fields:\n- outside_temperature\n- flow\n",
            "refresh_interval: 15\nvisible_fields: outside_temperature\n",
        ] {
            let s = from_display_yml(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(s.refresh_interval_seconds, 15, "{text:?}");
            assert!(s.pumps.is_empty(), "{text:?}");
            assert!(ignored_visible_fields(&serde_yaml::from_str(text).unwrap()).is_some());
        }
        // What HPManager could not read either stays an error, with its place.
        let e = from_display_yml("visible_fields:\n  hp1: 5\n").unwrap_err();
        assert!(e.contains("visible_fields.hp1") && e.contains("line 2"), "{e}");
        let e = from_display_yml("refresh_interval: soon\nvisible_fields: [a]\n").unwrap_err();
        assert!(e.contains("refresh_interval") && e.contains("line 1"), "{e}");
        assert!(from_display_yml("- a\n").is_err());
    }

    #[test]
    fn out_of_range_values_are_each_explained() {
        let mut s = Settings {
            poll_interval_seconds: Some(3),
            refresh_interval_seconds: 500,
            sparkline_minutes: 2,
            ..Settings::default()
        };
        s.pumps.insert(
            "hp1".into(),
            PumpSettings {
                sparkline_minutes: Some(2000),
                visible_fields: Some(vec!["flow".into(), "flow".into(), "nope".into()]),
            },
        );
        let errors = s.validate(&|_| Some(schema()));
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "The poll interval must be between 5 and 120 seconds (got 3).",
                "The refresh interval must be between 5 and 120 seconds (got 500).",
                "The sparkline window must be between 5 and 1440 minutes (got 2).",
                "The sparkline window of `hp1` must be between 5 and 1440 minutes (got 2000).",
                "`hp1`: `flow` is listed twice.",
                "`hp1` has no field `nope`; pick names from the list of its fields.",
            ]
        );
    }
}
