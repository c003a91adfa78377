//! The run locks: beside every file a run writes (journal, failure CSV, state), a
//! `<file>.lock` that the run holds an operating-system lock on (`flock` on Unix) for its whole
//! length, so two runs never write the same file at once (cron starting a run while last
//! night's is still going, a dry run beside an import). The lock dies with its process, so a
//! run killed by the OOM killer or a reboot never blocks the next one, whatever pid the file
//! names; the pid inside is only for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Another live run holds the lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "another profile-import run (pid {pid}) is writing {output} (lock file {lock}); wait for it \
     to finish, or give this run other paths (--failures, --journal, --state)"
)]
pub struct Locked {
    /// The holder's pid as it wrote it (0 if it could not be read).
    pub pid: u32,
    /// The file both runs would write.
    pub output: String,
    pub lock: String,
}

/// Held for the whole run; releases the lock and removes the lock file when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// The locked file: the operating system releases the lock when it is closed, or when the
    /// process dies.
    file: File,
}

impl RunLock {
    /// Takes the lock for `output` (the lock file is `<output>.lock`).
    pub fn acquire(output: &Path) -> anyhow::Result<RunLock> {
        let path = lock_path(output);
        for _ in 0..10 {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&path)
                .with_context(|| format!("cannot create lock file {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(locked(holder(&path), output, &path).into())
                }
                Err(TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            // The holder before us removes the file as it lets go; if it did so between our
            // open and our lock, we hold a lock on a file no one else will open: try again.
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .and_then(|()| file.sync_data())
                .with_context(|| format!("cannot write lock file {}", path.display()))?;
            return Ok(RunLock { path, file });
        }
        anyhow::bail!("cannot take the lock {}", path.display())
    }

    /// For a run that writes `output` only if it must (a dry run's failure CSV): refuses as
    /// `acquire` does while a live run holds the lock, but where no lock file can be created
    /// (a read-only directory) goes on without one, so a clean dry run works there.
    pub fn acquire_if_writable(output: &Path) -> anyhow::Result<Option<RunLock>> {
        match RunLock::acquire(output) {
            Ok(lock) => Ok(Some(lock)),
            Err(err) if err.downcast_ref::<Locked>().is_some() => Err(err),
            Err(err) => {
                tracing::debug!("running without a lock on {}: {err:#}", output.display());
                Ok(None)
            }
        }
    }
}

/// True if `path` still names the file `file` has open.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// The locks on every output of one run, taken together before anything is written.
#[derive(Debug, Default)]
pub struct RunLocks {
    locks: Vec<(PathBuf, RunLock)>,
}

impl RunLocks {
    /// Locks each output (a path named twice is locked once). On a refusal, the locks taken
    /// so far are released.
    pub fn acquire(outputs: &[&Path]) -> anyhow::Result<RunLocks> {
        let mut locks = RunLocks::default();
        for &output in outputs {
            if locks.locks.iter().any(|(path, _)| path == output) {
                continue;
            }
            locks
                .locks
                .push((output.to_path_buf(), RunLock::acquire(output)?));
        }
        Ok(locks)
    }

    /// Hands the lock on `output` to whatever keeps that file open longer than the run
    /// (the state database).
    pub fn take(&mut self, output: &Path) -> Option<RunLock> {
        let at = self.locks.iter().position(|(path, _)| path == output)?;
        Some(self.locks.remove(at).1)
    }
}

fn lock_path(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", output.display()))
}

fn locked(pid: u32, output: &Path, lock: &Path) -> Locked {
    Locked {
        pid,
        output: output.display().to_string(),
        lock: lock.display().to_string(),
    }
}

/// The pid the holder of a lock file wrote in it (0 when it cannot be read: the holder may be
/// writing it right now).
fn holder(lock: &Path) -> u32 {
    std::fs::read_to_string(lock)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so no later run can lock this file and then lose the
        // race to a run that creates a new one; `acquire` checks which file it locked.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("users.journal");
        let first = RunLock::acquire(&journal).unwrap();
        let err = RunLock::acquire(&journal).unwrap_err();
        let locked = err.downcast_ref::<Locked>().unwrap();
        assert_eq!(locked.pid, std::process::id());
        drop(first);
        // A lock file left behind, naming a pid that is alive (ours, reused after a reboot,
        // say) but holding no lock: taken over at once.
        std::fs::write(
            dir.path().join("users.journal.lock"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        let taken = RunLock::acquire(&journal).unwrap();
        drop(taken);
        assert!(!dir.path().join("users.journal.lock").exists());
    }

    #[test]
    fn every_output_is_locked_and_a_refusal_releases_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("users.journal");
        let failures = dir.path().join("users.failures.csv");
        let state = dir.path().join("state.db");
        let mut first = RunLocks::acquire(&[&journal, &failures, &failures, &state]).unwrap();
        let err = RunLocks::acquire(&[&dir.path().join("other.journal"), &failures]).unwrap_err();
        let locked = err.downcast_ref::<Locked>().unwrap();
        assert!(locked.output.ends_with("users.failures.csv"), "{err}");
        assert!(!dir.path().join("other.journal.lock").exists(), "released");
        assert!(RunLock::acquire_if_writable(&state).is_err());
        let state_lock = first.take(&state).unwrap();
        drop(first);
        assert!(!failures.with_extension("csv.lock").exists());
        assert!(RunLock::acquire_if_writable(&state).is_err(), "still held");
        drop(state_lock);
        assert!(RunLock::acquire_if_writable(&state).unwrap().is_some());
    }
}
