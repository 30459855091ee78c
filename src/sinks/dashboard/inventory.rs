//! The device inventory the dashboard manages (`inventory = "heatpumps.yml"`):
//! read on every request (the file is also edited by hand) and changed one
//! entry at a time through [`crate::hpmanager::edit`], under a lock held
//! across read, check and atomic write, so two changes never lose each other.
//! A running `hpflow run` sees the new file and reloads its Modbus source.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_yaml::Value;
use tracing::info;

use crate::hpmanager::edit::{self, Change, EditError};
use crate::registers::RegisterMap;

pub struct Inventory {
    pub path: PathBuf,
    pub map: Arc<RegisterMap>,
    /// Held across read, check and write.
    lock: Mutex<()>,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Edit(#[from] EditError),
    /// `If-Match` named another version than the file's.
    #[error("Not saved: the inventory was changed elsewhere (now version {current}, yours {yours}). Read it again and make your change again.")]
    Stale { yours: String, current: String },
    #[error("writing {path} failed: {error}")]
    Io { path: String, error: String },
}

impl Inventory {
    pub fn new(path: PathBuf, map: Arc<RegisterMap>) -> Inventory {
        Inventory {
            path,
            map,
            lock: Mutex::new(()),
        }
    }

    /// The file's text (a missing file is an empty inventory) and its version.
    fn text(&self) -> Result<(String, String), ChangeError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(ChangeError::Io {
                    path: self.path.display().to_string(),
                    error: format!("cannot read it: {e}"),
                })
            }
        };
        let version = version(&text);
        Ok((text, version))
    }

    /// Every entry as in the file, and the file's version (an `ETag`).
    pub fn read(&self) -> Result<(Vec<Value>, String), ChangeError> {
        let (text, version) = self.text()?;
        Ok((edit::entries(&text)?, version))
    }

    /// Checks and applies `change`, then writes the whole file atomically.
    /// `if_match`: the version the client read, if it sent one. Blocking.
    pub fn change(&self, change: Change, if_match: Option<&str>) -> Result<(Value, String), ChangeError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (text, current) = self.text()?;
        if let Some(yours) = if_match.map(|v| v.trim().trim_matches('"')).filter(|v| *v != "*") {
            if yours != current {
                return Err(ChangeError::Stale {
                    yours: yours.to_string(),
                    current,
                });
            }
        }
        let (next, entry) = edit::apply(&text, change, &self.map)?;
        crate::fsutil::write_atomically(&self.path, next.as_bytes()).map_err(|e| ChangeError::Io {
            path: self.path.display().to_string(),
            error: e.to_string(),
        })?;
        info!(path = %self.path.display(), id = edit::id_of(&entry).unwrap_or_default(), "Heat pump inventory changed through the API");
        Ok((entry, version(&next)))
    }
}

/// A version of the file's text (FNV-1a, hex): the same text, the same version.
pub fn version(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
