//! The durable buffer: every point waits here, in order, until the server has
//! accepted it.
//!
//! Layout of `<data_dir>/influxdb/<id>/`:
//! - `<id:020>.seg`: segment files, appended to and never rewritten, each up to
//!   `segment_bytes` (8 MiB, less for small buffers). A segment is a sequence of
//!   records: `u32 LE length`, `u32 LE CRC-32 of the payload`, payload (one event as
//!   line protocol, newline included). A new process always starts a new segment.
//! - `ack`, `ack.alt`: two slots holding the position (segment id, byte offset) of
//!   the first record not yet accepted by the server, as text with a CRC, each
//!   replaced atomically (write `ack.tmp`, rename). The larger valid one counts.
//!   After every accepted write the position goes, without fsync, to the slot that
//!   does not hold the last fsynced position, so tearing it cannot lose that one.
//!   Segments wholly before the position are deleted, once an fsynced ack covers
//!   them.
//! - `corrupt/`: bytes set aside because they failed the length or CRC check.
//!
//! Guarantees:
//! - Appends go straight to the kernel (no user-space buffer), so a crash of hpflow
//!   (SIGKILL, panic, OOM) loses nothing that was appended. The caller fsyncs the
//!   appended segments at least every `sync_interval` and on shutdown, so power
//!   loss loses at most the events appended in the last `sync_interval`. A handle
//!   whose fsync failed is kept and synced again next time.
//! - The ack position is fsynced on open, on shutdown and before a segment is
//!   deleted, not on every write: after a power loss it may be behind, and the
//!   records after it are sent again (at-least-once), but never a record whose ack
//!   was fsynced. Without a crash every record is sent once.
//! - New segments are numbered after every segment found and after the segment
//!   the ack position names, so nothing new can sort below the ack position.
//! - On open, each segment is checked record by record. At the first record whose
//!   length runs past the end (a torn write) or whose CRC does not match (a flipped
//!   bit), the segment is cut: the intact part before it stays, the rest is moved
//!   to `corrupt/` and reported. An unreadable ack file means starting from the
//!   oldest segment (at-least-once). Opening fails only when the folder itself
//!   cannot be created or listed.
//! - Bounded: the records not yet accepted take at most `max_bytes` (headers
//!   included); appending beyond that drops the oldest records and says how many.
//!   On disk the bound can be exceeded by the already-accepted head of the oldest
//!   segment, at most one segment.
//!
//! The same interface runs in memory when the disk buffer is disabled.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::segment::Disk;
pub use super::segment::{Corruption, Pos, Record, HEADER};
use super::vfs::{StdFs, SyncHandle, Vfs};

/// What an append did besides appending.
#[derive(Debug, Default)]
pub struct Appended {
    /// Oldest records dropped to make room (or new ones larger than the whole buffer).
    pub dropped_records: u64,
    pub dropped_bytes: u64,
    /// New records that could not be written (with the error).
    pub lost_records: u64,
    pub error: Option<io::Error>,
}

/// What opening found.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Records (and bytes) waiting from an earlier run, to be sent first.
    pub records: u64,
    pub bytes: u64,
    /// The ack file could not be read; replay starts at the oldest segment.
    pub ack_problem: Option<String>,
    pub corrupt: Vec<Corruption>,
    /// Records dropped because the waiting ones exceed `max_bytes` (the bound shrank).
    pub dropped_records: u64,
}

pub struct Buffer {
    store: Store,
    max_bytes: u64,
    /// Records and bytes not yet acknowledged.
    records: u64,
    bytes: u64,
    corruptions: Vec<Corruption>,
}

enum Store {
    Disk(Disk),
    Memory(Memory),
}

struct Memory {
    records: VecDeque<(u64, Vec<u8>)>,
    next_seq: u64,
}

/// A sensible segment size for a bound: 8 MiB, or an eighth of a small buffer.
pub fn segment_bytes_for(max_bytes: u64) -> u64 {
    (max_bytes / 8).clamp(16 << 10, 8 << 20)
}

impl Buffer {
    /// A buffer that lives in memory only (lost on restart).
    pub fn memory(max_bytes: u64) -> Buffer {
        Buffer {
            store: Store::Memory(Memory {
                records: VecDeque::new(),
                next_seq: 0,
            }),
            max_bytes,
            records: 0,
            bytes: 0,
            corruptions: Vec::new(),
        }
    }

    /// Opens (or creates) the disk buffer in `dir`, checking and repairing what an
    /// earlier run left. Fails only when `dir` cannot be created or listed.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<(Buffer, OpenReport)> {
        Buffer::open_on(Arc::new(StdFs), dir, max_bytes, segment_bytes)
    }

    /// [`Buffer::open`] on a given file system (the model test's simulated disk).
    pub fn open_on(
        fs: Arc<dyn Vfs>,
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> io::Result<(Buffer, OpenReport)> {
        let opened = Disk::open(fs, dir, segment_bytes)?;
        let mut report = OpenReport {
            ack_problem: opened.ack_problem,
            corrupt: opened.corrupt,
            ..OpenReport::default()
        };
        let mut buffer = Buffer {
            store: Store::Disk(opened.disk),
            max_bytes,
            records: opened.records,
            bytes: opened.bytes,
            corruptions: Vec::new(),
        };
        if buffer.bytes > max_bytes {
            let need = buffer.bytes - max_bytes;
            let (n, _) = buffer.drop_oldest(need)?;
            report.dropped_records = n;
        }
        if let Store::Disk(d) = &mut buffer.store {
            // What was found (and dropped) is durable from here on: a power loss
            // soon after a restart must not bring back what this start skipped.
            if let Err(e) = d.make_ack_durable() {
                report
                    .ack_problem
                    .get_or_insert(format!("cannot fsync the ack position: {e}"));
            }
        }
        report.corrupt.append(&mut buffer.corruptions);
        report.records = buffer.records;
        report.bytes = buffer.bytes;
        Ok((buffer, report))
    }

    /// Records and bytes waiting for the server.
    pub fn pending(&self) -> (u64, u64) {
        (self.records, self.bytes)
    }

    /// Corruption found since the last call (while reading), for the caller to report.
    pub fn take_corruptions(&mut self) -> Vec<Corruption> {
        std::mem::take(&mut self.corruptions)
    }

    /// Appends one record per line, dropping the oldest records if the bound requires.
    pub fn append(&mut self, lines: &[&[u8]]) -> Appended {
        let mut out = Appended::default();
        // What is larger than the whole buffer can never be kept: the first of the new
        // records go, as the oldest would.
        let mut lines = lines;
        let mut incoming: u64 = lines.iter().map(|l| HEADER + l.len() as u64).sum();
        while incoming > self.max_bytes {
            let Some((first, rest)) = lines.split_first() else {
                break;
            };
            incoming -= HEADER + first.len() as u64;
            out.dropped_records += 1;
            out.dropped_bytes += HEADER + first.len() as u64;
            lines = rest;
        }
        if lines.is_empty() {
            return out;
        }
        if self.bytes + incoming > self.max_bytes {
            match self.drop_oldest(self.bytes + incoming - self.max_bytes) {
                Ok((n, b)) => {
                    out.dropped_records += n;
                    out.dropped_bytes += b;
                }
                Err(e) => {
                    out.lost_records = lines.len() as u64;
                    out.error = Some(e);
                    return out;
                }
            }
        }
        match &mut self.store {
            Store::Memory(m) => {
                for l in lines {
                    m.records.push_back((m.next_seq, l.to_vec()));
                    m.next_seq += 1;
                }
                self.records += lines.len() as u64;
                self.bytes += incoming;
            }
            Store::Disk(d) => {
                let (written, written_bytes, error) = d.append(lines);
                self.records += written;
                self.bytes += written_bytes;
                if let Some(e) = error {
                    out.lost_records = lines.len() as u64 - written;
                    out.error = Some(e);
                }
            }
        }
        out
    }

    /// Up to `max_records` records from the oldest unacknowledged one, whose data
    /// add up to at most `max_bytes` (but always at least one record if any waits).
    pub fn peek(&mut self, max_records: usize, max_bytes: usize) -> io::Result<Vec<Record>> {
        let mut size = 0usize;
        let out = self.read(true, |n, next| {
            let ok = n < max_records && (n == 0 || size + next <= max_bytes);
            if ok {
                size += next;
            }
            ok
        })?;
        if out.is_empty() && self.records > 0 {
            // The counters disagree with what is stored (a file changed under us):
            // trust the files, so the delivery task does not spin on "pending".
            let (records, bytes) = match &self.store {
                Store::Disk(d) => d.count_from_ack()?,
                Store::Memory(m) => (
                    m.records.len() as u64,
                    m.records.iter().map(|(_, d)| HEADER + d.len() as u64).sum(),
                ),
            };
            self.records = records;
            self.bytes = bytes;
        }
        Ok(out)
    }

    /// Marks records as accepted by the server (they must be the oldest, in order;
    /// records dropped meanwhile are skipped).
    pub fn ack(&mut self, records: &[Record]) -> io::Result<()> {
        let Some(last) = records.last() else { return Ok(()) };
        let ack = match &self.store {
            Store::Disk(d) => d.ack(),
            Store::Memory(m) => Pos {
                segment: 0,
                offset: m.records.front().map_or(m.next_seq, |(seq, _)| *seq),
            },
        };
        for r in records.iter().filter(|r| r.end > ack) {
            self.records = self.records.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(r.size);
        }
        self.set_ack(last.end)
    }

    fn set_ack(&mut self, pos: Pos) -> io::Result<()> {
        match &mut self.store {
            Store::Memory(m) => {
                while m.records.front().is_some_and(|(seq, _)| *seq < pos.offset) {
                    m.records.pop_front();
                }
                Ok(())
            }
            Store::Disk(d) => d.set_ack(pos),
        }
    }

    /// Drops the oldest records until at least `need` bytes are free.
    fn drop_oldest(&mut self, need: u64) -> io::Result<(u64, u64)> {
        let mut freed = 0u64;
        let records = self.read(false, |_, next| {
            let ok = freed < need;
            if ok {
                freed += HEADER + next as u64;
            }
            ok
        })?;
        let bytes: u64 = records.iter().map(|r| r.size).sum();
        // The records are dropped even if the ack file cannot be written: then they
        // may come back after a restart, which is no worse than keeping them.
        let _ = self.ack(&records);
        Ok((records.len() as u64, bytes))
    }

    /// Reads records from the oldest unacknowledged one while `want(count, next
    /// record's data length)` agrees; with `payload` false the data are skipped and
    /// left empty (only positions and sizes are needed to drop records).
    fn read(&mut self, payload: bool, mut want: impl FnMut(usize, usize) -> bool) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        match &mut self.store {
            Store::Memory(m) => {
                for (seq, data) in &m.records {
                    if !want(out.len(), data.len()) {
                        break;
                    }
                    out.push(Record {
                        end: Pos {
                            segment: 0,
                            offset: seq + 1,
                        },
                        size: HEADER + data.len() as u64,
                        data: if payload { data.clone() } else { Vec::new() },
                    });
                }
            }
            Store::Disk(d) => {
                if let Some((records, bytes)) = d.read(payload, &mut want, &mut out, &mut self.corruptions)? {
                    // What was cut is gone; count again what is left.
                    self.records = records;
                    self.bytes = bytes;
                }
            }
        }
        Ok(out)
    }

    /// Files to fsync (the active segment if written to, segments finished since the
    /// last call, the folder if segments were created); the caller syncs them off the
    /// async runtime and gives back, with [`Buffer::sync_failed`], those that failed.
    pub fn sync_handles(&mut self) -> Vec<Box<dyn SyncHandle>> {
        match &mut self.store {
            Store::Disk(d) => d.sync_handles(),
            Store::Memory(_) => Vec::new(),
        }
    }

    /// Takes back handles whose fsync failed, to try again at the next sync.
    pub fn sync_failed(&mut self, handles: Vec<Box<dyn SyncHandle>>) {
        if let Store::Disk(d) = &mut self.store {
            d.sync_failed(handles);
        }
    }

    /// Fsyncs everything and the ack position, for shutdown.
    pub fn close(&mut self) -> io::Result<()> {
        sync_all(self.sync_handles()).map_err(|(e, failed)| {
            self.sync_failed(failed);
            e
        })?;
        match &mut self.store {
            Store::Disk(d) => d.close(),
            Store::Memory(_) => Ok(()),
        }
    }

    /// The ack position a power loss keeps.
    #[cfg(test)]
    pub fn durable_ack(&self) -> Option<Pos> {
        match &self.store {
            Store::Disk(d) => Some(d.durable_ack()),
            Store::Memory(_) => None,
        }
    }
}

/// Fsyncs each handle; on the first failure returns the error and the handles not
/// known to be synced (the failed one and those after it).
pub fn sync_all(handles: Vec<Box<dyn SyncHandle>>) -> Result<(), (io::Error, Vec<Box<dyn SyncHandle>>)> {
    let mut rest = handles.into_iter();
    while let Some(h) = rest.next() {
        if let Err(e) = h.sync() {
            let mut failed = vec![h];
            failed.extend(rest);
            return Err((e, failed));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::path::PathBuf;

    use super::super::segment::ACK_FILES;
    use super::*;

    fn lines(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
        range.map(|i| format!("m v={i:04}i {i:04}\n").into_bytes()).collect()
    }

    fn append(b: &mut Buffer, lines: &[Vec<u8>]) -> Appended {
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let a = b.append(&refs);
        assert!(a.error.is_none(), "{:?}", a.error);
        a
    }

    fn texts(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.data.clone()).unwrap())
            .collect()
    }

    fn all(b: &mut Buffer) -> Vec<String> {
        texts(&b.peek(usize::MAX, usize::MAX).unwrap())
    }

    fn strings(range: std::ops::Range<usize>) -> Vec<String> {
        lines(range)
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appended_records_come_back_in_order_within_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 100).unwrap();
        assert_eq!(report.records, 0);
        append(&mut b, &lines(0..50));
        assert_eq!(b.pending().0, 50);
        assert!(segments(dir.path()).len() > 5, "small segments roll");
        assert_eq!(all(&mut b), strings(0..50));
        assert_eq!(texts(&b.peek(3, usize::MAX).unwrap()), strings(0..3));
        // The byte limit stops before the record that would exceed it, but one always comes.
        assert_eq!(b.peek(100, 1).unwrap().len(), 1);
        assert_eq!(b.peek(100, 40).unwrap().len(), 2);
    }

    #[test]
    fn acknowledged_records_are_gone_and_their_segments_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 256).unwrap();
        append(&mut b, &lines(0..50));
        let before = segments(dir.path()).len();
        let first = b.peek(30, usize::MAX).unwrap();
        b.ack(&first).unwrap();
        assert_eq!(b.pending().0, 20);
        assert_eq!(all(&mut b), strings(30..50));
        assert!(segments(dir.path()).len() < before);
        let rest = b.peek(usize::MAX, usize::MAX).unwrap();
        b.ack(&rest).unwrap();
        assert_eq!(b.pending().0, 0);
        assert_eq!(b.pending(), (0, 0));
        // Only the segment being written stays.
        assert_eq!(segments(dir.path()).len(), 1);
    }

    #[test]
    fn a_restart_replays_only_unacknowledged_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
            append(&mut b, &lines(0..40));
            let first = b.peek(25, usize::MAX).unwrap();
            b.ack(&first).unwrap();
            // Dropped without close: like a crash (no fsync, nothing flushed at exit).
        }
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
        assert_eq!(report.records, 15);
        assert!(report.corrupt.is_empty() && report.ack_problem.is_none());
        append(&mut b, &lines(40..45));
        assert_eq!(all(&mut b), strings(25..45));
        b.close().unwrap();
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
        assert_eq!(report.records, 20);
        let got = b.peek(usize::MAX, usize::MAX).unwrap();
        b.ack(&got).unwrap();
        drop(b);
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
        assert_eq!(report.records, 0);
        assert!(all(&mut b).is_empty());
        assert!(
            segments(dir.path()).is_empty(),
            "fully delivered segments are deleted on open"
        );
    }

    #[test]
    fn a_restart_with_nothing_appended_keeps_the_next_runs_records() {
        // Run 1 delivers everything; run 2 appends nothing (every pump offline); run 3's
        // records must be delivered, not numbered below the ack position and skipped.
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
            append(&mut b, &lines(0..20));
            let got = b.peek(usize::MAX, usize::MAX).unwrap();
            b.ack(&got).unwrap();
            b.close().unwrap();
        }
        for _ in 0..3 {
            let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
            assert_eq!(report.records, 0);
            b.close().unwrap();
        }
        {
            let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
            assert_eq!(report.records, 0);
            append(&mut b, &lines(20..25));
            assert_eq!(all(&mut b), strings(20..25));
            b.close().unwrap();
        }
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 300).unwrap();
        assert_eq!(report.records, 5, "{report:?}");
        assert!(report.corrupt.is_empty(), "{report:?}");
        assert_eq!(all(&mut b), strings(20..25));
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_intact_part_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            append(&mut b, &lines(0..10));
        }
        let seg = segments(dir.path()).pop().unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        // Cut the last record in the middle of its payload.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(report.records, 9);
        assert_eq!(report.corrupt.len(), 1);
        let c = &report.corrupt[0];
        let record = HEADER + lines(9..10)[0].len() as u64;
        assert_eq!(c.moved_bytes, record - 5);
        assert_eq!(c.kept_bytes, len - record);
        assert_eq!(fs::metadata(c.moved_to.as_ref().unwrap()).unwrap().len(), record - 5);
        assert_eq!(fs::metadata(&seg).unwrap().len(), len - record);
        assert_eq!(all(&mut b), strings(0..9));
        // New records go on after the intact ones.
        append(&mut b, &lines(10..12));
        let mut want = strings(0..9);
        want.extend(strings(10..12));
        assert_eq!(all(&mut b), want);
    }

    #[test]
    fn a_flipped_byte_in_the_middle_keeps_what_is_before_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            append(&mut b, &lines(0..20));
        }
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(report.corrupt.len(), 1);
        let kept = report.records as usize;
        assert!((8..12).contains(&kept), "kept {kept}");
        assert_eq!(all(&mut b), strings(0..kept));
        let c = &report.corrupt[0];
        assert_eq!(c.kept_bytes + c.moved_bytes, bytes.len() as u64);
    }

    #[test]
    fn corruption_found_while_reading_is_cut_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        append(&mut b, &lines(0..10));
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        fs::write(&seg, &bytes).unwrap();
        assert_eq!(all(&mut b), strings(0..9));
        assert_eq!(b.take_corruptions().len(), 1);
        assert_eq!(b.pending().0, 9);
        // Appends go to a fresh segment, after the cut.
        append(&mut b, &lines(10..11));
        let mut want = strings(0..9);
        want.extend(strings(10..11));
        assert_eq!(all(&mut b), want);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_records() {
        let dir = tempfile::tempdir().unwrap();
        let one = HEADER + lines(0..1)[0].len() as u64;
        let (mut b, _) = Buffer::open(dir.path(), one * 10, one * 3).unwrap();
        append(&mut b, &lines(0..10));
        let a = append(&mut b, &lines(10..13));
        assert_eq!(a.dropped_records, 3);
        assert_eq!(a.dropped_bytes, 3 * one);
        assert_eq!(all(&mut b), strings(3..13));
        assert_eq!(b.pending(), (10, 10 * one));
        // The drop survives a restart.
        drop(b);
        let (mut b, report) = Buffer::open(dir.path(), one * 10, one * 3).unwrap();
        assert_eq!(report.records, 10);
        assert_eq!(all(&mut b), strings(3..13));
    }

    #[test]
    fn records_dropped_while_being_sent_are_not_counted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let one = HEADER + lines(0..1)[0].len() as u64;
        let (mut b, _) = Buffer::open(dir.path(), one * 10, one * 3).unwrap();
        append(&mut b, &lines(0..10));
        let in_flight = b.peek(4, usize::MAX).unwrap();
        append(&mut b, &lines(10..12));
        b.ack(&in_flight).unwrap();
        assert_eq!(b.pending().0, 8);
        assert_eq!(all(&mut b), strings(4..12));
    }

    #[test]
    fn an_unreadable_ack_file_replays_from_the_oldest_segment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            append(&mut b, &lines(0..5));
            let r = b.peek(2, usize::MAX).unwrap();
            b.ack(&r).unwrap();
        }
        // One torn slot is what a power loss during an unsynced ack write leaves: the
        // other slot still counts.
        let slots: Vec<PathBuf> = ACK_FILES.iter().map(|n| dir.path().join(n)).collect();
        let valid: Vec<&PathBuf> = slots.iter().filter(|p| p.exists()).collect();
        assert_eq!(valid.len(), 1, "one slot written so far");
        let other = slots.iter().find(|p| !p.exists()).unwrap();
        fs::write(other, "garbage").unwrap();
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert!(report.ack_problem.is_none(), "{report:?}");
        assert_eq!(all(&mut b), strings(2..5));
        drop(b);
        // Both unreadable: replay from the oldest segment.
        for p in &slots {
            fs::write(p, "garbage").unwrap();
        }
        let (mut b, report) = Buffer::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert!(report.ack_problem.is_some());
        assert_eq!(all(&mut b), strings(0..5));
    }

    #[test]
    fn segments_deleted_behind_its_back_do_not_leave_phantom_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 100).unwrap();
        append(&mut b, &lines(0..20));
        for s in segments(dir.path()) {
            fs::remove_file(s).unwrap();
        }
        assert!(b.peek(10, usize::MAX).unwrap().is_empty());
        assert_eq!(b.pending(), (0, 0));
        assert!(!b.take_corruptions().is_empty(), "reported");
        append(&mut b, &lines(20..22));
        assert_eq!(all(&mut b), strings(20..22));
    }

    #[test]
    fn a_record_larger_than_the_buffer_is_dropped() {
        let mut b = Buffer::memory(64);
        let big = vec![b'x'; 100];
        let a = b.append(&[&big]);
        assert_eq!(a.dropped_records, 1);
        assert_eq!(b.pending().0, 0);
    }

    #[test]
    fn the_memory_buffer_keeps_order_bound_and_acks() {
        let one = HEADER + lines(0..1)[0].len() as u64;
        let mut b = Buffer::memory(one * 5);
        append(&mut b, &lines(0..4));
        let r = b.peek(2, usize::MAX).unwrap();
        let a = append(&mut b, &lines(4..7));
        assert_eq!(a.dropped_records, 2);
        b.ack(&r).unwrap();
        assert_eq!(b.pending().0, 5);
        assert_eq!(all(&mut b), strings(2..7));
        assert!(b.sync_handles().is_empty());
    }

    #[test]
    fn sync_handles_cover_written_and_finished_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20, 100).unwrap();
        assert!(b.sync_handles().is_empty());
        append(&mut b, &lines(0..10));
        let handles = b.sync_handles();
        assert!(handles.len() >= 3, "{}", handles.len());
        sync_all(handles).map_err(|(e, _)| e).unwrap();
        assert!(b.sync_handles().is_empty(), "nothing new to sync");
    }
}
