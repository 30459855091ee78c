//! What a component sees while the pipeline is checked ([`Check`]) and built
//! ([`BuildContext`]), and the resources it may claim ([`Claim`]).

use std::any::Any;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Control;
use crate::diagnostic::Diagnostic;
use crate::event::Schema;
use crate::telemetry::Registry;

/// A resource only one component may hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Claim {
    Listen(SocketAddr),
    SerialPort(PathBuf),
    File(PathBuf),
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Listen(a) => write!(f, "listen address {a}"),
            Claim::SerialPort(p) => write!(f, "serial port {}", p.display()),
            Claim::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// A problem a component found in its own config, located by key path.
#[derive(Debug, Clone)]
pub(crate) enum Problem {
    Error {
        key: Option<String>,
        message: String,
    },
    Warning {
        key: Option<String>,
        message: String,
    },
    /// A problem in another file the component reads (a register map).
    External(Diagnostic),
}

/// What a component sees while it checks itself, and where it reports.
pub struct Check<'a> {
    pub id: &'a str,
    pub pipeline_dir: &'a Path,
    pub data_dir: &'a Path,
    /// Descriptions of what arrives on the component's inputs (empty for sources).
    pub input_schemas: &'a [Arc<Schema>],
    pub(crate) problems: Vec<Problem>,
    pub(crate) claims: Vec<(Claim, Option<String>)>,
    pub(crate) outputs: Vec<Arc<Schema>>,
    pub(crate) prepared: Option<Prepared>,
    pub(crate) reads: Vec<PathBuf>,
}

/// What a component loaded while it was checked (a register map, a device
/// list), kept for its build so nothing is read twice.
pub type Prepared = Arc<dyn Any + Send + Sync>;

impl<'a> Check<'a> {
    pub fn new(id: &'a str, pipeline_dir: &'a Path, data_dir: &'a Path, input_schemas: &'a [Arc<Schema>]) -> Self {
        Check {
            id,
            pipeline_dir,
            data_dir,
            input_schemas,
            problems: Vec::new(),
            claims: Vec::new(),
            outputs: Vec::new(),
            prepared: None,
            reads: Vec::new(),
        }
    }

    /// An error at `key` (a dotted path inside the component, or `None` for the
    /// component as a whole).
    pub fn error(&mut self, key: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem::Error {
            key: key.map(str::to_string),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, key: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem::Warning {
            key: key.map(str::to_string),
            message: message.into(),
        });
    }

    /// A problem located in another file.
    pub fn external(&mut self, d: Diagnostic) {
        self.problems.push(Problem::External(d));
    }

    pub fn claim(&mut self, key: Option<&str>, claim: Claim) {
        // Port 0 asks the system for a free port: two such listeners never collide.
        if matches!(&claim, Claim::Listen(a) if a.port() == 0) {
            return;
        }
        self.claims.push((claim, key.map(str::to_string)));
    }

    /// Declares a description of events the component emits.
    pub fn output(&mut self, schema: Arc<Schema>) {
        self.outputs.push(schema);
    }

    /// Declares a file the component reads besides the pipeline file (a register
    /// map, a device inventory): `hpflow run` reloads when it changes.
    pub fn reads(&mut self, path: &Path) {
        if !self.reads.iter().any(|p| p == path) {
            self.reads.push(path.to_path_buf());
        }
    }

    /// Keeps what the check loaded for the component's build, which finds it
    /// with [`BuildContext::prepared`].
    pub fn keep<T: Any + Send + Sync>(&mut self, loaded: T) {
        self.prepared = Some(Arc::new(loaded));
    }

    /// Outputs are the inputs unchanged (for components that pass events through).
    pub fn pass_through(&mut self) {
        self.outputs.extend(self.input_schemas.iter().cloned());
    }

    /// The errors found so far as (key, message), for tests.
    #[cfg(test)]
    pub(crate) fn errors(&self) -> Vec<(Option<String>, String)> {
        self.problems
            .iter()
            .filter_map(|p| match p {
                Problem::Error { key, message } => Some((key.clone(), message.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| !matches!(p, Problem::Warning { .. }))
    }

    /// A path from the file, resolved against the pipeline's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(self.pipeline_dir, path)
    }

    /// The models of the input descriptions, for messages: "a, b" or "(none)".
    pub fn known_models(&self) -> String {
        let mut v: Vec<&str> = self.input_schemas.iter().map(|s| s.model.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    }
}

/// What a component gets when it is built, after the whole pipeline checked out.
pub struct BuildContext<'a> {
    pub id: &'a str,
    pub pipeline_dir: &'a Path,
    pub data_dir: &'a Path,
    pub input_schemas: &'a [Arc<Schema>],
    pub registry: &'a Arc<Registry>,
    /// Runtime knobs shared by the pipeline's components (live poll interval).
    pub control: &'a Arc<Control>,
    /// What the component's check kept ([`Check::keep`]); `None` when it was
    /// built without a check pass.
    pub prepared: Option<&'a Prepared>,
}

impl BuildContext<'_> {
    /// Builds one component alone, with no pipeline around it: `dir` as both
    /// folders, its own telemetry and knobs, nothing kept by a check. For
    /// `hpflow read`'s scaling and the components' tests.
    pub fn alone<R>(
        id: &str,
        dir: &Path,
        input_schemas: &[Arc<Schema>],
        registry: &Arc<Registry>,
        f: impl FnOnce(&BuildContext<'_>) -> R,
    ) -> R {
        let control = Arc::default();
        f(&BuildContext {
            id,
            pipeline_dir: dir,
            data_dir: dir,
            input_schemas,
            registry,
            control: &control,
            prepared: None,
        })
    }

    /// What the check kept, if it kept a `T`.
    pub fn prepared<T: Any>(&self) -> Option<&T> {
        self.prepared?.downcast_ref()
    }

    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(self.pipeline_dir, path)
    }
}

pub fn resolve(dir: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    };
    normalize(&joined)
}

/// Removes `.` and `..` without touching the file system (the file may not
/// exist yet), so two spellings of one path compare equal in claims.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let at_root = matches!(
                    out.components().next_back(),
                    Some(Component::RootDir | Component::Prefix(_))
                );
                let climbing = matches!(out.components().next_back(), None | Some(Component::ParentDir));
                if climbing {
                    out.push("..");
                } else if !at_root {
                    out.pop();
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Shared validation for listen addresses written as strings.
pub fn parse_listen_address(cx: &mut Check<'_>, key: &str, value: &str) -> Option<SocketAddr> {
    match value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.error(
                Some(key),
                format!("`{value}` is not a listen address; write IP:PORT, e.g. `127.0.0.1:9464` (port 1-65535)"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_normalises_dots_so_claims_compare_equal() {
        let d = Path::new("pipes");
        assert_eq!(
            resolve(d, Path::new("./out/../out/e.jsonl")),
            PathBuf::from("pipes/out/e.jsonl")
        );
        assert_eq!(resolve(Path::new("."), Path::new("../../x")), PathBuf::from("../../x"));
        assert_eq!(
            resolve(Path::new("a/b"), Path::new("../../../c")),
            PathBuf::from("../c")
        );
        assert_eq!(resolve(d, Path::new("/etc/../var/x")), PathBuf::from("/var/x"));
        assert_eq!(resolve(d, Path::new("/../x")), PathBuf::from("/x"));
    }
}
