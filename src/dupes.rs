//! Duplicate UserIDs in constant memory: a fixed-size blocked Bloom filter marks candidates in
//! one pass, and an exact count over the candidates confirms them.
//!
//! Keeping every UserID in a set would make memory grow with the file; the filter is 8 MiB at
//! any size, and only its rare false positives and the true duplicates are held exactly.

use std::collections::{HashMap, HashSet};

use xxhash_rust::xxh3::xxh3_128;

const BLOCK_WORDS: usize = 8; // 512 bits: one cache line, so each lookup costs one miss
const BLOCKS: usize = (8 << 20) / (BLOCK_WORDS * 8);
const PROBES: u32 = 6;
/// Candidates kept exactly; beyond this the report says "at least".
const MAX_CANDIDATES: usize = 500_000;

/// Finds UserIDs that occur more than once.
pub struct DuplicateFinder {
    bits: Vec<[u64; BLOCK_WORDS]>,
    /// UserIDs the filter reported as probably seen before.
    candidates: HashSet<Box<str>>,
    overflowed: bool,
}

impl Default for DuplicateFinder {
    fn default() -> Self {
        DuplicateFinder {
            bits: vec![[0; BLOCK_WORDS]; BLOCKS],
            candidates: HashSet::new(),
            overflowed: false,
        }
    }
}

/// What the duplicate check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Duplicates {
    /// Users that appear in more than one row.
    pub users: u64,
    /// Rows beyond the first for those users.
    pub extra_rows: u64,
    /// A few examples, most frequent first: (UserID, rows).
    pub examples: Vec<(String, u64)>,
    /// True if there were too many candidates to track exactly: the counts are lower bounds.
    pub lower_bound: bool,
}

impl DuplicateFinder {
    /// Notes one row's UserID.
    pub fn observe(&mut self, user_id: &str) {
        if self.candidates.contains(user_id) {
            return;
        }
        let hash = xxh3_128(user_id.as_bytes());
        let block = &mut self.bits[(hash as u64 % BLOCKS as u64) as usize];
        let mut probes = (hash >> 64) as u64;
        let mut seen = true;
        for _ in 0..PROBES {
            let bit = (probes & 511) as usize;
            probes >>= 9;
            let (word, mask) = (bit / 64, 1u64 << (bit % 64));
            if block[word] & mask == 0 {
                seen = false;
                block[word] |= mask;
            }
        }
        if seen {
            if self.candidates.len() < MAX_CANDIDATES {
                // The filter says "probably seen": the first occurrence went uncounted, so the
                // exact tally is taken by a recount over the whole file.
                self.candidates.insert(user_id.into());
            } else {
                self.overflowed = true;
            }
        }
    }

    /// True if no candidate needs confirming.
    pub fn is_clear(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Starts the exact recount; feed it every row's UserID again, then call `finish`.
    pub fn into_recount(self) -> Recount {
        Recount {
            exact: self.candidates.into_iter().map(|k| (k, 0)).collect(),
            lower_bound: self.overflowed,
        }
    }
}

/// The second, exact pass over the candidates.
pub struct Recount {
    exact: HashMap<Box<str>, u64>,
    lower_bound: bool,
}

impl Recount {
    pub fn observe(&mut self, user_id: &str) {
        if let Some(count) = self.exact.get_mut(user_id) {
            *count += 1;
        }
    }

    /// Every UserID seen more than once.
    pub fn repeated_users(self) -> HashSet<String> {
        self.exact
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k.into_string())
            .collect()
    }

    /// The report and the repeated users together.
    pub fn finish_with_users(self) -> (Duplicates, HashSet<String>) {
        let users = self
            .exact
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k.to_string())
            .collect();
        (self.finish(), users)
    }

    pub fn finish(self) -> Duplicates {
        let mut repeated: Vec<(String, u64)> = self
            .exact
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, n)| (k.into_string(), n))
            .collect();
        repeated.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Duplicates {
            users: repeated.len() as u64,
            extra_rows: repeated.iter().map(|(_, n)| n - 1).sum(),
            examples: repeated.into_iter().take(5).collect(),
            lower_bound: self.lower_bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exact_duplicates_among_many_unique_ids() {
        let ids: Vec<String> = (0..200_000)
            .map(|i| format!("user{i}"))
            .chain([
                "user7".to_string(),
                "user7".to_string(),
                "user42".to_string(),
            ])
            .collect();
        let mut finder = DuplicateFinder::default();
        for id in &ids {
            finder.observe(id);
        }
        let mut recount = finder.into_recount();
        ids.iter().for_each(|id| recount.observe(id));
        let dupes = recount.finish();
        assert_eq!(dupes.users, 2);
        assert_eq!(dupes.extra_rows, 3);
        assert_eq!(dupes.examples[0], ("user7".to_string(), 3));
        assert_eq!(dupes.examples[1], ("user42".to_string(), 2));
    }

    #[test]
    fn no_duplicates_means_nothing_reported() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
        let mut finder = DuplicateFinder::default();
        ids.iter().for_each(|id| finder.observe(id));
        assert!(
            finder.is_clear() || {
                let mut recount = finder.into_recount();
                ids.iter().for_each(|id| recount.observe(id));
                recount.finish() == Duplicates::default()
            }
        );
    }
}
