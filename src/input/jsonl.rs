//! JSON Lines input (`.jsonl`, `.ndjson`): one JSON object per line, its keys the columns. The
//! first object's keys, in the order written, make the header (resolved like a CSV header, so
//! `UserID`, `Nick`, `Custom_Hobby` and a mapping file work the same); each later line's values
//! are put under those columns. A string is the cell as it is, a number or `true`/`false` its
//! JSON text, `null` or a missing key an empty cell, and an object or array its JSON text. A key
//! the first line does not have, or a line that is not a JSON object, makes the row the wrong
//! width, so it is rejected naming its line. The failure CSV of such input is a CSV with those
//! columns, itself valid input.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;
use csv::ByteRecord;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::input::header::{self, Columns, Mapping};
use crate::input::reader::InputOptions;
use crate::input::source::{RecordSource, RowPos};

/// True for the file names this format is read for.
pub fn is_jsonl(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".jsonl") || name.ends_with(".ndjson")
}

/// A JSON Lines file positioned at its first object.
pub struct JsonlInput {
    lines: BufReader<File>,
    columns: Columns,
    /// The key of each column, as written in the first object.
    keys: Vec<String>,
    /// Lines read so far, and the byte where the next one starts.
    line: u64,
    byte: u64,
    text: String,
}

impl JsonlInput {
    pub fn open(options: &InputOptions) -> anyhow::Result<JsonlInput> {
        let path = &options.path;
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut input = JsonlInput {
            lines: BufReader::new(file),
            columns: Columns {
                names: Vec::new(),
                roles: Vec::new(),
                user_index: 0,
                undeclared: Vec::new(),
            },
            keys: Vec::new(),
            line: 0,
            byte: 0,
            text: String::new(),
        };
        let first = loop {
            let start = input.byte;
            if !input.next_line()? {
                anyhow::bail!("{} is empty: it has no JSON object", path.display());
            }
            if !input.text.trim().is_empty() {
                break start;
            }
        };
        input.keys = keys_of(&input.text).with_context(|| {
            format!("{} line {}: not a JSON object", path.display(), input.line)
        })?;
        let mut mapping = match &options.mapping {
            Some(mapping) => Mapping::load(mapping)?,
            None => Mapping::default(),
        };
        mapping.ignore.extend(options.ignore.iter().cloned());
        let names = input.keys.iter().map(|k| header::clean_name(k)).collect();
        let declared = options.custom_fields.as_deref();
        input.columns =
            header::resolve_declared(names, &mapping, options.user_column.as_deref(), declared)
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        // The first object is a row too: read again from where it starts.
        input.seek_to(first, 0)?;
        Ok(input)
    }

    /// Reads the next line into `text`; false at the end.
    fn next_line(&mut self) -> anyhow::Result<bool> {
        self.text.clear();
        let n = self
            .lines
            .read_line(&mut self.text)
            .context("cannot read the input (JSON Lines must be UTF-8)")?;
        self.line += 1;
        self.byte += n as u64;
        Ok(n > 0)
    }

    fn seek_to(&mut self, byte: u64, lines_before: u64) -> anyhow::Result<()> {
        self.lines
            .seek(SeekFrom::Start(byte))
            .context("cannot seek in the input")?;
        self.byte = byte;
        self.line = lines_before;
        Ok(())
    }
}

impl RecordSource for JsonlInput {
    fn columns(&self) -> &Columns {
        &self.columns
    }

    fn read(&mut self, record: &mut ByteRecord) -> anyhow::Result<Option<u64>> {
        loop {
            let start = self.byte;
            if !self.next_line()? {
                return Ok(None);
            }
            let text = self.text.trim();
            if text.is_empty() {
                continue;
            }
            record.clear();
            match serde_json::from_str::<serde_json::Map<String, Value>>(text) {
                Ok(object) => {
                    for key in &self.keys {
                        record.push_field(cell(object.get(key)).as_bytes());
                    }
                    for (key, value) in &object {
                        if !self.keys.contains(key) {
                            record.push_field(cell(Some(value)).as_bytes());
                        }
                    }
                }
                // Kept whole, as read, so the failure CSV shows the line.
                Err(_) => record.push_field(text.as_bytes()),
            }
            let mut position = csv::Position::new();
            position.set_byte(start).set_line(self.line);
            record.set_position(Some(position));
            return Ok(Some(self.line));
        }
    }

    fn seek_past(&mut self, pos: RowPos) -> anyhow::Result<()> {
        self.seek_to(pos.byte, pos.line - 1)?;
        self.next_line()?;
        Ok(())
    }
}

/// A value as the cell of its column.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// The keys of a JSON object, in the order written.
fn keys_of(text: &str) -> anyhow::Result<Vec<String>> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    Ok(serde_json::Deserializer::from_str(text.trim()).deserialize_map(Keys)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::rows::Rows;

    fn rows_of(text: &str) -> (Vec<String>, Vec<(u64, Vec<String>)>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.jsonl");
        std::fs::write(&path, text).unwrap();
        let options = InputOptions {
            path,
            delimiter: b',',
            ..InputOptions::default()
        };
        let mut rows = Rows::open(&options).unwrap();
        let names = rows.columns().names.clone();
        let mut out = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            let cells = row
                .record
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            out.push((row.pos.line, cells));
        }
        (names, out)
    }

    #[test]
    fn objects_become_rows_under_the_first_objects_keys() {
        let (names, rows) = rows_of(
            "{\"UserID\":\"u1\",\"Nick\":\"Ann\",\"Level\":7}\n\n\
             {\"Level\":null,\"UserID\":\"u2\",\"Nick\":\"Bo \\\"b\\\"\"}\n\
             {\"UserID\":\"u3\",\"Extra\":true}\n\
             not json\n",
        );
        assert_eq!(names, ["UserID", "Nick", "Level"]);
        assert_eq!(
            rows,
            [
                (1, vec!["u1".into(), "Ann".into(), "7".into()]),
                (3, vec!["u2".into(), "Bo \"b\"".into(), "".into()]),
                (4, vec!["u3".into(), "".into(), "".into(), "true".into()]),
                (5, vec!["not json".into()]),
            ]
        );
    }

    #[test]
    fn a_resume_seeks_past_a_row_by_its_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.jsonl");
        std::fs::write(
            &path,
            "{\"UserID\":\"a\"}\n\n{\"UserID\":\"b\"}\n{\"UserID\":\"c\"}\n",
        )
        .unwrap();
        let options = InputOptions {
            path,
            ..InputOptions::default()
        };
        let mut rows = Rows::open(&options).unwrap();
        rows.next_row().unwrap();
        let second = rows.next_row().unwrap().unwrap().pos;
        assert_eq!((second.index, second.line), (1, 3));
        let mut again = Rows::open(&options).unwrap();
        again.seek_past(second).unwrap();
        let third = again.next_row().unwrap().unwrap();
        assert_eq!((third.pos.index, third.pos.line), (2, 4));
        assert_eq!(&third.record[0], b"c");
    }
}
