//! `hpflow run`: builds a checked pipeline, runs it until SIGINT or SIGTERM, then
//! stops the sources and drains and flushes every sink. `hpflow demo` runs its
//! pipeline the same way.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::reload::{reload, FileWatch};
use super::{EXIT_CONFIG, EXIT_IN_USE};
use crate::config::{load_pipeline, CheckedPipeline};
use crate::diagnostic::Diagnostics;
use crate::telemetry::Registry;

/// Loads, checks and runs the pipeline at `path`.
pub async fn run(path: &Path) -> ExitCode {
    match load_pipeline(path) {
        Ok((pipeline, warnings)) => run_checked(path, pipeline, &warnings).await,
        Err(diags) => {
            eprint!("{diags}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Runs a pipeline that passed the compile pass: exit 0 after a clean stop, 78
/// when a component cannot be built (a listen address in use, an unwritable
/// data folder), 75 when another hpflow holds the data folder, 1 when a component
/// did not stop in time.
pub async fn run_checked(path: &Path, pipeline: CheckedPipeline, warnings: &Diagnostics) -> ExitCode {
    // Listen before anything else: a SIGTERM in the first instants must stop the
    // pipeline like any other, not kill the process with the signal's default action.
    let signals = ShutdownSignals::listen();
    for w in warnings.warnings() {
        warn!("{w}");
    }
    // Before anything is built: a second process must never open the first one's
    // buffers or state files.
    let _lock = match crate::fsutil::lock_data_dir(&pipeline.file.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("{}: error: {e}", path.display());
            return ExitCode::from(match e {
                crate::fsutil::LockError::Held { .. } => EXIT_IN_USE,
                crate::fsutil::LockError::Io { .. } => EXIT_CONFIG,
            });
        }
    };
    let registry = Arc::new(Registry::default());
    let pieces = match crate::topology::build(&pipeline, registry) {
        Ok(p) => p,
        Err(diags) => {
            eprint!("{diags}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    info!(pipeline = %path.display(), graph = %pipeline.summary(), data_dir = %pipeline.file.data_dir.display(), "Starting hpflow {}", env!("CARGO_PKG_VERSION"));
    let control = pieces.control().clone();
    let mut running = pieces.start();
    let done = running.shutdown_token();
    let mut signals = signals;
    let mut current = pipeline;
    let mut files = FileWatch::new(&current.files());
    loop {
        let reason = tokio::select! {
            sig = signals.recv() => match sig {
                Signal::Stop(name) => {
                    info!(signal = name, "Shutting down: stopping sources, draining and flushing sinks");
                    break;
                }
                Signal::Reload => "SIGHUP",
            },
            _ = done.cancelled() => break,
            _ = files.changed() => "a configuration file changed",
        };
        info!(reason, "Reloading the configuration");
        if let Some(next) = reload(path, &current, &mut running, &control).await {
            if next.files() != current.files() {
                files = FileWatch::new(&next.files());
            }
            current = next;
        }
    }
    if running.stop().await {
        ExitCode::SUCCESS
    } else {
        error!("Some components did not stop in time");
        ExitCode::FAILURE
    }
}

/// SIGINT and SIGTERM (stop) and SIGHUP (reload), listened for from the
/// moment this is made.
struct ShutdownSignals {
    #[cfg(unix)]
    unix: Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
}

impl ShutdownSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = (|| {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ))
            })();
            ShutdownSignals { unix: unix.ok() }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// The next signal.
    async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        if let Some((int, term, hup)) = &mut self.unix {
            return tokio::select! {
                _ = int.recv() => Signal::Stop("SIGINT"),
                _ = term.recv() => Signal::Stop("SIGTERM"),
                _ = hup.recv() => Signal::Reload,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop("SIGINT")
    }
}

enum Signal {
    /// SIGINT or SIGTERM, by name.
    Stop(&'static str),
    /// SIGHUP.
    Reload,
}
