//! Reading a file in two parts at once: the shared fate of the cut between them, and how the
//! first part's reader watches for it. `CsvInput::parallel_cut` chooses the cut and
//! `CsvInput::open_at` opens the second part.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;

use csv::ByteRecord;

/// The fate of a cut, decided once and shared by the two readers of a file: it holds (the
/// first reader met a record starting right at it) or it failed (the cut fell inside a record,
/// or the second reader gave up). Whichever comes first wins.
#[derive(Debug, Default)]
pub struct CutGuard(AtomicU8);

const UNDECIDED: u8 = 0;
const HOLDS: u8 = 1;
const FAILED: u8 = 2;

impl CutGuard {
    /// Decides that the cut holds; false if it had already failed.
    pub fn hold(&self) -> bool {
        self.decide(HOLDS)
    }

    /// Decides that the cut failed; false if it had already been found to hold.
    pub fn fail(&self) -> bool {
        self.decide(FAILED)
    }

    pub fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAILED
    }

    fn decide(&self, fate: u8) -> bool {
        match self
            .0
            .compare_exchange(UNDECIDED, fate, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(decided) => decided == fate,
        }
    }
}

/// How a reader's part ended.
pub enum PartEnd {
    /// It read to the end of the file.
    FileEnd,
    /// It reached the cut, and the cut lies between records: the record starting there is on
    /// `line` of the file, and is the second reader's first.
    Cut { line: u64 },
}

/// Watches a first part's records for the cut (see `CsvInput::parallel_cut`).
pub struct CutWatch {
    /// None once there is no cut to watch for.
    cut: Option<u64>,
    guard: Option<Arc<CutGuard>>,
}

/// What a record says about the cut.
pub enum CutSeen {
    /// Not there yet, or no cut to watch for.
    No,
    /// The record starts right at the cut and the cut holds: the part ends before it.
    Holds(PartEnd),
    /// The cut fell inside the record before (or the second reader gave up): this part reads
    /// on to the end of the file.
    Failed,
}

impl CutWatch {
    pub fn new(cut: Option<u64>, guard: &Arc<CutGuard>) -> CutWatch {
        CutWatch {
            cut,
            guard: Some(guard.clone()),
        }
    }

    pub fn none() -> CutWatch {
        CutWatch {
            cut: None,
            guard: None,
        }
    }

    pub fn check(&mut self, record: &ByteRecord, line: u64) -> CutSeen {
        let Some(cut) = self.cut else {
            return CutSeen::No;
        };
        if start_byte(record) + 1 < cut {
            return CutSeen::No;
        }
        self.cut = None;
        let guard = self.guard.as_deref();
        if starts_at_cut(record, cut) && guard.is_some_and(CutGuard::hold) {
            CutSeen::Holds(PartEnd::Cut { line })
        } else {
            guard.map(CutGuard::fail);
            CutSeen::Failed
        }
    }
}

/// A part's thread's result; a panic becomes an error.
pub fn joined<T>(thread: ScopedJoinHandle<'_, anyhow::Result<T>>) -> anyhow::Result<T> {
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the CSV reader thread panicked"))?
}

/// The byte where the CSV reader began reading `record`.
fn start_byte(record: &ByteRecord) -> u64 {
    record.position().map_or(0, |p| p.byte())
}

/// True if the record last read is the first one at or past `cut`, and began right at it:
/// the cut fell between records, so a reader started at the cut sees the same records from
/// here on. (csv notes where reading began, which for a CRLF file is the `\n` just before.)
pub fn starts_at_cut(record: &ByteRecord, cut: u64) -> bool {
    let start = start_byte(record);
    start + 1 >= cut && start <= cut
}
