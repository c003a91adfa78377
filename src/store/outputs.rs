//! A run's files, in one place: every path a run reads or writes is named here with the option
//! that set it and checked before anything is read or written — no output may be the input,
//! another output of the run, or the same file by another name (a symlink, a hard link, `./`)
//! — and the report CSVs someone may open while a run goes or after it was stopped (verify's
//! diff, the plan, the missing-accounts list) are written to a temporary file beside them and
//! renamed into place, so they are never torn.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Two of a run's paths name one file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutputClash(pub String);

/// The files of one run.
#[derive(Debug, Default)]
pub struct RunFiles {
    /// The input, with the words that name it in a message.
    input: Option<PathBuf>,
    /// (option, path) of every output, defaults included.
    outputs: Vec<(String, PathBuf)>,
    /// The outputs written only at the end: checked to be creatable before the run starts.
    written_at_end: Vec<(String, PathBuf)>,
}

/// Where a path leads: the file it names (device and inode) when it exists, or its folder's
/// real path and its name when it does not yet.
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    File(u64, u64),
    Planned(PathBuf),
}

fn identity(path: &Path) -> Identity {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        return Identity::File(meta.dev(), meta.ino());
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = folder
        .unwrap_or(Path::new("."))
        .canonicalize()
        .unwrap_or_else(|_| folder.unwrap_or(Path::new(".")).to_path_buf());
    Identity::Planned(folder.join(path.file_name().unwrap_or_default()))
}

impl RunFiles {
    /// The files of a run that reads `input`.
    pub fn reading(input: &Path) -> RunFiles {
        RunFiles {
            input: Some(input.to_path_buf()),
            ..RunFiles::default()
        }
    }

    /// An output the run writes as it goes (failure CSV, journal, state), set by `option`
    /// (or its default).
    pub fn output(mut self, option: &str, path: &Path) -> RunFiles {
        if !crate::input::stdin::is_stdin(path) {
            self.outputs.push((option.to_string(), path.to_path_buf()));
        }
        self
    }

    /// An output written only when the run ends (a summary, a report CSV): besides the
    /// clashes, whether it can be created at all is checked before the run starts.
    pub fn output_at_end(mut self, option: &str, path: Option<&Path>) -> RunFiles {
        if let Some(path) = path.filter(|path| !crate::input::stdin::is_stdin(path)) {
            self.outputs.push((option.to_string(), path.to_path_buf()));
            self.written_at_end
                .push((option.to_string(), path.to_path_buf()));
        }
        self
    }

    /// Refuses, before anything is read or written, an output that is the input or another
    /// output ([`OutputClash`]), and an output written at the end that cannot be created.
    pub fn check(&self) -> anyhow::Result<()> {
        let named: Vec<(&str, &Path, Identity)> = self
            .outputs
            .iter()
            .map(|(option, path)| (option.as_str(), path.as_path(), identity(path)))
            .collect();
        if let Some(input) = &self.input {
            let input_identity = identity(input);
            if let Some((option, path, _)) = named.iter().find(|(_, _, id)| *id == input_identity) {
                return Err(OutputClash(format!(
                    "{option} {} is the input {}: it would be overwritten; give {option} another \
                     path",
                    path.display(),
                    input.display()
                ))
                .into());
            }
        }
        for (i, (option, path, id)) in named.iter().enumerate() {
            if let Some((other, other_path, _)) = named[..i].iter().find(|(_, _, o)| o == id) {
                return Err(OutputClash(format!(
                    "{other} {} and {option} {} are the same file: give one of them another path",
                    other_path.display(),
                    path.display()
                ))
                .into());
            }
        }
        for (option, path) in &self.written_at_end {
            crate::fsutil::check_can_create(path, option)?;
        }
        Ok(())
    }
}

/// A CSV report (verify's diff, the plan, the missing-accounts list): created with its header
/// at the first record, written to a temporary file beside `path`, and renamed into place by
/// [`ReportCsv::finish`]. A report with no records leaves no file, and removes an earlier
/// run's, so what is there is always this run's.
pub struct ReportCsv {
    path: PathBuf,
    header: Vec<String>,
    writer: Option<csv::Writer<File>>,
    records: u64,
}

impl ReportCsv {
    pub fn new(path: &Path, header: &[&str]) -> ReportCsv {
        ReportCsv {
            path: path.to_path_buf(),
            header: header.iter().map(|h| h.to_string()).collect(),
            writer: None,
            records: 0,
        }
    }

    /// The temporary file the report is written to until it is finished.
    fn tmp_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.path.with_file_name(format!(".{name}.tmp"))
    }

    pub fn write<I, T>(&mut self, record: I) -> anyhow::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        if self.writer.is_none() {
            let tmp = self.tmp_path();
            let file = crate::fsutil::create_private(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut writer = csv::Writer::from_writer(file);
            writer.write_record(&self.header)?;
            self.writer = Some(writer);
        }
        if let Some(writer) = &mut self.writer {
            writer.write_record(record)?;
            self.records += 1;
        }
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Puts the report in place: its path if it has records, None (and no file) if not.
    pub fn finish(mut self) -> anyhow::Result<Option<PathBuf>> {
        let Some(writer) = self.writer.take() else {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("cannot remove an earlier run's {}", self.path.display())
                    })
                }
            }
            return Ok(None);
        };
        let file = writer
            .into_inner()
            .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", self.path.display()))?;
        file.sync_data()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        std::fs::rename(self.tmp_path(), &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(Some(self.path.clone()))
    }
}

impl Drop for ReportCsv {
    fn drop(&mut self) {
        // Not finished (an error on the way): the half-written report is not left behind.
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(self.tmp_path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clash(files: RunFiles) -> String {
        let err = files.check().expect_err("a clash");
        assert!(err.downcast_ref::<OutputClash>().is_some(), "{err:#}");
        err.to_string()
    }

    #[test]
    fn an_output_that_is_the_input_by_any_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("u.csv");
        std::fs::write(&input, "UserID\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let hard = dir.path().join("hard.csv");
        std::fs::hard_link(&input, &hard).unwrap();
        let dotted = dir.path().join(".").join("u.csv");
        for same in [&input, &link, &hard, &dotted] {
            let message = clash(RunFiles::reading(&input).output("--failures", same));
            assert!(message.contains("is the input"), "{message}");
        }
        let message = clash(RunFiles::reading(&link).output_at_end("--diff", Some(&input)));
        assert!(message.contains("--diff"), "{message}");
    }

    #[test]
    fn two_outputs_that_are_one_file_are_refused_even_before_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("u.csv");
        std::fs::write(&input, "UserID\n").unwrap();
        let plan = dir.path().join("out.json");
        let again = dir.path().join("sub").join("..").join("out.json");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let message = clash(
            RunFiles::reading(&input)
                .output("--failures", &dir.path().join("f.csv"))
                .output_at_end("--summary-json", Some(&plan))
                .output_at_end("--plan", Some(&again)),
        );
        assert!(
            message.contains("--summary-json") && message.contains("--plan"),
            "{message}"
        );
        RunFiles::reading(&input)
            .output("--failures", &dir.path().join("f.csv"))
            .output_at_end("--summary-json", Some(&plan))
            .output_at_end("--summary-json", Some(Path::new("-")))
            .check()
            .unwrap();
    }

    #[test]
    fn a_report_is_put_in_place_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "an earlier run's\n").unwrap();
        let mut report = ReportCsv::new(&path, &["UserID"]);
        report.write(["u1"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "an earlier run's\n"
        );
        assert_eq!(report.finish().unwrap(), Some(path.clone()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "UserID\nu1\n");
        assert_eq!(ReportCsv::new(&path, &["UserID"]).finish().unwrap(), None);
        assert!(!path.exists(), "an empty report leaves no file");
        let mut dropped = ReportCsv::new(&path, &["UserID"]);
        dropped.write(["u2"]).unwrap();
        drop(dropped);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
