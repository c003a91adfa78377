//! The run locks: beside every file a run writes (journal, failure CSV, state), a
//! `<file>.lock` holding the owner's pid, so two runs never write the same file at once (cron
//! starting a run while last night's is still going, a dry run beside an import). A lock left
//! by a process that no longer exists is taken over.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Another live run holds the lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "another profile-import run (pid {pid}) is writing {output} (lock file {lock}); wait for it \
     to finish, or give this run other paths (--failures, --journal, --state)"
)]
pub struct Locked {
    pub pid: u32,
    /// The file both runs would write.
    pub output: String,
    pub lock: String,
}

/// Held for the whole run; removes the lock file when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock for `output` (the lock file is `<output>.lock`).
    pub fn acquire(output: &Path) -> anyhow::Result<RunLock> {
        let path = lock_path(output);
        for _ in 0..3 {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id())
                        .and_then(|_| file.sync_data())
                        .with_context(|| format!("cannot write lock file {}", path.display()))?;
                    return Ok(RunLock { path });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    match live_holder(&path) {
                        Some(pid) => return Err(locked(pid, output, &path).into()),
                        None => {
                            tracing::warn!(
                                "removing a stale lock {} left by a run that is no longer alive",
                                path.display()
                            );
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot create lock file {}", path.display()))
                }
            }
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
            Err(err) => match live_holder(&lock_path(output)) {
                Some(pid) => Err(locked(pid, output, &lock_path(output)).into()),
                None => {
                    tracing::debug!("running without a lock on {}: {err:#}", output.display());
                    Ok(None)
                }
            },
        }
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

/// The pid in a lock file, if that process is alive.
fn live_holder(lock: &Path) -> Option<u32> {
    std::fs::read_to_string(lock)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|&pid| process_alive(pid))
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// True if a process with this pid exists (Linux: /proc; elsewhere assume it does).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if proc.is_dir() {
        // A zombie still has a /proc entry but holds nothing; treat it as gone.
        match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    } else {
        true
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
        // A pid that cannot exist stands for a run that died.
        std::fs::write(dir.path().join("users.journal.lock"), "4294967\n").unwrap();
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
