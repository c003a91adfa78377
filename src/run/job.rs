//! The validated settings of one job: what to read, how to judge rows, and where its outputs go.

use std::path::PathBuf;

use crate::input::reader::InputOptions;
use crate::input::row::RowRules;

/// What to read and where failures go.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub input: InputOptions,
    pub rules: RowRules,
    pub failures: PathBuf,
    /// The resume journal (real imports only).
    pub journal: PathBuf,
    /// Continue from the journal instead of starting over.
    pub resume: bool,
    /// Resume even if the input changed since the journal was written.
    pub force: bool,
    /// Import the users' accounts too, and how.
    pub create_accounts: Option<crate::run::accounts::CreateAccounts>,
    /// The sync state: send only rows that changed since Chat last accepted them.
    pub state: Option<PathBuf>,
    /// With `state`: send every row anyway and refresh the state.
    pub full: bool,
    /// With `state`: this run's id in the state's run history, which the failures it records
    /// name (`store::state::history`).
    pub run_id: Option<i64>,
    /// `--changes-only`: read what Chat holds first and send only the tags that differ.
    pub changes_only: bool,
    /// `--batch-nick-image`: Nick and Image through multiaccount_import's AccountList.
    pub batch_nick_image: Option<BatchOptions>,
}

/// `--batch-nick-image`'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// multiaccount_import calls a second at most (Chat allows 100).
    pub rate: u32,
}

impl JobInput {
    /// A plain import of `input` (no resume, state, accounts or batch path) that writes its
    /// failures to `failures` and its journal to `journal`; `app::config` sets the rest.
    pub fn reading(
        input: InputOptions,
        rules: RowRules,
        failures: PathBuf,
        journal: PathBuf,
    ) -> JobInput {
        JobInput {
            input,
            rules,
            failures,
            journal,
            resume: false,
            force: false,
            create_accounts: None,
            state: None,
            full: false,
            run_id: None,
            changes_only: false,
            batch_nick_image: None,
        }
    }

    /// Every file a real import writes, each locked for the run.
    pub fn outputs(&self) -> Vec<&std::path::Path> {
        let mut outputs = vec![self.journal.as_path(), self.failures.as_path()];
        outputs.extend(self.state.as_deref());
        outputs
    }

    /// How an existing journal is treated: continued with `--resume`; with `--state`, a
    /// journal written for other input is set aside, since the state knows what Chat holds.
    pub fn journal_policy(&self) -> crate::store::journal::JournalPolicy {
        crate::store::journal::JournalPolicy {
            resume: self.resume,
            force: self.force,
            set_aside_changed: self.state.is_some(),
        }
    }
}
