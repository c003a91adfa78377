//! Bench helpers: the binaries built beside a bench, and a simulator seeded with a file's values
//! as an import of it would have left them (mapped by the importer's own row code, no request).

use std::path::{Path, PathBuf};

use profile_import::input::reader::InputOptions;
use profile_import::input::row::{RowMapper, RowRules, Verdict};
use profile_import::input::rows::Rows;
use profile_import::sim::SimHandle;

pub type Error = Box<dyn std::error::Error>;

/// A binary built beside the running bench (`target/release/…`).
pub fn sibling(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no exe dir")?;
    let candidate = dir.join(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    Ok(dir.parent().ok_or("no target dir")?.join(name))
}

/// Seeds the simulator with the values of `csv`, as an import of it would have left them;
/// returns the users seeded.
pub fn seed(sim: &SimHandle, csv: &Path) -> Result<u64, Error> {
    let options = InputOptions {
        path: csv.to_path_buf(),
        delimiter: b',',
        user_column: None,
        mapping: None,
        ignore: Vec::new(),
        custom_fields: None,
    };
    let mut rows = Rows::open(&options)?;
    let mapper = RowMapper::new(rows.columns().clone(), RowRules::default());
    let mut body = Vec::new();
    let mut users = 0;
    while let Some(row) = rows.next_row()? {
        if let Verdict::Ready { .. } = mapper.map(row.record, &mut body) {
            let parsed: serde_json::Value = serde_json::from_slice(&body)?;
            let user = parsed["From_Account"].as_str().ok_or("no From_Account")?;
            let items = parsed["ProfileItem"].as_array().ok_or("no ProfileItem")?;
            let values = items
                .iter()
                .filter_map(|item| Some((item["Tag"].as_str()?, item["Value"].clone())));
            sim.write_profile(user, values);
            users += 1;
        }
    }
    Ok(users)
}
