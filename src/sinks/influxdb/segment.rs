//! The disk side of the buffer: segment files and their record framing, the ack
//! slots, and the checks that find torn or corrupt records. `buffer.rs` describes
//! the layout and the guarantees. Every file operation goes through [`Vfs`], so the
//! model test can run this on a disk that loses what was not synced.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::vfs::{SyncHandle, VFile, Vfs};

/// Bytes of a record's header.
pub const HEADER: u64 = 8;
/// A place in the buffer: records are ordered by (segment, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// One buffered event: its line protocol, and where the next record starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub end: Pos,
    /// The bytes the record takes in the buffer (header included).
    pub size: u64,
    pub data: Vec<u8>,
}

/// Part of a segment that failed the length or CRC check and was set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    pub segment: PathBuf,
    /// Bytes of the segment kept (before the bad record).
    pub kept_bytes: u64,
    /// Bytes set aside (from the bad record to the end of the segment).
    pub moved_bytes: u64,
    /// Where they went; `None` if they could not be saved (they are gone then).
    pub moved_to: Option<PathBuf>,
    pub reason: String,
}

/// A length above this is taken as corruption (one event is a few hundred bytes).
const MAX_RECORD: u64 = 16 << 20;
/// The two ack slots. The ack position only moves forward, so the valid slot with
/// the larger position is the current one. A write without fsync goes to the slot
/// that does not hold the last fsynced position, so a power loss that tears it
/// still leaves that position readable in the other.
pub(super) const ACK_FILES: [&str; 2] = ["ack", "ack.alt"];
const ACK_TMP: &str = "ack.tmp";

/// The segments of one sink's buffer folder, the one being appended to, and the
/// ack position.
pub(super) struct Disk {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    segment_bytes: u64,
    /// Oldest first; when `active` is set, it is the append handle of the last one.
    segments: VecDeque<Segment>,
    active: Option<Box<dyn VFile>>,
    next_id: u64,
    ack: Pos,
    /// The ack position last written with fsync: what a power loss keeps.
    durable_ack: Pos,
    /// The slot holding `durable_ack`.
    durable_slot: usize,
    /// Files to fsync: segments finished, cut or dropped after a write error since
    /// the last sync, and handles whose fsync failed.
    unsynced: Vec<Box<dyn SyncHandle>>,
    /// Segments to cut back to a length because taking back a failed write failed
    /// too; retried at every sync and at close.
    pending_cuts: Vec<(u64, u64)>,
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
    /// cutting each at its first bad record. The ack position found is fsynced before
    /// anything it passes is deleted (it may sit only in the page cache of a process
    /// that was killed); the caller fsyncs it at the end with [`Disk::make_ack_durable`].
    pub fn open(fs: Arc<dyn Vfs>, dir: &Path, segment_bytes: u64) -> io::Result<Opened> {
        fs.create_dir_all(dir)?;
        let mut ids = Vec::new();
        for name in fs.list(dir)? {
            if let Some(id) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let found = read_acks(&*fs, dir);
        let ack = found.pos.unwrap_or_default();
        let mut disk = Disk {
            fs,
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(HEADER + 1),
            segments: VecDeque::new(),
            active: None,
            // New segments are numbered past both the files found and the ack position:
            // the segment the ack names may be gone (deleted once wholly delivered), and
            // a new segment numbered at or below it would count as delivered already.
            next_id: ids.last().copied().unwrap_or(0).max(ack.segment).saturating_add(1),
            ack,
            durable_ack: Pos::default(),
            durable_slot: found.slot,
            unsynced: Vec::new(),
            pending_cuts: Vec::new(),
            dir_dirty: false,
            dirty: false,
        };
        let (mut records, mut bytes, mut corrupt) = (0, 0, Vec::new());
        for id in ids {
            let path = disk.path(id);
            if id < ack.segment {
                // Wholly acknowledged; the delete was cut short. Deleted below once the
                // ack is known to be durable.
                disk.segments.push_back(Segment { id, len: 0 });
                continue;
            }
            let from = if id == ack.segment { ack.offset } else { 0 };
            let scan = scan_segment(&*disk.fs, &path, from, &dir.join("corrupt"));
            records += scan.records;
            bytes += scan.bytes;
            corrupt.extend(scan.corruption);
            disk.segments.push_back(Segment { id, len: scan.len });
            // A process that was killed leaves its appends in the page cache only: the
            // next sync makes them durable along with the folder's entries.
            let h = disk.handle_or_lazy(disk.fs.sync_handle(&path, false), path, false);
            disk.unsynced.push(h);
            disk.dir_dirty = true;
        }
        disk.gc();
        Ok(Opened {
            disk,
            records,
            bytes,
            ack_problem: found.problem,
            corrupt,
        })
    }

    /// The first record not yet acknowledged.
    pub fn ack(&self) -> Pos {
        self.ack
    }

    /// The ack position a power loss keeps.
    #[cfg(test)]
    pub fn durable_ack(&self) -> Pos {
        self.durable_ack
    }

    /// Moves the ack position forward and writes it (without fsync) to the slot that
    /// does not hold the durable position; deletes the segments it passes once an
    /// fsynced ack covers them. The position moves even when the file write fails
    /// (the records were delivered; after a restart they may be sent again).
    pub fn set_ack(&mut self, pos: Pos) -> io::Result<()> {
        if pos <= self.ack {
            return Ok(());
        }
        self.ack = pos;
        let r = write_ack(&*self.fs, &self.dir, 1 - self.durable_slot, pos, false);
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
            match read_segment(&*self.fs, &self.path(seg.id), seg, from, payload, want, out)? {
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

    /// What to fsync: the active segment if written to, segments finished since the
    /// last call, the folder if entries changed. Give back what failed with
    /// [`Disk::sync_failed`].
    pub fn sync_handles(&mut self) -> Vec<Box<dyn SyncHandle>> {
        self.retry_cuts();
        let mut out: Vec<Box<dyn SyncHandle>> = self.unsynced.drain(..).collect();
        if self.dirty {
            if let (Some(f), Some(seg)) = (self.active.as_ref(), self.segments.back()) {
                out.push(self.handle_or_lazy(f.sync_handle(), self.path(seg.id), false));
            }
            self.dirty = false;
        }
        if self.dir_dirty {
            // Opened when it is synced, so that failing to open it fails the sync.
            out.push(Box::new(LazySync {
                fs: self.fs.clone(),
                path: self.dir.clone(),
                is_dir: true,
            }));
            self.dir_dirty = false;
        }
        out
    }

    /// Takes back handles whose fsync failed, to try again at the next sync.
    pub fn sync_failed(&mut self, handles: Vec<Box<dyn SyncHandle>>) {
        self.unsynced.extend(handles);
    }

    /// Writes and fsyncs the ack position (the segments are synced by the caller).
    pub fn close(&mut self) -> io::Result<()> {
        self.retry_cuts();
        self.make_ack_durable()
    }

    /// Fsyncs the ack position if it moved since it last was.
    pub fn make_ack_durable(&mut self) -> io::Result<()> {
        if self.ack != self.durable_ack {
            self.write_ack_durable()?;
        }
        Ok(())
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// Takes back the torn ends of failed writes that could not be cut at once
    /// (else the intact records of a failed write would be sent after a restart,
    /// though they were counted as lost).
    fn retry_cuts(&mut self) {
        let fs = &self.fs;
        let dir = &self.dir;
        self.pending_cuts.retain(|&(id, len)| {
            let path = dir.join(format!("{id:020}.seg"));
            match fs.truncate(&path, len) {
                Ok(()) => false,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            }
        });
    }

    /// Writes the ack position with fsync to the slot not holding the durable one,
    /// which then becomes the durable slot.
    fn write_ack_durable(&mut self) -> io::Result<()> {
        let slot = 1 - self.durable_slot;
        write_ack(&*self.fs, &self.dir, slot, self.ack, true)?;
        self.durable_slot = slot;
        self.durable_ack = self.ack;
        Ok(())
    }

    /// Writes records, rolling to a new segment when the current one is full.
    /// Returns the records and bytes written and the error that stopped it. A record
    /// is written when all its bytes reached the file; of a write cut short, the
    /// whole records count and the torn rest is cut off.
    pub fn append(&mut self, lines: &[&[u8]]) -> (u64, u64, Option<io::Error>) {
        // One allocation for the records of a batch (up to a segment's worth), not
        // one per doubling of a chunk that grows line by line.
        let framed: u64 = lines.iter().map(|l| HEADER + l.len() as u64).sum();
        let mut chunk = Vec::with_capacity(framed.min(self.segment_bytes) as usize);
        let mut ends = Vec::with_capacity(lines.len());
        let (mut written, mut written_bytes) = (0u64, 0u64);
        for line in lines {
            let frame = HEADER + line.len() as u64;
            let current = if self.active.is_some() {
                self.segments.back().map_or(0, |s| s.len)
            } else {
                0
            };
            let pending = current + chunk.len() as u64;
            let full = pending + frame > self.segment_bytes && pending > 0;
            if self.active.is_none() || full {
                let (n, bytes, error) = self.write_chunk(&chunk, &ends);
                written += n;
                written_bytes += bytes;
                if error.is_some() {
                    return (written, written_bytes, error);
                }
                chunk.clear();
                ends.clear();
                if let Err(e) = self.roll() {
                    return (written, written_bytes, Some(e));
                }
            }
            chunk.extend_from_slice(&(line.len() as u32).to_le_bytes());
            chunk.extend_from_slice(&crc32fast::hash(line).to_le_bytes());
            chunk.extend_from_slice(line);
            ends.push(chunk.len());
        }
        let (n, bytes, error) = self.write_chunk(&chunk, &ends);
        (written + n, written_bytes + bytes, error)
    }

    /// Writes a chunk of records (ending at `ends`) to the active segment: the
    /// records and bytes that reached it, and the error that stopped it.
    fn write_chunk(&mut self, chunk: &[u8], ends: &[usize]) -> (u64, u64, Option<io::Error>) {
        if chunk.is_empty() {
            return (0, 0, None);
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return (0, 0, Some(io::Error::other("no segment open for writing")));
        };
        let mut done = 0;
        let error = loop {
            if done == chunk.len() {
                break None;
            }
            match file.write(&chunk[done..]) {
                Ok(0) => break Some(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        let whole = ends.iter().take_while(|&&end| end <= done).count();
        let whole_bytes = if whole == 0 { 0 } else { ends[whole - 1] };
        seg.len += whole_bytes as u64;
        if whole_bytes > 0 {
            self.dirty = true;
        }
        if error.is_some() {
            // Cut off a torn record so nothing sits between the records before it
            // and any later ones, and go on in a fresh segment. If the cut fails the
            // torn bytes stay past the segment's known end, where reading stops;
            // the cut is tried again, and opening would cut them as corrupt.
            if done > whole_bytes && file.set_len(seg.len).is_err() {
                self.pending_cuts.push((seg.id, seg.len));
            }
            self.retire_active();
        }
        (whole as u64, whole_bytes as u64, error)
    }

    /// Stops appending to the active segment; its handle waits for the next sync.
    fn retire_active(&mut self) {
        if let (Some(old), Some(seg)) = (self.active.take(), self.segments.back()) {
            let h = self.handle_or_lazy(old.sync_handle(), self.path(seg.id), false);
            self.unsynced.push(h);
        }
        self.dirty = false;
    }

    /// A handle to sync, or when none could be had now (out of file descriptors), one
    /// that opens the file when it syncs, so the failure shows then.
    fn handle_or_lazy(
        &self,
        handle: io::Result<Box<dyn SyncHandle>>,
        path: PathBuf,
        is_dir: bool,
    ) -> Box<dyn SyncHandle> {
        handle.unwrap_or_else(|_| {
            Box::new(LazySync {
                fs: self.fs.clone(),
                path,
                is_dir,
            })
        })
    }

    fn roll(&mut self) -> io::Result<()> {
        self.retire_active();
        let id = self.next_id;
        let file = self.fs.create_append(&self.path(id))?;
        self.next_id += 1;
        self.segments.push_back(Segment { id, len: 0 });
        self.active = Some(file);
        self.dir_dirty = true;
        Ok(())
    }

    /// Deletes the segments wholly acknowledged (never the one being written), after
    /// making sure an fsynced ack covers them: a power loss must not bring back an
    /// ack position that names deleted segments' records as waiting.
    fn gc(&mut self) {
        while let Some(front) = self.segments.front().copied() {
            let is_active = self.active.is_some() && self.segments.len() == 1;
            let end = Pos {
                segment: front.id,
                offset: front.len,
            };
            if is_active || self.ack < end {
                break;
            }
            if self.durable_ack < end {
                if let Err(e) = self.write_ack_durable() {
                    tracing::warn!(dir = %self.dir.display(), error = %e,
                        "Cannot fsync the buffer's ack position; delivered segments are kept for now");
                    break;
                }
            }
            let path = self.path(front.id);
            if let Err(e) = self.fs.remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
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
        let c = move_aside(&*self.fs, &path, seg.id, at, seg.len, &self.dir.join("corrupt"), reason);
        self.segments[index].len = at;
        if index + 1 == self.segments.len() && self.active.is_some() {
            // Later appends must not land behind the cut: go on in a new segment.
            self.retire_active();
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
            read_segment(&*self.fs, &self.path(seg.id), *seg, from, false, &mut all, &mut counted)?;
            records += counted.len() as u64;
            bytes += counted.iter().map(|r| r.size).sum::<u64>();
        }
        Ok((records, bytes))
    }
}

/// Syncs a file or folder found by path when the sync runs.
#[derive(Debug)]
struct LazySync {
    fs: Arc<dyn Vfs>,
    path: PathBuf,
    is_dir: bool,
}

impl SyncHandle for LazySync {
    fn sync(&self) -> io::Result<()> {
        self.fs.sync_handle(&self.path, self.is_dir)?.sync()
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
    fs: &dyn Vfs,
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
    let file = match fs.open_read(path, from) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(ReadEnd::Corrupt {
                at: from,
                reason: "the segment file is gone".into(),
            })
        }
        Err(e) => return Err(e),
    };
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
        if let Err(e) = r.read_exact(&mut header) {
            return short_read(e, off, "the segment ends inside a record header");
        }
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
            if let Err(e) = r.read_exact(&mut data) {
                return short_read(e, off, "the segment ends inside a record");
            }
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

/// A file shorter than its recorded length (cut under us) is corruption at `off`;
/// any other read error is an I/O error.
fn short_read(e: io::Error, off: u64, reason: &str) -> io::Result<ReadEnd> {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Ok(ReadEnd::Corrupt {
            at: off,
            reason: reason.into(),
        })
    } else {
        Err(e)
    }
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
fn scan_segment(fs: &dyn Vfs, path: &Path, from: u64, corrupt_dir: &Path) -> Scan {
    let mut scan = Scan {
        records: 0,
        bytes: 0,
        len: 0,
        corruption: None,
    };
    let data = match fs.read(path) {
        Ok(d) => d,
        Err(e) => {
            // Unreadable: set it aside whole rather than refuse to start.
            let aside = corrupt_dir.join(path.file_name().unwrap_or_default());
            let moved = fs
                .create_dir_all(corrupt_dir)
                .and_then(|_| fs.rename(path, &aside))
                .is_ok();
            scan.corruption = Some(Corruption {
                segment: path.to_path_buf(),
                kept_bytes: 0,
                moved_bytes: 0,
                moved_to: moved.then_some(aside),
                reason: format!("cannot read: {e}"),
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
        scan.corruption = Some(move_aside(fs, path, id, off, len, corrupt_dir, reason));
        scan.len = off;
    }
    scan
}

/// Copies bytes `at..len` of a segment to `corrupt/` and truncates the segment at `at`.
fn move_aside(fs: &dyn Vfs, path: &Path, id: u64, at: u64, len: u64, corrupt_dir: &Path, reason: String) -> Corruption {
    let aside = corrupt_dir.join(format!("{id:020}-{at}.bin"));
    let saved = (|| -> io::Result<()> {
        let mut bytes = Vec::new();
        fs.open_read(path, at)?
            .take(len.saturating_sub(at))
            .read_to_end(&mut bytes)?;
        fs.create_dir_all(corrupt_dir)?;
        fs.write_file(&aside, &bytes, false)
    })();
    match fs.truncate(path, at) {
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

/// What the ack slots hold.
struct Acks {
    /// The larger valid position, if any slot holds one.
    pos: Option<Pos>,
    /// The slot holding it (0 when none does).
    slot: usize,
    /// Set when no slot holds a valid position but one exists and cannot be trusted.
    problem: Option<String>,
}

fn read_acks(fs: &dyn Vfs, dir: &Path) -> Acks {
    let mut acks = Acks {
        pos: None,
        slot: 0,
        problem: None,
    };
    let mut problems = Vec::new();
    for (slot, name) in ACK_FILES.iter().enumerate() {
        match read_ack(fs, &dir.join(name)) {
            Ok(Some(pos)) if acks.pos.is_none_or(|p| pos > p) => {
                acks.pos = Some(pos);
                acks.slot = slot;
            }
            Ok(_) => {}
            Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    // A torn slot beside a good one is what a power loss during an unsynced write
    // leaves: expected, not a problem.
    if acks.pos.is_none() && !problems.is_empty() {
        acks.problem = Some(problems.join("; "));
    }
    acks
}

/// The ack position in one slot; `Ok(None)` when the file does not exist, `Err`
/// with a sentence when it cannot be trusted.
fn read_ack(fs: &dyn Vfs, path: &Path) -> Result<Option<Pos>, String> {
    let bytes = match fs.read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the ack file: {e}")),
    };
    let text = String::from_utf8_lossy(&bytes);
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

/// Replaces one ack slot (write a temporary file, rename); with `sync`, the data is
/// fsynced before the rename and the folder after it.
fn write_ack(fs: &dyn Vfs, dir: &Path, slot: usize, pos: Pos, sync: bool) -> io::Result<()> {
    let tmp = dir.join(ACK_TMP);
    fs.write_file(&tmp, ack_text(pos).as_bytes(), sync)?;
    fs.rename(&tmp, &dir.join(ACK_FILES[slot]))?;
    if sync {
        fs.sync_handle(dir, true)?.sync()?;
    }
    Ok(())
}
