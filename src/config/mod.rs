//! Pipeline files: loading, environment interpolation and the compile pass.
//!
//! Loading is three steps, each collecting every problem it finds before the next:
//! 1. [`load`] parses the TOML (keeping spans), interpolates `${VAR}` in strings and
//!    deserialises each component into its kind's config type;
//! 2. [`graph::compile`] resolves `inputs`, finds cycles and claims, and asks every
//!    component to check itself against what flows into it;
//! 3. the topology builds and spawns the checked components.

mod graph;
mod load;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use graph::{compile, CheckedPipeline, Edge};
pub use load::{load, load_str};

use crate::component::Kind;
use crate::diagnostic::SourceText;

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
    /// The ids in `inputs`, without their places in the file.
    pub fn inputs_ids(&self) -> Vec<&str> {
        self.inputs.iter().map(|(id, _)| id.as_str()).collect()
    }

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

/// Loads and compiles a pipeline file: everything `hpflow validate` checks.
pub fn load_pipeline(
    path: &Path,
) -> Result<(CheckedPipeline, crate::diagnostic::Diagnostics), crate::diagnostic::Diagnostics> {
    let (file, diags) = load(path)?;
    compile(file, diags)
}
