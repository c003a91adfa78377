//! Any bytes → CSV reader → header resolution → request bodies.
//!
//! Run from the crate root:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz csv_to_requests -- -max_total_time=300 -jobs=1`
//!
//! Invariants checked on every input:
//! - reading, header resolution and mapping never panic (errors are fine);
//! - a `Ready` body is valid JSON whose `From_Account` is the row's UserID and whose
//!   `ProfileItem` array has `items` entries, each with a string `Tag` and a `Value`;
//! - a `Skipped` or `Invalid` verdict leaves the body empty, and `Invalid` names at least one
//!   violation;
//! - the header names the reader resolved also resolve through `header::resolve` directly, and
//!   naming any one of them as the user column never panics.

#![no_main]

use csv::ByteRecord;
use libfuzzer_sys::fuzz_target;
use profile_import::header::{self, Mapping};
use profile_import::input::{CsvInput, InputOptions};
use profile_import::row::{RowMapper, Verdict};

fuzz_target!(|data: &[u8]| {
    let options = InputOptions {
        path: "fuzz.csv".into(),
        delimiter: b',',
        user_column: None,
        mapping: None,
    };
    let Ok(mut input) = CsvInput::from_bytes(data.to_vec(), &options) else {
        return;
    };

    // Header resolution: the resolved names resolve again to the same roles, and any column
    // named as the user column resolves or fails without panicking.
    let names = input.columns.names.clone();
    let again = header::resolve(names.clone(), &Mapping::default(), None)
        .expect("resolved header names resolve again");
    assert_eq!(again.roles, input.columns.roles);
    assert_eq!(again.user_index, input.columns.user_index);
    for name in &names {
        let _ = header::resolve(names.clone(), &Mapping::default(), Some(name));
        let _ = header::parse_tag(name);
    }

    let mapper = RowMapper::new(input.columns.clone(), Default::default());
    let mut record = ByteRecord::new();
    let mut body = Vec::new();
    let mut last_line = 0;
    while let Ok(Some(line)) = input.read(&mut record) {
        assert!(line > last_line, "line {line} after line {last_line}");
        last_line = line;
        match mapper.map(&record, &mut body) {
            Verdict::Ready { user_id, items } => {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|err| {
                    panic!(
                        "body is not JSON ({err}): {}",
                        String::from_utf8_lossy(&body)
                    )
                });
                assert_eq!(json["From_Account"].as_str(), Some(user_id));
                let list = json["ProfileItem"].as_array().expect("ProfileItem array");
                assert_eq!(list.len(), items);
                assert!(items > 0);
                for item in list {
                    assert!(item["Tag"].is_string(), "{item}");
                    assert!(
                        item["Value"].is_string() || item["Value"].is_u64(),
                        "{item}"
                    );
                }
            }
            Verdict::Skipped { .. } => assert!(body.is_empty()),
            Verdict::Invalid(violations) => {
                assert!(!violations.is_empty());
                assert!(body.is_empty());
            }
        }
    }
});
