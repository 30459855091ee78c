//! Small file-system helpers shared by every component that keeps state on disk.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::event::unix_millis;

/// What reading a component's versioned JSON state file found.
#[derive(Debug, PartialEq)]
pub enum Stored<T> {
    /// No file yet.
    Missing,
    Loaded(T),
    /// The file was corrupt or of another format version: it was moved aside
    /// (`<name>.corrupt-<unix ms>`) and the reason logged.
    Unusable,
}

/// Reads a state file whose JSON has a top-level `version`: `parse` gets the
/// bytes when it is `version`. A file that cannot be read at all is an error
/// (the component must not start over on top of it); one that is corrupt or of
/// another version is moved aside, logged with `consequence`, and `Unusable`.
pub fn read_state_file<T>(
    path: &Path,
    version: u32,
    component: &str,
    consequence: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Stored<T>, String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        version: Option<u32>,
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stored::Missing),
        Err(e) => return Err(format!("cannot read the state file {}: {e}", path.display())),
    };
    let parsed = match serde_json::from_slice::<Probe>(&bytes) {
        Err(e) => Err(format!("not a state file: {e}")),
        Ok(Probe { version: Some(v) }) if v == version => parse(&bytes),
        Ok(Probe { version: found }) => Err(format!(
            "format version {} is not the supported {version}",
            found.map_or_else(|| "(none)".to_string(), |v| v.to_string())
        )),
    };
    match parsed {
        Ok(t) => Ok(Stored::Loaded(t)),
        Err(problem) => {
            match move_aside(path) {
                Ok(aside) => tracing::warn!(
                    component, path = %path.display(), moved_to = %aside.display(), %problem,
                    "State file unusable; {consequence}"
                ),
                Err(e) => tracing::warn!(
                    component, path = %path.display(), %problem, error = %e,
                    "State file unusable and could not be moved aside; {consequence}"
                ),
            }
            Ok(Stored::Unusable)
        }
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new
/// file, never a mix: a temporary file in the same folder, synced, renamed over
/// the old one, then the folder synced so the rename itself is durable. Blocking
/// I/O: callers write small files.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    // The pid keeps two processes pointed at one folder from sharing a temp file.
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Not every platform can open a folder; the data itself is synced already.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Moves an unusable file to `<path>.corrupt-<unix ms>` so a person can look at
/// it, and returns the new path.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{}", unix_millis(SystemTime::now())));
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        let aside = move_aside(&path).unwrap();
        assert!(!path.exists());
        assert!(aside.to_string_lossy().contains(".corrupt-"));
    }
}

/// The lock file in a data folder that keeps a second hpflow away from it.
pub const LOCK_FILE: &str = "hpflow.lock";

/// An advisory lock (`flock`) on `<data_dir>/hpflow.lock`, held while the value
/// lives; the file holds the holder's pid for the error a second process gets. The
/// kernel drops the lock when the process ends, however it ends, so a stale file
/// never blocks a restart.
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
    path: PathBuf,
}

impl DataDirLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a data folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data_dir {dir} is in use by another hpflow (pid {pid}; lock file {lock})", dir = .dir.display(), pid = .pid.as_deref().unwrap_or("unknown"), lock = .lock.display())]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        pid: Option<String>,
    },
    #[error("cannot lock data_dir {dir} ({lock}): {source}", dir = .dir.display(), lock = .lock.display())]
    Io {
        dir: PathBuf,
        lock: PathBuf,
        source: io::Error,
    },
}

/// Takes the data folder's lock, creating the folder if needed; fails at once if
/// another process holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, LockError> {
    let lock = dir.join(LOCK_FILE);
    let io_err = |source| LockError::Io {
        dir: dir.to_path_buf(),
        lock: lock.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io_err)?;
    // Not truncated on open: the holder's pid must stay readable until we own it.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let pid = fs::read_to_string(&lock)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                lock,
                pid,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    let written = file
        .set_len(0)
        .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
    written.map_err(io_err)?;
    Ok(DataDirLock {
        _file: file,
        path: lock,
    })
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_data_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = lock_data_dir(&data).unwrap();
        assert_eq!(first.path(), data.join(LOCK_FILE));
        // flock locks belong to the open file, so a second open in this process
        // conflicts as another process would.
        let err = lock_data_dir(&data).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        assert!(text.contains(LOCK_FILE), "{text}");
        drop(first);
        let again = lock_data_dir(&data).unwrap();
        drop(again);
    }
}
