//! Model-based test of the disk buffer: seeded random sequences of operations run
//! against [`Buffer`] on a simulated disk ([`SimFs`]) and against a plain in-memory
//! model of what must be delivered. After every step:
//! - every record that was synced and not acknowledged is delivered, in order,
//!   exactly as written;
//! - an acknowledged record never comes back after a clean close;
//! - after a crash, a record comes back only if its ack had not reached the disk;
//! - the buffer's record and byte counters equal the model's.
//!
//! Operations: appends of random batches (segments of a few records, a bound that
//! drops the oldest), peeks, partial acks of what was peeked, syncs, clean close and
//! reopen (also with a smaller bound), reopen with nothing appended, a kill (dropped
//! without close), a power loss (unsynced tails cut or a byte flipped, folder
//! changes partly kept), and spells of ENOSPC or EIO from the disk.
//!
//! `cargo test` runs [`SEQUENCES`] sequences. `HPFLOW_MODEL_SEQUENCES=N` runs N
//! (the long run), `HPFLOW_MODEL_SEED=S` replays one. A failure prints its seed.
//! The same sequences also run, without faults and power losses, on the real disk.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use super::buffer::{sync_all, Buffer, Pos, Record, HEADER};
use super::simfs::{Fault, SimFs};
use super::vfs::{StdFs, Vfs};

/// Sequences per `cargo test` run on the simulated disk.
const SEQUENCES: u64 = 3000;
/// Sequences on the real disk (slower: real files and fsyncs).
const REAL_SEQUENCES: u64 = 60;

#[derive(Debug, Clone)]
struct Rec {
    seq: u64,
    data: Vec<u8>,
    /// Appended before a sync that succeeded.
    synced: bool,
    /// Where the record ends in the buffer, once seen in a peek.
    end: Option<Pos>,
}

fn size(r: &Rec) -> u64 {
    HEADER + r.data.len() as u64
}

/// What must be delivered, and what may come back.
#[derive(Debug, Default)]
struct Model {
    /// Accepted and neither acknowledged nor dropped, oldest first.
    live: VecDeque<Rec>,
    /// Acknowledged or dropped, but the ack may not be on disk yet: may come back
    /// after a crash.
    gone: VecDeque<Rec>,
    next_seq: u64,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.live.iter().map(size).sum()
    }

    /// Moves the oldest `n` live records to `gone`.
    fn retire(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(r) = self.live.pop_front() {
                self.gone.push_back(r);
            }
        }
    }

    /// How many of the oldest records must go to free `need` bytes.
    fn oldest_to_drop(&self, need: u64) -> usize {
        let mut freed = 0;
        let mut n = 0;
        for r in &self.live {
            if freed >= need {
                break;
            }
            freed += size(r);
            n += 1;
        }
        n
    }

    /// Forgets what an fsynced ack covers: it must never come back.
    fn forget_durable(&mut self, durable: Pos) {
        while self.gone.front().is_some_and(|r| r.end.is_some_and(|e| e <= durable)) {
            self.gone.pop_front();
        }
    }
}

/// One sequence's world: the file system, the buffer, the model.
struct World {
    fs: Arc<dyn Vfs>,
    sim: Option<SimFs>,
    dir: &'static Path,
    max_bytes: u64,
    segment_bytes: u64,
    buffer: Option<Buffer>,
    model: Model,
    in_flight: Vec<Record>,
    rng: fastrand::Rng,
    log: Vec<String>,
    steps: u64,
}

impl World {
    fn buffer(&mut self) -> &mut Buffer {
        self.buffer.as_mut().expect("the buffer is open between steps")
    }

    /// Runs `f` with the disk's faults off (checks must not fail by themselves).
    fn quiet<T>(&mut self, f: impl FnOnce(&mut World) -> T) -> T {
        let fault = self.sim.as_ref().and_then(SimFs::fault);
        if let Some(sim) = &self.sim {
            sim.set_fault(None, 0);
        }
        let out = f(self);
        if let (Some(sim), Some(fault)) = (&self.sim, fault) {
            let seed = self.rng.u64(..);
            sim.set_fault(Some(fault), seed);
        }
        out
    }

    fn open(&mut self) -> super::buffer::OpenReport {
        let (b, report) = self
            .quiet(|w| Buffer::open_on(w.fs.clone(), w.dir, w.max_bytes, w.segment_bytes))
            .expect("opening the buffer folder");
        self.buffer = Some(b);
        report
    }

    fn line(&mut self) -> Vec<u8> {
        let seq = self.model.next_seq;
        self.model.next_seq += 1;
        let pad = self.rng.usize(0..120);
        let mut line = format!("m,seq={seq} v={}i", self.rng.u32(..)).into_bytes();
        line.extend(std::iter::repeat_n(b'x', pad));
        line.push(b'\n');
        line
    }

    fn append(&mut self) {
        let n = self.rng.usize(0..8);
        let first_seq = self.model.next_seq;
        let lines: Vec<Vec<u8>> = (0..n).map(|_| self.line()).collect();
        // The model's expectation, as buffer.rs documents the bound.
        let max = self.max_bytes;
        let mut incoming: u64 = lines.iter().map(|l| HEADER + l.len() as u64).sum();
        let mut front = 0;
        while incoming > max && front < lines.len() {
            incoming -= HEADER + lines[front].len() as u64;
            front += 1;
        }
        let front_bytes: u64 = lines[..front].iter().map(|l| HEADER + l.len() as u64).sum();
        let rest = lines.len() - front;
        let bytes = self.model.bytes();
        let oldest = if rest > 0 && bytes + incoming > max {
            self.model.oldest_to_drop(bytes + incoming - max)
        } else {
            0
        };
        let oldest_bytes: u64 = self.model.live.iter().take(oldest).map(size).sum();
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let a = self.buffer().append(&refs);
        self.log.push(format!(
            "append {n} (seq {first_seq}..): dropped {} lost {} error {:?}",
            a.dropped_records, a.lost_records, a.error
        ));
        let faulty = self.sim.as_ref().and_then(SimFs::fault).is_some();
        assert!(
            faulty || a.error.is_none(),
            "append failed without a fault: {:?}",
            a.error
        );
        let drop_failed = oldest > 0 && a.dropped_records == front as u64;
        if drop_failed {
            assert!(a.error.is_some(), "oldest records not dropped without an error");
            assert_eq!(a.lost_records, rest as u64, "a failed drop loses the whole batch");
            return;
        }
        assert_eq!(a.dropped_records, (front + oldest) as u64, "records dropped");
        assert_eq!(a.dropped_bytes, front_bytes + oldest_bytes, "bytes dropped");
        assert!(a.lost_records <= rest as u64);
        assert_eq!(a.lost_records > 0, a.error.is_some(), "lost records come with an error");
        self.model.retire(oldest);
        let kept = rest - a.lost_records as usize;
        for (i, data) in lines.into_iter().enumerate().skip(front).take(kept) {
            self.model.live.push_back(Rec {
                seq: first_seq + i as u64,
                data,
                synced: false,
                end: None,
            });
        }
    }

    fn peek(&mut self) {
        let max_records = self.rng.usize(1..12);
        let max_bytes = self.rng.usize(1..1500);
        let Ok(got) = self.buffer().peek(max_records, max_bytes) else {
            self.log.push("peek failed".into());
            return;
        };
        // The batch rule: at most max_records, data within max_bytes, at least one.
        let mut want = 0;
        let mut data = 0;
        for r in &self.model.live {
            if want >= max_records || (want > 0 && data + r.data.len() > max_bytes) {
                break;
            }
            data += r.data.len();
            want += 1;
        }
        assert_eq!(got.len(), want, "peek({max_records}, {max_bytes}) count");
        self.log.push(format!("peek {} records", got.len()));
        self.in_flight = got;
    }

    fn ack(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let j = self.rng.usize(1..=self.in_flight.len());
        let part: Vec<Record> = self.in_flight.drain(..j).collect();
        let last = part.last().map(|r| r.end).unwrap_or_default();
        let r = self.buffer().ack(&part);
        self.log.push(format!("ack {j} up to {last:?}: {r:?}"));
        // The position moves in memory even if the ack file write failed; records
        // dropped meanwhile are skipped.
        let n = self
            .model
            .live
            .iter()
            .take_while(|r| r.end.is_some_and(|e| e <= last))
            .count();
        self.model.retire(n);
    }

    fn sync(&mut self) {
        let handles = self.buffer().sync_handles();
        match sync_all(handles) {
            Ok(()) => {
                for r in self.model.live.iter_mut().chain(self.model.gone.iter_mut()) {
                    r.synced = true;
                }
                self.log.push("sync".into());
            }
            Err((e, failed)) => {
                self.log.push(format!("sync failed: {e}"));
                self.buffer().sync_failed(failed);
            }
        }
    }

    /// Clean close and reopen, sometimes with a smaller bound.
    fn reopen(&mut self, idle: bool) {
        let closed = self.quiet(|w| w.buffer().close());
        self.log.push(format!("close: {closed:?}"));
        closed.expect("close without faults");
        self.buffer = None;
        self.in_flight.clear();
        self.model.gone.clear();
        for r in self.model.live.iter_mut() {
            r.synced = true;
        }
        if idle {
            // Every pump offline: open and close with nothing appended.
            let report = self.open();
            assert_eq!(report.records, self.model.live.len() as u64, "idle reopen");
            self.quiet(|w| w.buffer().close()).expect("close without faults");
            self.buffer = None;
            self.log.push("idle run".into());
        }
        let shrink = !idle && self.rng.u8(..) < 40;
        if shrink {
            self.max_bytes = (self.max_bytes / 2).max(64);
        }
        let report = self.open();
        let expect_drop = if self.model.bytes() > self.max_bytes {
            self.model.oldest_to_drop(self.model.bytes() - self.max_bytes)
        } else {
            0
        };
        self.log.push(format!(
            "reopen (max {}): {} waiting, {} dropped",
            self.max_bytes, report.records, report.dropped_records
        ));
        assert_eq!(report.dropped_records, expect_drop as u64, "dropped at open");
        for _ in 0..expect_drop {
            self.model.live.pop_front();
        }
        assert_eq!(
            report.records,
            self.model.live.len() as u64,
            "waiting after a clean close"
        );
        // An acknowledged record never comes back after a clean close.
        self.check_exact();
    }

    /// A crash: the buffer is dropped without close; with `power_loss` the disk also
    /// loses what was not synced.
    fn crash(&mut self, power_loss: bool) {
        self.buffer = None;
        self.in_flight.clear();
        if power_loss {
            let sim = self.sim.clone().expect("power loss on the simulated disk only");
            let mut rng = fastrand::Rng::with_seed(self.rng.u64(..));
            sim.set_fault(None, 0);
            sim.power_loss(&mut rng);
        } else if let Some(sim) = &self.sim {
            sim.set_fault(None, 0);
        }
        let report = self.open();
        self.log.push(format!(
            "{} and reopen: {} waiting, {} corrupt",
            if power_loss { "power loss" } else { "kill" },
            report.records,
            report.corrupt.len()
        ));
        let got = self.buffer().peek(usize::MAX, usize::MAX).expect("peek after reopen");
        self.buffer().take_corruptions();
        // What came back is, in order, part of what may come back...
        let candidates: Vec<&Rec> = self.model.gone.iter().chain(self.model.live.iter()).collect();
        let mut next = 0;
        let mut recovered = VecDeque::new();
        for r in &got {
            let at = candidates[next..].iter().position(|c| c.data == r.data);
            let Some(at) = at else {
                panic!(
                    "after a {}: record {:?} is not one that may come back, or is out of order",
                    if power_loss { "power loss" } else { "kill" },
                    String::from_utf8_lossy(&r.data)
                );
            };
            for skipped in &candidates[next..next + at] {
                // ...and holds every record that must: a live one is missing only if a
                // power loss took it before it was synced.
                let live = self.model.live.iter().any(|l| l.seq == skipped.seq);
                assert!(
                    !live || (power_loss && !skipped.synced),
                    "record seq {} (synced: {}) lost by a {}",
                    skipped.seq,
                    skipped.synced,
                    if power_loss { "power loss" } else { "kill" }
                );
            }
            let c = candidates[next + at];
            recovered.push_back(Rec {
                seq: c.seq,
                data: c.data.clone(),
                synced: c.synced || power_loss,
                end: Some(r.end),
            });
            next += at + 1;
        }
        for skipped in &candidates[next..] {
            let live = self.model.live.iter().any(|l| l.seq == skipped.seq);
            assert!(
                !live || (power_loss && !skipped.synced),
                "record seq {} (synced: {}) lost at the end by a {}",
                skipped.seq,
                skipped.synced,
                if power_loss { "power loss" } else { "kill" }
            );
        }
        self.model.live = recovered;
        self.model.gone.clear();
        self.check_counters();
    }

    fn set_fault(&mut self) {
        let Some(sim) = self.sim.clone() else { return };
        let fault = match self.rng.u8(0..3) {
            0 => None,
            1 => Some((Fault::DiskFull, 0.5)),
            _ => Some((Fault::Io, 0.2)),
        };
        self.log.push(format!("fault {fault:?}"));
        sim.set_fault(fault, self.rng.u64(..));
    }

    fn check_counters(&mut self) {
        let (records, bytes) = self.buffer().pending();
        assert_eq!(
            (records, bytes),
            (self.model.live.len() as u64, self.model.bytes()),
            "points_buffered and bytes_buffered"
        );
    }

    /// Everything live is there, exactly and in order, and nothing else; notes where
    /// each record ends, and forgets what an fsynced ack covers.
    fn check_exact(&mut self) {
        let got = self.quiet(|w| w.buffer().peek(usize::MAX, usize::MAX)).expect("peek");
        let corrupt = self.buffer().take_corruptions();
        assert!(corrupt.is_empty(), "corruption without a crash: {corrupt:?}");
        let want: Vec<&[u8]> = self.model.live.iter().map(|r| r.data.as_slice()).collect();
        let have: Vec<&[u8]> = got.iter().map(|r| r.data.as_slice()).collect();
        if have != want {
            let show = |v: &[&[u8]]| -> Vec<String> {
                v.iter()
                    .map(|d| String::from_utf8_lossy(&d[..d.len().min(20)]).into_owned())
                    .collect()
            };
            panic!("delivered {:?}\n   expected {:?}", show(&have), show(&want));
        }
        for (r, g) in self.model.live.iter_mut().zip(&got) {
            r.end = Some(g.end);
        }
        self.check_counters();
        if let Some(durable) = self.buffer().durable_ack() {
            self.model.forget_durable(durable);
        }
    }

    fn step(&mut self) {
        self.steps += 1;
        let simulated = self.sim.is_some();
        match self.rng.u8(0..100) {
            0..=29 => self.append(),
            30..=44 => self.peek(),
            45..=59 => self.ack(),
            60..=71 => self.sync(),
            72..=76 => self.reopen(false),
            77..=80 => self.reopen(true),
            81..=85 => self.crash(false),
            86..=92 if simulated => self.crash(true),
            _ if simulated => self.set_fault(),
            _ => self.sync(),
        }
        self.check_counters();
        self.check_exact();
    }
}

/// Runs one sequence; panics with the seed and the steps taken on a failure.
fn run_sequence(seed: u64, simulated: bool) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let tmp = (!simulated).then(|| tempfile::tempdir().expect("a temporary folder"));
    let (fs, sim, dir): (Arc<dyn Vfs>, Option<SimFs>, &'static Path) = match &tmp {
        None => {
            let sim = SimFs::default();
            (Arc::new(sim.clone()), Some(sim), Path::new("/data/influxdb/sink"))
        }
        Some(t) => (
            Arc::new(StdFs),
            None,
            Box::leak(t.path().join("buffer").into_boxed_path()),
        ),
    };
    let mut world = World {
        fs,
        sim,
        dir,
        max_bytes: rng.u64(150..4000),
        segment_bytes: rng.u64(9..400),
        buffer: None,
        model: Model::default(),
        in_flight: Vec::new(),
        log: Vec::new(),
        steps: 0,
        rng,
    };
    world.open();
    let steps = world.rng.usize(20..150);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            world.step();
        }
        // However it went, a clean close and reopen delivers exactly what waits.
        if let Some(sim) = &world.sim {
            sim.set_fault(None, 0);
        }
        world.reopen(false);
    }));
    if let Err(panic) = outcome {
        let tail = world.log.len().saturating_sub(40);
        eprintln!(
            "buffer model: FAILED at seed {seed} ({} disk), step {}; replay with HPFLOW_MODEL_SEED={seed}\nlast steps:\n  {}",
            if simulated { "simulated" } else { "real" },
            world.steps,
            world.log[tail..].join("\n  ")
        );
        std::panic::resume_unwind(panic);
    }
    world.steps + 1
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn run(simulated: bool, default_sequences: u64) {
    let (first, count) = match env_u64("HPFLOW_MODEL_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env_u64("HPFLOW_MODEL_FIRST_SEED").unwrap_or(1),
            env_u64("HPFLOW_MODEL_SEQUENCES").unwrap_or(default_sequences),
        ),
    };
    let started = std::time::Instant::now();
    let mut steps = 0;
    for seed in first..first + count {
        steps += run_sequence(seed, simulated);
    }
    eprintln!(
        "buffer model ({} disk): {count} sequences (seeds {first}..{}), {steps} steps, all invariants held, {:.1?}",
        if simulated { "simulated" } else { "real" },
        first + count,
        started.elapsed()
    );
}

#[test]
fn the_buffer_keeps_its_promises_on_a_disk_that_fails_and_loses_power() {
    run(true, SEQUENCES);
}

#[test]
fn the_buffer_keeps_its_promises_on_the_real_disk() {
    run(false, REAL_SEQUENCES);
}
