//! Stray quotes: a quoted field that spans lines which look like rows of this file. A quote
//! typed by mistake (`u2,"Bob,2`) that some later line happens to close (`u4,Dan",4`) folds
//! every line between into one field, and csv reads the result as one valid row: the swallowed
//! users are never sent and the row's cell carries their data. The CSV reader asks this module
//! about the records that hold a line break inside a field, and only about those, so a file
//! without multi-line cells pays nothing.
//!
//! The rule: a line inside such a record, after its first, looks like a row when it holds the
//! header's number of delimiters, or starts with a UserID-like token (1-32 letters, digits, `_`
//! or `-`) followed by a delimiter.

use csv::ByteRecord;

/// The longest UserID Chat accepts, in bytes: a longer first token does not look like one.
const USER_ID_MAX_BYTES: usize = 32;

/// Adds to `out` the lines of `record` after its first (which starts on `first_line`) that
/// look like rows of a file with `columns` columns split by `delimiter`.
///
/// The record's raw bytes are gone (csv unquotes its fields), so each physical line is put back
/// together from the fields: a field's text after a line break, its closing quote, then the
/// fields that follow it on that line, joined by the delimiter. Other quotes are lost that way,
/// and delimiters kept, which is all the rule looks at.
pub fn swallowed_rows(
    record: &ByteRecord,
    first_line: u64,
    delimiter: u8,
    columns: usize,
    out: &mut Vec<u64>,
) {
    let mut line = first_line;
    // The physical line being put together, once past the record's first line.
    let mut current: Option<Vec<u8>> = None;
    for (index, field) in record.iter().enumerate() {
        if index > 0 {
            if let Some(text) = &mut current {
                text.push(delimiter);
            }
        }
        let mut pieces = split_lines(field);
        if let (Some(text), Some(first)) = (&mut current, pieces.next()) {
            text.extend_from_slice(first);
        }
        let mut spans_lines = false;
        for piece in pieces {
            spans_lines = true;
            if let Some(text) = current.take() {
                if looks_like_row(&text, delimiter, columns) {
                    out.push(line);
                }
            }
            line += 1;
            current = Some(piece.to_vec());
        }
        // A field with a line break was quoted: its closing quote follows its text, so the
        // field's last word is not taken for a UserID followed by the next field's delimiter.
        if let (true, Some(text)) = (spans_lines, &mut current) {
            text.push(b'"');
        }
    }
    if let Some(text) = current {
        if looks_like_row(&text, delimiter, columns) {
            out.push(line);
        }
    }
}

/// The text between line breaks (`\r\n`, `\n` or a lone `\r`, as the reader counts lines): the
/// first piece is before the first break.
fn split_lines(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(field);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr2(b'\r', b'\n', text) {
            Some(at) => {
                let after = match (text[at], text.get(at + 1)) {
                    (b'\r', Some(b'\n')) => at + 2,
                    _ => at + 1,
                };
                rest = Some(&text[after..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// The header's number of delimiters, or a UserID-like token and a delimiter at the start.
fn looks_like_row(line: &[u8], delimiter: u8, columns: usize) -> bool {
    let delimiters = memchr::memchr_iter(delimiter, line).count();
    if delimiters + 1 == columns {
        return true;
    }
    let token = line
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        .count();
    (1..=USER_ID_MAX_BYTES).contains(&token) && line.get(token) == Some(&delimiter)
}

/// Line numbers as runs: `4-5`, `4, 7, 9-12`.
pub fn describe_lines(lines: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &line in lines {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == line => *last = line,
            _ => runs.push((line, line)),
        }
    }
    runs.iter()
        .map(|&(first, last)| match first == last {
            true => first.to_string(),
            false => format!("{first}-{last}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a row whose quoted field swallowed `lines` is told: where the field runs, which lines
/// look like rows, and what to do.
pub fn explain(line: u64, lines: &[u64]) -> String {
    let last = lines.last().copied().unwrap_or(line);
    format!(
        "a quoted field opened on line {line} runs to line {last} or beyond, and line(s) {} \
         inside it look like rows of their own (the header's number of delimiters, or a \
         UserID and a delimiter at the start): a stray quote probably merged them into this \
         row; close the quote where the cell ends, or double it (\"\") if it belongs to the \
         cell",
        describe_lines(lines)
    )
}

/// Rows warned about one by one; the rest are counted in one line.
const SHOWN: u64 = 20;

/// The warnings about rows whose quoted field swallowed lines that look like rows (without
/// `--strict-quotes`, which makes them invalid rows instead), in file order.
#[derive(Debug, Default)]
pub struct SwallowedWarnings {
    rows: u64,
}

impl SwallowedWarnings {
    /// Warns about the row starting on `line` (the first [`SHOWN`] one by one).
    pub fn note(&mut self, line: u64, lines: &[u64]) {
        self.rows += 1;
        if self.rows <= SHOWN {
            tracing::warn!(
                line,
                "line {line}: {}; it is read as one row (--strict-quotes rejects such rows)",
                explain(line, lines)
            );
        } else if self.rows == SHOWN + 1 {
            tracing::warn!(
                "more rows whose quoted field swallows lines that look like rows follow: not \
                 logged one by one"
            );
        }
    }

    /// Rows warned about so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swallowed(fields: &[&str], first_line: u64, columns: usize) -> Vec<u64> {
        let record = ByteRecord::from(fields.to_vec());
        let mut out = Vec::new();
        swallowed_rows(&record, first_line, b',', columns, &mut out);
        out
    }

    #[test]
    fn lines_that_look_like_rows_are_found_by_their_line_numbers() {
        // `u2,"Bob,2` / `u3,Carl,3` / `u4,Dan",4` read as one record from line 3.
        assert_eq!(
            swallowed(&["u2", "Bob,2\nu3,Carl,3\nu4,Dan", "4"], 3, 3),
            [4, 5]
        );
        // A CRLF file counts a break once.
        assert_eq!(
            swallowed(&["u2", "Bob,2\r\nu3,Carl,3\r\nu4,Dan", "4"], 3, 3),
            [4, 5]
        );
        // A UserID-like token and a delimiter at the start is enough.
        assert_eq!(swallowed(&["u2", "a\nu3,x", "1"], 7, 5), [8]);
    }

    #[test]
    fn ordinary_multi_line_cells_are_left_alone() {
        assert!(swallowed(&["u1", "Line one\nLine two\n\nend", "1"], 2, 3).is_empty());
        assert!(swallowed(&["u1", "an address\n12 Main St.", "1"], 2, 3).is_empty());
        // A token longer than any UserID is not one.
        let long = format!("x\n{},y", "a".repeat(33));
        assert!(swallowed(&["u1", &long, "1"], 2, 5).is_empty());
    }

    #[test]
    fn line_runs_are_described_briefly() {
        assert_eq!(describe_lines(&[4, 5]), "4-5");
        assert_eq!(describe_lines(&[4, 7, 9, 10, 11, 12]), "4, 7, 9-12");
        assert_eq!(describe_lines(&[6]), "6");
    }
}
