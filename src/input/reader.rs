//! The CSV reader: opening the input (plain or gzip), checking its encoding and header, and
//! streaming records one at a time into a reused buffer, so memory stays flat at any file size.
//! It is the CSV [`RecordSource`]; commands read it through `input::rows::Rows`.
//!
//! This is the only place that builds a `csv::Reader` of the input.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use csv::ByteRecord;

use crate::input::encoding;
use crate::input::header::{self, Columns, Mapping};
use crate::input::parts::CutGuard;
use crate::input::source::{RecordSource, RowPos};

/// How to read the input file.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    pub path: PathBuf,
    pub delimiter: u8,
    pub user_column: Option<String>,
    pub mapping: Option<PathBuf>,
    /// Columns to leave out (`--ignore`), on top of the mapping file's `ignore`.
    pub ignore: Vec<String>,
    /// The app's custom fields (`--custom-fields`), when declared.
    pub custom_fields: Option<Vec<String>>,
}

/// An open input file positioned after its header.
pub struct CsvInput {
    reader: csv::Reader<LineTracker<Source>>,
    pub columns: Columns,
    path: PathBuf,
    delimiter: u8,
    /// Set once the reader has reached the end of the input and the tail has been checked.
    tail_checked: bool,
    /// The input ends inside a quoted field (an unterminated quote).
    ends_in_quote: bool,
    /// A record read ahead, near the end of an input that ends inside a quote.
    stash: Option<(ByteRecord, Raw)>,
    /// The record last returned is the one whose quote never closes.
    unterminated: bool,
    /// Lines inside the record last returned that look like rows (`input::quotes`).
    swallowed: Vec<u64>,
}

/// Where a record read from csv starts, and whether a line break lies inside it.
#[derive(Clone, Copy)]
struct Raw {
    line: u64,
    spans_lines: bool,
}

impl CsvInput {
    /// Opens the file (decompressing gzip), rejects encodings we cannot read, and resolves the
    /// header row.
    pub fn open(options: &InputOptions) -> anyhow::Result<CsvInput> {
        let mut mapping = match &options.mapping {
            Some(path) => Mapping::load(path)?,
            None => Mapping::default(),
        };
        mapping.ignore.extend(options.ignore.iter().cloned());
        let path = &options.path;
        let cannot_read = || format!("cannot read {}", path.display());
        // Looked at before opening: opening a named pipe would wait for a writer.
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
        if meta.is_dir() {
            bail!(
                "{} is a directory: give the path of a CSV file",
                path.display()
            );
        }
        if !meta.is_file() {
            bail!(
                "{} is a pipe or a device, not a file: the input is read more than once (to count \
                 rows, find repeated users, resume)",
                path.display()
            );
        }
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut source = Source::open(path, file).with_context(cannot_read)?;
        let mut sample = Vec::with_capacity(encoding::SAMPLE_BYTES);
        (&mut source)
            .take(encoding::SAMPLE_BYTES as u64)
            .read_to_end(&mut sample)
            .with_context(cannot_read)?;
        encoding::check(&sample, sample.len() < encoding::SAMPLE_BYTES, path)?;
        source.seek(SeekFrom::Start(0)).with_context(cannot_read)?;
        Self::from_source(source, options, &mapping)
    }

    /// Reads CSV from memory, exactly as `open` reads a file (used by the fuzz target).
    pub fn from_bytes(data: Vec<u8>, options: &InputOptions) -> anyhow::Result<CsvInput> {
        let sample = &data[..data.len().min(encoding::SAMPLE_BYTES)];
        encoding::check(sample, sample.len() == data.len(), &options.path)?;
        let mapping = Mapping {
            ignore: options.ignore.clone(),
            ..Mapping::default()
        };
        Self::from_source(Source::Bytes(std::io::Cursor::new(data)), options, &mapping)
    }

    fn from_source(
        source: Source,
        options: &InputOptions,
        mapping: &Mapping,
    ) -> anyhow::Result<CsvInput> {
        let path = &options.path;
        let tracker = LineTracker::new(source);
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
            if name.contains(['\n', '\r']) {
                bail!(
                    "{}: header column {} ({:?}) contains a line break: a quote opened in the header row \
                     probably never closes",
                    path.display(),
                    i + 1,
                    crate::input::profile::clip(name)
                );
            }
            names.push(header::clean_name(name));
        }
        let declared = options.custom_fields.as_deref();
        let columns =
            header::resolve_declared(names, mapping, options.user_column.as_deref(), declared)
                .map_err(|mut err| {
                    if raw_header.len() == 1 {
                        if let Some(hint) = delimiter_hint(&raw_header[0], options.delimiter) {
                            err.problems.insert(0, hint);
                        }
                    }
                    anyhow::anyhow!("{}: {err}", path.display())
                })?;
        Ok(CsvInput {
            reader,
            columns,
            path: path.clone(),
            delimiter: options.delimiter,
            tail_checked: false,
            ends_in_quote: false,
            stash: None,
            unterminated: false,
            swallowed: Vec::new(),
        })
    }

    /// Where to cut the file in two so both halves can be read at once: just after a line
    /// break past the middle, preferably one after which the next records read with the
    /// header's width. None for files too small to be worth it, or when no `\n` follows the
    /// middle soon.
    ///
    /// The cut may still fall inside a quoted field that spans lines; only reading the first
    /// half tells (see `parts::starts_at_cut`), and then the first half's reader carries on alone.
    fn parallel_cut(&self, min_len: u64) -> anyhow::Result<Option<u64>> {
        let Source::File(file) = &self.reader.get_ref().inner else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .with_context(|| format!("cannot read {}", self.path.display()))?
            .len();
        let middle = len / 2;
        if len < min_len || middle <= self.reader.position().byte() {
            return Ok(None);
        }
        let mut file = File::open(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        // Two bytes before the middle too, to see what precedes a break found right there.
        let start = middle - 2;
        file.seek(SeekFrom::Start(start))?;
        let mut window = vec![0; 1 << 20];
        let mut filled = 0;
        while filled < window.len() {
            match file.read(&mut window[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        let window = &window[..filled];
        // Only a break that ends a line with content: csv notes where reading began, which for
        // a record after blank lines is before the blank lines, so a cut among blank lines
        // would never look like a record boundary to the first reader.
        let ends_content = |i: usize| {
            !matches!(
                (window[i - 1], window[i - 2]),
                (b'\n', _) | (b'\r', b'\n' | b'\r')
            )
        };
        let mut candidates = memchr::memchr_iter(b'\n', window)
            .filter(|&i| i >= 2 && ends_content(i) && start + (i as u64) + 1 < len)
            .map(|i| i + 1)
            .take(CUT_CANDIDATES)
            .peekable();
        let first = candidates.peek().copied();
        // A break inside a quoted field usually shows: read from there, the next few records
        // come out with the wrong number of fields. Prefer the first break that does not; the
        // first reader still checks the chosen cut, so a wrong guess costs time, not rows.
        let columns = self.columns.names.len();
        let looks_right = |at: usize| {
            let mut reader = reader_builder(self.delimiter)
                .has_headers(false)
                .from_reader(&window[at..]);
            let mut record = ByteRecord::new();
            let mut seen = 0;
            while seen < CUT_CHECK_RECORDS && reader.read_byte_record(&mut record).unwrap_or(false)
            {
                if record.len() != columns {
                    return false;
                }
                seen += 1;
            }
            seen == CUT_CHECK_RECORDS
        };
        Ok(candidates
            .find(|&at| looks_right(at))
            .or(first)
            .map(|at| start + at as u64))
    }

    /// A second reader of the same file that starts at `cut` (from `parallel_cut`), with the
    /// same columns. Its line numbers count from the cut, as if the file began there; add
    /// the lines before the cut to get the file's own.
    ///
    /// `guard` is shared with the first reader: once the split has failed this reader sees the
    /// end of its input, and until it holds, a record over `SPECULATIVE_RECORD_BYTES` fails it.
    fn open_at(&self, cut: u64, guard: Arc<CutGuard>) -> anyhow::Result<CsvInput> {
        let file = File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        let mut tracker = LineTracker::new(Source::File(file));
        tracker.guard = Some(guard);
        let mut reader = reader_builder(self.delimiter)
            .has_headers(false)
            .from_reader(tracker);
        let mut position = csv::Position::new();
        position.set_byte(cut);
        reader
            .seek_raw(SeekFrom::Start(cut), position)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        Ok(CsvInput {
            reader,
            columns: self.columns.clone(),
            path: self.path.clone(),
            delimiter: self.delimiter,
            tail_checked: false,
            ends_in_quote: false,
            stash: None,
            unterminated: false,
            swallowed: Vec::new(),
        })
    }

    /// Reads the next record into `record`. Returns the 1-based physical line it starts on, or
    /// None at the end of the file.
    ///
    /// csv reads a quote that never closes to the end of the file without complaint, which
    /// would silently fold every later line into one field. So once the end is in sight, the
    /// tail is checked, and the record holding such a quote is flagged (`unterminated`).
    fn read_record(&mut self, record: &mut ByteRecord) -> anyhow::Result<Option<u64>> {
        self.unterminated = false;
        self.swallowed.clear();
        if self.given_up() {
            return Ok(None);
        }
        let raw = match self.stash.take() {
            Some((stashed, raw)) => {
                *record = stashed;
                raw
            }
            None => match self.read_raw(record)? {
                Some(raw) if !self.given_up() => raw,
                _ => return Ok(None),
            },
        };
        if !self.tail_checked && self.reader.get_ref().breaks.at_end {
            self.tail_checked = true;
            self.ends_in_quote = self.tail_ends_in_quote(Self::start_byte(record))?;
        }
        if self.ends_in_quote {
            let mut next = ByteRecord::new();
            match self.read_raw(&mut next)? {
                Some(next_raw) => self.stash = Some((next, next_raw)),
                None => self.unterminated = true,
            }
        }
        if raw.spans_lines && !self.unterminated {
            let columns = self.columns.names.len();
            let lines = &mut self.swallowed;
            crate::input::quotes::swallowed_rows(record, raw.line, self.delimiter, columns, lines);
        }
        Ok(Some(raw.line))
    }

    /// Scans the input from `start` (a record boundary) to the end, the way csv quotes work,
    /// and says whether it ends inside a quoted field.
    fn tail_ends_in_quote(&self, start: u64) -> anyhow::Result<bool> {
        #[derive(PartialEq)]
        enum State {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        let mut tail: Box<dyn Read> = match &self.reader.get_ref().inner {
            Source::Bytes(cursor) => {
                let data = cursor.get_ref();
                let from = (start as usize).min(data.len());
                Box::new(std::io::Cursor::new(data[from..].to_vec()))
            }
            Source::File(_) => {
                let mut file = File::open(&self.path)
                    .with_context(|| format!("cannot read {}", self.path.display()))?;
                file.seek(SeekFrom::Start(start))?;
                Box::new(std::io::BufReader::new(file))
            }
            Source::Gzip { .. } => Box::new(
                Source::gzip_from(&self.path, start)
                    .with_context(|| format!("cannot read {}", self.path.display()))?,
            ),
        };
        let mut state = State::FieldStart;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = tail.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                let delimiter = self.delimiter;
                state = match (state, b) {
                    (State::FieldStart, b'"') => State::Quoted,
                    (State::Quoted, b'"') => State::QuoteInQuoted,
                    (State::Quoted, _) => State::Quoted,
                    (State::QuoteInQuoted, b'"') => State::Quoted,
                    (_, b) if b == delimiter || b == b'\n' || b == b'\r' => State::FieldStart,
                    _ => State::Unquoted,
                };
            }
        }
        Ok(state == State::Quoted)
    }

    fn read_raw(&mut self, record: &mut ByteRecord) -> anyhow::Result<Option<Raw>> {
        let more = self.reader.read_byte_record(record).map_err(|err| {
            let byte = err.position().map_or(0, |p| p.byte());
            anyhow::anyhow!("cannot read the input near byte {byte}: {err}")
        })?;
        if !more {
            return Ok(None);
        }
        let start = record.position().map_or(0, |p| p.byte());
        let end = self.reader.position().byte();
        let tracker = self.reader.get_mut();
        tracker.record_end = end;
        let line = tracker.breaks.line_at(start);
        let spans_lines = tracker.breaks.break_before(end);
        Ok(Some(Raw { line, spans_lines }))
    }

    /// True if this reader starts at a cut and the split has failed: its records no longer
    /// count, and reading stops.
    fn given_up(&self) -> bool {
        self.reader
            .get_ref()
            .guard
            .as_ref()
            .is_some_and(|guard| guard.failed())
    }
}

impl RecordSource for CsvInput {
    fn columns(&self) -> &Columns {
        &self.columns
    }

    fn read(&mut self, record: &mut ByteRecord) -> anyhow::Result<Option<u64>> {
        self.read_record(record)
    }

    fn unterminated(&self) -> bool {
        self.unterminated
    }

    fn swallowed(&self) -> &[u64] {
        &self.swallowed
    }

    fn second_half(
        &self,
        min_len: u64,
        guard: Arc<CutGuard>,
    ) -> anyhow::Result<Option<(u64, Box<dyn RecordSource>)>> {
        let Some(cut) = self.parallel_cut(min_len)? else {
            return Ok(None);
        };
        Ok(Some((cut, Box::new(self.open_at(cut, guard)?))))
    }

    /// Continues after the record at `pos` (from the journal), without re-reading what lies
    /// before it: seeks to where that record begins, reads it once more, and discards it.
    fn seek_past(&mut self, pos: RowPos) -> anyhow::Result<()> {
        let mut position = csv::Position::new();
        position
            .set_byte(pos.byte)
            .set_line(pos.line)
            .set_record(pos.index);
        self.reader
            .seek(position)
            .context("cannot seek in the input to resume")?;
        let mut record = ByteRecord::new();
        let Some(line) = self.read_record(&mut record)? else {
            bail!("the input ends before the journal's checkpoint; was it truncated?");
        };
        // Lines were counted from the seek point; shift them to the file's real numbering.
        let breaks = &mut self.reader.get_mut().breaks;
        breaks.passed += pos.line.saturating_sub(line);
        Ok(())
    }
}

impl CsvInput {
    /// The byte where the CSV reader began reading `record` (for the journal).
    fn start_byte(record: &ByteRecord) -> u64 {
        record.position().map_or(0, |p| p.byte())
    }
}

/// Line breaks after the middle tried as a cut, and records read from each to judge it.
const CUT_CANDIDATES: usize = 64;
const CUT_CHECK_RECORDS: usize = 4;

/// While a second reader's cut is not yet known to hold, a record that grows past this many
/// bytes gives the second part up (see `LineTracker::read`).
pub const SPECULATIVE_RECORD_BYTES: u64 = 1 << 20;

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
    /// The reader has reached the end of the input.
    at_end: bool,
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
        self.at_end = true;
        if let Some(cr) = self.carriage_return.take() {
            self.pending.push_back((cr, cr + 1));
        }
    }

    /// True if a break not yet passed lies wholly before `end`: called with a record's end once
    /// its start is passed, a break inside one of its fields (its own terminator ends at or
    /// after `end`, wherever csv stops within a CRLF).
    fn break_before(&self, end: u64) -> bool {
        self.pending.front().is_some_and(|&(_, after)| after < end)
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
    /// For a reader that starts at a cut: the cut's fate, shared with the first reader.
    guard: Option<Arc<CutGuard>>,
    /// Where the record last returned ends.
    record_end: u64,
}

impl<R> LineTracker<R> {
    fn new(inner: R) -> Self {
        LineTracker {
            inner,
            breaks: LineBreaks::default(),
            guard: None,
            record_end: 0,
        }
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(guard) = &self.guard {
            // Until the cut is known to hold, a record that keeps growing is likely a quoted
            // field misread from a cut inside it: give the part up rather than hold the rest
            // of the file in memory. Either way the reader then sees the end of its input.
            let growing =
                self.breaks.offset.saturating_sub(self.record_end) > SPECULATIVE_RECORD_BYTES;
            if guard.failed() || (growing && guard.fail()) {
                return Ok(0);
            }
        }
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
    /// A gzip file, decompressed as it is read. It can only be read forward, so seeking
    /// starts it again from the top (only resuming seeks, once).
    Gzip {
        path: PathBuf,
        decoder: Box<GzDecoder>,
    },
}

type GzDecoder = flate2::read::MultiGzDecoder<BufReader<File>>;

/// The two bytes every gzip member starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl Source {
    /// The file as it is, or decompressed when it starts like gzip (whatever its name).
    fn open(path: &Path, mut file: File) -> std::io::Result<Source> {
        let mut magic = [0u8; 2];
        let mut filled = 0;
        while filled < magic.len() {
            match file.read(&mut magic[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        file.seek(SeekFrom::Start(0))?;
        if filled == 2 && magic == GZIP_MAGIC {
            Ok(Source::Gzip {
                path: path.to_path_buf(),
                decoder: Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
            })
        } else {
            Ok(Source::File(file))
        }
    }

    /// A fresh decoder of the gzip file at `path`, past its first `skip` decompressed bytes.
    fn gzip_from(path: &Path, skip: u64) -> std::io::Result<GzDecoder> {
        let mut decoder = flate2::read::MultiGzDecoder::new(BufReader::new(File::open(path)?));
        let skipped = std::io::copy(&mut (&mut decoder).take(skip), &mut std::io::sink())?;
        if skipped < skip {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the decompressed input is shorter than the position sought",
            ));
        }
        Ok(decoder)
    }
}

impl Seek for Source {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match self {
            Source::File(file) => file.seek(to),
            Source::Bytes(bytes) => bytes.seek(to),
            Source::Gzip { path, decoder } => match to {
                SeekFrom::Start(at) => {
                    **decoder = Source::gzip_from(path, at)?;
                    Ok(at)
                }
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "a gzip input can only be sought from its start",
                )),
            },
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
        self.record_end = offset;
        Ok(offset)
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::File(file) => file.read(buf),
            Source::Bytes(bytes) => bytes.read(buf),
            Source::Gzip { decoder, .. } => decoder.read(buf),
        }
    }
}

/// For a header read as one column: the delimiter it seems to be split by instead, as a hint.
fn delimiter_hint(header: &[u8], delimiter: u8) -> Option<String> {
    let (candidate, count) = [b';', b'\t', b'|', b',']
        .into_iter()
        .filter(|&c| c != delimiter)
        .map(|c| (c, memchr::memchr_iter(c, header).count()))
        .max_by_key(|&(_, count)| count)?;
    if count == 0 {
        return None;
    }
    let (shown, flag) = match candidate {
        b'\t' => ("tab".to_string(), "--delimiter tab".to_string()),
        c => (
            format!("'{}'", c as char),
            format!("--delimiter '{}'", c as char),
        ),
    };
    Some(format!(
        "the header row reads as a single column with {count} {shown} in it: the file looks \
         {shown}-separated; pass {flag}"
    ))
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
        let tracker = LineTracker::new(Chunked(data, chunk));
        let mut reader = reader_builder(b',').buffer_capacity(7).from_reader(tracker);
        let mut record = ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            let start = record.position().unwrap().byte();
            out.push(reader.get_mut().breaks.line_at(start));
        }
        out
    }

    /// (line, unterminated) of every record read from `data` as a file would be.
    fn flags(data: &[u8]) -> Vec<(u64, bool)> {
        let options = InputOptions {
            path: "t.csv".into(),
            delimiter: b',',
            user_column: None,
            mapping: None,
            ignore: Vec::new(),
            custom_fields: None,
        };
        let mut input = CsvInput::from_bytes(data.to_vec(), &options).unwrap();
        let mut record = ByteRecord::new();
        let mut out = Vec::new();
        while let Some(line) = input.read_record(&mut record).unwrap() {
            out.push((line, input.unterminated));
        }
        out
    }

    /// A file whose second half, read from its cut, opens a quote that nothing closes.
    fn misread_from_the_cut() -> (tempfile::NamedTempFile, CsvInput, u64) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let head = "UserID,Nick\nu1,\"a note that ends with a line break\n";
        let cut = head.len() as u64;
        // From the cut, a reader sees a field that opens with a quote and 3 MiB with none.
        let tail = "\",after\n".to_string() + &"u2,plain\n".repeat(3 << 17);
        std::io::Write::write_all(&mut file, (head.to_string() + &tail).as_bytes()).unwrap();
        let options = InputOptions {
            path: file.path().to_path_buf(),
            delimiter: b',',
            user_column: None,
            mapping: None,
            ignore: Vec::new(),
            custom_fields: None,
        };
        let first = CsvInput::open(&options).unwrap();
        (file, first, cut)
    }

    #[test]
    fn a_second_reader_gives_up_a_record_that_grows_while_its_cut_is_undecided() {
        let (_file, first, cut) = misread_from_the_cut();
        let guard = Arc::new(CutGuard::default());
        let mut second = first.open_at(cut, guard.clone()).unwrap();
        let mut record = ByteRecord::new();
        assert_eq!(second.read_record(&mut record).unwrap(), None);
        assert!(guard.failed());
        // The first reader then finds the cut failed and reads on.
        assert!(!guard.hold());
    }

    #[test]
    fn a_second_reader_reads_a_long_record_whole_once_its_cut_holds() {
        let (_file, first, cut) = misread_from_the_cut();
        let guard = Arc::new(CutGuard::default());
        assert!(guard.hold());
        let mut second = first.open_at(cut, guard.clone()).unwrap();
        let mut record = ByteRecord::new();
        assert_eq!(second.read_record(&mut record).unwrap(), Some(1));
        assert!(
            record.as_slice().len() > 3 << 20,
            "{}",
            record.as_slice().len()
        );
        assert!(!guard.failed());
    }

    #[test]
    fn a_quote_that_never_closes_is_flagged_on_its_row_only() {
        assert_eq!(
            flags(b"UserID,Nick\nu1,a\nu2,\"b\nu3,c\nu4,d\n"),
            [(2, false), (3, true)]
        );
        assert_eq!(
            flags(b"UserID,Nick\nu1,\"a \"\"x\"\" b\"\nu2,5'11\"\n"),
            [(2, false), (3, false)]
        );
        assert_eq!(
            flags(b"UserID,Nick\nu1,\"multi\nline\"\nu2,x"),
            [(2, false), (4, false)]
        );
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
