//! What the settings page changes: poll and refresh intervals, sparkline
//! windows and each pump's tiles.
//!
//! Kept in `<data_dir>/dashboard/<sink id>/settings.toml`, written atomically
//! and edited in place (with `toml_edit`), so comments and layout of a
//! hand-edited file survive a save from the page:
//!
//! ```toml
//! version = 3                     # bumped by every save; a stale form gets 409
//! poll_interval_seconds = 10      # absent: the intervals of the pipeline file
//! refresh_interval_seconds = 10
//! sparkline_minutes = 60
//!
//! [pumps.hp1]
//! sparkline_minutes = 120
//! visible_fields = ["outside_temperature", "actual_dhw_temperature"]
//! ```
//!
//! Without that file, HPManager's `display.yml` (`refresh_interval`,
//! `sparkline_minutes`, `visible_fields` per pump) gives the initial settings.
//! The settings model, its ranges and its checks are
//! [`crate::hpmanager::display`]'s, shared with `hpflow import`; this module
//! reads and writes the dashboard's own file and the settings form.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, Value as TomlValue};

pub use crate::hpmanager::display::{
    from_display_yml, Invalid, PumpSettings, Settings, DEFAULT_REFRESH_SECONDS, DEFAULT_SPARKLINE_MINUTES,
    MAX_VISIBLE_FIELDS, POLL_SECONDS, REFRESH_SECONDS, WINDOW_MINUTES,
};

/// Reads the settings form: `version`, `poll_interval_seconds` (empty: the
/// pipeline's), `refresh_interval_seconds`, `sparkline_minutes`, and per pump
/// `pump.<id>.sparkline_minutes` (empty: the default) and `pump.<id>.visible_fields`
/// (one name a line or comma-separated; empty: the default list). Pumps the form
/// does not mention keep their settings.
pub fn from_form(pairs: &[(String, String)], current: &Settings) -> Result<(u64, Settings), Vec<Invalid>> {
    let mut errors = Vec::new();
    let mut next = current.clone();
    let mut version = None;
    let number = |key: &str, what: &str, v: &str, errors: &mut Vec<Invalid>| -> Option<u32> {
        match v.trim().parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(Invalid::new(
                    key,
                    format!("{what} must be a whole number (got `{}`).", v.trim()),
                ));
                None
            }
        }
    };
    for (key, v) in pairs {
        match key.as_str() {
            "version" => version = v.trim().parse::<u64>().ok(),
            "poll_interval_seconds" => {
                next.poll_interval_seconds = if v.trim().is_empty() {
                    None
                } else {
                    number(key, "The poll interval", v, &mut errors).or(next.poll_interval_seconds)
                }
            }
            "refresh_interval_seconds" => {
                if let Some(n) = number(key, "The refresh interval", v, &mut errors) {
                    next.refresh_interval_seconds = n;
                }
            }
            "sparkline_minutes" => {
                if let Some(n) = number(key, "The sparkline window", v, &mut errors) {
                    next.sparkline_minutes = n;
                }
            }
            _ => {
                let Some(rest) = key.strip_prefix("pump.") else {
                    continue;
                };
                if let Some(pump) = rest.strip_suffix(".sparkline_minutes") {
                    let what = format!("The sparkline window of `{pump}`");
                    let k = format!("pumps.{pump}.sparkline_minutes");
                    let w = if v.trim().is_empty() {
                        None
                    } else {
                        number(&k, &what, v, &mut errors)
                    };
                    next.pumps.entry(pump.to_string()).or_default().sparkline_minutes = w;
                } else if let Some(pump) = rest.strip_suffix(".visible_fields") {
                    let fields: Vec<String> = v
                        .split(['\n', ',', '\r'])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    next.pumps.entry(pump.to_string()).or_default().visible_fields =
                        (!fields.is_empty()).then_some(fields);
                }
            }
        }
    }
    next.pumps.retain(|_, p| *p != PumpSettings::default());
    let Some(version) = version else {
        errors.push(Invalid::new(
            "version",
            "The form lacks its version; reload the page and try again.",
        ));
        return Err(errors);
    };
    if errors.is_empty() {
        Ok((version, next))
    } else {
        Err(errors)
    }
}

/// Reads a settings file; `Ok(None)` when there is none.
pub fn load(path: &Path) -> Result<Option<Settings>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    toml::from_str::<Settings>(&text)
        .map(Some)
        .map_err(|e| format!("{}: {}", path.display(), e.message()))
}

const HEADER: &str = "\
# Settings of hpflow's dashboard, written by its settings page. You may edit
# this file by hand while hpflow is stopped; comments and layout are kept.
";

/// The file text for `s`, edited into `existing` (a hand-edited file) when
/// given, so its comments and order survive.
pub fn render(existing: Option<&str>, s: &Settings) -> String {
    let existing = existing.and_then(|t| t.parse::<DocumentMut>().ok());
    // A new file starts with a comment; later saves keep it as the first key's prefix.
    let header = if existing.is_none() { HEADER } else { "" };
    let mut doc = existing.unwrap_or_default();
    let root = doc.as_table_mut();
    set(root, "version", TomlValue::from(s.version as i64));
    match s.poll_interval_seconds {
        Some(p) => set(root, "poll_interval_seconds", TomlValue::from(i64::from(p))),
        None => {
            root.remove("poll_interval_seconds");
        }
    }
    set(
        root,
        "refresh_interval_seconds",
        TomlValue::from(i64::from(s.refresh_interval_seconds)),
    );
    set(
        root,
        "sparkline_minutes",
        TomlValue::from(i64::from(s.sparkline_minutes)),
    );

    if s.pumps.is_empty() {
        root.remove("pumps");
    } else {
        if !root.get("pumps").is_some_and(Item::is_table) {
            let mut t = Table::new();
            t.set_implicit(true);
            root.insert("pumps", Item::Table(t));
        }
        if let Some(pumps) = root.get_mut("pumps").and_then(Item::as_table_mut) {
            let stale: Vec<String> = pumps
                .iter()
                .map(|(k, _)| k.to_string())
                .filter(|k| !s.pumps.contains_key(k))
                .collect();
            for k in stale {
                pumps.remove(&k);
            }
            for (id, p) in &s.pumps {
                if !pumps.get(id).is_some_and(Item::is_table) {
                    pumps.insert(id, Item::Table(Table::new()));
                }
                let Some(t) = pumps.get_mut(id).and_then(Item::as_table_mut) else {
                    continue;
                };
                match p.sparkline_minutes {
                    Some(w) => set(t, "sparkline_minutes", TomlValue::from(i64::from(w))),
                    None => {
                        t.remove("sparkline_minutes");
                    }
                }
                match &p.visible_fields {
                    Some(fields) => {
                        let mut a = Array::new();
                        for f in fields {
                            let mut v = TomlValue::from(f.as_str());
                            v.decor_mut().set_prefix("\n    ");
                            a.push_formatted(v);
                        }
                        a.set_trailing_comma(true);
                        a.set_trailing("\n");
                        set(t, "visible_fields", TomlValue::Array(a));
                    }
                    None => {
                        t.remove("visible_fields");
                    }
                }
            }
        }
    }
    format!("{header}{doc}")
}

/// Replaces a value but keeps its comment (`key = 1  # like this`).
fn set(table: &mut Table, key: &str, mut v: TomlValue) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        None => {
            table.insert(key, Item::Value(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_read_with_empty_meaning_default() {
        let pairs: Vec<(String, String)> = [
            ("version", "4"),
            ("poll_interval_seconds", ""),
            ("refresh_interval_seconds", "15"),
            ("sparkline_minutes", "120"),
            ("pump.hp1.sparkline_minutes", ""),
            ("pump.hp1.visible_fields", "flow\r\n outside_temperature ,\n"),
            ("pump.hp2.visible_fields", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (version, s) = from_form(&pairs, &Settings::default()).unwrap();
        assert_eq!(version, 4);
        assert_eq!(s.refresh_interval_seconds, 15);
        assert_eq!(s.visible_fields("hp1").unwrap(), ["flow", "outside_temperature"]);
        assert!(!s.pumps.contains_key("hp2"));
    }

    #[test]
    fn a_number_that_is_not_one_is_named() {
        let pairs = vec![
            ("version".to_string(), "0".to_string()),
            ("refresh_interval_seconds".to_string(), "ten".to_string()),
        ];
        let errors = from_form(&pairs, &Settings::default()).unwrap_err();
        assert_eq!(
            errors[0].message,
            "The refresh interval must be a whole number (got `ten`)."
        );
    }

    #[test]
    fn saving_keeps_the_comments_of_a_hand_edited_file() {
        let hand = "# my dashboard\nversion = 1\nrefresh_interval_seconds = 30 # slow tablet\nsparkline_minutes = 60\n\n# upstairs\n[pumps.hp1]\nsparkline_minutes = 90\n";
        let mut s: Settings = toml::from_str(hand).unwrap();
        s.version = 2;
        s.refresh_interval_seconds = 20;
        s.poll_interval_seconds = Some(15);
        s.pumps.get_mut("hp1").unwrap().visible_fields = Some(vec!["flow".into()]);
        let text = render(Some(hand), &s);
        assert!(text.contains("# my dashboard"), "{text}");
        assert!(text.contains("refresh_interval_seconds = 20 # slow tablet"), "{text}");
        assert!(text.contains("# upstairs\n[pumps.hp1]"), "{text}");
        let back: Settings = toml::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_new_file_reads_back_as_written() {
        let mut s = Settings {
            version: 7,
            ..Settings::default()
        };
        s.pumps.insert(
            "pump \"x\"".into(),
            PumpSettings {
                sparkline_minutes: Some(30),
                visible_fields: Some(vec!["a".into(), "b".into()]),
            },
        );
        let text = render(None, &s);
        assert!(text.starts_with("# Settings of hpflow's dashboard"));
        assert_eq!(toml::from_str::<Settings>(&text).unwrap(), s);
    }

    #[test]
    fn unknown_keys_in_the_file_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "refresh_intervall_seconds = 10\n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("refresh_intervall_seconds"), "{e}");
        assert_eq!(load(&dir.path().join("none.toml")), Ok(None));
    }
}
