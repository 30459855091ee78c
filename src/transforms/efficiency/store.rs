//! The state file and its journal.
//!
//! A device's 400 days and 24 h of checkpoints hardly change between two saves:
//! today's figures, the meters, the cycle states, a checkpoint every 5 minutes.
//! So a save appends to the journal (`<id>.journal`, see
//! [`crate::transforms::journal`]) one line holding, for each device changed
//! since the last save, what changed: its latest scalars, its days from the
//! earliest one changed on, its new checkpoints, and where its days and
//! checkpoints now begin (`null` for a forgotten device). One line per save
//! means a save cut short by a crash is either applied whole or not at all: a
//! load restores the last finished save, or the one before. The whole file is
//! written (as the next generation) once the journal has grown to its size, and
//! on shutdown, so a stopped pipeline leaves a whole file that can be edited by
//! hand and an empty journal.
//!
//! ```text
//! {"version":1,"generation":3}
//! {"devices":[["hp1",{"last":…,"meters":{…},"days_from":"2026-03-02","days":[…],"first_day":…,"checkpoints":[…],"first_checkpoint":…}],["hp9",null]]}
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::cycles::Runs;
use super::meter::Meter;
use super::{Checkpoint, Device, Efficiency, Entry, FILE_VERSION};
use crate::component::BoxError;
use crate::fsutil::{read_state_file, write_atomically, Stored};
use crate::telemetry::{ComponentMetrics, Day};
use crate::transforms::journal::{self, journal_path, Journal};

/// The state file as read (`read_state_file` checks its `version`).
#[derive(Debug, Deserialize)]
struct StateFile {
    /// Counts whole saves; the journal applies to its own generation only.
    #[serde(default)]
    generation: u64,
    devices: BTreeMap<String, Device>,
}

/// [`StateFile`] as written, borrowing the devices.
#[derive(Serialize)]
struct StateFileOut<'a> {
    version: u32,
    generation: u64,
    devices: BTreeMap<&'a str, &'a Device>,
}

/// One save's journal line: each changed device's delta, `None` for a forgotten one.
#[derive(Debug, Deserialize)]
struct Save {
    devices: Vec<(String, Option<Delta>)>,
}

#[derive(Serialize)]
struct SaveOut<'a> {
    devices: Vec<(&'a str, Option<DeltaOut<'a>>)>,
}

/// What changed of a device since the save before.
#[derive(Debug, Deserialize)]
struct Delta {
    last: Option<f64>,
    meters: BTreeMap<String, Meter>,
    compressor: Runs,
    defrost: Runs,
    outdoor: Option<(Date, f64, u32)>,
    /// The days from this date on are `days` (the ones before are unchanged).
    days_from: Option<Date>,
    days: Vec<Day>,
    /// The first day kept; `None`: no day is.
    first_day: Option<Date>,
    /// Checkpoints added since the save before.
    checkpoints: Vec<Checkpoint>,
    /// The time of the first checkpoint kept; `None`: none is.
    first_checkpoint: Option<f64>,
}

#[derive(Serialize)]
struct DeltaOut<'a> {
    last: Option<f64>,
    meters: &'a BTreeMap<String, Meter>,
    compressor: &'a Runs,
    defrost: &'a Runs,
    outdoor: Option<(Date, f64, u32)>,
    days_from: Option<Date>,
    days: Vec<&'a Day>,
    first_day: Option<Date>,
    checkpoints: Vec<&'a Checkpoint>,
    first_checkpoint: Option<f64>,
}

/// What changed of a device since it was last saved.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Marks {
    pub(super) unsaved: bool,
    /// The earliest date whose day changed.
    pub(super) days_from: Option<Date>,
    /// Checkpoints added.
    pub(super) new_checkpoints: usize,
}

impl Marks {
    pub(super) fn day(&mut self, date: Date) {
        self.unsaved = true;
        self.days_from = Some(self.days_from.map_or(date, |d| d.min(date)));
    }
}

fn delta(e: &Entry) -> DeltaOut<'_> {
    let d = &e.dev;
    let days = match e.marks.days_from {
        Some(from) => d.days.iter().filter(|x| x.date >= from).collect(),
        None => Vec::new(),
    };
    let new = e.marks.new_checkpoints.min(d.checkpoints.len());
    DeltaOut {
        last: d.last,
        meters: &d.meters,
        compressor: &d.compressor,
        defrost: &d.defrost,
        outdoor: d.outdoor,
        days_from: e.marks.days_from,
        days,
        first_day: d.days.front().map(|x| x.date),
        checkpoints: d.checkpoints.range(d.checkpoints.len() - new..).collect(),
        first_checkpoint: d.checkpoints.front().map(|c| c.t),
    }
}

impl Delta {
    fn apply(self, d: &mut Device) {
        d.last = self.last;
        d.meters = self.meters;
        d.compressor = self.compressor;
        d.defrost = self.defrost;
        d.outdoor = self.outdoor;
        if let Some(from) = self.days_from {
            d.days.retain(|x| x.date < from);
            d.days.extend(self.days);
        }
        drop_front(&mut d.days, self.first_day, |x| x.date);
        d.checkpoints.extend(self.checkpoints);
        drop_front(&mut d.checkpoints, self.first_checkpoint, |c| c.t);
    }
}

/// Drops the entries before `first` (all of them when `None`).
fn drop_front<T, K: PartialOrd>(v: &mut VecDeque<T>, first: Option<K>, key: impl Fn(&T) -> K) {
    match first {
        Some(first) => {
            while v.front().is_some_and(|x| key(x) < first) {
                v.pop_front();
            }
        }
        None => v.clear(),
    }
}

/// Reads the state file and applies its journal: the devices and the file's
/// generation. A missing file is a first start; a corrupt or foreign one is
/// reported, moved aside, and counting starts over; only a file (or journal)
/// that exists but cannot be read is an error. A journal line cut short (a
/// crash during a save) ends the replay, with a warning.
pub(super) fn load(
    path: &Path,
    id: &str,
    metrics: &ComponentMetrics,
) -> Result<(BTreeMap<Arc<str>, Device>, u64), BoxError> {
    let parse =
        |bytes: &[u8]| serde_json::from_slice::<StateFile>(bytes).map_err(|e| format!("not an energy file: {e}"));
    let file = match read_state_file(path, FILE_VERSION, id, "counting starts over", parse)? {
        Stored::Loaded(file) => file,
        Stored::Missing => return Ok((BTreeMap::new(), 0)),
        Stored::Unusable => {
            metrics.error();
            return Ok((BTreeMap::new(), 0));
        }
    };
    let mut devices: BTreeMap<Arc<str>, Device> = file
        .devices
        .into_iter()
        .map(|(k, v)| (Arc::from(k.as_str()), v))
        .collect();
    let journal = journal_path(path);
    let replay = journal::replay::<Save>(&journal, FILE_VERSION, file.generation)?;
    let saves = replay.entries.len();
    for save in replay.entries {
        for (device, delta) in save.devices {
            match delta {
                Some(delta) => delta.apply(devices.entry(Arc::from(device.as_str())).or_default()),
                None => {
                    devices.remove(device.as_str());
                }
            }
        }
    }
    if let Some(cut) = replay.cut {
        metrics.error();
        warn!(component = %id, path = %journal.display(), %cut, "Energy journal ends in a save cut short (interrupted); the saves before it are restored");
    }
    info!(component = %id, path = %path.display(), devices = devices.len(), journal_saves = saves, "Restored energy figures");
    Ok((devices, file.generation))
}

impl Efficiency {
    /// Saves what changed: appended to the journal, or the whole file once the
    /// journal has grown to its size (or there is no journal yet).
    pub(super) fn save(&mut self, now: SystemTime) {
        self.last_save = Some(now);
        let result = match &self.journal {
            Some(j) if !j.outgrew(self.file_len) => self.append(),
            _ => self.compact(),
        };
        self.saved(result);
    }

    pub(super) fn saved(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.dirty = false,
            Err(e) => {
                // The journal may end in a line cut short: the next save
                // writes the whole file and a fresh journal.
                self.journal = None;
                self.metrics.error();
                warn!(component = %self.id, path = %self.path.display(), error = %e, "Saving energy figures failed; retrying later");
            }
        }
    }

    /// Appends one line: the forgotten devices, then the changed ones.
    pub(super) fn append(&mut self) -> io::Result<()> {
        let Some(journal) = self.journal.as_mut() else {
            return Err(io::Error::other("no journal open"));
        };
        // A device forgotten and seen again since is written as forgotten,
        // then whole (its marks cover all it holds).
        let mut devices: Vec<(&str, Option<DeltaOut<'_>>)> = self.forgotten.iter().map(|id| (&**id, None)).collect();
        devices.extend(
            self.devices
                .iter()
                .filter(|(_, e)| e.marks.unsaved)
                .map(|(id, e)| (&**id, Some(delta(e)))),
        );
        if devices.is_empty() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&SaveOut { devices }).map_err(io::Error::other)?;
        line.push(b'\n');
        journal.append(&line)?;
        self.forgotten.clear();
        for e in self.devices.values_mut() {
            e.marks = Marks::default();
        }
        Ok(())
    }

    /// The whole state file as of `generation`.
    pub(super) fn render(&self, generation: u64) -> io::Result<Vec<u8>> {
        let file = StateFileOut {
            version: FILE_VERSION,
            generation,
            devices: self.devices.iter().map(|(k, e)| (&**k, &e.dev)).collect(),
        };
        serde_json::to_vec(&file).map_err(io::Error::other)
    }

    /// Writes the whole file as the next generation, then starts its journal.
    pub(super) fn compact(&mut self) -> io::Result<()> {
        let generation = self.generation + 1;
        let bytes = self.render(generation)?;
        write_atomically(&self.path, &bytes)?;
        self.generation = generation;
        self.file_len = bytes.len() as u64;
        self.forgotten.clear();
        for e in self.devices.values_mut() {
            e.marks = Marks::default();
        }
        self.journal = Some(Journal::start(&journal_path(&self.path), FILE_VERSION, generation)?);
        Ok(())
    }
}
