//! `hpflow run`: builds a checked pipeline, runs it until SIGINT or SIGTERM, then
//! stops the sources and drains and flushes every sink. `hpflow demo` runs its
//! pipeline the same way.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tracing::{error, info, warn};

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
    let running = pieces.start();
    let done = running.shutdown_token();
    tokio::select! {
        sig = signals.recv() => info!(signal = sig, "Shutting down: stopping sources, draining and flushing sinks"),
        _ = done.cancelled() => {}
    }
    if running.stop().await {
        ExitCode::SUCCESS
    } else {
        error!("Some components did not stop in time");
        ExitCode::FAILURE
    }
}

/// SIGINT and SIGTERM, listened for from the moment this is made.
struct ShutdownSignals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
            ShutdownSignals { unix: unix.ok() }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Resolves on SIGINT or SIGTERM with the signal's name.
    async fn recv(self) -> &'static str {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.unix {
            return tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
