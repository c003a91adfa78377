//! The run lock: one file holding the owner's pid, so two runs on the same input or journal
//! never overlap (cron starting a run while last night's is still going). A lock left by a
//! process that no longer exists is taken over.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Another live run holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("another profile-import run (pid {pid}) is using {journal}: its lock file is {lock}; wait for it to finish")]
pub struct Locked {
    pub pid: u32,
    pub journal: String,
    pub lock: String,
}

/// Held for the whole run; removes the lock file when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock for `journal` (the lock file is `<journal>.lock`).
    pub fn acquire(journal: &Path) -> anyhow::Result<RunLock> {
        let path = PathBuf::from(format!("{}.lock", journal.display()));
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
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|text| text.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if process_alive(pid) => {
                            return Err(Locked {
                                pid,
                                journal: journal.display().to_string(),
                                lock: path.display().to_string(),
                            }
                            .into())
                        }
                        _ => {
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
}
