//! Reloading a running pipeline: on SIGHUP, or when a file it is made of
//! changes (the pipeline file, a register map, a device inventory), the
//! configuration is loaded and checked anew. With errors, they are logged with
//! their file, line and column, counted, and the pipeline runs on unchanged.
//! Otherwise each component is dealt with alone, the others running on:
//! - unchanged keys: handed what its check read anew through `Control` (a
//!   source applies a changed device inventory device by device);
//! - changed keys: stopped (a transform or sink after flushing), built anew
//!   and started on the same queue, with what waited in it; if the new one
//!   cannot start (a listen address in use), the old configuration is started
//!   again and the reload is reported refused;
//! - a changed graph (components added, removed, moved, their inputs) or
//!   `data_dir`: named in the log, waiting for a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::component::{ComponentConfig, Control, Kind};
use crate::config::{load_pipeline, CheckedPipeline, ComponentEntry};
use crate::topology::{build_one, Node, RunningTopology};

/// How long files must stay quiet before a change is acted on: an editor's
/// save, or several files written one after the other, reload once.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Loads and checks the pipeline at `path` again and applies it to the running
/// one. Returns the new configuration when it was applied.
pub async fn reload(
    path: &Path,
    running: &CheckedPipeline,
    topology: &mut RunningTopology,
    control: &Arc<Control>,
) -> Option<CheckedPipeline> {
    let registry = topology.registry().clone();
    let next = match load_pipeline(path) {
        Ok((next, warnings)) => {
            for w in warnings.warnings() {
                warn!("{w}");
            }
            next
        }
        Err(diags) => {
            let errors: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
            for e in &errors {
                error!("{e}");
            }
            error!(
                errors = errors.len(),
                "Configuration reload refused; the pipeline runs on unchanged"
            );
            registry.reloads().refused(errors.join("\n"));
            return None;
        }
    };
    let plan = Plan::of(running, &next);
    let mut live = 0;
    let mut rebuild = plan.rebuild;
    for (node, id) in &plan.follow {
        let taken = (next.prepared.get(node)).is_some_and(|p| control.reload(id, p.clone()));
        live += usize::from(taken);
        // Its keys are the same but a file it read changed, and it cannot take
        // that live (the dashboard's register map or display file): rebuilt.
        // (Rebuilt in place only: a new graph places components elsewhere.)
        if !taken && plan.same_shape && next.reads_changed(running, *node) {
            rebuild.push((*node, format!("{}.{id}", node.0.table())));
        }
    }
    let mut failed = Vec::new();
    for (node, id) in &rebuild {
        let ty = type_name(&next, *node);
        let result = topology
            .rebuild(
                *node,
                ty,
                || build_one(&next, *node, &registry, control).map(|(b, _)| b),
                || build_one(running, *node, &registry, control),
            )
            .await;
        match result {
            Ok(()) => info!(component = %id, "Component rebuilt with its new configuration"),
            Err(e) => {
                error!(component = %id, error = %e, "Component cannot start with its new configuration; the previous one is started again if it can");
                failed.push(format!("{id}: {e}"));
            }
        }
    }
    if !plan.restart.is_empty() {
        warn!(
            waiting = %plan.restart.join(", "),
            "Configuration reloaded; these changes take effect at the next restart"
        );
    }
    if failed.is_empty() {
        info!(followed = live, rebuilt = rebuild.len(), "Configuration reloaded");
        registry.reloads().applied(!plan.restart.is_empty());
        Some(next)
    } else {
        registry.reloads().refused(failed.join("\n"));
        // What runs is partly the old configuration: compare with it next time.
        None
    }
}

/// What a reload does to each component.
#[derive(Default)]
struct Plan {
    /// Unchanged keys: handed what its check read (a source's inventory).
    follow: Vec<(Node, String)>,
    /// Changed keys, same place in the graph: stopped and built anew.
    rebuild: Vec<(Node, String)>,
    /// What only a restart applies: the graph's shape, the data folder.
    restart: Vec<String>,
    /// Same components in the same places with the same edges: a component
    /// is found at the same node in the running pipeline.
    same_shape: bool,
}

impl Plan {
    fn of(old: &CheckedPipeline, new: &CheckedPipeline) -> Plan {
        let mut plan = Plan::default();
        if new.file.data_dir != old.file.data_dir {
            plan.restart.push("data_dir".to_string());
        }
        if new.file.shutdown_timeout != old.file.shutdown_timeout {
            plan.restart.push("shutdown_timeout".to_string());
        }
        // Components are rebuilt in place: the same ids in the same order and
        // the same edges; anything else is a new graph.
        let same_shape = ids(&old.file.sources) == ids(&new.file.sources)
            && ids(&old.file.transforms) == ids(&new.file.transforms)
            && ids(&old.file.sinks) == ids(&new.file.sinks)
            && old.edges == new.edges;
        if !same_shape {
            plan.restart.push("components or their inputs".to_string());
        }
        plan.same_shape = same_shape;
        // A source whose inline devices changed takes them like a changed inventory file.
        plan.kind(&old.file.sources, &new.file.sources, same_shape, |a, b| {
            a.differs_in_devices_only(b)
        });
        plan.kind(&old.file.transforms, &new.file.transforms, same_shape, |_, _| false);
        plan.kind(&old.file.sinks, &new.file.sinks, same_shape, |_, _| false);
        plan
    }

    /// Sorts one kind's components: unchanged (or changed only in a way the
    /// running one takes, `live`) ones are followed; changed ones are rebuilt,
    /// or wait for a restart when the graph changed or their queue size did.
    fn kind<C: ComponentConfig + PartialEq>(
        &mut self,
        old: &[ComponentEntry<C>],
        new: &[ComponentEntry<C>],
        same_shape: bool,
        live: impl Fn(&C, &C) -> bool,
    ) {
        let table = C::KIND.table();
        for (i, n) in new.iter().enumerate() {
            let Some(o) = old.iter().find(|o| o.id == n.id) else {
                continue;
            };
            let node = (C::KIND, i);
            if o.config == n.config || live(&o.config, &n.config) {
                self.follow.push((node, n.id.clone()));
            } else if same_shape && o.queue_size == n.queue_size {
                self.rebuild.push((node, format!("{table}.{}", n.id)));
            } else {
                self.restart.push(format!("{table}.{} changed", n.id));
            }
        }
    }
}

fn ids<C>(entries: &[ComponentEntry<C>]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

fn type_name(p: &CheckedPipeline, node: Node) -> &'static str {
    let f = &p.file;
    match node.0 {
        Kind::Source => f.sources[node.1].config.type_name(),
        Kind::Transform => f.transforms[node.1].config.type_name(),
        Kind::Sink => f.sinks[node.1].config.type_name(),
    }
}

/// Tells when a file the pipeline is made of changes. Each file's folder is
/// watched, not the file (editors save by writing a new file and renaming it
/// over the old one); bursts of changes are debounced into one.
pub struct FileWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    rx: mpsc::UnboundedReceiver<()>,
}

impl FileWatch {
    /// Watches `files`; without a watcher (none available), `changed` never fires
    /// and SIGHUP still reloads.
    pub fn new(files: &[PathBuf]) -> FileWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        let watched: BTreeSet<PathBuf> = files.iter().filter_map(|f| absolute(f)).collect();
        let folders: BTreeSet<PathBuf> = watched
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                // Opening or reading a file changes nothing; inotify reports it
                // (notify watches IN_OPEN), and the reload itself opens every
                // file: taken as a change, that was a reload every few hundred
                // milliseconds, for ever, once anything had opened one.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                if event.paths.iter().any(|p| watched.contains(p)) {
                    let _ = tx.send(());
                }
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(mut w) => {
                for folder in &folders {
                    if let Err(e) = w.watch(folder, RecursiveMode::NonRecursive) {
                        warn!(folder = %folder.display(), error = %e, "Cannot watch the folder for changes; SIGHUP still reloads");
                    }
                }
                Some(w)
            }
            Err(e) => {
                warn!(error = %e, "Cannot watch the configuration files; SIGHUP still reloads");
                None
            }
        };
        FileWatch { _watcher: watcher, rx }
    }

    /// Resolves once a watched file changed and the files then stayed quiet
    /// for a moment.
    pub async fn changed(&mut self) {
        if self.rx.recv().await.is_none() {
            return std::future::pending().await;
        }
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.rx.recv()).await {}
    }
}

/// The file's path with its folder resolved through links, as the watcher
/// reports it.
fn absolute(file: &Path) -> Option<PathBuf> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(folder).ok()?.join(file.file_name()?))
}
