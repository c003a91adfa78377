//! `--changes-log PATH`: every value an import sent to Chat, one CSV line per user and tag
//! (`Run,UserID,Tag,Before,Sent,Code`), the audit trail of a nightly sync. Streamed to a
//! temporary file beside PATH and renamed into place when the run ends; on `--resume` the log
//! of the run it continues (the file, or the temporary file a killed run left) is continued,
//! not rewritten, since the journal will not send those rows again.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The log's columns.
pub const HEADER: [&str; 6] = ["Run", "UserID", "Tag", "Before", "Sent", "Code"];

/// The change log of one run.
pub struct ChangeLog {
    path: PathBuf,
    tmp: PathBuf,
    run: String,
    writer: Option<csv::Writer<BufWriter<File>>>,
}

/// One value sent.
pub struct Change<'a> {
    pub user_id: &'a str,
    pub tag: &'a str,
    /// What Chat held before, as known (under `--changes-only`); empty when not known.
    pub before: &'a str,
    /// The value sent, as JSON.
    pub sent: &'a str,
    /// `0` when Chat accepted it, else the row's failure code.
    pub code: &'a str,
}

impl ChangeLog {
    /// Starts the log of run `run` (its start time); `resume` continues an earlier run's.
    pub fn open(path: &Path, run: &str, resume: bool) -> anyhow::Result<ChangeLog> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let cannot = || format!("cannot write the change log {}", tmp.display());
        let continued = resume && (tmp.exists() || path.exists());
        if resume && !tmp.exists() && path.exists() {
            // The earlier run's log, to go on after.
            let mut from = BufReader::new(
                File::open(path)
                    .with_context(|| format!("cannot read the change log {}", path.display()))?,
            );
            let mut to = crate::fsutil::create_private(&tmp).with_context(cannot)?;
            std::io::copy(&mut from, &mut to).with_context(cannot)?;
        }
        let file = if continued {
            OpenOptions::new()
                .append(true)
                .open(&tmp)
                .with_context(cannot)?
        } else {
            crate::fsutil::create_private(&tmp).with_context(cannot)?
        };
        let mut writer = csv::Writer::from_writer(BufWriter::new(file));
        if !continued {
            writer.write_record(HEADER).with_context(cannot)?;
        }
        Ok(ChangeLog {
            path: path.to_path_buf(),
            tmp,
            run: run.to_string(),
            writer: Some(writer),
        })
    }

    pub fn record(&mut self, change: Change) -> anyhow::Result<()> {
        if let Some(writer) = &mut self.writer {
            writer
                .write_record([
                    self.run.as_str(),
                    change.user_id,
                    change.tag,
                    change.before,
                    change.sent,
                    change.code,
                ])
                .with_context(|| format!("cannot write the change log {}", self.tmp.display()))?;
        }
        Ok(())
    }

    /// Hands what was recorded to the OS (a killed run's log survives in the temporary file
    /// for `--resume`).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(writer) = &mut self.writer {
            writer
                .flush()
                .with_context(|| format!("cannot write the change log {}", self.tmp.display()))?;
        }
        Ok(())
    }

    /// Puts the log in place.
    pub fn finish(mut self) -> anyhow::Result<PathBuf> {
        let cannot = || format!("cannot write the change log {}", self.path.display());
        if let Some(writer) = self.writer.take() {
            let mut file = writer
                .into_inner()
                .map_err(|err| anyhow::anyhow!("{}: {err}", cannot()))?;
            file.flush().with_context(cannot)?;
            file.get_ref().sync_data().with_context(cannot)?;
        }
        std::fs::rename(&self.tmp, &self.path).with_context(cannot)?;
        Ok(self.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(user_id: &'a str, sent: &'a str) -> Change<'a> {
        Change {
            user_id,
            tag: "Tag_Profile_IM_Nick",
            before: "\"old\"",
            sent,
            code: "0",
        }
    }

    #[test]
    fn a_log_is_in_place_only_at_the_end_and_a_resumed_run_continues_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.csv");
        let mut first = ChangeLog::open(&path, "2026-12-07T01:00:00Z", false).unwrap();
        first.record(change("u1", "\"Ann\"")).unwrap();
        first.flush().unwrap();
        assert!(!path.exists(), "not in place before the run ends");
        first.finish().unwrap();
        let mut resumed = ChangeLog::open(&path, "2026-12-07T02:00:00Z", true).unwrap();
        resumed.record(change("u2", "\"Bob\"")).unwrap();
        resumed.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "Run,UserID,Tag,Before,Sent,Code\n\
             2026-12-07T01:00:00Z,u1,Tag_Profile_IM_Nick,\"\"\"old\"\"\",\"\"\"Ann\"\"\",0\n\
             2026-12-07T02:00:00Z,u2,Tag_Profile_IM_Nick,\"\"\"old\"\"\",\"\"\"Bob\"\"\",0\n"
        );
        // A new run (not resumed) starts a new log.
        ChangeLog::open(&path, "2026-12-08T01:00:00Z", false)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Run,UserID,Tag,Before,Sent,Code\n"
        );
    }

    #[test]
    fn a_killed_runs_log_is_continued_by_its_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.csv");
        let mut killed = ChangeLog::open(&path, "r1", false).unwrap();
        killed.record(change("u1", "1")).unwrap();
        killed.flush().unwrap();
        // A killed run leaves its temporary file; nothing removes it.
        drop(killed);
        let mut resumed = ChangeLog::open(&path, "r2", true).unwrap();
        resumed.record(change("u2", "2")).unwrap();
        resumed.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("r1,u1") && text.contains("r2,u2"), "{text}");
    }
}
