//! What the sink has put on the broker as retained messages, kept across
//! restarts in `<data_dir>/mqtt/<sink id>.json`, so that what it announced
//! and no longer announces can be taken back (an empty retained message)
//! even after hpflow was restarted with fewer pumps or fields:
//!
//! - per device: the discovery config topics announced for it, and its own
//!   topics (state, availability, per-field topics);
//! - hpflow's own discovery configs (the `connection` entity);
//! - the topics waiting to be cleared, until they were handed to the client
//!   (so a restart while the broker was away still clears them).
//!
//! ```json
//! {"version":1,
//!  "devices":{"hp1":{"configs":["homeassistant/sensor/hpflow_hp1/t/config"],
//!                    "topics":["hpflow/hp1/availability","hpflow/hp1/state"]}},
//!  "own":["homeassistant/binary_sensor/hpflow/connection/config"],
//!  "clearing":[]}
//! ```
//!
//! A missing file is a first start; a corrupt one or one of another version is
//! moved aside and logged (nothing is cleared then that the broker does not
//! show as ours); one that exists but cannot be read fails the build.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{read_state_file, write_atomically, Stored};

const FILE_VERSION: u32 = 1;

/// Where a sink keeps its ledger.
pub fn ledger_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("mqtt").join(format!("{id}.json"))
}

/// What was announced for one device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Announced {
    /// Its discovery config topics.
    #[serde(default)]
    pub configs: BTreeSet<String>,
    /// Its own retained topics: state, availability, per-field topics.
    #[serde(default)]
    pub topics: BTreeSet<String>,
}

impl Announced {
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.configs.iter().chain(self.topics.iter())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    devices: BTreeMap<String, Announced>,
    #[serde(default)]
    own: BTreeSet<String>,
    #[serde(default)]
    clearing: BTreeSet<String>,
}

/// The ledger in memory; [`Ledger::save`] writes it when it changed.
#[derive(Debug, Default)]
pub struct Ledger {
    /// `None`: kept in memory only (tests).
    path: Option<PathBuf>,
    pub devices: BTreeMap<String, Announced>,
    pub own: BTreeSet<String>,
    /// Topics to publish an empty retained message on.
    pub clearing: BTreeSet<String>,
    dirty: bool,
}

impl Ledger {
    /// Reads the ledger at `path` (see the module's notes on bad files).
    pub fn load(path: &Path, component: &str) -> Result<Ledger, String> {
        let parse = |bytes: &[u8]| serde_json::from_slice::<File>(bytes).map_err(|e| format!("not a ledger: {e}"));
        let file = match read_state_file(
            path,
            FILE_VERSION,
            component,
            "what was announced before is forgotten",
            parse,
        )? {
            Stored::Loaded(f) => Some(f),
            Stored::Missing | Stored::Unusable => None,
        };
        let mut l = Ledger {
            path: Some(path.to_path_buf()),
            ..Ledger::default()
        };
        if let Some(f) = file {
            l.devices = f.devices;
            l.own = f.own;
            l.clearing = f.clearing;
        }
        Ok(l)
    }

    /// A ledger that is never written (tests).
    #[cfg(test)]
    pub fn in_memory() -> Ledger {
        Ledger::default()
    }

    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// Writes the ledger if it changed since the last save.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(path) = &self.path {
            let file = File {
                version: FILE_VERSION,
                devices: self.devices.clone(),
                own: self.own.clone(),
                clearing: self.clearing.clone(),
            };
            let bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
            write_atomically(path, &bytes)?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Topics to clear; a topic being announced again is never cleared.
    pub fn clear(&mut self, topics: impl IntoIterator<Item = String>) {
        for t in topics {
            if self.clearing.insert(t) {
                self.dirty = true;
            }
        }
    }

    /// A topic announced (again): no longer to be cleared.
    pub fn keep(&mut self, topic: &str) {
        if self.clearing.remove(topic) {
            self.dirty = true;
        }
    }

    /// Records the device's discovery configs, returning those it had before
    /// and no longer has (to clear).
    pub fn set_configs(&mut self, device: &str, configs: BTreeSet<String>) -> BTreeSet<String> {
        let entry = self.devices.entry(device.to_string()).or_default();
        let gone: BTreeSet<String> = entry.configs.difference(&configs).cloned().collect();
        if entry.configs != configs {
            entry.configs = configs;
            self.dirty = true;
        }
        gone
    }

    /// Records one of the device's own topics.
    pub fn add_topic(&mut self, device: &str, topic: &str) {
        let entry = self.devices.entry(device.to_string()).or_default();
        if !entry.topics.contains(topic) {
            entry.topics.insert(topic.to_string());
            self.dirty = true;
        }
    }

    /// Forgets a device, returning what it had announced.
    pub fn remove_device(&mut self, device: &str) -> Option<Announced> {
        let a = self.devices.remove(device);
        if a.is_some() {
            self.dirty = true;
        }
        a
    }

    /// Records hpflow's own discovery configs, returning the earlier ones it
    /// no longer has.
    pub fn set_own(&mut self, own: BTreeSet<String>) -> BTreeSet<String> {
        let gone: BTreeSet<String> = self.own.difference(&own).cloned().collect();
        if self.own != own {
            self.own = own;
            self.dirty = true;
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_survives_a_restart_and_a_bad_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = ledger_path(dir.path(), "mqtt");
        let mut l = Ledger::load(&path, "mqtt").unwrap();
        assert!(l.devices.is_empty());
        l.set_configs("hp1", BTreeSet::from(["c/a".to_string(), "c/b".to_string()]));
        l.add_topic("hp1", "hpflow/hp1/state");
        l.set_own(BTreeSet::from(["own".to_string()]));
        l.clear(["old".to_string()]);
        l.save().unwrap();
        let mut again = Ledger::load(&path, "mqtt").unwrap();
        assert_eq!(again.devices, l.devices);
        assert_eq!(again.own, l.own);
        assert_eq!(again.clearing, BTreeSet::from(["old".to_string()]));
        // Fewer configs: the dropped one is returned; announcing a topic again keeps it.
        let gone = again.set_configs("hp1", BTreeSet::from(["c/a".to_string()]));
        assert_eq!(gone, BTreeSet::from(["c/b".to_string()]));
        again.keep("old");
        assert!(again.clearing.is_empty());
        let removed = again.remove_device("hp1").unwrap();
        assert_eq!(
            removed.all().cloned().collect::<Vec<_>>(),
            vec!["c/a".to_string(), "hpflow/hp1/state".to_string()]
        );

        std::fs::write(&path, "{not json").unwrap();
        let l = Ledger::load(&path, "mqtt").unwrap();
        assert!(l.devices.is_empty(), "a corrupt ledger starts empty");
        let aside = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".corrupt-"))
            .count();
        assert_eq!(aside, 1, "the corrupt file is kept aside");
    }
}
