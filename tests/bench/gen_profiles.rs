//! Benchmark input generator: a deterministic profile CSV of N rows with 8 profile columns.
//!
//! `cargo run --release --example gen_profiles -- ROWS OUT.csv [CHANGED_PERCENT SEED]`
//! The same ROWS and SEED always give the same file; CHANGED_PERCENT rewrites that share of
//! Nick values (for change-only sync benchmarks).

use std::io::{BufWriter, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: gen_profiles ROWS OUT.csv [CHANGED_PERCENT SEED]".into());
    }
    let rows: u64 = args[1].parse()?;
    let changed: u64 = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let seed: u64 = args.get(4).map_or(Ok(1), |s| s.parse())?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&args[2])?);
    writeln!(
        out,
        "UserID,Nick,Gender,BirthDay,Location,SelfSignature,Level,Role,Custom_Hobby"
    )?;
    let genders = ["male", "female", "Gender_Type_Unknown"];
    let hobbies = ["chess", "摄影", "climbing", "🎸 guitar", "reading"];
    let cities = ["Shenzhen", "东京", "Berlin", "Singapore"];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut change_state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    for i in 0..rows {
        let r = next();
        change_state ^= change_state << 13;
        change_state ^= change_state >> 7;
        change_state ^= change_state << 17;
        let nick_version = if change_state % 100 < changed {
            seed
        } else {
            0
        };
        writeln!(
            out,
            "user_{i:08},Nick {i} v{nick_version},{},{}-{:02}-{:02},{},\"Hello, I am user {i}\",{},{},{}",
            genders[(r % 3) as usize],
            1950 + r % 60,
            1 + (r >> 8) % 12,
            1 + (r >> 16) % 28,
            cities[((r >> 24) % 4) as usize],
            (r >> 32) % 100,
            (r >> 40) % 8,
            hobbies[((r >> 48) % 5) as usize],
        )?;
    }
    out.flush()?;
    Ok(())
}
