//! The CSV reader: opening the input, checking its encoding and header, and streaming records
//! one at a time into a reused buffer, so memory stays flat at any file size.
//!
//! This is the only place that builds a `csv::Reader`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use csv::ByteRecord;

use crate::header::{self, Columns, Mapping};

/// How to read the input file.
#[derive(Debug, Clone)]
pub struct InputOptions {
    pub path: PathBuf,
    pub delimiter: u8,
    pub user_column: Option<String>,
    pub mapping: Option<PathBuf>,
}

/// An open input file positioned after its header.
pub struct CsvInput {
    reader: csv::Reader<File>,
    pub columns: Columns,
}

impl CsvInput {
    /// Opens the file, rejects encodings we cannot read, and resolves the header row.
    pub fn open(options: &InputOptions) -> anyhow::Result<CsvInput> {
        let mapping = match &options.mapping {
            Some(path) => Mapping::load(path)?,
            None => Mapping::default(),
        };
        let path = &options.path;
        let mut file =
            File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        check_encoding(&mut file, path)?;
        let mut reader = reader_builder(options.delimiter).from_reader(file);
        let raw_header = reader
            .byte_headers()
            .with_context(|| format!("cannot read the header row of {}", path.display()))?
            .clone();
        if raw_header.is_empty() || (raw_header.len() == 1 && raw_header[0].is_empty()) {
            bail!(
                "{} is empty: the first line must be a header row naming the columns\n{}",
                path.display(),
                header::accepted_names_help()
            );
        }
        let mut names = Vec::with_capacity(raw_header.len());
        for (i, raw) in raw_header.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| {
                anyhow::anyhow!(
                    "{}: header column {} is not valid UTF-8; save the file as UTF-8",
                    path.display(),
                    i + 1
                )
            })?;
            names.push(header::clean_name(name));
        }
        let columns = header::resolve(names, &mapping, options.user_column.as_deref())
            .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        Ok(CsvInput { reader, columns })
    }

    /// Reads the next record into `record`. Returns false at the end of the file.
    pub fn read(&mut self, record: &mut ByteRecord) -> anyhow::Result<bool> {
        self.reader.read_byte_record(record).map_err(|err| {
            let line = err.position().map_or(0, |p| p.line());
            anyhow::anyhow!("cannot read the input at line {line}: {err}")
        })
    }
}

/// The 1-based line on which `record` starts.
pub fn line_of(record: &ByteRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
}

/// One place that configures CSV parsing for every reader of input files.
pub fn reader_builder(delimiter: u8) -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder
        .delimiter(delimiter)
        .has_headers(true)
        // A ragged row must become a row error naming its line, not a reader error.
        .flexible(true)
        .buffer_capacity(64 * 1024);
    builder
}

/// Rejects UTF-16 and other encodings that would otherwise be misread as garbage headers.
fn check_encoding(file: &mut File, path: &Path) -> anyhow::Result<()> {
    let mut head = [0u8; 512];
    let mut filled = 0;
    while filled < head.len() {
        let n = file
            .read(&mut head[filled..])
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let head = &head[..filled];
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        bail!(
            "{} is UTF-16 encoded; save it as UTF-8 (in Excel: \"CSV UTF-8\")",
            path.display()
        );
    }
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_line.contains(&0) {
        bail!(
            "{} has NUL bytes in its header row; it is probably UTF-16 or binary, not a UTF-8 CSV",
            path.display()
        );
    }
    file.seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(())
}
