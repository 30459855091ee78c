//! What became of the configuration reloads of a running pipeline: how many
//! were applied or refused, whether the last one was, why not, and whether a
//! change waits for a restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug)]
pub struct ReloadStats {
    applied: AtomicU64,
    refused: AtomicU64,
    last_ok: AtomicBool,
    restart_needed: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Default for ReloadStats {
    fn default() -> Self {
        ReloadStats {
            applied: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            // The configuration the pipeline started with was checked.
            last_ok: AtomicBool::new(true),
            restart_needed: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }
}

/// A copy of [`ReloadStats`] at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadSnapshot {
    pub applied: u64,
    pub refused: u64,
    pub last_ok: bool,
    /// A change was loaded that only a restart applies.
    pub restart_needed: bool,
    /// Why the last reload was refused, while it is the last one.
    pub last_error: Option<String>,
}

impl ReloadStats {
    /// A reload was checked and applied; `restart_needed` when part of it waits
    /// for a restart.
    pub fn applied(&self, restart_needed: bool) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.last_ok.store(true, Ordering::Relaxed);
        self.restart_needed.fetch_or(restart_needed, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A reload was refused (the configuration has errors); the pipeline runs on.
    pub fn refused(&self, why: String) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.last_ok.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    pub fn snapshot(&self) -> ReloadSnapshot {
        ReloadSnapshot {
            applied: self.applied.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            last_ok: self.last_ok.load(Ordering::Relaxed),
            restart_needed: self.restart_needed.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
