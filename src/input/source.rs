//! What the input's records come from: the trait a file format implements for `input::rows`.

use std::sync::Arc;

use csv::ByteRecord;

use crate::input::header::Columns;
use crate::input::parts::CutGuard;

/// Where a row sits in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPos {
    /// 0-based record index (the header not counted).
    pub index: u64,
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// Byte offset where the CSV reader began reading the record.
    pub byte: u64,
}

/// A format the input can be read in.
pub trait RecordSource: Send {
    /// The resolved header.
    fn columns(&self) -> &Columns;

    /// Reads the next record into `record`, with its position (the byte where reading began)
    /// set; returns the 1-based physical line it starts on, or None at the end.
    fn read(&mut self, record: &mut ByteRecord) -> anyhow::Result<Option<u64>>;

    /// True if the record last read opens a quote that never closes, so it swallowed every
    /// line after it.
    fn unterminated(&self) -> bool {
        false
    }

    /// The lines inside the record last read that look like rows of their own (see
    /// `input::quotes`): a quoted field that spans lines may have swallowed them.
    fn swallowed(&self) -> &[u64] {
        &[]
    }

    /// Continues after the record at `pos` without reading what lies before it.
    fn seek_past(&mut self, pos: RowPos) -> anyhow::Result<()>;

    /// For reading in two halves at once: the byte where the second half starts and a source
    /// for it, when the input is large enough (`min_len`) and the format can be cut. The
    /// second source's lines count from the cut. `guard` is shared by both halves.
    fn second_half(
        &self,
        _min_len: u64,
        _guard: Arc<CutGuard>,
    ) -> anyhow::Result<Option<(u64, Box<dyn RecordSource>)>> {
        Ok(None)
    }
}
