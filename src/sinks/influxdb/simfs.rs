//! A simulated disk for the buffer's model test: files in memory, with what a power
//! loss keeps tracked apart from what the process sees, and injected faults.
//!
//! What survives [`SimFs::power_loss`]:
//! - a file's bytes up to the length it had at its last fsync (less if it was cut
//!   since); of the bytes after that, a random prefix, possibly with one byte flipped;
//! - folder entries (create, rename, remove) as of the folder's last fsync, plus a
//!   random prefix of the changes made since, in order (a journaling file system
//!   commits metadata in order). Folders themselves are created durably.
//!
//! A handle opened before a power loss fails afterwards, as the process that held
//! it is gone. Faults: [`Fault::DiskFull`] fails writes and creations with ENOSPC
//! (a write may land partly first); [`Fault::Io`] fails any call with EIO. Each
//! call fails with the set probability.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::vfs::{ReadSeek, SyncHandle, VFile, Vfs};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    DiskFull,
    Io,
}

#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    dirs: BTreeSet<PathBuf>,
    /// Name → inode, as the process sees it.
    names: BTreeMap<PathBuf, u64>,
    /// Name → inode, as a power loss would leave it (before the pending changes).
    durable: BTreeMap<PathBuf, u64>,
    /// Folder changes not yet fsynced, oldest first.
    pending: Vec<Change>,
    fault: Option<(Fault, f64)>,
    rng: Option<fastrand::Rng>,
    /// Faults injected so far.
    pub injected: u64,
}

#[derive(Debug, Clone)]
struct Inode {
    data: Vec<u8>,
    /// Bytes a power loss keeps for sure.
    durable_len: usize,
}

#[derive(Debug, Clone)]
enum Change {
    Create(PathBuf, u64),
    Remove(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl Change {
    fn dir(&self) -> Option<&Path> {
        match self {
            Change::Create(p, _) | Change::Remove(p) | Change::Rename(p, _) => p.parent(),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            Change::Create(p, ino) => {
                names.insert(p.clone(), *ino);
            }
            Change::Remove(p) => {
                names.remove(p);
            }
            Change::Rename(from, to) => {
                if let Some(ino) = names.remove(from) {
                    names.insert(to.clone(), ino);
                }
            }
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

impl State {
    /// Whether this call fails, and with what.
    fn fault(&mut self, writes: bool) -> io::Result<()> {
        let Some((fault, p)) = self.fault else { return Ok(()) };
        if fault == Fault::DiskFull && !writes {
            return Ok(());
        }
        let rng = self.rng.get_or_insert_with(|| fastrand::Rng::with_seed(0));
        if rng.f64() >= p {
            return Ok(());
        }
        self.injected += 1;
        Err(match fault {
            Fault::DiskFull => io::Error::from_raw_os_error(28),
            Fault::Io => io::Error::from_raw_os_error(5),
        })
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn create(&mut self, path: &Path) -> u64 {
        let ino = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            ino,
            Inode {
                data: Vec::new(),
                durable_len: 0,
            },
        );
        self.names.insert(path.to_path_buf(), ino);
        self.pending.push(Change::Create(path.to_path_buf(), ino));
        ino
    }

    fn sync_dir(&mut self, dir: &Path) {
        let mut keep = Vec::new();
        for c in std::mem::take(&mut self.pending) {
            if c.dir() == Some(dir) {
                c.apply(&mut self.durable);
            } else {
                keep.push(c);
            }
        }
        self.pending = keep;
    }
}

impl SimFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes later calls fail with `fault` at probability `p` (`None`: no faults).
    pub fn set_fault(&self, fault: Option<(Fault, f64)>, seed: u64) {
        let mut s = self.lock();
        s.fault = fault;
        s.rng = Some(fastrand::Rng::with_seed(seed));
    }

    pub fn fault(&self) -> Option<(Fault, f64)> {
        self.lock().fault
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// A power loss: only what the rules in the module docs keep stays, and every
    /// handle opened before fails from now on.
    pub fn power_loss(&self, rng: &mut fastrand::Rng) {
        let mut s = self.lock();
        let keep = rng.usize(0..=s.pending.len());
        let mut names = s.durable.clone();
        for c in &s.pending[..keep] {
            c.apply(&mut names);
        }
        let mut inodes = HashMap::new();
        for ino in names.values() {
            let Some(old) = s.inodes.get(ino) else { continue };
            let durable = old.durable_len.min(old.data.len());
            let cut = rng.usize(durable..=old.data.len());
            let mut data = old.data[..cut].to_vec();
            if cut > durable && rng.u8(..) < 64 {
                let at = rng.usize(durable..cut);
                data[at] ^= 1 << rng.u32(0..8);
            }
            let len = data.len();
            inodes.insert(*ino, Inode { data, durable_len: len });
        }
        s.inodes = inodes;
        s.durable = names.clone();
        s.names = names;
        s.pending.clear();
        s.generation += 1;
    }

    /// The bytes of a file as the process sees it.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        let ino = s.names.get(path)?;
        s.inodes.get(ino).map(|i| i.data.clone())
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(true)?;
        for a in dir.ancestors() {
            s.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.lock();
        s.fault(false)?;
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let mut out: Vec<String> = s
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        out.extend(
            s.dirs
                .iter()
                .filter(|d| d.parent() == Some(dir))
                .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        s.fault(false)?;
        let ino = s.inode_of(path)?;
        Ok(s.inodes[&ino].data.clone())
    }

    fn open_read(&self, path: &Path, offset: u64) -> io::Result<Box<dyn ReadSeek>> {
        let data = self.read(path)?;
        let mut c = Cursor::new(data);
        c.set_position(offset);
        Ok(Box::new(c))
    }

    fn create_append(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let mut s = self.lock();
        s.fault(true)?;
        if s.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        let ino = s.create(path);
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
            generation: s.generation,
        }))
    }

    fn write_file(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(true)?;
        let ino = match s.names.get(path) {
            Some(&ino) => ino,
            None => s.create(path),
        };
        let node = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        node.data = data.to_vec();
        node.durable_len = 0;
        if sync {
            s.fault(false)?;
            if let Some(node) = s.inodes.get_mut(&ino) {
                node.durable_len = node.data.len();
            }
        }
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(false)?;
        let ino = s.inode_of(path)?;
        let node = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        node.data.resize(len as usize, 0);
        node.durable_len = node.durable_len.min(len as usize);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(true)?;
        let ino = s.inode_of(from)?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), ino);
        s.pending.push(Change::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(false)?;
        s.inode_of(path)?;
        s.names.remove(path);
        s.pending.push(Change::Remove(path.to_path_buf()));
        Ok(())
    }

    fn sync_handle(&self, path: &Path, is_dir: bool) -> io::Result<Box<dyn SyncHandle>> {
        let mut s = self.lock();
        s.fault(false)?;
        let target = if is_dir {
            if !s.dirs.contains(path) {
                return Err(not_found(path));
            }
            Target::Dir(path.to_path_buf())
        } else {
            Target::File(s.inode_of(path)?)
        };
        Ok(Box::new(SimSync {
            fs: self.clone(),
            target,
            generation: s.generation,
        }))
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: u64,
    generation: u64,
}

fn stale() -> io::Error {
    io::Error::other("handle from before a power loss")
}

impl VFile for SimFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut s = self.fs.lock();
        if s.generation != self.generation {
            return Err(stale());
        }
        let n = match s.fault(true) {
            Ok(()) => data.len(),
            Err(e) => {
                // A failing disk may take part of the write first: then the write
                // says how much (the next one fails).
                let part = s.rng.as_mut().map_or(0, |r| r.usize(0..data.len().max(1)));
                if part == 0 {
                    return Err(e);
                }
                part
            }
        };
        let node = s.inodes.get_mut(&self.ino).ok_or_else(stale)?;
        node.data.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        if s.generation != self.generation {
            return Err(stale());
        }
        s.fault(false)?;
        let node = s.inodes.get_mut(&self.ino).ok_or_else(stale)?;
        node.data.resize(len as usize, 0);
        node.durable_len = node.durable_len.min(len as usize);
        Ok(())
    }

    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(SimSync {
            fs: self.fs.clone(),
            target: Target::File(self.ino),
            generation: self.generation,
        }))
    }
}

#[derive(Debug)]
enum Target {
    File(u64),
    Dir(PathBuf),
}

#[derive(Debug)]
struct SimSync {
    fs: SimFs,
    target: Target,
    generation: u64,
}

impl SyncHandle for SimSync {
    fn sync(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        if s.generation != self.generation {
            return Err(stale());
        }
        s.fault(false)?;
        match &self.target {
            Target::File(ino) => {
                if let Some(node) = s.inodes.get_mut(ino) {
                    node.durable_len = node.data.len();
                }
            }
            Target::Dir(dir) => s.sync_dir(dir),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_loss_keeps_synced_bytes_and_entries_only() {
        let fs = SimFs::default();
        let dir = Path::new("/b");
        fs.create_dir_all(dir).unwrap();
        let mut f = fs.create_append(&dir.join("1.seg")).unwrap();
        assert_eq!(f.write(b"abc").unwrap(), 3);
        f.sync_handle().unwrap().sync().unwrap();
        fs.sync_handle(dir, true).unwrap().sync().unwrap();
        assert_eq!(f.write(b"def").unwrap(), 3);
        fs.create_append(&dir.join("2.seg")).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..50 {
            let copy = SimFs::default();
            {
                let mut a = copy.lock();
                let b = fs.lock();
                a.inodes = b.inodes.clone();
                a.names = b.names.clone();
                a.durable = b.durable.clone();
                a.pending = b.pending.clone();
                a.dirs = b.dirs.clone();
            }
            copy.power_loss(&mut rng);
            let data = copy.contents(&dir.join("1.seg")).unwrap();
            assert!(data.len() >= 3 && data.len() <= 6, "{data:?}");
            assert_eq!(&data[..3], b"abc");
        }
        fs.power_loss(&mut rng);
        assert!(f.write(b"x").is_err(), "stale handle");
    }

    #[test]
    fn faults_fail_calls_at_the_set_rate() {
        let fs = SimFs::default();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.set_fault(Some((Fault::DiskFull, 1.0)), 3);
        assert_eq!(
            fs.write_file(Path::new("/d/x"), b"1", false)
                .unwrap_err()
                .raw_os_error(),
            Some(28)
        );
        assert!(fs.list(Path::new("/d")).is_ok(), "a full disk still lists");
        fs.set_fault(Some((Fault::Io, 1.0)), 3);
        assert_eq!(fs.list(Path::new("/d")).unwrap_err().raw_os_error(), Some(5));
        fs.set_fault(None, 0);
        assert!(fs.write_file(Path::new("/d/x"), b"1", false).is_ok());
        assert_eq!(fs.injected(), 2);
    }
}
