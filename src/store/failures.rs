//! The failure CSV: the only writer of failed and rejected rows.
//!
//! Each record is the input row's own columns, in the input's order, followed by
//! [`FAILURE_COLUMNS`]. Because those columns are ignored on input, the file is itself valid
//! input for the next run. Records are rendered whole into memory and written to the file only
//! as whole records, so the file never ends in half a row; the file is created with mode 0600
//! because rows carry personal data.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use csv::ByteRecord;

use crate::input::header::{Columns, FAILURE_COLUMNS};
use crate::outcome::Failure;

/// Whole records are written out once this many bytes are pending.
const WRITE_CHUNK: usize = 64 * 1024;

/// The kind of run a failure CSV belongs to. Each has its own default name, so a dry run or a
/// verify of a file never replaces (or, when clean, removes) the failure CSV its import left:
/// that file is the list of rows still to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailuresOf {
    Import,
    DryRun,
    Verify,
}

impl FailuresOf {
    fn suffix(self) -> &'static str {
        match self {
            FailuresOf::Import => ".failures.csv",
            FailuresOf::DryRun => ".dry-run-failures.csv",
            FailuresOf::Verify => ".verify-failures.csv",
        }
    }
}

/// The default failure-CSV path beside the input: `users.csv` → `users.failures.csv` for an
/// import, `users.dry-run-failures.csv` for a dry run, `users.verify-failures.csv` for verify.
pub fn default_path(input: &Path, run: FailuresOf) -> PathBuf {
    crate::fsutil::beside(input, run.suffix())
}

/// Writes failed rows.
pub struct FailureWriter {
    path: PathBuf,
    /// None until the first row of a lazy or fresh writer.
    file: Option<File>,
    /// A lazy (or fresh) writer's header, written when the file is created.
    lazy_header: Option<Vec<u8>>,
    /// A lazy writer's lock on the path (none in a read-only directory).
    _lock: Option<crate::store::lock::RunLock>,
    pending: Vec<u8>,
    data_indexes: Vec<usize>,
    failure_column_indexes: Vec<usize>,
    /// The input's own `_superseded` column (an earlier failure CSV), carried over.
    superseded_index: Option<usize>,
    rows: u64,
    /// Rows written since the last sync.
    unsynced: bool,
}

impl FailureWriter {
    /// The failure CSV of an import, which holds the path's lock already: an earlier run's
    /// file is removed now (the run sends its rows again), and the new one is created with its
    /// first failed row, so a run killed before any row failed leaves none and the file's
    /// presence always means rows need attention. The caller has checked that the path can be
    /// created (`fsutil::check_can_create`), so an unwritable path stops the run before
    /// anything is sent.
    pub fn fresh(path: &Path, columns: &Columns, delimiter: u8) -> anyhow::Result<FailureWriter> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("cannot remove the earlier failure CSV {}", path.display())
                })
            }
        }
        let mut writer = FailureWriter::with_header(path, None, None, columns, delimiter)?;
        writer.lazy_header = Some(std::mem::take(&mut writer.pending));
        Ok(writer)
    }

    /// A failure CSV created only when the first row fails, for runs that write nothing else
    /// (the dry run, verify): a clean run leaves the directory untouched, so it also works in
    /// a read-only one. The path is locked as a real import locks it, where a lock can be
    /// created: a run beside an import that writes the same file stops with [`Locked`].
    ///
    /// [`Locked`]: crate::store::lock::Locked
    pub fn lazy(path: &Path, columns: &Columns, delimiter: u8) -> anyhow::Result<FailureWriter> {
        let lock = crate::store::lock::RunLock::acquire_if_writable(path)?;
        let mut writer = FailureWriter::with_header(path, None, lock, columns, delimiter)?;
        writer.lazy_header = Some(std::mem::take(&mut writer.pending));
        Ok(writer)
    }

    /// A writer with the header rendered, not yet written.
    fn with_header(
        path: &Path,
        file: Option<File>,
        lock: Option<crate::store::lock::RunLock>,
        columns: &Columns,
        delimiter: u8,
    ) -> anyhow::Result<FailureWriter> {
        let data_indexes = columns.data_indexes();
        let failure_column_indexes = (0..columns.names.len())
            .filter(|i| !data_indexes.contains(i))
            .collect();
        let mut writer = FailureWriter {
            path: path.to_path_buf(),
            file,
            lazy_header: None,
            _lock: lock,
            pending: Vec::new(),
            data_indexes,
            failure_column_indexes,
            superseded_index: columns.superseded_index(),
            rows: 0,
            unsynced: false,
        };
        let mut header: Vec<&[u8]> = writer
            .data_indexes
            .iter()
            .map(|&i| columns.names[i].as_bytes())
            .collect();
        header.extend(FAILURE_COLUMNS.iter().map(|c| c.as_bytes()));
        writer.render(header, delimiter)?;
        Ok(writer)
    }

    /// Reopens the failure CSV of an interrupted run to append to it (or, when there is none,
    /// starts one as [`FailureWriter::fresh`] does). A torn last record is cut off. Returns the writer and the input lines already recorded in the file (rows whose
    /// failure was written just before a crash but not yet journalled).
    pub fn append(
        path: &Path,
        columns: &Columns,
        delimiter: u8,
    ) -> anyhow::Result<(FailureWriter, std::collections::HashSet<u64>)> {
        let data = match std::fs::read(path) {
            Ok(data) if !data.is_empty() => data,
            Ok(_) => return Ok((Self::fresh(path, columns, delimiter)?, Default::default())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Self::fresh(path, columns, delimiter)?, Default::default()))
            }
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        let data_indexes = columns.data_indexes();
        let failure_column_indexes: Vec<usize> = (0..columns.names.len())
            .filter(|i| !data_indexes.contains(i))
            .collect();
        let mut expected_header: Vec<&[u8]> = data_indexes
            .iter()
            .map(|&i| columns.names[i].as_bytes())
            .collect();
        expected_header.extend(FAILURE_COLUMNS.iter().map(|c| c.as_bytes()));

        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(data.as_slice());
        let mut record = ByteRecord::new();
        let mut lines = std::collections::HashSet::new();
        let mut rows = 0u64;
        let mut keep = 0u64;
        let mut first = true;
        while reader.read_byte_record(&mut record)? {
            let start = record.position().map_or(0, |p| p.byte());
            let end = reader.position().byte();
            let complete =
                end as usize == data.len() && data.ends_with(b"\n") || (end as usize) < data.len();
            if first {
                if record.iter().collect::<Vec<_>>() != expected_header {
                    anyhow::bail!(
                        "{} has different columns than this input; move it away or pass --failures with another path",
                        path.display()
                    );
                }
                first = false;
                keep = end;
                continue;
            }
            // A record is whole if it ends in a terminator and its last field is a line
            // number; anything else is what a crash mid-write left.
            let line = record
                .get(record.len().saturating_sub(1))
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|f| f.parse::<u64>().ok());
            match line {
                Some(line) if complete => {
                    lines.insert(line);
                    rows += 1;
                    keep = end;
                }
                _ => {
                    keep = start;
                    break;
                }
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open the failure CSV {}", path.display()))?;
        file.set_len(keep)
            .with_context(|| format!("cannot repair {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok((
            FailureWriter {
                path: path.to_path_buf(),
                file: Some(file),
                lazy_header: None,
                _lock: None,
                pending: Vec::new(),
                data_indexes,
                failure_column_indexes,
                superseded_index: columns.superseded_index(),
                rows,
                unsynced: false,
            },
            lines,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Failed rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Records one failed row. `record` is the raw input row (bytes as read, even if not UTF-8).
    pub fn write(
        &mut self,
        record: &ByteRecord,
        line: u64,
        failure: &Failure,
        delimiter: u8,
    ) -> anyhow::Result<()> {
        let width = self.data_indexes.len() + self.failure_column_indexes.len();
        let earlier_failure_suffix = !self.failure_column_indexes.is_empty()
            && self
                .failure_column_indexes
                .iter()
                .enumerate()
                .all(|(k, &i)| i == self.data_indexes.len() + k);
        let mut fields: Vec<&[u8]> = if record.len() == width {
            self.data_indexes.iter().map(|&i| &record[i]).collect()
        } else if earlier_failure_suffix && record.len() >= self.failure_column_indexes.len() {
            // A ragged row from an earlier failure CSV: its own failure columns are its last
            // fields, wherever they fall, so the data cells are kept exactly as they were.
            let keep = record.len() - self.failure_column_indexes.len();
            record.iter().take(keep).collect()
        } else {
            // A ragged row is copied as it was, so re-importing it reports the same problem.
            record.iter().collect()
        };
        if self.file.is_none() {
            self.create_lazy_file()?;
        }
        let code = failure.code.to_string();
        let attempts = failure.attempts.to_string();
        let stage = failure.stage.to_string();
        let superseded = self.superseded(record, failure);
        let line = line.to_string();
        fields.extend([
            code.as_bytes(),
            failure.message.as_bytes(),
            stage.as_bytes(),
            attempts.as_bytes(),
            superseded.as_bytes(),
            line.as_bytes(),
        ]);
        self.render(fields, delimiter)?;
        self.rows += 1;
        self.unsynced = true;
        if self.pending.len() >= WRITE_CHUNK {
            self.write_pending()?;
        }
        Ok(())
    }

    /// The row's `_superseded` cell: the cells a later row of its user set, found in this run
    /// or named by the input's own `_superseded` cell (an earlier failure CSV fed back in), as
    /// a JSON array of header names; empty when there are none.
    fn superseded(&self, record: &ByteRecord, failure: &Failure) -> String {
        let mut names = failure.superseded.clone();
        let carried = self
            .superseded_index
            .and_then(|index| record.get(index))
            .and_then(|cell| serde_json::from_slice::<Vec<String>>(cell).ok())
            .unwrap_or_default();
        for name in carried {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return String::new();
        }
        serde_json::to_string(&names).unwrap_or_default()
    }

    /// Hands whole pending records to the operating system (no disk sync): they survive the
    /// process being killed.
    pub fn write_out(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.write_pending()
    }

    /// Writes every pending record to the file and syncs it to disk.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.write_pending()?;
        if let Some(file) = &self.file {
            file.sync_data()
                .with_context(|| format!("cannot sync {}", self.path.display()))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Flushes and closes. A run with no failures leaves no failure CSV behind, so its
    /// presence always means "some rows need attention" and a stale one is never mistaken
    /// for this run's.
    pub fn finish(mut self) -> anyhow::Result<Option<PathBuf>> {
        self.flush()?;
        if self.rows > 0 {
            return Ok(Some(self.path));
        }
        let lazy = self.file.is_none();
        drop(self.file.take());
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            // A lazy writer created nothing; an earlier run's file may or may not be there.
            Err(err) if lazy && err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) if lazy => tracing::warn!(
                "cannot remove the failure CSV {} of an earlier run: {err}",
                self.path.display()
            ),
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot remove empty {}", self.path.display()))
            }
        }
        Ok(None)
    }

    /// Creates a lazy writer's file and writes its header.
    fn create_lazy_file(&mut self) -> anyhow::Result<()> {
        let mut file = crate::fsutil::create_private(&self.path)
            .with_context(|| format!("cannot create the failure CSV {}", self.path.display()))?;
        if let Some(header) = self.lazy_header.take() {
            file.write_all(&header)
                .with_context(|| format!("cannot write the failure CSV {}", self.path.display()))?;
        }
        self.file = Some(file);
        Ok(())
    }

    fn render(&mut self, fields: Vec<&[u8]>, delimiter: u8) -> anyhow::Result<()> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .buffer_capacity(1024)
            .from_writer(&mut self.pending);
        writer.write_record(fields)?;
        writer.flush()?;
        Ok(())
    }

    fn write_pending(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(file) = &mut self.file else {
            anyhow::bail!("the failure CSV {} is not open", self.path.display());
        };
        file.write_all(&self.pending)
            .with_context(|| format!("cannot write the failure CSV {}", self.path.display()))?;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_sits_beside_the_input() {
        let import = |input: &str| default_path(Path::new(input), FailuresOf::Import);
        assert_eq!(
            import("/data/users.csv"),
            PathBuf::from("/data/users.failures.csv")
        );
        // Re-importing a failure CSV must never overwrite the file being read.
        assert_eq!(
            import("/data/users.failures.csv"),
            PathBuf::from("/data/users.failures.failures.csv")
        );
        assert_eq!(import("users.tsv"), PathBuf::from("users.failures.csv"));
    }

    #[test]
    fn a_dry_run_and_verify_have_failure_csvs_of_their_own() {
        let input = Path::new("/data/users.csv");
        let paths = [FailuresOf::Import, FailuresOf::DryRun, FailuresOf::Verify]
            .map(|run| default_path(input, run));
        assert_eq!(
            paths,
            [
                PathBuf::from("/data/users.failures.csv"),
                PathBuf::from("/data/users.dry-run-failures.csv"),
                PathBuf::from("/data/users.verify-failures.csv"),
            ]
        );
    }
}
