//! HPManager's config files, read the way HPManager read them.
//!
//! hpflow takes HPManager's folder as it is, so these files keep their meaning:
//!
//! - `heatpumps.yml`, the inventory: polled as it is by a Modbus source
//!   (`devices = "heatpumps.yml"`, typed reading in [`heatpumps`]) and checked
//!   key by key by `hpflow import`, which also knows the keys only HPManager
//!   used (the serial line of `rtu` entries, `retries`).
//! - `display.yml`, the dashboard's initial settings ([`display`]); the settings
//!   model and its ranges live there, so the dashboard and `import` check a file
//!   the same way.
//! - `collector.yml`, read by `hpflow import` only ([`collector`]): it becomes
//!   the pipeline itself.
//! - `registers.yml` is a register map, read by [`crate::registers`].
//!
//! Leniency is HPManager's: a missing key takes HPManager's default and an
//! unknown key is ignored (`import` warns about it; its copy keeps it); a
//! disabled heat pump, which HPManager never read beyond `enabled`, has its
//! problems reported as warnings; shapes HPManager took as "nothing" (an empty
//! display.yml, its older flat `visible_fields` list) are read the same way.
//! Problems are reported with file, line and column; serde_yaml keeps no
//! spans, so `crate::yaml::locate` finds the line of a key path.

pub mod collector;
pub mod display;
pub mod edit;
pub mod heatpumps;

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::diagnostic::{Diagnostic, Severity};
use crate::yaml::{dotted, key_text, locate, syntax_error, with, Seg};

/// The files of HPManager's config folder.
pub(crate) const HEATPUMPS: &str = "heatpumps.yml";
pub(crate) const REGISTERS: &str = "registers.yml";
pub(crate) const COLLECTOR: &str = "collector.yml";
pub(crate) const DISPLAY: &str = "display.yml";

/// One file as read, for locating keys in it.
pub(crate) struct Text {
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
pub(crate) struct Found<T> {
    pub value: T,
    pub raw: String,
    pub at: String,
}

/// A setting that does not carry over, and why.
pub(crate) struct Dropped {
    pub what: String,
    pub at: String,
    pub why: String,
}

/// The file's text, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Text>, Diagnostic> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Text {
            path: path.to_path_buf(),
            text,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Diagnostic::file_error(path, format!("cannot read: {e}"))),
    }
}

/// `hpflow import`'s reading of the files of one folder: every problem at
/// once (errors stop the import, warnings do not) and the settings that do
/// not carry over.
#[derive(Default)]
pub(crate) struct Reader {
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
    pub(crate) dropped: Vec<Dropped>,
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

    fn problem(&mut self, t: &Text, severity: Severity, path: &[Seg], message: String) {
        match severity {
            Severity::Error => self.error(t, path, message),
            Severity::Warning => self.warn(t, path, message),
        }
    }

    /// Parses a file; a syntax error is reported at its line and column.
    pub(crate) fn yaml(&mut self, t: &Text) -> Option<Value> {
        match serde_yaml::from_str::<Value>(&t.text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(syntax_error(&t.path, &e));
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
}
