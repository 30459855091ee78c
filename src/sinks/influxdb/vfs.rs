//! The file operations the disk buffer uses, behind a trait so that the buffer's
//! model test can run it on a simulated disk that loses unsynced data, fills up and
//! fails (`simfs.rs`). [`StdFs`] is the real one: `std::fs`, nothing added.
//!
//! The set is small on purpose: it is exactly what `segment.rs` needs, so the
//! simulated disk's semantics (what survives a power loss) cover every call.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// A file system, as the buffer uses it.
pub trait Vfs: Send + Sync + fmt::Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of a folder.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file for reading from `offset`.
    fn open_read(&self, path: &Path, offset: u64) -> io::Result<Box<dyn ReadSeek>>;
    /// Creates a new file (failing if it exists) to append to.
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn VFile>>;
    /// Creates or replaces a file with `data`, fsynced when `sync`.
    fn write_file(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()>;
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// A handle to fsync a file or a folder (its entries) later.
    fn sync_handle(&self, path: &Path, is_dir: bool) -> io::Result<Box<dyn SyncHandle>>;
}

/// A file open for reading.
pub trait ReadSeek: Read + Seek + Send {}

impl<T: Read + Seek + Send> ReadSeek for T {}

/// A file being appended to.
pub trait VFile: Send + fmt::Debug {
    /// Appends some of `data`, as `write(2)` does: the bytes written, or an error
    /// when none were.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// A handle that fsyncs this file, usable after this one is dropped.
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>>;
}

/// Something to fsync, off the async runtime.
pub trait SyncHandle: Send + fmt::Debug {
    fn sync(&self) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

#[derive(Debug)]
struct StdSync {
    file: File,
    is_dir: bool,
}

impl Vfs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn open_read(&self, path: &Path, offset: u64) -> io::Result<Box<dyn ReadSeek>> {
        let mut f = File::open(path)?;
        f.seek(io::SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }

    fn create_append(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let f = OpenOptions::new().append(true).create_new(true).open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn write_file(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        let mut f = File::create(path)?;
        f.write_all(data)?;
        if sync {
            f.sync_data()?;
        }
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_handle(&self, path: &Path, is_dir: bool) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(StdSync {
            file: File::open(path)?,
            is_dir,
        }))
    }
}

impl VFile for StdFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(StdSync {
            file: self.0.try_clone()?,
            is_dir: false,
        }))
    }
}

impl SyncHandle for StdSync {
    fn sync(&self) -> io::Result<()> {
        if self.is_dir {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        }
    }
}
