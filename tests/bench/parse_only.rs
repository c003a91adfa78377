//! Benchmark baseline: parse a CSV with the csv crate's fastest loop (a reused ByteRecord) and
//! nothing else, printing rows and rows/s.
//!
//! `cargo run --release --example parse_only -- FILE.csv`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: parse_only FILE.csv")?;
    let started = Instant::now();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_path(&path)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    let mut bytes = 0usize;
    while reader.read_byte_record(&mut record)? {
        rows += 1;
        bytes += record.as_slice().len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rows {rows} field_bytes {bytes} seconds {secs:.3} rows_per_s {:.0}",
        rows as f64 / secs
    );
    Ok(())
}
