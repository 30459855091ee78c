//! The journal beside the state file: the entries of the devices that changed
//! since the file was last written whole, appended one line each.
//!
//! A whole save (a compaction) writes the state file atomically with the next
//! generation number, then replaces the journal with one that names that
//! generation in its first line. Between compactions a save appends its changed
//! devices' entries (or `null` for a forgotten device) to the journal and
//! syncs it. Loading reads the file, then applies the journal's lines in order
//! if, and only if, it names the file's generation: a journal left from before
//! a compaction that was cut short is ignored, and a line cut short by a crash
//! ends the replay. A save so costs what changed, not what is held.
//!
//! ```text
//! {"version":1,"generation":7}
//! {"device":"hp1","state":{"last_seen":"…","tags":{…},"states":{…}}}
//! {"device":"hp9","state":null}
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StoredDevice, FILE_VERSION};
use crate::fsutil::write_atomically;

/// Where the journal of the state file at `state` lives: `<id>.journal`.
pub(super) fn journal_path(state: &Path) -> PathBuf {
    state.with_extension("journal")
}

/// An open journal, appended to by each save until the next compaction.
pub(super) struct Journal {
    file: fs::File,
    len: u64,
    header: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    generation: u64,
}

#[derive(Deserialize)]
struct Line {
    device: String,
    state: Option<StoredDevice>,
}

impl Journal {
    /// Replaces the journal at `path` with an empty one of `generation`.
    pub(super) fn start(path: &Path, generation: u64) -> io::Result<Journal> {
        let mut header = serde_json::to_vec(&Header {
            version: FILE_VERSION,
            generation,
        })
        .map_err(io::Error::other)?;
        header.push(b'\n');
        write_atomically(path, &header)?;
        let file = fs::OpenOptions::new().append(true).open(path)?;
        let len = header.len() as u64;
        Ok(Journal { file, len, header: len })
    }

    /// Appends `lines` (whole lines) and syncs them to the disk.
    pub(super) fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        self.file.write_all(lines)?;
        self.file.sync_data()?;
        self.len += lines.len() as u64;
        Ok(())
    }

    /// Bytes in the journal.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Whether anything was appended since it started.
    pub(super) fn has_entries(&self) -> bool {
        self.len > self.header
    }
}

/// Adds the line of `device`: its entry (JSON), or `None` once it is forgotten.
pub(super) fn line(out: &mut Vec<u8>, device: &str, entry: Option<&[u8]>) -> io::Result<()> {
    out.extend_from_slice(b"{\"device\":");
    serde_json::to_writer(&mut *out, device).map_err(io::Error::other)?;
    out.extend_from_slice(b",\"state\":");
    out.extend_from_slice(entry.unwrap_or(b"null"));
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// What a journal held for a state file of `generation`.
pub(super) struct Replay {
    /// Each device's latest entry (`None`: forgotten), in the order written.
    pub(super) entries: Vec<(String, Option<StoredDevice>)>,
    /// Why the replay stopped before the end, when it did.
    pub(super) cut: Option<String>,
}

/// Reads the journal at `path` for a state file of `generation`. A missing
/// journal, or one of another generation (left by a compaction cut short),
/// holds nothing; a journal that exists but cannot be read is an error.
pub(super) fn replay(path: &Path, generation: u64) -> Result<Replay, String> {
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
    if header.is_none_or(|h| h.version != FILE_VERSION || h.generation != generation) {
        return Ok(replay);
    }
    for (i, l) in lines.enumerate() {
        if l.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(l) {
            Ok(line) => replay.entries.push((line.device, line.state)),
            Err(e) => {
                replay.cut = Some(format!("line {}: {e}", i + 2));
                break;
            }
        }
    }
    Ok(replay)
}
