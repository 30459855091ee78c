//! The disk side of the buffer: segment files and their record framing, the ack
//! file, and the checks that find torn or corrupt records. `buffer.rs` describes
//! the layout and the guarantees.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::buffer::{Corruption, Pos, Record, HEADER};

/// A length above this is taken as corruption (one event is a few hundred bytes).
const MAX_RECORD: u64 = 16 << 20;
pub(super) const ACK_FILE: &str = "ack";
const ACK_TMP: &str = "ack.tmp";

/// The segments of one sink's buffer folder, the one being appended to, and the
/// ack position.
pub(super) struct Disk {
    dir: PathBuf,
    segment_bytes: u64,
    /// Oldest first; when `active` is set, it is the append handle of the last one.
    segments: VecDeque<Segment>,
    active: Option<File>,
    next_id: u64,
    ack: Pos,
    /// Segments finished since the last sync.
    unsynced: Vec<File>,
    dir_dirty: bool,
    dirty: bool,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    len: u64,
}

/// A disk buffer as found on opening.
pub(super) struct Opened {
    pub disk: Disk,
    /// Records and bytes waiting from an earlier run.
    pub records: u64,
    pub bytes: u64,
    pub ack_problem: Option<String>,
    pub corrupt: Vec<Corruption>,
}

impl Disk {
    /// Opens (or creates) the folder and checks every segment after the ack position,
    /// cutting each at its first bad record.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Opened> {
        fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let (ack, ack_problem) = match read_ack(dir) {
            Ok(Some(pos)) => (pos, None),
            Ok(None) => (Pos::default(), None),
            Err(problem) => (Pos::default(), Some(problem)),
        };
        let mut disk = Disk {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(HEADER + 1),
            segments: VecDeque::new(),
            active: None,
            next_id: ids.last().map_or(1, |id| id + 1),
            ack,
            unsynced: Vec::new(),
            dir_dirty: false,
            dirty: false,
        };
        let (mut records, mut bytes, mut corrupt) = (0, 0, Vec::new());
        for id in ids {
            let path = disk.path(id);
            if id < ack.segment {
                // Wholly acknowledged; the delete was cut short.
                let _ = fs::remove_file(&path);
                continue;
            }
            let from = if id == ack.segment { ack.offset } else { 0 };
            let scan = scan_segment(&path, from, &dir.join("corrupt"));
            records += scan.records;
            bytes += scan.bytes;
            corrupt.extend(scan.corruption);
            disk.segments.push_back(Segment { id, len: scan.len });
        }
        disk.gc();
        Ok(Opened {
            disk,
            records,
            bytes,
            ack_problem,
            corrupt,
        })
    }

    /// The first record not yet acknowledged.
    pub fn ack(&self) -> Pos {
        self.ack
    }

    /// Moves the ack position forward, writes the ack file and deletes what it passed.
    pub fn set_ack(&mut self, pos: Pos) -> io::Result<()> {
        if pos <= self.ack {
            return Ok(());
        }
        self.ack = pos;
        let r = write_ack(&self.dir, pos, false);
        self.gc();
        r
    }

    /// Reads records from the ack position while `want(count, next data length)`
    /// agrees. A bad record cuts its segment (reported in `corruptions`); then the
    /// records and bytes still waiting are counted again and returned.
    pub fn read(
        &mut self,
        payload: bool,
        want: &mut impl FnMut(usize, usize) -> bool,
        out: &mut Vec<Record>,
        corruptions: &mut Vec<Corruption>,
    ) -> io::Result<Option<(u64, u64)>> {
        let mut corrupt = false;
        let mut i = 0;
        while i < self.segments.len() {
            let seg = self.segments[i];
            i += 1;
            if seg.id < self.ack.segment {
                continue;
            }
            let from = if seg.id == self.ack.segment { self.ack.offset } else { 0 };
            if from >= seg.len {
                continue;
            }
            match read_segment(&self.path(seg.id), seg, from, payload, want, out)? {
                ReadEnd::Stopped => break,
                ReadEnd::EndOfSegment => {}
                ReadEnd::Corrupt { at, reason } => {
                    corruptions.push(self.cut(i - 1, at, reason));
                    corrupt = true;
                }
            }
        }
        if corrupt {
            return self.count_from_ack().map(Some);
        }
        Ok(None)
    }

    /// Files to fsync: the active segment if written to, segments finished since the
    /// last call, the folder if entries changed.
    pub fn sync_handles(&mut self) -> Vec<(File, bool)> {
        let mut out: Vec<(File, bool)> = self.unsynced.drain(..).map(|f| (f, false)).collect();
        if self.dirty {
            if let Some(f) = self.active.as_ref().and_then(|f| f.try_clone().ok()) {
                out.push((f, false));
            }
            self.dirty = false;
        }
        if self.dir_dirty {
            if let Ok(f) = File::open(&self.dir) {
                out.push((f, true));
            }
            self.dir_dirty = false;
        }
        out
    }

    /// Writes and fsyncs the ack file (the segments are synced by the caller).
    pub fn close(&self) -> io::Result<()> {
        if self.ack != Pos::default() {
            write_ack(&self.dir, self.ack, true)?;
        }
        Ok(())
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// Writes records, rolling to a new segment when the current one is full.
    /// Returns the records and bytes written and the error that stopped it.
    pub fn append(&mut self, lines: &[&[u8]]) -> (u64, u64, Option<io::Error>) {
        let mut chunk = Vec::new();
        let mut chunk_records = 0u64;
        let (mut written, mut written_bytes) = (0u64, 0u64);
        for line in lines {
            let frame = HEADER + line.len() as u64;
            let current = if self.active.is_some() {
                self.segments.back().map_or(0, |s| s.len)
            } else {
                0
            };
            let full = current + chunk.len() as u64 + frame > self.segment_bytes && current + chunk.len() as u64 > 0;
            if self.active.is_none() || full {
                if let Err(e) = self.write_chunk(&chunk) {
                    return (written, written_bytes, Some(e));
                }
                written += chunk_records;
                written_bytes += chunk.len() as u64;
                chunk.clear();
                chunk_records = 0;
                if let Err(e) = self.roll() {
                    return (written, written_bytes, Some(e));
                }
            }
            chunk.extend_from_slice(&(line.len() as u32).to_le_bytes());
            chunk.extend_from_slice(&crc32fast::hash(line).to_le_bytes());
            chunk.extend_from_slice(line);
            chunk_records += 1;
        }
        if let Err(e) = self.write_chunk(&chunk) {
            return (written, written_bytes, Some(e));
        }
        (written + chunk_records, written_bytes + chunk.len() as u64, None)
    }

    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no segment open for writing"));
        };
        match file.write_all(chunk) {
            Ok(()) => {
                seg.len += chunk.len() as u64;
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                // Take back a partial write so no torn record sits before later ones,
                // and go on in a fresh segment.
                let _ = file.set_len(seg.len);
                self.active = None;
                Err(e)
            }
        }
    }

    fn roll(&mut self) -> io::Result<()> {
        if let Some(old) = self.active.take() {
            self.unsynced.push(old);
        }
        let id = self.next_id;
        let file = OpenOptions::new().append(true).create_new(true).open(self.path(id))?;
        self.next_id += 1;
        self.segments.push_back(Segment { id, len: 0 });
        self.active = Some(file);
        self.dir_dirty = true;
        Ok(())
    }

    /// Deletes the segments wholly acknowledged (never the one being written).
    fn gc(&mut self) {
        while let Some(front) = self.segments.front().copied() {
            let is_active = self.active.is_some() && self.segments.len() == 1;
            if is_active
                || self.ack
                    < (Pos {
                        segment: front.id,
                        offset: front.len,
                    })
            {
                break;
            }
            if let Err(e) = fs::remove_file(self.path(front.id)) {
                if e.kind() != io::ErrorKind::NotFound {
                    let path = self.path(front.id);
                    tracing::warn!(path = %path.display(), error = %e, "Cannot delete a delivered buffer segment");
                }
            }
            self.segments.pop_front();
            self.dir_dirty = true;
        }
    }

    /// Sets aside the bytes of segment `index` from `at` on and cuts it there.
    fn cut(&mut self, index: usize, at: u64, reason: String) -> Corruption {
        let seg = self.segments[index];
        let path = self.path(seg.id);
        let c = move_aside(&path, seg.id, at, seg.len, &self.dir.join("corrupt"), reason);
        self.segments[index].len = at;
        if index + 1 == self.segments.len() && self.active.is_some() {
            // Later appends must not land behind the cut: go on in a new segment.
            self.active = None;
        }
        c
    }

    pub fn count_from_ack(&self) -> io::Result<(u64, u64)> {
        let (mut records, mut bytes) = (0, 0);
        for seg in &self.segments {
            if seg.id < self.ack.segment {
                continue;
            }
            let from = if seg.id == self.ack.segment { self.ack.offset } else { 0 };
            let mut counted = Vec::new();
            let mut all = |_: usize, _: usize| true;
            read_segment(&self.path(seg.id), *seg, from, false, &mut all, &mut counted)?;
            records += counted.len() as u64;
            bytes += counted.iter().map(|r| r.size).sum::<u64>();
        }
        Ok((records, bytes))
    }
}

enum ReadEnd {
    Stopped,
    EndOfSegment,
    Corrupt { at: u64, reason: String },
}

/// Reads the records of one segment from `from` to `seg.len` while `want` agrees.
/// Without `payload`, records carry no data and the CRC is not checked.
fn read_segment(
    path: &Path,
    seg: Segment,
    from: u64,
    payload: bool,
    want: &mut impl FnMut(usize, usize) -> bool,
    out: &mut Vec<Record>,
) -> io::Result<ReadEnd> {
    if from >= seg.len {
        return Ok(ReadEnd::EndOfSegment);
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(ReadEnd::Corrupt {
                at: from,
                reason: "the segment file is gone".into(),
            })
        }
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut off = from;
    while off < seg.len {
        if off + HEADER > seg.len {
            return Ok(ReadEnd::Corrupt {
                at: off,
                reason: format!("torn record header ({} bytes)", seg.len - off),
            });
        }
        let mut header = [0u8; 8];
        r.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD || off + HEADER + len > seg.len {
            return Ok(ReadEnd::Corrupt {
                at: off,
                reason: format!(
                    "record of {len} bytes runs past the end ({} bytes left)",
                    seg.len - off - HEADER
                ),
            });
        }
        if !want(out.len(), len as usize) {
            return Ok(ReadEnd::Stopped);
        }
        let data = if payload {
            let mut data = vec![0u8; len as usize];
            r.read_exact(&mut data)?;
            if crc32fast::hash(&data) != crc {
                return Ok(ReadEnd::Corrupt {
                    at: off,
                    reason: "CRC mismatch".into(),
                });
            }
            data
        } else {
            r.seek_relative(len as i64)?;
            Vec::new()
        };
        off += HEADER + len;
        out.push(Record {
            end: Pos {
                segment: seg.id,
                offset: off,
            },
            size: HEADER + len,
            data,
        });
    }
    Ok(ReadEnd::EndOfSegment)
}

struct Scan {
    records: u64,
    bytes: u64,
    /// The segment's length after a cut.
    len: u64,
    corruption: Option<Corruption>,
}

/// Checks a segment from `from` (the ack offset) to its end, cutting it at the first
/// bad record. An ack offset past the end counts as "all delivered".
fn scan_segment(path: &Path, from: u64, corrupt_dir: &Path) -> Scan {
    let mut scan = Scan {
        records: 0,
        bytes: 0,
        len: 0,
        corruption: None,
    };
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            // Unreadable: set it aside whole rather than refuse to start.
            let c = Corruption {
                segment: path.to_path_buf(),
                kept_bytes: 0,
                moved_bytes: 0,
                moved_to: None,
                reason: format!("cannot read: {e}"),
            };
            let aside = corrupt_dir.join(path.file_name().unwrap_or_default());
            let moved = fs::create_dir_all(corrupt_dir)
                .and_then(|_| fs::rename(path, &aside))
                .is_ok();
            scan.corruption = Some(Corruption {
                moved_to: moved.then_some(aside),
                ..c
            });
            return scan;
        }
    };
    let len = data.len() as u64;
    scan.len = len;
    let mut off = from;
    let mut bad = None;
    while off < len {
        let rest = &data[off as usize..];
        if rest.len() < HEADER as usize {
            bad = Some(format!("torn record header ({} bytes)", rest.len()));
            break;
        }
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if n > MAX_RECORD || HEADER + n > rest.len() as u64 {
            bad = Some(format!(
                "record of {n} bytes runs past the end ({} bytes left)",
                rest.len() as u64 - HEADER
            ));
            break;
        }
        if crc32fast::hash(&rest[HEADER as usize..(HEADER + n) as usize]) != crc {
            bad = Some("CRC mismatch".into());
            break;
        }
        scan.records += 1;
        scan.bytes += HEADER + n;
        off += HEADER + n;
    }
    if let Some(reason) = bad {
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        scan.corruption = Some(move_aside(path, id, off, len, corrupt_dir, reason));
        scan.len = off;
    }
    scan
}

/// Copies bytes `at..len` of a segment to `corrupt/` and truncates the segment at `at`.
fn move_aside(path: &Path, id: u64, at: u64, len: u64, corrupt_dir: &Path, reason: String) -> Corruption {
    let aside = corrupt_dir.join(format!("{id:020}-{at}.bin"));
    let saved = (|| -> io::Result<()> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(at))?;
        let mut bytes = Vec::new();
        f.take(len.saturating_sub(at)).read_to_end(&mut bytes)?;
        fs::create_dir_all(corrupt_dir)?;
        fs::write(&aside, &bytes)
    })();
    match OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(at)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot cut a corrupt buffer segment")
        }
        _ => {}
    }
    Corruption {
        segment: path.to_path_buf(),
        kept_bytes: at,
        moved_bytes: len.saturating_sub(at),
        moved_to: saved.is_ok().then_some(aside),
        reason,
    }
}

fn ack_text(pos: Pos) -> String {
    let body = format!("{} {}", pos.segment, pos.offset);
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

/// The ack position; `Ok(None)` when there is no ack file, `Err` with a sentence
/// when there is one that cannot be trusted.
fn read_ack(dir: &Path) -> Result<Option<Pos>, String> {
    let text = match fs::read_to_string(dir.join(ACK_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the ack file: {e}")),
    };
    let mut parts = text.split_whitespace();
    let (Some(seg), Some(off), Some(crc), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the ack file is malformed".into());
    };
    let pos = match (seg.parse(), off.parse()) {
        (Ok(segment), Ok(offset)) => Pos { segment, offset },
        _ => return Err("the ack file is malformed".into()),
    };
    if ack_text(pos).trim_end() != text.trim_end() || !crc.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("the ack file fails its checksum".into());
    }
    Ok(Some(pos))
}

fn write_ack(dir: &Path, pos: Pos, sync: bool) -> io::Result<()> {
    let tmp = dir.join(ACK_TMP);
    let mut f = File::create(&tmp)?;
    f.write_all(ack_text(pos).as_bytes())?;
    if sync {
        f.sync_data()?;
    }
    fs::rename(&tmp, dir.join(ACK_FILE))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
