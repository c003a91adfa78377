//! The one record loop: every command reads its input through [`Rows`], which numbers each
//! record (index, line, byte) and says whether an unclosed quote swallowed the rest of the
//! file, or a quote that closes lines later swallowed lines that look like rows. Where the
//! records come from is a `RecordSource` (`input::source`), opened in its format by
//! `input::open_source`.

use std::sync::Arc;

use csv::ByteRecord;

use crate::input::header::Columns;
use crate::input::open_source;
use crate::input::parts::CutGuard;
use crate::input::reader::InputOptions;
use crate::input::source::RecordSource;
use crate::input::source::RowPos;

/// One record as the loop hands it out.
pub struct Row<'a> {
    pub pos: RowPos,
    pub record: &'a ByteRecord,
    /// An unclosed quote swallowed the rest of the file into this record: it is never valid.
    pub unterminated: bool,
    /// Lines inside this record, after its first, that look like rows of their own: a stray
    /// quote probably merged them into it (`input::quotes`). Empty for nearly every record.
    pub swallowed: &'a [u64],
}

/// The records of an input, in file order, each with its position.
pub struct Rows {
    source: Box<dyn RecordSource>,
    record: ByteRecord,
    next_index: u64,
}

impl Rows {
    /// Opens the input and reads its header.
    pub fn open(options: &InputOptions) -> anyhow::Result<Rows> {
        Ok(Rows::from_source(open_source(options)?))
    }

    pub fn from_source(source: Box<dyn RecordSource>) -> Rows {
        Rows {
            source,
            record: ByteRecord::new(),
            next_index: 0,
        }
    }

    pub fn columns(&self) -> &Columns {
        self.source.columns()
    }

    /// Records handed out so far (counted from the start of the input, also after a seek).
    pub fn records_read(&self) -> u64 {
        self.next_index
    }

    /// The next record, or None at the end of the input.
    pub fn next_row(&mut self) -> anyhow::Result<Option<Row<'_>>> {
        let Some(line) = self.source.read(&mut self.record)? else {
            return Ok(None);
        };
        let pos = RowPos {
            index: self.next_index,
            line,
            byte: self.record.position().map_or(0, |p| p.byte()),
        };
        self.next_index += 1;
        Ok(Some(Row {
            pos,
            record: &self.record,
            unterminated: self.source.unterminated(),
            swallowed: self.source.swallowed(),
        }))
    }

    /// Continues after the record at `pos` (from the journal).
    pub fn seek_past(&mut self, pos: RowPos) -> anyhow::Result<()> {
        self.source.seek_past(pos)?;
        self.next_index = pos.index + 1;
        Ok(())
    }

    /// Splits the input for reading in two halves at once (see
    /// [`RecordSource::second_half`]): the cut, and the second half's rows, whose indexes and
    /// lines count from the cut.
    pub fn second_half(
        &self,
        min_len: u64,
        guard: Arc<CutGuard>,
    ) -> anyhow::Result<Option<(u64, Rows)>> {
        Ok(self
            .source
            .second_half(min_len, guard)?
            .map(|(cut, source)| (cut, Rows::from_source(source))))
    }
}
