//! Pipeline files: loading, environment interpolation and the compile pass.
//!
//! Loading is three steps, each collecting every problem it finds before the next:
//! 1. [`load`] parses the TOML (keeping spans), interpolates `${VAR}` in strings and
//!    deserialises each component into its kind's config type;
//! 2. [`graph::compile`] resolves `inputs`, finds cycles and claims, and asks every
//!    component to check itself against what flows into it;
//! 3. the topology builds and spawns the checked components.

pub mod duration;
mod graph;
mod interpolate;
mod load;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use graph::{compile, CheckedPipeline, Edge};
pub use interpolate::interpolate;
pub use load::{load, load_str};

use crate::diagnostic::{Diagnostic, SourceText};
use crate::event::Schema;
use crate::telemetry::Registry;

/// The three kinds of component, in the order data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Source,
    Transform,
    Sink,
}

impl Kind {
    /// The table name in a pipeline file.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::Sink => "sinks",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// Implemented by the closed enum of each kind (`SourceConfig`, `TransformConfig`,
/// `SinkConfig`), so the loader can stay generic.
pub trait ComponentConfig: Sized {
    const KIND: Kind;
    /// Every `type` this kind accepts, for "unknown type" messages.
    const TYPES: &'static [&'static str];

    /// Deserialises the component's own keys (without `type`, `inputs` and the
    /// common keys) as the config of `ty`. `None` when `ty` is unknown.
    fn parse(ty: &str, de: toml::de::ValueDeserializer<'_>) -> Option<Result<Self, toml::de::Error>>;

    fn type_name(&self) -> &'static str;

    /// Checks the config against the rest of the pipeline and declares what the
    /// component produces and claims.
    fn check(&self, cx: &mut Check<'_>);
}

/// One component as written in the file.
#[derive(Debug)]
pub struct ComponentEntry<C> {
    pub id: String,
    pub config: C,
    pub inputs: Vec<(String, Range<usize>)>,
    /// Common key of sinks: capacity of the component's input queue.
    pub queue_size: usize,
    /// Where the component's key is, for problems of the component as a whole.
    pub span: Range<usize>,
    /// Span of every key inside the component by dotted path (`devices[1].port`).
    pub key_spans: HashMap<String, Range<usize>>,
}

impl<C> ComponentEntry<C> {
    /// The best span for a key path: the key itself, else its nearest parent,
    /// else the component.
    pub fn span_of(&self, key: Option<&str>) -> Range<usize> {
        let mut key = match key {
            Some(k) => k,
            None => return self.span.clone(),
        };
        loop {
            if let Some(s) = self.key_spans.get(key) {
                return s.clone();
            }
            match key.rfind(['.', '[']) {
                Some(i) => key = &key[..i],
                None => return self.span.clone(),
            }
        }
    }
}

pub const DEFAULT_QUEUE_SIZE: usize = 1024;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed pipeline file, before the compile pass.
#[derive(Debug)]
pub struct PipelineFile {
    pub source: SourceText,
    /// The folder relative paths resolve against.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub sources: Vec<ComponentEntry<crate::sources::SourceConfig>>,
    pub transforms: Vec<ComponentEntry<crate::transforms::TransformConfig>>,
    pub sinks: Vec<ComponentEntry<crate::sinks::SinkConfig>>,
    /// Ids of components that failed to parse (already reported): the compile
    /// pass treats them as existing so it adds no follow-on errors about them.
    pub broken: Vec<(Kind, String)>,
}

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
}

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

    /// Outputs are the inputs unchanged (for components that pass events through).
    pub fn pass_through(&mut self) {
        self.outputs.extend(self.input_schemas.iter().cloned());
    }

    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| !matches!(p, Problem::Warning { .. }))
    }

    /// A path from the file, resolved against the pipeline's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(self.pipeline_dir, path)
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
    pub control: &'a Arc<crate::topology::Control>,
}

impl BuildContext<'_> {
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

/// Loads and compiles a pipeline file: everything `hpflow validate` checks.
pub fn load_pipeline(
    path: &Path,
) -> Result<(CheckedPipeline, crate::diagnostic::Diagnostics), crate::diagnostic::Diagnostics> {
    let (file, diags) = load(path)?;
    compile(file, diags)
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
