//! Reading the input: its formats (CSV, JSON Lines) behind one record loop, header resolution,
//! Chat's field rules, one record → one portrait_set body, a repeated user's rows merged, and
//! duplicate UserIDs in constant memory.

pub mod dupes;
pub mod encoding;
pub mod header;
pub mod jsonl;
pub mod merge;
pub mod parts;
pub mod profile;
pub mod quotes;
pub mod reader;
pub mod row;
pub mod rows;
pub mod source;
pub mod stdin;
pub mod survey;

/// Opens the input in its format: JSON Lines by its name (`.jsonl`, `.ndjson`), otherwise CSV,
/// plain or gzip. A new format is one file implementing `source::RecordSource` and one line
/// here.
pub fn open_source(
    options: &reader::InputOptions,
) -> anyhow::Result<Box<dyn source::RecordSource>> {
    if jsonl::is_jsonl(&options.path) {
        return Ok(Box::new(jsonl::JsonlInput::open(options)?));
    }
    Ok(Box::new(reader::CsvInput::open(options)?))
}
