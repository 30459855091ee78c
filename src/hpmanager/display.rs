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

/// Reads HPManager's `display.yml` as initial settings.
pub fn from_display_yml(text: &str) -> Result<Settings, String> {
    #[derive(Deserialize)]
    struct Display {
        refresh_interval: Option<u32>,
        sparkline_minutes: Option<u32>,
        #[serde(default)]
        visible_fields: BTreeMap<String, Option<Vec<String>>>,
    }
    let d: Display = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut s = Settings {
        refresh_interval_seconds: d.refresh_interval.unwrap_or(DEFAULT_REFRESH_SECONDS),
        sparkline_minutes: d.sparkline_minutes.unwrap_or(DEFAULT_SPARKLINE_MINUTES),
        ..Settings::default()
    };
    for (pump, fields) in d.visible_fields {
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
