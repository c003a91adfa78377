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
pub const MAX_CANDIDATES: usize = 500_000;

/// Finds UserIDs that occur more than once.
pub struct DuplicateFinder {
    bits: Vec<[u64; BLOCK_WORDS]>,
    /// UserIDs the filter reported as probably seen before.
    candidates: HashSet<Box<str>, FastHash>,
    overflowed: bool,
    /// What it was fed can no longer be trusted (see `discard`).
    discarded: bool,
}

impl Default for DuplicateFinder {
    fn default() -> Self {
        // Written, not calloc'd: a lazily zeroed page is first mapped read-only to the shared
        // zero page, and replacing it on the first write makes the kernel flush TLBs on the
        // other cores, one interrupt per page. In a VM each of those interrupts is costly.
        let mut bits = Vec::with_capacity(BLOCKS);
        bits.resize(BLOCKS, [std::hint::black_box(0); BLOCK_WORDS]);
        DuplicateFinder {
            bits,
            candidates: HashSet::default(),
            overflowed: false,
            discarded: false,
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
        self.observe_many(&[user_id]);
    }

    /// Notes many rows' UserIDs, in order. A group is hashed first and its blocks touched
    /// after, so the CPU waits for several of the filter's cache misses at once instead of
    /// one after another (the filter is larger than the core's caches).
    pub fn observe_many(&mut self, user_ids: &[&str]) {
        const GROUP: usize = 32;
        if self.discarded {
            return;
        }
        for group in user_ids.chunks(GROUP) {
            let mut hashes = [0u128; GROUP];
            for (hash, user_id) in hashes.iter_mut().zip(group) {
                *hash = xxh3_128(user_id.as_bytes());
            }
            // Independent loads, so their misses overlap; the updates below then hit the cache.
            let touched = hashes[..group.len()]
                .iter()
                .fold(0, |acc, &hash| acc ^ self.bits[block_of(hash)][0]);
            std::hint::black_box(touched);
            for (&hash, &user_id) in hashes.iter().zip(group) {
                if !self.candidates.is_empty() && self.candidates.contains(user_id) {
                    continue;
                }
                if self.test_and_set(hash) {
                    self.note_candidate(user_id);
                }
            }
        }
    }

    /// Sets the hash's bits; true if all of them were set already ("probably seen").
    fn test_and_set(&mut self, hash: u128) -> bool {
        let block = &mut self.bits[block_of(hash)];
        let mut probes = (hash >> 64) as u64;
        let mut seen = true;
        // Branch-free, so a mispredicted bit test cannot stall the other lookups in flight.
        for _ in 0..PROBES {
            let bit = (probes & 511) as usize;
            probes >>= 9;
            let (word, mask) = (bit / 64, 1u64 << (bit % 64));
            seen &= block[word] & mask != 0;
            block[word] |= mask;
        }
        seen
    }

    fn note_candidate(&mut self, user_id: &str) {
        if self.candidates.len() < MAX_CANDIDATES {
            // The filter says "probably seen": the first occurrence went uncounted, so the
            // exact tally is taken by a recount over the whole file.
            self.candidates.insert(user_id.into());
        } else {
            self.overflowed = true;
        }
    }

    /// Forgets the candidates and ignores every UserID from now on: some of what it was fed
    /// was misread (a dry run's cut that did not hold), so the check must start over.
    pub fn discard(&mut self) {
        self.discarded = true;
        self.candidates = HashSet::default();
    }

    pub fn is_discarded(&self) -> bool {
        self.discarded
    }

    /// True if the filter has reported this UserID as probably seen before.
    pub fn is_candidate(&self, user_id: &str) -> bool {
        !self.candidates.is_empty() && self.candidates.contains(user_id)
    }

    /// True if there were more candidates than it keeps exactly.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// True if no candidate needs confirming.
    pub fn is_clear(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Starts the exact recount; feed it every row's UserID again, then call `finish`.
    pub fn into_recount(self) -> Recount {
        Recount {
            counts: vec![0; self.candidates.len()],
            slots: self
                .candidates
                .into_iter()
                .enumerate()
                .map(|(slot, user)| (user, slot))
                .collect(),
            lower_bound: self.overflowed,
        }
    }
}

/// The filter block a hash's bits live in.
fn block_of(hash: u128) -> usize {
    (hash as u64 % BLOCKS as u64) as usize
}

/// A fast, seeded hasher for the candidate sets: every row of the recount looks one up.
type FastHash = foldhash::fast::RandomState;

/// The second, exact pass over the candidates.
///
/// Each candidate has a slot; counts live apart from the keys, so parts of the file can be
/// counted at once into tallies of their own (`tally`, `slot_of`) and added up after.
pub struct Recount {
    slots: HashMap<Box<str>, usize, FastHash>,
    counts: Vec<u64>,
    lower_bound: bool,
}

impl Recount {
    pub fn observe(&mut self, user_id: &str) {
        if let Some(&slot) = self.slots.get(user_id) {
            self.counts[slot] += 1;
        }
    }

    /// An empty tally for one part of the file.
    pub fn tally(&self) -> Vec<u64> {
        vec![0; self.counts.len()]
    }

    /// The slot of `user_id`, if it is a candidate.
    pub fn slot_of(&self, user_id: &str) -> Option<usize> {
        self.slots.get(user_id).copied()
    }

    /// Adds one part's tally.
    pub fn add(&mut self, tally: &[u64]) {
        for (count, more) in self.counts.iter_mut().zip(tally) {
            *count += more;
        }
    }

    fn repeated(&self) -> impl Iterator<Item = (&str, u64)> {
        self.slots
            .iter()
            .map(|(user, &slot)| (&**user, self.counts[slot]))
            .filter(|&(_, n)| n > 1)
    }

    /// Every UserID seen more than once.
    pub fn repeated_users(self) -> HashSet<String> {
        self.repeated().map(|(user, _)| user.to_string()).collect()
    }

    pub fn finish(self) -> Duplicates {
        let mut repeated: Vec<(String, u64)> = self
            .repeated()
            .map(|(user, n)| (user.to_string(), n))
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
    fn batches_find_the_same_duplicates_across_group_edges() {
        let mut ids: Vec<String> = (0..1000).map(|i| format!("id{i}")).collect();
        // Repeats inside one group, across a group edge, and across batches.
        ids[15] = "id3".into();
        ids[17] = "id16".into();
        ids[999] = "id500".into();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut finder = DuplicateFinder::default();
        for batch in refs.chunks(300) {
            finder.observe_many(batch);
        }
        let mut recount = finder.into_recount();
        refs.iter().for_each(|id| recount.observe(id));
        let mut users: Vec<String> = recount.repeated_users().into_iter().collect();
        users.sort();
        assert_eq!(users, ["id16", "id3", "id500"]);
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
