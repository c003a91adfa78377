//! The rule for a user with several rows, in one place: the user's valid rows merge column by
//! column in file order, each profile column taking the cell of the last row that sends it.
//! The merged record therefore sets exactly what applying the rows one by one would leave in
//! Chat (`--empty clear` included: there every row sends every column), and it is sent once.
//!
//! The merge keeps raw cells, not values, so the merged record maps, validates, hashes and is
//! written to the failure CSV like any record read from the file.

use csv::ByteRecord;

use crate::input::row::RowMapper;

/// A user's cells so far: for each column, the cell of the last row that sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedCells {
    /// Indexed by column; `None` where no row sent the column yet.
    cells: Vec<Option<Box<[u8]>>>,
}

impl MergedCells {
    /// Lays a valid record's sent cells over what earlier rows sent.
    pub fn add(&mut self, mapper: &RowMapper, record: &ByteRecord) {
        for index in mapper.sent_columns(record) {
            let cell = record.get(index).unwrap_or_default();
            self.set(index, cell.into());
        }
    }

    /// Lays what a later part of the file sent over this part's cells (merging is
    /// associative, so halves of a file merge on their own and then together).
    pub fn then(&mut self, later: MergedCells) {
        for (index, cell) in later.cells.into_iter().enumerate() {
            if let Some(cell) = cell {
                self.set(index, cell);
            }
        }
    }

    fn set(&mut self, index: usize, cell: Box<[u8]>) {
        if self.cells.len() <= index {
            self.cells.resize(index + 1, None);
        }
        self.cells[index] = Some(cell);
    }

    /// The user's merged record, built on `last` (the user's last valid row, which gives the
    /// cells of columns that set no tag, such as ignored ones): each profile column holds the
    /// merged cell, or nothing where no row sent it. An earlier failure CSV's `_superseded`
    /// cell then names exactly the columns no row sent, so even `--empty clear` leaves them.
    pub fn record(&self, mapper: &RowMapper, last: &ByteRecord) -> ByteRecord {
        let columns = mapper.columns();
        let mut unsent = Vec::new();
        let mut cells: Vec<Vec<u8>> = last.iter().map(<[u8]>::to_vec).collect();
        for (index, _) in columns.fields() {
            let merged = self.cells.get(index).and_then(Option::as_deref);
            match (merged, cells.get_mut(index)) {
                (Some(merged), Some(cell)) => *cell = merged.to_vec(),
                (None, Some(cell)) => {
                    cell.clear();
                    unsent.push(columns.names[index].as_str());
                }
                _ => {}
            }
        }
        if let Some(cell) = columns.superseded_index().and_then(|i| cells.get_mut(i)) {
            *cell = if unsent.is_empty() {
                Vec::new()
            } else {
                serde_json::to_vec(&unsent).unwrap_or_default()
            };
        }
        let mut record = ByteRecord::from(cells);
        record.set_position(last.position().cloned());
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::header::{clean_name, resolve, Mapping};
    use crate::input::profile::EmptyPolicy;
    use crate::input::row::{RowRules, Verdict};

    fn mapper(header: &[&str], empty: EmptyPolicy) -> RowMapper {
        let names = header.iter().map(|s| clean_name(s)).collect();
        let rules = RowRules {
            empty,
            ..RowRules::default()
        };
        let mapping = Mapping {
            ignore: vec!["email".into()],
            ..Mapping::default()
        };
        RowMapper::new(resolve(names, &mapping, None).unwrap(), rules)
    }

    fn body(mapper: &RowMapper, record: &ByteRecord) -> String {
        let mut body = Vec::new();
        assert!(matches!(
            mapper.map(record, &mut body),
            Verdict::Ready { .. }
        ));
        String::from_utf8(body).unwrap()
    }

    fn merged(mapper: &RowMapper, rows: &[&[&str]]) -> ByteRecord {
        let records: Vec<ByteRecord> = rows.iter().map(|r| ByteRecord::from(r.to_vec())).collect();
        let mut cells = MergedCells::default();
        for record in &records {
            cells.add(mapper, record);
        }
        cells.record(mapper, records.last().unwrap())
    }

    #[test]
    fn each_column_takes_the_last_row_that_sends_it() {
        let m = mapper(&["UserID", "Nick", "Level", "email"], EmptyPolicy::Skip);
        let record = merged(
            &m,
            &[&["dup1", "FirstNick", "", "a@x"], &["dup1", "", "7", "b@x"]],
        );
        assert_eq!(
            record,
            ByteRecord::from(vec!["dup1", "FirstNick", "7", "b@x"])
        );
        assert_eq!(
            body(&m, &record),
            r#"{"From_Account":"dup1","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"FirstNick"},{"Tag":"Tag_Profile_IM_Level","Value":7}]}"#
        );
    }

    #[test]
    fn under_empty_clear_the_last_row_sends_every_column() {
        let m = mapper(&["UserID", "Nick", "Level"], EmptyPolicy::Clear);
        let record = merged(&m, &[&["u", "Ann", "3"], &["u", "", "5"]]);
        assert_eq!(record, ByteRecord::from(vec!["u", "", "5"]));
    }

    #[test]
    fn halves_merged_apart_then_together_equal_one_merge() {
        let m = mapper(&["UserID", "Nick", "Level", "Gender"], EmptyPolicy::Skip);
        let rows: Vec<ByteRecord> = [
            ["u", "A", "", "m"],
            ["u", "", "2", ""],
            ["u", "B", "", ""],
            ["u", "", "", "f"],
        ]
        .iter()
        .map(|r| ByteRecord::from(r.to_vec()))
        .collect();
        let mut whole = MergedCells::default();
        rows.iter().for_each(|r| whole.add(&m, r));
        for cut in 0..=rows.len() {
            let (mut first, mut second) = (MergedCells::default(), MergedCells::default());
            rows[..cut].iter().for_each(|r| first.add(&m, r));
            rows[cut..].iter().for_each(|r| second.add(&m, r));
            first.then(second);
            assert_eq!(
                first.record(&m, &rows[3]),
                whole.record(&m, &rows[3]),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn cells_an_earlier_failure_csv_marks_superseded_are_not_merged_or_sent() {
        let m = mapper(
            &["UserID", "Nick", "Level", "_superseded", "_line"],
            EmptyPolicy::Clear,
        );
        let record = merged(
            &m,
            &[
                &["u", "Old", "abc", r#"["Nick","Level"]"#, "2"],
                &["u", "", "4", r#"["Nick"]"#, "3"],
            ],
        );
        assert_eq!(
            record,
            ByteRecord::from(vec!["u", "", "4", r#"["Nick"]"#, "3"])
        );
        assert_eq!(
            body(&m, &record),
            r#"{"From_Account":"u","ProfileItem":[{"Tag":"Tag_Profile_IM_Level","Value":4}]}"#
        );
    }
}
