//! The CSV reader: opening the input, checking its encoding and header, and streaming records
//! one at a time into a reused buffer, so memory stays flat at any file size.
//!
//! This is the only place that builds a `csv::Reader`.

use std::collections::VecDeque;
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
    reader: csv::Reader<LineTracker<Source>>,
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
        check_encoding(&head[..filled], path)?;
        file.seek(SeekFrom::Start(0))
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_source(Source::File(file), options, &mapping)
    }

    /// Reads CSV from memory, exactly as `open` reads a file (used by the fuzz target).
    pub fn from_bytes(data: Vec<u8>, options: &InputOptions) -> anyhow::Result<CsvInput> {
        check_encoding(&data[..data.len().min(512)], &options.path)?;
        Self::from_source(
            Source::Bytes(std::io::Cursor::new(data)),
            options,
            &Mapping::default(),
        )
    }

    fn from_source(
        source: Source,
        options: &InputOptions,
        mapping: &Mapping,
    ) -> anyhow::Result<CsvInput> {
        let path = &options.path;
        let tracker = LineTracker {
            inner: source,
            breaks: LineBreaks::default(),
        };
        let mut reader = reader_builder(options.delimiter).from_reader(tracker);
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
        let columns = header::resolve(names, mapping, options.user_column.as_deref())
            .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        Ok(CsvInput { reader, columns })
    }

    /// Reads the next record into `record`. Returns the 1-based physical line it starts on, or
    /// None at the end of the file.
    pub fn read(&mut self, record: &mut ByteRecord) -> anyhow::Result<Option<u64>> {
        let more = self.reader.read_byte_record(record).map_err(|err| {
            let byte = err.position().map_or(0, |p| p.byte());
            anyhow::anyhow!("cannot read the input near byte {byte}: {err}")
        })?;
        if !more {
            return Ok(None);
        }
        let start = record.position().map_or(0, |p| p.byte());
        Ok(Some(self.reader.get_mut().breaks.line_at(start)))
    }
}

impl CsvInput {
    /// Continues after the record at `pos` (from the journal), without re-reading what lies
    /// before it: seeks to where that record begins, reads it once more, and discards it.
    pub fn seek_past(&mut self, pos: crate::journal::RowPos) -> anyhow::Result<()> {
        let mut position = csv::Position::new();
        position
            .set_byte(pos.byte)
            .set_line(pos.line)
            .set_record(pos.index);
        self.reader
            .seek(position)
            .context("cannot seek in the input to resume")?;
        let mut record = ByteRecord::new();
        let Some(line) = self.read(&mut record)? else {
            bail!("the input ends before the journal's checkpoint; was it truncated?");
        };
        // Lines were counted from the seek point; shift them to the file's real numbering.
        let breaks = &mut self.reader.get_mut().breaks;
        breaks.passed += pos.line.saturating_sub(line);
        Ok(())
    }

    /// The byte where the CSV reader began reading `record` (for the journal).
    pub fn start_byte(record: &ByteRecord) -> u64 {
        record.position().map_or(0, |p| p.byte())
    }
}

/// Line breaks seen by the reader and not yet passed by a record.
///
/// csv's own `Position::line` skips blank lines and miscounts CRLF, so lines are counted here
/// from the bytes: a break is `\r\n`, `\n` or a lone `\r`, as csv's default terminator reads.
#[derive(Default)]
struct LineBreaks {
    /// (first byte, byte after) of each break not yet passed.
    pending: VecDeque<(u64, u64)>,
    /// Breaks already passed.
    passed: u64,
    /// Bytes handed to the reader so far.
    offset: u64,
    /// A `\r` at the end of the last chunk, waiting to see if `\n` follows.
    carriage_return: Option<u64>,
}

impl LineBreaks {
    fn scan(&mut self, chunk: &[u8]) {
        let base = self.offset;
        if let Some(cr) = self.carriage_return.take() {
            let end = if chunk.first() == Some(&b'\n') {
                cr + 2
            } else {
                cr + 1
            };
            self.pending.push_back((cr, end));
        }
        for i in memchr::memchr2_iter(b'\r', b'\n', chunk) {
            let at = base + i as u64;
            if chunk[i] == b'\n' {
                if self.pending.back().is_some_and(|&(_, end)| end > at) {
                    continue; // the \n of a \r\n already recorded
                }
                self.pending.push_back((at, at + 1));
            } else if i + 1 == chunk.len() {
                self.carriage_return = Some(at);
            } else {
                let end = if chunk[i + 1] == b'\n' {
                    at + 2
                } else {
                    at + 1
                };
                self.pending.push_back((at, end));
            }
        }
        self.offset += chunk.len() as u64;
    }

    fn finish(&mut self) {
        if let Some(cr) = self.carriage_return.take() {
            self.pending.push_back((cr, cr + 1));
        }
    }

    /// The line of a record whose reading began at byte `start`. csv reports the position
    /// where reading began, before any blank lines it skipped, so those are skipped here too.
    fn line_at(&mut self, start: u64) -> u64 {
        // Every break that begins at or before the content start is behind the record:
        // breaks wholly before `start`, the tail of a CRLF split across `start`, and blank
        // lines (record content never begins with CR or LF).
        let mut at = start;
        while let Some(&(first, end)) = self.pending.front() {
            if first > at {
                break;
            }
            at = at.max(end);
            self.pending.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

/// Passes bytes to the csv reader while noting every line break.
struct LineTracker<R> {
    inner: R,
    breaks: LineBreaks,
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.breaks.finish();
        } else {
            self.breaks.scan(&buf[..n]);
        }
        Ok(n)
    }
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

/// Where CSV bytes come from.
enum Source {
    File(File),
    Bytes(std::io::Cursor<Vec<u8>>),
}

impl Seek for Source {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match self {
            Source::File(file) => file.seek(to),
            Source::Bytes(bytes) => bytes.seek(to),
        }
    }
}

impl<R: Seek> Seek for LineTracker<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let offset = self.inner.seek(to)?;
        self.breaks = LineBreaks {
            offset,
            ..LineBreaks::default()
        };
        Ok(offset)
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::File(file) => file.read(buf),
            Source::Bytes(bytes) => bytes.read(buf),
        }
    }
}

/// Rejects UTF-16 and other encodings that would otherwise be misread as garbage headers.
fn check_encoding(head: &[u8], path: &Path) -> anyhow::Result<()> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of each record, read through the tracker in chunks of `chunk` bytes.
    fn lines(data: &[u8], chunk: usize) -> Vec<u64> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let tracker = LineTracker {
            inner: Chunked(data, chunk),
            breaks: LineBreaks::default(),
        };
        let mut reader = reader_builder(b',').buffer_capacity(7).from_reader(tracker);
        let mut record = ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            let start = record.position().unwrap().byte();
            out.push(reader.get_mut().breaks.line_at(start));
        }
        out
    }

    #[test]
    fn counts_physical_lines_across_endings_blank_lines_and_quotes() {
        let cases: [(&[u8], &[u64]); 5] = [
            (b"h\na\nb\n", &[2, 3]),
            (b"h\r\na\r\n\r\nb\r\n", &[2, 4]),
            (b"h\ra\r\r\rb", &[2, 5]),
            (b"h\n\"x\ny\"\nb\n", &[2, 4]),
            (b"h\n\n\n\na\n\n", &[5]),
        ];
        for (data, want) in cases {
            for chunk in [1, 2, 3, 64] {
                assert_eq!(
                    lines(data, chunk),
                    want,
                    "{:?} in chunks of {chunk}",
                    String::from_utf8_lossy(data)
                );
            }
        }
    }
}
