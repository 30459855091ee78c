//! The journal beside a transform's state file: what changed since the file
//! was last written whole, appended a line at a time (`state_diff` and
//! `efficiency` keep one).
//!
//! A whole save (a compaction) writes the state file atomically with the next
//! generation number, then replaces the journal with one that names that
//! generation in its first line. Between compactions a save appends its lines
//! (what each is, is the transform's: `state_diff` writes a line per changed
//! device, `efficiency` one line per save) and syncs them. Loading reads the
//! file, then applies the journal's lines in order if, and only if, it names
//! the file's generation: a journal left from before a compaction that was cut
//! short is ignored, and a line cut short by a crash ends the replay. A save so
//! costs what changed, not what is held.
//!
//! ```text
//! {"version":1,"generation":7}
//! {"device":"hp1","state":{"last_seen":"…","tags":{…},"states":{…}}}
//! {"device":"hp9","state":null}
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomically;

/// Where the journal of the state file at `state` lives: `<id>.journal`.
pub(crate) fn journal_path(state: &Path) -> PathBuf {
    state.with_extension("journal")
}

/// The journal may always grow to this size before the file is written whole.
const MIN_LEN: u64 = 64 * 1024;

/// An open journal, appended to by each save until the next compaction.
pub(crate) struct Journal {
    file: fs::File,
    len: u64,
    header: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    generation: u64,
}

impl Journal {
    /// Replaces the journal at `path` with an empty one of the state file's
    /// `version` and `generation`.
    pub(crate) fn start(path: &Path, version: u32, generation: u64) -> io::Result<Journal> {
        let mut header = serde_json::to_vec(&Header { version, generation }).map_err(io::Error::other)?;
        header.push(b'\n');
        write_atomically(path, &header)?;
        let file = fs::OpenOptions::new().append(true).open(path)?;
        let len = header.len() as u64;
        Ok(Journal { file, len, header: len })
    }

    /// Appends `lines` (whole lines) and syncs them to the disk.
    pub(crate) fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        self.file.write_all(lines)?;
        self.file.sync_data()?;
        self.len += lines.len() as u64;
        Ok(())
    }

    /// Whether it has grown to the size of the state file (`file_len` bytes)
    /// and at least [`MIN_LEN`]: the next save writes the whole file.
    pub(crate) fn outgrew(&self, file_len: u64) -> bool {
        self.len >= file_len.max(MIN_LEN)
    }

    /// Whether anything was appended since it started.
    pub(crate) fn has_entries(&self) -> bool {
        self.len > self.header
    }
}

/// What a journal held for a state file of `generation`.
pub(crate) struct Replay<T> {
    /// Its lines, in the order written.
    pub(crate) entries: Vec<T>,
    /// Why the replay stopped before the end, when it did.
    pub(crate) cut: Option<String>,
}

/// Reads the journal at `path` for a state file of `generation`. A missing
/// journal, or one of another generation (left by a compaction cut short),
/// holds nothing; a journal that exists but cannot be read is an error.
pub(crate) fn replay<T: DeserializeOwned>(path: &Path, version: u32, generation: u64) -> Result<Replay<T>, String> {
    let mut replay = Replay {
        entries: Vec::new(),
        cut: None,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(replay),
        Err(e) => return Err(format!("cannot read the state journal {}: {e}", path.display())),
    };
    let mut lines = bytes.split(|&b| b == b'\n');
    let header = lines.next().and_then(|l| serde_json::from_slice::<Header>(l).ok());
    if header.is_none_or(|h| h.version != version || h.generation != generation) {
        return Ok(replay);
    }
    for (i, l) in lines.enumerate() {
        if l.is_empty() {
            continue;
        }
        match serde_json::from_slice::<T>(l) {
            Ok(line) => replay.entries.push(line),
            Err(e) => {
                replay.cut = Some(format!("line {}: {e}", i + 2));
                break;
            }
        }
    }
    Ok(replay)
}
