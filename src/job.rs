//! The validated settings of one import job, built from the command line. No clap types pass
//! beyond this point.

use std::path::PathBuf;

use anyhow::bail;

use crate::cli::InputArgs;
use crate::failures;
use crate::input::InputOptions;
use crate::profile::UserIdRule;
use crate::row::RowRules;

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
    pub create_accounts: Option<crate::accounts::CreateAccounts>,
    /// The sync state: send only rows that changed since Chat last accepted them.
    pub state: Option<PathBuf>,
    /// With `state`: send every row anyway and refresh the state.
    pub full: bool,
}

impl JobInput {
    pub fn from_args(args: &InputArgs) -> anyhow::Result<JobInput> {
        let failures = args
            .failures
            .clone()
            .unwrap_or_else(|| failures::default_path(&args.csv));
        if same_file(&failures, &args.csv) {
            bail!(
                "the failure CSV {} would overwrite the input; pass --failures with another path",
                failures.display()
            );
        }
        Ok(JobInput {
            input: InputOptions {
                path: args.csv.clone(),
                delimiter: args.delimiter,
                user_column: args.user_column.clone(),
                mapping: args.mapping.clone(),
            },
            rules: RowRules {
                empty: args.empty,
                user_id: if args.relaxed_user_id {
                    UserIdRule::PrintableAscii
                } else {
                    UserIdRule::Strict
                },
            },
            journal: crate::journal::default_path(&args.csv),
            resume: false,
            force: false,
            create_accounts: None,
            state: None,
            full: false,
            failures,
        })
    }
}

impl JobInput {
    /// Refuses a journal path that would overwrite the input or the failure CSV.
    pub fn check_paths(&self) -> anyhow::Result<()> {
        if same_file(&self.journal, &self.input.path) || same_file(&self.journal, &self.failures) {
            bail!(
                "the journal {} would overwrite the input or the failure CSV; pass --journal with another path",
                self.journal.display()
            );
        }
        Ok(())
    }
}

/// A path beside the input named after its stem: `users.csv` + `.journal` → `users.journal`.
pub fn beside(input: &std::path::Path, suffix: &str) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    input.with_file_name(format!("{stem}{suffix}"))
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
