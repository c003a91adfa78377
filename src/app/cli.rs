//! The command line: clap definitions and `--help` text. No I/O happens here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::help::{
    CHECK_ACCOUNTS_EXIT_CODES, CONFIG_HELP, EXIT_CODES, IMPORT_EXAMPLES, SIM_EXAMPLES,
    STATE_EXAMPLES, TOP_EXAMPLES, VERIFY_EXAMPLES, VERIFY_EXIT_CODES, VERIFY_OUTPUT,
};
use crate::input::profile::EmptyPolicy;
use crate::run::accounts::CreateAccounts;

/// Bulk-import user profiles from CSV into Tencent Cloud Chat (v4/profile/portrait_set).
#[derive(Debug, Parser)]
#[command(
    name = "profile-import",
    version,
    after_help = "Examples and exit codes: profile-import --help",
    after_long_help = format!("{TOP_EXAMPLES}\n\n{CONFIG_HELP}\n\n{EXIT_CODES}")
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output (-v: info and sample request bodies, -vv: debug, -vvv: trace).
    /// RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors and the final summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Log line format on stderr. With json every stderr line is a JSON object with timestamp,
    /// level, type (log, progress or summary) and message, then its own fields (a row warning's
    /// line and column, the progress counters, the summary's fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Colour in log lines and the progress bar: `auto` colours only a terminal and only when
    /// NO_COLOR is unset; `always` and `never` override both.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// `--color`: when log and progress output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--empty`: what an empty cell means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmptyArg {
    /// Leave the tag out of the request, so the user's existing value stays.
    Skip,
    /// Send the field's cleared value: "" for text, 0 for numbers, the default for enums.
    Clear,
}

impl From<EmptyArg> for EmptyPolicy {
    fn from(arg: EmptyArg) -> EmptyPolicy {
        match arg {
            EmptyArg::Skip => EmptyPolicy::Skip,
            EmptyArg::Clear => EmptyPolicy::Clear,
        }
    }
}

/// `--create-accounts`: how accounts are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CreateAccountsArg {
    /// Before sending profiles, import every user of the file with multiaccount_import.
    Batch,
    /// Like `batch`, with the AccountList form: Nick and FaceUrl (the Image column) are set
    /// at import.
    AccountList,
    /// Import one account with account_import when portrait_set answers 40003, then retry.
    OnDemand,
}

impl From<CreateAccountsArg> for CreateAccounts {
    fn from(arg: CreateAccountsArg) -> CreateAccounts {
        match arg {
            CreateAccountsArg::Batch => CreateAccounts::Batch,
            CreateAccountsArg::AccountList => CreateAccounts::AccountList,
            CreateAccountsArg::OnDemand => CreateAccounts::OnDemand,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a CSV (--dry-run) or import it into Chat.
    #[command(after_long_help = format!("{IMPORT_EXAMPLES}\n\n{EXIT_CODES}"))]
    Import(Box<ImportArgs>),
    /// Report which of the file's users are not imported into Chat (account_check).
    #[command(after_long_help = CHECK_ACCOUNTS_EXIT_CODES)]
    CheckAccounts(Box<CheckAccountsArgs>),
    /// Read the profiles back from Chat (portrait_get) and compare them with the CSV.
    #[command(after_long_help = format!("{VERIFY_OUTPUT}\n\n{VERIFY_EXIT_CODES}\n\n{VERIFY_EXAMPLES}"))]
    Verify(Box<VerifyArgs>),
    /// Inspect a --state database: its users, its run history, the users whose last send failed.
    #[command(subcommand, after_long_help = STATE_EXAMPLES)]
    State(StateCommand),
    /// Print a UserSig for the configured admin (for curl or the online debug tool).
    Usersig(UsersigArgs),
    /// Serve the built-in Chat simulator on loopback, for rehearsals with a real CSV.
    ///
    /// The simulator verifies UserSigs with the key in PROFILE_IMPORT_SIM_KEY (default
    /// `sim-secret`); give the importer the same key in PROFILE_IMPORT_SECRET_KEY.
    #[command(after_long_help = SIM_EXAMPLES)]
    Sim(SimArgs),
    /// Import samples/users.csv into an in-process simulator with injected faults, end to end.
    Demo(DemoArgs),
    /// Print a shell completion script to stdout.
    ///
    /// bash: `profile-import completions bash > ~/.local/share/bash-completion/completions/profile-import`;
    /// zsh: into a folder on $fpath as `_profile-import`; fish:
    /// `~/.config/fish/completions/profile-import.fish`; PowerShell: add the output to $PROFILE.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `profile-import man | man -l -`.
    Man {
        /// A command's own page (`profile-import-import(1)` …) instead of the main one.
        #[arg(value_parser = [
            "import", "check-accounts", "verify", "state", "usersig", "sim", "demo", "completions",
        ])]
        command: Option<String>,
    },
}

/// How the input CSV is read and validated.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// The CSV file: a header row, a UserID column, one column per profile field. A gzip file
    /// (`.csv.gz`) is read as is; `-` reads standard input (dry runs, and imports with --state),
    /// and so does a pipe given by name (/dev/stdin, <(zcat users.csv.gz)): their outputs are
    /// named stdin.* in the working folder.
    pub csv: PathBuf,

    /// Where to write failed and invalid rows [default: beside the input, <CSV stem>.failures.csv;
    /// a dry run's <CSV stem>.dry-run-failures.csv, verify's <CSV stem>.verify-failures.csv].
    #[arg(long, value_name = "PATH")]
    pub failures: Option<PathBuf>,

    /// A TOML file that renames columns to tags and lists columns to ignore.
    #[arg(long, value_name = "FILE.toml")]
    pub mapping: Option<PathBuf>,

    /// The column holding the UserID [default: UserID or From_Account].
    #[arg(long, value_name = "NAME")]
    pub user_column: Option<String>,

    /// Field delimiter: one character, or `tab`.
    #[arg(long, value_name = "C", default_value = ",", value_parser = parse_delimiter)]
    pub delimiter: u8,

    /// What an empty cell means: `skip` leaves the user's current value, `clear` sends the
    /// field's empty value ("" for text, 0 for numbers, the default for enums).
    #[arg(long, value_enum, default_value_t = EmptyArg::Skip, value_name = "skip|clear")]
    pub empty: EmptyArg,

    /// Accept any printable ASCII in UserIDs, not only letters, digits, '_' and '-'.
    #[arg(long)]
    pub relaxed_user_id: bool,

    /// A column to leave out, without a mapping file (repeatable).
    #[arg(long, value_name = "COLUMN")]
    pub ignore: Vec<String>,

    /// Refuse a Location over 16 bytes, the limit of Chat's older English docs (by default up
    /// to 500 bytes are sent, as Chat's newer docs say, and Chat's own 40601 decides).
    #[arg(long)]
    pub strict_location: bool,

    /// The app's custom fields, as declared in the console (comma-separated keywords, e.g.
    /// Hobby,City; also `custom_fields` in the config file): a `Custom_` column whose keyword
    /// differs only in case takes the declared spelling, and a value in an undeclared one is
    /// refused here with Chat's 40009.
    #[arg(long, value_name = "KEYWORDS", value_delimiter = ',')]
    pub custom_fields: Vec<String>,

    /// Reject a row whose quoted cell spans lines that look like rows of the file (a line
    /// holding the header's number of delimiters, or starting with a UserID-like token and a
    /// delimiter): a stray quote that some later line closes folds those rows into one cell.
    /// Without this flag such a row is read as csv reads it, with a warning naming the lines.
    #[arg(long)]
    pub strict_quotes: bool,
}

/// How `check-accounts` reads the CSV: only what finds the UserIDs.
#[derive(Debug, Clone, Args)]
pub struct AccountsInputArgs {
    /// The CSV file: a header row and a UserID column. A gzip file (`.csv.gz`) is read as is.
    pub csv: PathBuf,

    /// A TOML file that renames columns to tags and lists columns to ignore.
    #[arg(long, value_name = "FILE.toml")]
    pub mapping: Option<PathBuf>,

    /// The column holding the UserID [default: UserID or From_Account].
    #[arg(long, value_name = "NAME")]
    pub user_column: Option<String>,

    /// Field delimiter: one character, or `tab`.
    #[arg(long, value_name = "C", default_value = ",", value_parser = parse_delimiter)]
    pub delimiter: u8,

    /// Accept any printable ASCII in UserIDs, not only letters, digits, '_' and '-'.
    #[arg(long)]
    pub relaxed_user_id: bool,

    /// A column to leave out, without a mapping file (repeatable).
    #[arg(long, value_name = "COLUMN")]
    pub ignore: Vec<String>,
}

impl From<AccountsInputArgs> for InputArgs {
    /// The options check-accounts does not offer take their defaults: it writes no failure
    /// CSV and sends no values.
    fn from(args: AccountsInputArgs) -> InputArgs {
        InputArgs {
            csv: args.csv,
            failures: None,
            mapping: args.mapping,
            user_column: args.user_column,
            delimiter: args.delimiter,
            empty: EmptyArg::Skip,
            relaxed_user_id: args.relaxed_user_id,
            ignore: args.ignore,
            strict_location: false,
            custom_fields: Vec::new(),
            strict_quotes: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Validate every row and build its request, but send nothing. Its failure CSV
    /// (<CSV stem>.dry-run-failures.csv, so an import's is never touched) is created only if a
    /// row is invalid; if it cannot be created, the summary is shown and the run exits 1 (pass
    /// --failures PATH).
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: print the JSON body of the first N valid rows to stdout (-v shows 3).
    #[arg(
        long,
        value_name = "N",
        requires = "dry_run",
        conflicts_with = "changes_only"
    )]
    pub show_requests: Option<usize>,

    /// Continue an interrupted run from its journal: rows already final are not sent again,
    /// and failures are appended to the same failure CSV. With no journal, start fresh (so a
    /// cron line can always pass it). If the input changed since, the run is refused, unless
    /// --state is given: then the old journal is set aside and the run starts fresh.
    #[arg(long)]
    pub resume: bool,

    /// With --resume: continue even though the input changed since the journal was written
    /// (rows are matched by their position in the file).
    #[arg(long, requires = "resume")]
    pub force: bool,

    /// The resume journal [default: <CSV stem>.journal beside the input].
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Write the final counts, codes, timings and exit code as JSON to PATH (atomically), or
    /// to stdout with `-`.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,

    /// Stop the run once this many rows have failed or been rejected (a run going bad).
    #[arg(long, value_name = "N", value_parser = at_least_one::<u64>, allow_negative_numbers = true)]
    pub max_errors: Option<u64>,

    #[command(flatten)]
    pub monitor: MonitorArgs,

    #[command(flatten)]
    pub guards: GuardArgs,

    /// For these tags (comma-separated header names or tags, or `all`), send a value only where
    /// Chat holds none: fields users edit in the app (Nick, Image, SelfSignature) are filled
    /// for new users and left alone for the others. Reads what Chat holds, as --changes-only
    /// does (and turns it on).
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub only_if_empty: Vec<String>,

    /// Write every change this run made in Chat to PATH (CSV: run, UserID, tag, the value
    /// Chat held before (known under --changes-only), the value sent, the result code); on
    /// --resume the rows are appended. `-` is refused.
    #[arg(long, value_name = "PATH", value_parser = not_stdout)]
    pub changes_log: Option<PathBuf>,

    /// Import the users' Chat accounts too: `batch` (default: multiaccount_import of every
    /// user before the profiles), `account-list` (the same, also setting Nick and FaceUrl from
    /// the row), or `on-demand` (account_import when portrait_set answers 40003, then retry).
    /// The summary's accounts line (and `accounts` in the JSON) counts the calls and failures.
    #[arg(long, value_enum, value_name = "HOW", num_args = 0..=1, default_missing_value = "batch")]
    pub create_accounts: Option<CreateAccountsArg>,

    /// Send only rows whose profile changed since Chat last accepted them, remembered in this
    /// SQLite file (created on first use); rows that failed are sent again by the next run.
    /// With --dry-run: count what would be sent. Every run is recorded in the file's history
    /// (`profile-import state runs PATH`), a dry run too.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// With --state: send every row anyway, and refresh the state.
    #[arg(long, requires = "state", conflicts_with = "changes_only")]
    pub full: bool,

    /// With --state: how many runs the state's history keeps, the newest (remembered in the
    /// state for later runs) [default: 1000].
    #[arg(long, value_name = "N", requires = "state",
          value_parser = at_least_one::<u64>, allow_negative_numbers = true)]
    pub keep_runs: Option<u64>,

    /// Read each user's current values first (portrait_get, 100 users a call, on a pacer of
    /// its own) and send only the tags whose value differs; users Chat already matches are not
    /// sent. Costs 1 call per 100 users and also catches changes made outside this tool. With
    /// --dry-run: the plan (what would be created, updated, left unchanged), sending nothing.
    /// With --state: also records what Chat now holds, rebuilding or seeding the state.
    #[arg(long)]
    pub changes_only: bool,

    /// With --changes-only: ceiling on portrait_get calls per second (Chat: 200/s).
    #[arg(long, value_name = "N", default_value_t = 200, requires = "changes_only",
          value_parser = at_least_one::<u32>, allow_negative_numbers = true)]
    pub read_rate: u32,

    /// With --dry-run --changes-only: where the plan CSV goes (UserID,Tag,Expected,Actual, as
    /// verify's diff) [default: <CSV stem>.plan.csv beside the input].
    #[arg(long, value_name = "PATH", requires = "dry_run")]
    pub plan: Option<PathBuf>,
    /// Send Nick and Image (as FaceUrl) through multiaccount_import's AccountList, 100 users
    /// a call at --batch-rate calls/s, instead of one portrait_set per user; a row's other
    /// columns still go through portrait_set (a row with only Nick and/or Image makes no
    /// portrait_set call). This also creates the accounts of those users that are missing,
    /// as --create-accounts would. Chat documents that this call updates existing accounts
    /// only on its newer pages, so the run reads a sample back with portrait_get (the first
    /// 100 users, then about 0.1 %); if the values did not land it drops the batch path and
    /// sends Nick and Image with portrait_set for every row not yet vouched for, at
    /// portrait_set's pace. The summary shows the sample and its outcome.
    #[arg(long)]
    pub batch_nick_image: bool,

    /// With --batch-nick-image: ceiling on multiaccount_import calls per second (Chat
    /// allows 100).
    #[arg(long, value_name = "N", default_value_t = 100, requires = "batch_nick_image",
          value_parser = at_least_one::<u32>, allow_negative_numbers = true)]
    pub batch_rate: u32,

    /// The file size from which the dry run reads in two parts at once (tests set it to 0 to
    /// compare both ways of reading on small files).
    #[arg(long, hide = true, env = "PROFILE_IMPORT_PARALLEL_MIN_BYTES",
          default_value_t = crate::run::dry_run::PARALLEL_MIN_BYTES)]
    pub parallel_min_bytes: u64,

    /// With --dry-run: also ask Chat (account_check) which users are not imported yet (the
    /// plan of --changes-only counts them itself).
    #[arg(long, requires = "dry_run", conflicts_with = "changes_only")]
    pub check_accounts: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub sending: SendArgs,
}

/// Where and as whom to connect. Each setting can also come from the environment or a config
/// file; a flag wins over the environment, the environment over the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// The app's SDKAppID [env: PROFILE_IMPORT_SDKAPPID].
    #[arg(long, value_name = "ID")]
    pub sdkappid: Option<u64>,

    /// The app admin account that signs requests [env: PROFILE_IMPORT_ADMIN] [default: administrator].
    #[arg(long, value_name = "USERID")]
    pub admin: Option<String>,

    /// The data center where the app was created [env: PROFILE_IMPORT_REGION]: china, singapore,
    /// seoul, tokyo, frankfurt, mumbai, silicon-valley, jakarta.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// A full base URL instead of a region, e.g. a proxy or the simulator
    /// [env: PROFILE_IMPORT_ENDPOINT]. Requests go under its path (https://proxy/chat/ posts to
    /// /chat/v4/...). Plain http is allowed only for loopback.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,

    /// A TOML file with sdkappid, admin, region, endpoint, key_file (for cron) [default: the
    /// first of $XDG_CONFIG_HOME/profile-import/config.toml (or
    /// ~/.config/profile-import/config.toml) and /etc/profile-import/config.toml that exists].
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    /// A file holding the secret key [env: PROFILE_IMPORT_KEY_FILE]. The key itself is read
    /// only from PROFILE_IMPORT_SECRET_KEY or this file, never from a flag.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Lifetime of the UserSig the tool generates, in seconds (60 to 315360000, ten years).
    /// It is renewed before expiry.
    #[arg(long, value_name = "SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(60..=315_360_000))]
    pub usersig_ttl: u64,
}

/// What a monitoring system reads of a run, beside the summary JSON.
#[derive(Debug, Clone, Default, Args)]
pub struct MonitorArgs {
    /// Write the run's figures in the Prometheus text format to PATH (for node_exporter's
    /// textfile collector), during the run and when it ends, however it ends.
    #[arg(long, value_name = "PATH", value_parser = not_stdout)]
    pub metrics_file: Option<PathBuf>,

    /// The `job` label of the metrics [default: the input's stem].
    #[arg(long, value_name = "NAME")]
    pub job_name: Option<String>,
}

/// Guards that stop a run that is going nowhere, or refuse one whose input looks broken.
#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// Stop once more than P % of the rows sent have failed for good (after
    /// --error-rate-min-rows rows); the rows left stay pending for --resume. Exit 3.
    #[arg(long, value_name = "P", value_parser = percent)]
    pub max_error_rate: Option<f64>,

    /// Rows sent before --max-error-rate is judged.
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = at_least_one::<u64>, allow_negative_numbers = true)]
    pub error_rate_min_rows: u64,

    /// Stop when the first N answers all fail with the same code that means the app is not
    /// set up for this file (40009/40008: a custom field not declared in the console; 40003
    /// without --create-accounts: no accounts); 0 never stops.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub setup_error_answers: u64,

    /// Refuse to send (exit 3) when the input has fewer than N data rows.
    #[arg(long, value_name = "N")]
    pub min_rows: Option<u64>,

    /// With --state: refuse to send (exit 3) when the input has P % fewer rows than the last
    /// run recorded in the state.
    #[arg(long, value_name = "P", value_parser = percent, requires = "state")]
    pub max_shrink: Option<f64>,

    /// Accept an input with a header and no rows (refused with exit 3 otherwise: an empty
    /// nightly export usually means the export broke).
    #[arg(long)]
    pub allow_empty: bool,

    /// Send only the first N users (a canary run); the rest stay pending for a later run or
    /// --resume.
    #[arg(long, value_name = "N", value_parser = at_least_one::<u64>, allow_negative_numbers = true)]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Ceiling on requests per second: no one-second window holds more than this many. Above
    /// 3,000 the run starts at Chat's default 200/s and goes higher only as Chat accepts more
    /// (at most 200 requests in the first second, plus probes).
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = at_least_one::<u32>, allow_negative_numbers = true)]
    pub rate: u32,

    /// Requests in flight at once [default: 1.25 × --rate, at most 4,096: enough for the rate
    /// at 1.25 s of latency].
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, allow_negative_numbers = true)]
    pub concurrency: Option<usize>,

    #[command(flatten)]
    pub calls: CallArgs,
}

/// How each call is made and how the run shows its progress: every command that calls Chat
/// takes these.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// Attempts per call for transient errors, the first included.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = at_least_one::<u32>, allow_negative_numbers = true)]
    pub max_attempts: u32,

    /// Per-request timeout in seconds (Chat's own is 3 s).
    #[arg(long, value_name = "SECS", default_value_t = 10.0,
          value_parser = positive_seconds, allow_negative_numbers = true)]
    pub timeout: f64,

    /// No progress output: neither the bar (on a terminal) nor the periodic lines (elsewhere).
    #[arg(long)]
    pub no_progress: bool,

    /// Seconds between progress lines when stderr is not a terminal, and between writes of
    /// --metrics-file during an import.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = at_least_one::<u64>, allow_negative_numbers = true)]
    pub progress_interval: u64,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// The number of users in the state, of failed users, and the last run.
    Stats {
        /// The state database.
        path: PathBuf,
    },
    /// The run history, newest first: every import, dry run and verify run with this state,
    /// with its flags, input, counts and exit code.
    Runs {
        /// The state database.
        path: PathBuf,
        /// Show the last N runs.
        #[arg(long, value_name = "N", default_value_t = 20,
              value_parser = at_least_one::<u64>, allow_negative_numbers = true)]
        limit: u64,
        /// Show run N whole: its input's size and hash, and its summary.
        #[arg(long, value_name = "N", conflicts_with = "limit")]
        id: Option<i64>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The users whose last send failed, with the code and the run it failed in; the next
    /// import sends them again, and a success takes them off the list.
    Failed {
        /// The state database.
        path: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the state as CSV: UserID, body_hash, accepted_at (UTC).
    Export {
        /// The state database.
        path: PathBuf,
        /// Write to this file instead of stdout (`-` is stdout too).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct CheckAccountsArgs {
    #[command(flatten)]
    pub input: AccountsInputArgs,

    /// Where to write the UserIDs that are not imported [default: <CSV stem>.missing-accounts.csv].
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Write the counts and exit code as JSON to PATH (atomically), or to stdout with `-`.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,

    /// Ceiling on account_check calls per second (100 users each; Chat allows 100).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = at_least_one::<u32>, allow_negative_numbers = true)]
    pub rate: u32,

    #[command(flatten)]
    pub monitor: MonitorArgs,

    #[command(flatten)]
    pub calls: CallArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Check only about N users of a large file (the same ones every time).
    #[arg(long, value_name = "N", value_parser = at_least_one::<u64>, allow_negative_numbers = true)]
    pub sample: Option<u64>,

    /// Where to write the differences [default: <CSV stem>.diff.csv].
    #[arg(long, value_name = "PATH")]
    pub diff: Option<PathBuf>,

    /// Write the counts and exit code as JSON to PATH (atomically), or to stdout with `-`.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,

    /// Record this run in the run history of an import's --state file (`profile-import state
    /// runs PATH`); nothing else in the state is read or changed.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// Ceiling on portrait_get calls per second (100 users each).
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = at_least_one::<u32>, allow_negative_numbers = true)]
    pub rate: u32,

    #[command(flatten)]
    pub monitor: MonitorArgs,

    #[command(flatten)]
    pub calls: CallArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct UsersigArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Address to listen on: a loopback IP and port, or `localhost:PORT` (port 0: any free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// The SDKAppID the simulator accepts.
    #[arg(long, default_value_t = 1_400_000_000)]
    pub sdkappid: u64,

    /// The admin account the simulator accepts.
    #[arg(long, default_value = "administrator")]
    pub admin: String,

    /// Requests per second before the simulator answers 60007 (sliding one-second window;
    /// 0: no limit).
    #[arg(long, default_value_t = 200)]
    pub limit: u32,

    /// Response latency range in milliseconds, e.g. 20-80.
    #[arg(long, default_value = "0-0")]
    pub latency_ms: String,

    /// Fraction of requests answered with 40006 (0.0-1.0).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fail_40006: f64,

    /// Fraction of requests answered with HTTP 502.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fail_502: f64,

    /// Fraction of connections reset without a response.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fail_reset: f64,

    /// Fraction of requests answered only after this many milliseconds (see --slow-ms).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fail_slow: f64,

    /// Delay for --fail-slow responses, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub slow_ms: u64,

    /// Never inject more than this many faults in a row for one user (0: no cap), so bursts
    /// of faults stay within the importer's --max-attempts.
    #[arg(long, default_value_t = 0)]
    pub max_fault_streak: u32,

    /// A file of known UserIDs, one per line; others get 40003. Without it every user exists.
    #[arg(long)]
    pub accounts: Option<PathBuf>,

    /// multiaccount_import's AccountList leaves existing accounts' Nick and FaceUrl as they
    /// were (still answering OK), to rehearse the --batch-nick-image self-check.
    #[arg(long)]
    pub account_list_ignores_existing: bool,

    /// Custom keywords configured in the simulated console, comma-separated (others: 40009).
    #[arg(long, default_value = "Hobby,City,Tier")]
    pub custom_fields: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The CSV to import.
    #[arg(default_value = "samples/users.csv")]
    pub csv: PathBuf,
}

/// A whole number of at least 1, for counts and rates where 0 or a negative number means nothing.
fn at_least_one<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let too_big = || format!("{text} is too large");
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => T::try_from(n).map_err(|_| too_big()),
        Err(_) if text.trim().starts_with('-') => Err("must be at least 1, not negative".into()),
        Err(err) if *err.kind() == std::num::IntErrorKind::PosOverflow => Err(too_big()),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// A number of seconds above 0 that a `Duration` can hold.
/// A share between 0 and 1.
fn fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        Ok(_) => Err("must be a fraction from 0.0 to 1.0".into()),
        Err(err) => Err(err.to_string()),
    }
}

fn percent(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        Ok(_) => Err("must be a percentage from 0 to 100".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// An output file the tool writes as it goes and renames into place: not standard output.
fn not_stdout(text: &str) -> Result<PathBuf, String> {
    if text == "-" {
        return Err("must be a file (`-`, standard output, cannot be renamed into place)".into());
    }
    Ok(PathBuf::from(text))
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    match std::time::Duration::try_from_secs_f64(secs) {
        Ok(duration) if !duration.is_zero() => Ok(secs),
        _ => Err("must be a number of seconds above 0".into()),
    }
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() => Ok(text.as_bytes()[0]),
        _ => Err(format!(
            "the delimiter must be one ASCII character or `tab`, not {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_configuration_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn counts_and_seconds_must_be_positive() {
        assert_eq!(at_least_one::<u32>("7"), Ok(7));
        assert!(at_least_one::<u32>("0").is_err());
        assert!(at_least_one::<u32>("-3").is_err());
        assert!(at_least_one::<u32>("4294967296").is_err());
        assert!(at_least_one::<u32>("x").is_err());
        assert_eq!(positive_seconds("0.5"), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "1e300", "soon"] {
            assert!(positive_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("é").is_err());
    }
}
