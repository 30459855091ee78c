//! Reloading a running pipeline: on SIGHUP, or when a file it is made of
//! changes (the pipeline file, a register map, a device inventory), the
//! configuration is loaded and checked anew. With errors, they are logged with
//! their file, line and column, counted, and the pipeline runs on unchanged.
//! Otherwise what the running components can take live is handed to them
//! (today: a source's device inventory, through `Control`), and what needs its
//! component rebuilt is named in the log and waits for a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::component::{ComponentConfig, Control, Kind};
use crate::config::{load_pipeline, CheckedPipeline, ComponentEntry};
use crate::sources::SourceConfig;
use crate::telemetry::Registry;

/// How long files must stay quiet before a change is acted on: an editor's
/// save, or several files written one after the other, reload once.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Loads and checks the pipeline at `path` again and applies what it can to the
/// running one. Returns the new configuration when it was applied.
pub fn reload(
    path: &Path,
    running: &CheckedPipeline,
    control: &Control,
    registry: &Registry,
) -> Option<CheckedPipeline> {
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
    let mut restart = Vec::new();
    if next.file.data_dir != running.file.data_dir {
        restart.push("data_dir".to_string());
    }
    if next.file.shutdown_timeout != running.file.shutdown_timeout {
        restart.push("shutdown_timeout".to_string());
    }
    let mut live = 0;
    // A source whose inline devices changed takes them like a changed inventory file.
    let devices_only = |a: &SourceConfig, b: &SourceConfig| a.differs_in_devices_only(b);
    compare(
        &running.file.sources,
        &next.file.sources,
        &mut restart,
        devices_only,
        |i, id| follow(&next, (Kind::Source, i), id, control, &mut live),
    );
    compare(
        &running.file.transforms,
        &next.file.transforms,
        &mut restart,
        |_, _| false,
        |i, id| follow(&next, (Kind::Transform, i), id, control, &mut live),
    );
    compare(
        &running.file.sinks,
        &next.file.sinks,
        &mut restart,
        |_, _| false,
        |i, id| follow(&next, (Kind::Sink, i), id, control, &mut live),
    );
    if restart.is_empty() {
        info!(components = live, "Configuration reloaded");
    } else {
        warn!(
            waiting = %restart.join(", "),
            "Configuration reloaded; these changes take effect at the next restart"
        );
    }
    registry.reloads().applied(!restart.is_empty());
    Some(next)
}

/// Compares one kind's components by id: added, removed or reconfigured ones
/// go into `restart`; `same` is called for each one whose own keys are
/// unchanged, or changed only in a way the running component takes (`live`).
fn compare<C: ComponentConfig + PartialEq>(
    old: &[ComponentEntry<C>],
    new: &[ComponentEntry<C>],
    restart: &mut Vec<String>,
    live: impl Fn(&C, &C) -> bool,
    mut same: impl FnMut(usize, &str),
) {
    let table = C::KIND.table();
    for o in old {
        if !new.iter().any(|n| n.id == o.id) {
            restart.push(format!("{table}.{} removed", o.id));
        }
    }
    for (i, n) in new.iter().enumerate() {
        match old.iter().find(|o| o.id == n.id) {
            None => restart.push(format!("{table}.{} added", n.id)),
            Some(o)
                if (o.config != n.config && !live(&o.config, &n.config))
                    || o.inputs_ids() != n.inputs_ids()
                    || o.queue_size != n.queue_size =>
            {
                restart.push(format!("{table}.{} changed", n.id))
            }
            Some(_) => same(i, &n.id),
        }
    }
}

/// Hands an unchanged component what its check read this time (the source
/// compares it with what it runs and applies the difference).
fn follow(next: &CheckedPipeline, node: (Kind, usize), id: &str, control: &Control, live: &mut usize) {
    if let Some(p) = next.prepared.get(&node) {
        if control.reload(id, p.clone()) {
            *live += 1;
        }
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
