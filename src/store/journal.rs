//! The resume journal: an append-only record of every row's final outcome, with periodic
//! low-water-mark checkpoints, so a crashed or interrupted import resumes where it stopped
//! without re-sending what Chat already accepted.
//!
//! Format (text, one entry per line, synced about once a second):
//! ```text
//! profile-import journal v1 size=<input bytes> xxh3=<input content hash>
//! r <index> <line> <byte> <ok|failed|invalid|skipped|unchanged|superseded> <code> [<found> <tags>]
//! c <index> <line> <byte>
//! done
//! ```
//! `r` is a final row: its record index, the line it starts on, and the byte where the CSV
//! reader began reading it; with `--changes-only`, also what the comparison with Chat found
//! (`in-chat|updated|not-an-account|not-compared`) and the tags Chat accepted for it, so a
//! resumed run's summary counts the earlier runs' comparisons. Versions before these two
//! fields read only up to `<code>`, so each version reads the other's journals. `c` says every record up to and including `index` is final, and
//! where that record begins, so a resume can seek past them instead of re-reading. `done` closes
//! a run in which every row became final: the journal stays as the run's record, and a new
//! run over different input simply starts fresh. A torn last line (a crash mid-write) is
//! ignored. Lines are written to the file as rows finish (so a killed process loses none) and
//! synced to disk about once a second (so a power cut loses at most that second).

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use xxhash_rust::xxh3::Xxh3;

use crate::input::source::RowPos;

const MAGIC: &str = "profile-import journal v1";

/// A row's final state, as journalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Ok,
    Failed,
    Invalid,
    Skipped,
    /// `--state`: Chat already holds exactly this row.
    Unchanged,
    /// `--state`: a later row for the same user replaces this one.
    Superseded,
}

impl Final {
    fn word(self) -> &'static str {
        match self {
            Final::Ok => "ok",
            Final::Failed => "failed",
            Final::Invalid => "invalid",
            Final::Skipped => "skipped",
            Final::Unchanged => "unchanged",
            Final::Superseded => "superseded",
        }
    }

    fn parse(word: &str) -> Option<Final> {
        Some(match word {
            "ok" => Final::Ok,
            "failed" => Final::Failed,
            "invalid" => Final::Invalid,
            "skipped" => Final::Skipped,
            "unchanged" => Final::Unchanged,
            "superseded" => Final::Superseded,
            _ => return None,
        })
    }
}

/// What `--changes-only` found for a row, journalled after its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Found {
    /// Chat held exactly this row: not sent.
    InChat,
    /// Chat held other values for some tags: only those were sent.
    Updated,
    /// Chat did not know the user: sent whole.
    NotAnAccount,
    /// The read failed for good: sent whole.
    NotCompared,
}

impl Found {
    fn word(self) -> &'static str {
        match self {
            Found::InChat => "in-chat",
            Found::Updated => "updated",
            Found::NotAnAccount => "not-an-account",
            Found::NotCompared => "not-compared",
        }
    }

    fn parse(word: &str) -> Option<Found> {
        Some(match word {
            "in-chat" => Found::InChat,
            "updated" => Found::Updated,
            "not-an-account" => Found::NotAnAccount,
            "not-compared" => Found::NotCompared,
            _ => return None,
        })
    }
}

/// A `--changes-only` row's comparison, as journalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    pub found: Found,
    /// The tags Chat accepted for the row (0 when it was not sent, or failed).
    pub tags_accepted: u32,
}

/// The input's identity: size and a content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub size: u64,
    pub hash: String,
}

impl Identity {
    /// Hashes the whole input (xxh3-128; a 1 GB file takes well under a second from cache).
    pub fn of(path: &Path) -> anyhow::Result<Identity> {
        let mut file =
            File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut hasher = Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Identity {
            size,
            hash: format!("{:032x}", hasher.digest128()),
        })
    }

    fn header(&self) -> String {
        format!("{MAGIC} size={} xxh3={}\n", self.size, self.hash)
    }

    fn parse_header(line: &str) -> Option<Identity> {
        let rest = line.strip_prefix(MAGIC)?.trim();
        let mut size = None;
        let mut hash = None;
        for part in rest.split_whitespace() {
            if let Some(v) = part.strip_prefix("size=") {
                size = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("xxh3=") {
                hash = Some(v.to_string());
            }
        }
        Some(Identity {
            size: size?,
            hash: hash?,
        })
    }
}

/// The default journal path: `users.csv` → `users.journal`, beside the input.
pub fn default_path(input: &Path) -> PathBuf {
    crate::fsutil::beside(input, ".journal")
}

/// What an earlier run left behind.
#[derive(Debug, Default)]
pub struct Resume {
    /// The last checkpoint: every record up to it is final.
    pub checkpoint: Option<RowPos>,
    /// Final rows after the checkpoint (record indexes) with their positions.
    pub finals_after: BTreeMap<u64, RowPos>,
    /// Final rows of earlier runs by state, and failed/invalid rows by code.
    pub counts: BTreeMap<Final, u64>,
    pub codes: BTreeMap<(Final, String), u64>,
    /// `--changes-only`: earlier runs' final rows by what the comparison found, and the tags
    /// Chat accepted for them.
    pub found: BTreeMap<Found, u64>,
    pub found_tags: u64,
}

impl PartialOrd for Final {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Final {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.word().cmp(other.word())
    }
}

impl Resume {
    /// Record indexes at or below which nothing needs reading.
    pub fn is_final(&self, index: u64) -> bool {
        self.checkpoint.is_some_and(|c| index <= c.index) || self.finals_after.contains_key(&index)
    }
}

/// The input changed since the journal was written, and the run may not set it aside.
#[derive(Debug, thiserror::Error)]
#[error(
    "the input changed since the journal {journal} was written (size {old_size} → {new_size}, \
     content hash differs): resuming would skip the wrong rows. To start over and send every row, \
     run without --resume (or delete the journal); to resume by row position anyway, pass --force. \
     For an export regenerated each night, add --state PATH: a changed export then starts fresh \
     by itself and sends only what changed"
)]
pub struct InputChanged {
    pub journal: String,
    pub old_size: u64,
    pub new_size: u64,
}

/// How a run treats the journal it finds.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalPolicy {
    /// Continue an unfinished run (`--resume`); otherwise start over.
    pub resume: bool,
    /// Resume even if the input changed (`--force`).
    pub force: bool,
    /// A journal of an unfinished run over other input is set aside (renamed, not deleted)
    /// and the run starts fresh (`--state`: the state knows what Chat accepted).
    pub set_aside_changed: bool,
}

/// The journal a run continues from, following `policy`; `Ok(None)` to start fresh. Warns
/// when starting over leaves an unfinished run's rows to be sent again.
pub fn open_for_run(
    path: &Path,
    identity: &Identity,
    policy: JournalPolicy,
) -> anyhow::Result<Option<Resume>> {
    if !policy.resume {
        if unfinished(path) {
            tracing::warn!(
                "{} is the journal of an unfinished run: this run starts over from the first row \
                 and replaces it (pass --resume to continue that run instead)",
                path.display()
            );
        }
        return Ok(None);
    }
    match read(path, identity, policy.force) {
        Err(err) if policy.set_aside_changed && err.downcast_ref::<InputChanged>().is_some() => {
            let aside = crate::fsutil::set_aside(path)
                .with_context(|| format!("cannot set aside the journal {}", path.display()))?;
            tracing::warn!(
                "the input changed since the unfinished run of {}; its journal is set aside as {} \
                 and this run starts fresh (the state says what Chat already holds)",
                path.display(),
                aside.display()
            );
            Ok(None)
        }
        other => other,
    }
}

/// True if `path` is a journal whose run did not finish.
fn unfinished(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut header = String::new();
    let readable = BufReader::new(file).read_line(&mut header).is_ok();
    readable
        && Identity::parse_header(header.trim_end()).is_some()
        && !journal_is_complete(path).unwrap_or(true)
}

/// Reads an existing journal. `Ok(None)` if there is none.
/// Refuses one written for different input content unless `force` ([`InputChanged`]).
pub fn read(path: &Path, identity: &Identity, force: bool) -> anyhow::Result<Option<Resume>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot open journal {}", path.display()))
        }
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .with_context(|| format!("cannot read journal {}", path.display()))?;
    let Some(recorded) = Identity::parse_header(line.trim_end()) else {
        bail!(
            "{} is not a profile-import journal; remove it or pass --journal with another path",
            path.display()
        );
    };
    let complete = journal_is_complete(path)?;
    if &recorded != identity && complete {
        tracing::info!(
            "the journal {} belongs to a finished run over other input: starting a fresh run",
            path.display()
        );
        return Ok(None);
    }
    if &recorded != identity {
        if force {
            tracing::warn!(
                "the input changed since the journal {} was written; resuming anyway (--force): rows are matched by position",
                path.display()
            );
        } else {
            return Err(InputChanged {
                journal: path.display().to_string(),
                old_size: recorded.size,
                new_size: identity.size,
            }
            .into());
        }
    }
    let mut resume = Resume::default();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("cannot read journal {}", path.display()))?;
        if n == 0 || !line.ends_with('\n') {
            break; // the end, or a torn last line from a crash mid-write
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        match fields.first() {
            Some(&"r") => {
                let (Some(index), Some(line_no), Some(byte), Some(state)) = (
                    number(1),
                    number(2),
                    number(3),
                    fields.get(4).and_then(|w| Final::parse(w)),
                ) else {
                    continue;
                };
                *resume.counts.entry(state).or_default() += 1;
                if matches!(state, Final::Failed | Final::Invalid) {
                    let code = fields.get(5).unwrap_or(&"").to_string();
                    *resume.codes.entry((state, code)).or_default() += 1;
                }
                if let Some(found) = fields.get(6).and_then(|w| Found::parse(w)) {
                    *resume.found.entry(found).or_default() += 1;
                    resume.found_tags += number(7).unwrap_or(0);
                }
                if resume.checkpoint.is_none_or(|c| index > c.index) {
                    resume.finals_after.insert(
                        index,
                        RowPos {
                            index,
                            line: line_no,
                            byte,
                        },
                    );
                }
            }
            Some(&"c") => {
                if let (Some(index), Some(line_no), Some(byte)) = (number(1), number(2), number(3))
                {
                    resume.checkpoint = Some(RowPos {
                        index,
                        line: line_no,
                        byte,
                    });
                    resume.finals_after = resume.finals_after.split_off(&(index + 1));
                }
            }
            _ => {}
        }
    }
    Ok(Some(resume))
}

/// True if the journal ends with `done`.
fn journal_is_complete(path: &Path) -> anyhow::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    let tail_len = len.min(64);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(tail.ends_with(b"\ndone\n"))
}

/// Tracks the highest record index below which every record is final.
#[derive(Debug, Default)]
pub struct LowWater {
    /// The lowest record index not yet final.
    next: u64,
    /// Position of record `next - 1`.
    last: Option<RowPos>,
    /// Final records above `next`.
    above: BTreeMap<u64, RowPos>,
}

impl LowWater {
    pub fn starting_after(checkpoint: Option<RowPos>) -> LowWater {
        LowWater {
            next: checkpoint.map_or(0, |c| c.index + 1),
            last: checkpoint,
            above: BTreeMap::new(),
        }
    }

    pub fn mark(&mut self, pos: RowPos) {
        if pos.index < self.next {
            return;
        }
        self.above.insert(pos.index, pos);
        while let Some(pos) = self.above.remove(&self.next) {
            self.last = Some(pos);
            self.next += 1;
        }
    }

    /// The checkpoint: the last record of the final prefix.
    pub fn checkpoint(&self) -> Option<RowPos> {
        self.last
    }
}

/// Appends final outcomes.
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: String,
    low_water: LowWater,
    checkpointed: Option<u64>,
    /// Lines written since the last sync.
    unsynced: bool,
}

impl Journal {
    /// Starts a new journal for `identity` (truncating any old one).
    pub fn create(path: &Path, identity: &Identity) -> anyhow::Result<Journal> {
        let mut file = crate::fsutil::create_private(path)
            .with_context(|| format!("cannot create journal {}", path.display()))?;
        file.write_all(identity.header().as_bytes())
            .and_then(|_| file.sync_data())
            .with_context(|| format!("cannot write journal {}", path.display()))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            pending: String::new(),
            low_water: LowWater::default(),
            checkpointed: None,
            unsynced: false,
        })
    }

    /// Continues an existing journal after `resume`, dropping a torn last line first.
    pub fn append(path: &Path, resume: &Resume) -> anyhow::Result<Journal> {
        truncate_torn_tail(path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open journal {}", path.display()))?;
        let mut low_water = LowWater::starting_after(resume.checkpoint);
        for pos in resume.finals_after.values() {
            low_water.mark(*pos);
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            pending: String::new(),
            checkpointed: resume.checkpoint.map(|c| c.index),
            low_water,
            unsynced: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lowest record index not yet final: every record before it is.
    pub fn final_before(&self) -> u64 {
        self.low_water.next
    }

    /// Bytes noted but not yet handed to the operating system.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Notes a final row (written out at the next `sync`).
    pub fn record(&mut self, pos: RowPos, state: Final, code: &str) {
        self.record_compared(pos, state, code, None);
    }

    /// Notes a final row with its `--changes-only` comparison, if it had one.
    pub fn record_compared(
        &mut self,
        pos: RowPos,
        state: Final,
        code: &str,
        comparison: Option<Comparison>,
    ) {
        use std::fmt::Write as _;
        let _ = write!(
            self.pending,
            "r {} {} {} {} {}",
            pos.index,
            pos.line,
            pos.byte,
            state.word(),
            if code.is_empty() { "-" } else { code }
        );
        if let Some(Comparison {
            found,
            tags_accepted,
        }) = comparison
        {
            let _ = write!(self.pending, " {} {tags_accepted}", found.word());
        }
        self.pending.push('\n');
        self.low_water.mark(pos);
    }

    /// Hands pending lines to the operating system: they survive the process being killed.
    /// The caller writes the failure CSV out first, so a row is never journalled as failed
    /// before its failure record.
    pub fn write_out(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(self.pending.as_bytes())
            .with_context(|| format!("cannot write journal {}", self.path.display()))?;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Adds a checkpoint, writes everything out and syncs it to disk.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.low_water.checkpoint() {
            if self.checkpointed != Some(c.index) {
                use std::fmt::Write as _;
                let _ = writeln!(self.pending, "c {} {} {}", c.index, c.line, c.byte);
                self.checkpointed = Some(c.index);
            }
        }
        self.write_out()?;
        if self.unsynced {
            self.file
                .sync_data()
                .with_context(|| format!("cannot sync journal {}", self.path.display()))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Marks the run complete (every row final). The last checkpoint goes out first: `done`
    /// must be the journal's last line, whether or not the rows were synced before.
    pub fn complete(mut self) -> anyhow::Result<()> {
        self.sync()?;
        self.pending.push_str("done\n");
        self.sync()
    }
}

/// Cuts a journal back to its last complete line. Reads backwards from the end in small
/// blocks, so resuming a run with a journal of millions of rows does not read it whole.
fn truncate_torn_tail(path: &Path) -> anyhow::Result<()> {
    use std::io::{Seek, SeekFrom};
    const BLOCK: u64 = 4096;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut block = vec![0; BLOCK as usize];
    let mut end = len;
    let mut keep = 0;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let bytes = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(at) = bytes.iter().rposition(|&b| b == b'\n') {
            keep = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(())
}

/// Every record index in `resume` that a new run must not process again.
pub fn skip_set(resume: &Resume) -> HashSet<u64> {
    resume.finals_after.keys().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(index: u64) -> RowPos {
        RowPos {
            index,
            line: index + 2,
            byte: index * 10 + 20,
        }
    }

    #[test]
    fn low_water_advances_only_over_a_complete_prefix() {
        let mut lw = LowWater::default();
        lw.mark(pos(1));
        lw.mark(pos(2));
        assert_eq!(lw.checkpoint(), None);
        lw.mark(pos(0));
        assert_eq!(lw.checkpoint(), Some(pos(2)));
        lw.mark(pos(4));
        assert_eq!(lw.checkpoint(), Some(pos(2)));
    }

    /// A new journal in a fresh directory (kept alive by the first value), for a 10-byte input.
    fn fresh_journal() -> (tempfile::TempDir, PathBuf, Identity, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let identity = Identity {
            size: 10,
            hash: "ab".into(),
        };
        let journal = Journal::create(&path, &identity).unwrap();
        (dir, path, identity, journal)
    }

    #[test]
    fn journal_round_trip_with_checkpoint_and_torn_tail() {
        let (_dir, path, identity, mut journal) = fresh_journal();
        journal.record(pos(0), Final::Ok, "");
        journal.record(pos(2), Final::Failed, "40003");
        journal.record(pos(1), Final::Invalid, "40601");
        journal.record(pos(5), Final::Ok, "");
        journal.sync().unwrap();
        // A crash mid-write leaves half a line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"r 6 8 80 o").unwrap();

        let resume = read(&path, &identity, false).unwrap().unwrap();
        assert_eq!(resume.checkpoint, Some(pos(2)));
        assert_eq!(resume.finals_after.keys().copied().collect::<Vec<_>>(), [5]);
        assert_eq!(resume.counts[&Final::Ok], 2);
        assert_eq!(resume.codes[&(Final::Failed, "40003".to_string())], 1);
        assert!(resume.is_final(0) && resume.is_final(2) && resume.is_final(5));
        assert!(!resume.is_final(3) && !resume.is_final(6));

        let mut journal = Journal::append(&path, &resume).unwrap();
        journal.record(pos(3), Final::Ok, "");
        journal.record(pos(4), Final::Skipped, "");
        journal.sync().unwrap();
        let resume = read(&path, &identity, false).unwrap().unwrap();
        assert_eq!(resume.checkpoint, Some(pos(5)));
        assert!(resume.finals_after.is_empty());
        assert_eq!(resume.counts.values().sum::<u64>(), 6);
    }

    #[test]
    fn what_changes_only_found_is_read_back_beside_the_usual_fields() {
        let (_dir, path, identity, mut journal) = fresh_journal();
        let found = |found, tags_accepted| {
            Some(Comparison {
                found,
                tags_accepted,
            })
        };
        journal.record_compared(pos(0), Final::Unchanged, "", found(Found::InChat, 0));
        journal.record_compared(pos(1), Final::Ok, "", found(Found::Updated, 2));
        journal.record_compared(pos(2), Final::Ok, "", found(Found::NotAnAccount, 3));
        journal.record_compared(pos(3), Final::Failed, "40003", found(Found::Updated, 0));
        journal.record(pos(4), Final::Ok, "");
        journal.sync().unwrap();
        // A line as versions before the comparison fields wrote it, and one with junk there.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"r 5 7 70 ok -\nr 6 8 80 ok - sideways 9\n")
            .unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("r 1 3 30 ok - updated 2\n"), "{text}");
        let resume = read(&path, &identity, false).unwrap().unwrap();
        assert_eq!(resume.found[&Found::InChat], 1);
        assert_eq!(resume.found[&Found::Updated], 2);
        assert_eq!(resume.found[&Found::NotAnAccount], 1);
        assert!(!resume.found.contains_key(&Found::NotCompared));
        assert_eq!(
            resume.found_tags, 5,
            "nothing from the old or the junk line"
        );
        // The code of a failed row is where it always was, and every row still counts.
        assert_eq!(resume.codes[&(Final::Failed, "40003".to_string())], 1);
        assert_eq!(resume.counts[&Final::Ok], 5);
    }

    /// Every outcome and every comparison finding is read back as it was written, a torn
    /// last line is ignored even when its words would parse, and the rows journalled after a
    /// checkpoint are final too (a resumed run skips them).
    #[test]
    fn every_outcome_is_read_back_and_rows_after_a_checkpoint_are_skipped() {
        let (_dir, path, identity, mut journal) = fresh_journal();
        let finals = [
            Final::Ok,
            Final::Failed,
            Final::Invalid,
            Final::Skipped,
            Final::Unchanged,
            Final::Superseded,
        ];
        let found = [
            Found::InChat,
            Found::Updated,
            Found::NotAnAccount,
            Found::NotCompared,
        ];
        for (i, state) in finals.into_iter().enumerate() {
            let comparison = found.get(i).map(|&found| Comparison {
                found,
                tags_accepted: 1,
            });
            journal.record_compared(pos(i as u64), state, "40001", comparison);
        }
        // What is pending is what the next write hands to the operating system.
        let pending = journal.pending_bytes() as u64;
        let before = std::fs::metadata(&path).unwrap().len();
        journal.write_out().unwrap();
        assert!(pending > 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len() - before, pending);
        assert_eq!(journal.pending_bytes(), 0);
        journal.sync().unwrap();
        // Rows 7 and 9 become final after the checkpoint at 5 (row 6 is still out).
        journal.record(pos(7), Final::Ok, "");
        journal.record(pos(9), Final::Skipped, "");
        journal.sync().unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"r 6 8 80 ok").unwrap();

        let resume = read(&path, &identity, false).unwrap().unwrap();
        for state in finals {
            let expected = 1 + u64::from(state == Final::Ok) + u64::from(state == Final::Skipped);
            assert_eq!(resume.counts.get(&state), Some(&expected), "{state:?}");
        }
        for found in found {
            assert_eq!(resume.found.get(&found), Some(&1), "{found:?}");
        }
        assert_eq!(resume.found_tags, 4);
        assert_eq!(resume.checkpoint, Some(pos(5)));
        assert_eq!(
            skip_set(&resume),
            HashSet::from([7, 9]),
            "not the torn row 6"
        );
        assert!(!resume.is_final(6));
    }

    /// The collector logs a row's warnings once every row before it is final: the journal's
    /// low water, which moves only over an unbroken run of final rows, and continues from the
    /// checkpoint of the run being resumed.
    #[test]
    fn final_before_is_the_first_row_not_yet_final() {
        let (_dir, path, identity, mut journal) = fresh_journal();
        assert_eq!(journal.final_before(), 0);
        journal.record(pos(1), Final::Ok, "");
        assert_eq!(journal.final_before(), 0, "row 0 is still out");
        journal.record(pos(0), Final::Ok, "");
        assert_eq!(journal.final_before(), 2);
        journal.record(pos(3), Final::Failed, "40001");
        journal.record(pos(2), Final::Invalid, "40605");
        assert_eq!(journal.final_before(), 4);
        journal.sync().unwrap();
        drop(journal);
        let resume = read(&path, &identity, false).unwrap().unwrap();
        let journal = Journal::append(&path, &resume).unwrap();
        assert_eq!(journal.final_before(), 4);
    }

    /// A torn last line (a crash mid-write) is cut off before a resumed run appends, however
    /// long it is against the blocks read from the end; whole lines are kept byte for byte.
    #[test]
    fn a_torn_last_line_is_cut_off_and_whole_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let lines = "r 1 2 3 ok -\n".repeat(700);
        for (text, kept) in [
            (String::new(), 0),
            ("no newline at all".to_string(), 0),
            (lines.clone(), lines.len()),
            (format!("{lines}r 9 9 9 o"), lines.len()),
            (format!("{lines}{}", "x".repeat(9000)), lines.len()),
            (format!("{}\n{}", "y".repeat(4095), "z".repeat(4096)), 4096),
            (format!("{}\n", "y".repeat(4095)), 4096),
        ] {
            std::fs::write(&path, &text).unwrap();
            truncate_torn_tail(&path).unwrap();
            let left = std::fs::read(&path).unwrap();
            assert_eq!(left.len(), kept, "{} bytes given", text.len());
            assert_eq!(left, text.as_bytes()[..kept]);
        }
    }

    /// Whether a journal ends with `done` is read from its last bytes, whatever its length:
    /// an empty file (a crash right after it was created) or one shorter than the tail read
    /// is unfinished, never a panic; `done` must be a whole last line.
    #[test]
    fn a_journal_is_complete_only_when_its_last_line_is_done_at_any_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        for (text, complete) in [
            ("", false),
            ("\n", false),
            ("\ndone\n", true),
            ("x\ndone", false),
            ("x\nundone\n", false),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(journal_is_complete(&path).unwrap(), complete, "{text:?}");
        }
        let long = format!("{}\ndone\n", "r 1 2 3 ok -\n".repeat(1000));
        std::fs::write(&path, &long).unwrap();
        assert!(journal_is_complete(&path).unwrap());
        std::fs::write(&path, &long[..long.len() - 1]).unwrap();
        assert!(!journal_is_complete(&path).unwrap());
    }

    /// A finished journal over other input starts a fresh run (no error); the same input's is
    /// read. Only a missing journal means "none": any other failure to open it is an error.
    #[test]
    fn a_finished_journal_over_other_input_starts_fresh() {
        let (dir, path, identity, mut journal) = fresh_journal();
        journal.record(pos(0), Final::Ok, "");
        assert!(unfinished(&path), "no `done` yet");
        journal.complete().unwrap();
        assert!(!unfinished(&path));
        assert!(journal_is_complete(&path).unwrap());
        let other = Identity {
            size: 11,
            hash: "cd".into(),
        };
        assert!(read(&path, &other, false).unwrap().is_none());
        let same = read(&path, &identity, false).unwrap().unwrap();
        assert_eq!(same.counts[&Final::Ok], 1);
        // Not journals, or not there: nothing unfinished.
        std::fs::write(dir.path().join("text"), "hello\n").unwrap();
        assert!(!unfinished(&dir.path().join("text")));
        assert!(!unfinished(&dir.path().join("missing")));
        let under_a_file = dir.path().join("text").join("j");
        assert!(read(&under_a_file, &identity, false).is_err());
    }

    /// The input's identity is its size and a hash of all of its content (read in 1 MiB
    /// pieces): one changed byte anywhere makes another identity.
    #[test]
    fn the_identity_covers_the_whole_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = vec![b'a'; 3 << 20];
        let path = dir.path().join("u.csv");
        std::fs::write(&path, &content).unwrap();
        let first = Identity::of(&path).unwrap();
        assert_eq!(first.size, 3 << 20);
        assert_eq!(Identity::of(&path).unwrap(), first);
        content[(3 << 20) - 1] = b'b';
        std::fs::write(&path, &content).unwrap();
        let changed = Identity::of(&path).unwrap();
        assert_eq!(changed.size, first.size);
        assert_ne!(changed.hash, first.hash);
        assert_eq!(
            default_path(Path::new("exports/users.csv")),
            Path::new("exports/users.journal")
        );
    }

    /// The outcomes sort by their words, the same by either comparison.
    #[test]
    fn outcomes_sort_alike_by_either_comparison() {
        let mut finals = vec![
            Final::Unchanged,
            Final::Ok,
            Final::Failed,
            Final::Superseded,
        ];
        finals.sort();
        assert_eq!(
            finals,
            [
                Final::Failed,
                Final::Ok,
                Final::Superseded,
                Final::Unchanged
            ]
        );
        assert!(Final::Failed < Final::Ok && Final::Unchanged > Final::Superseded);
        assert_eq!(
            Final::Ok.partial_cmp(&Final::Invalid),
            Some(Final::Ok.cmp(&Final::Invalid))
        );
    }

    #[test]
    fn changed_input_is_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let old = Identity {
            size: 10,
            hash: "ab".into(),
        };
        Journal::create(&path, &old).unwrap();
        let new = Identity {
            size: 11,
            hash: "cd".into(),
        };
        let err = read(&path, &new, false).unwrap_err().to_string();
        assert!(err.contains("input changed"), "{err}");
        assert!(read(&path, &new, true).unwrap().is_some());
        assert!(read(&dir.path().join("missing"), &new, false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_changed_input_sets_the_journal_aside_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let old = Identity {
            size: 10,
            hash: "ab".into(),
        };
        let mut journal = Journal::create(&path, &old).unwrap();
        journal.record(pos(0), Final::Ok, "");
        journal.sync().unwrap();
        let new = Identity {
            size: 11,
            hash: "cd".into(),
        };
        let resume = JournalPolicy {
            resume: true,
            ..JournalPolicy::default()
        };
        let err = open_for_run(&path, &new, resume).unwrap_err();
        assert!(err.downcast_ref::<InputChanged>().is_some());
        assert!(err.to_string().contains("--state"), "{err}");
        assert!(path.exists());
        let with_state = JournalPolicy {
            set_aside_changed: true,
            ..resume
        };
        assert!(open_for_run(&path, &new, with_state).unwrap().is_none());
        assert!(!path.exists(), "set aside");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            aside.len() == 1 && aside[0].starts_with("j.set-aside-"),
            "{aside:?}"
        );
        let kept = std::fs::read_to_string(dir.path().join(&aside[0])).unwrap();
        assert!(kept.contains("r 0 "), "renamed, not emptied");
        assert!(unfinished(&dir.path().join(&aside[0])));
    }
}
