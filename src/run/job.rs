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
    /// `--only-if-empty`: tags (as Chat names them) sent only where Chat holds none; None
    /// when not asked, an empty list for `all`.
    pub only_if_empty: Option<Vec<String>>,
    /// `--changes-log`: every change the run makes in Chat.
    pub changes_log: Option<PathBuf>,
    pub guards: Guards,
}

/// The guards that stop a run going nowhere or refuse one whose input looks broken.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    /// `--max-error-rate`: the share (percent) of rows sent that may fail for good.
    pub max_error_rate: Option<f64>,
    /// Rows sent before the share is judged.
    pub error_rate_min_rows: u64,
    /// The first answers that, all failing with one setup code, stop the run (0: never).
    pub setup_error_answers: u64,
    pub min_rows: Option<u64>,
    /// `--max-shrink`: the drop (percent) in rows from the last run in the state allowed.
    pub max_shrink: Option<f64>,
    /// An input with no rows is accepted.
    pub allow_empty: bool,
    /// `--limit`: users sent at most.
    pub limit: Option<u64>,
}

impl Guards {
    /// Why an input of `rows` data rows looks broken (`last_rows`: the last run's, from the
    /// state), if it does: the run then refuses to send.
    pub fn refusal(&self, rows: u64, last_rows: Option<u64>) -> Option<String> {
        if rows == 0 && !self.allow_empty {
            return Some(
                "the input has a header and no data rows: an empty export usually means the \
                 export broke (--allow-empty accepts it)"
                    .into(),
            );
        }
        if let Some(min) = self.min_rows.filter(|min| rows < *min) {
            return Some(format!(
                "the input has {rows} data rows, fewer than --min-rows {min}: nothing was sent"
            ));
        }
        if let (Some(limit), Some(last)) = (self.max_shrink, last_rows.filter(|last| *last > 0)) {
            let shrink = last.saturating_sub(rows) as f64 * 100.0 / last as f64;
            if shrink > limit {
                return Some(format!(
                    "the input has {rows} data rows, {shrink:.1} % fewer than the last run's \
                     {last} (over --max-shrink {limit} %): nothing was sent"
                ));
            }
        }
        None
    }
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
            only_if_empty: None,
            changes_log: None,
            guards: Guards {
                error_rate_min_rows: 500,
                setup_error_answers: 20,
                allow_empty: true,
                ..Guards::default()
            },
        }
    }

    /// Every file a real import writes, each locked for the run.
    pub fn outputs(&self) -> Vec<&std::path::Path> {
        let mut outputs = vec![self.journal.as_path(), self.failures.as_path()];
        outputs.extend(self.state.as_deref());
        outputs.extend(self.changes_log.as_deref());
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
