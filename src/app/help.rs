//! The long `--help` and manual-page text: each command's examples and exit codes.

pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0    every row valid (dry run) or accepted by Chat
  1    fatal: unreadable input, bad header, unwritable output, bad settings, a
       changed input under --resume (without --state), a job-wide error that
       stopped the run (wrong key, SDKAppID or admin; Chat unreachable; the
       first answers all one setup code such as 40009), or --max-errors
       reached; rows it left are sent by --resume
  2    usage error
  3    finished, but some rows were invalid or failed (see the failure CSV);
       --max-error-rate stopped the run (--resume sends the rest); a guard
       refused the input (header only, --min-rows, --max-shrink);
       verify: values differ or rows were invalid (not checked)
  4    another run is writing one of this run's files (journal, failure CSV,
       state); the message names its pid
  130  interrupted (SIGINT); 143 terminated (SIGTERM)
  141  stdout or stderr was closed (a broken pipe): an import stops as on
       SIGTERM, and --resume continues it";

pub(crate) const TOP_EXAMPLES: &str = "\
Examples:
  # Validate a file without sending anything (also a .gz file, or - for standard input)
  profile-import import users.csv --dry-run

  # Import for real (the key is read from the environment, never from a flag)
  export PROFILE_IMPORT_SECRET_KEY=...    # or --key-file /etc/profile-import/key
  profile-import import users.csv --sdkappid 1400000000 --region singapore

  # Read the profiles back and compare them with the file
  profile-import verify users.csv --sdkappid 1400000000 --region singapore

  # Rehearse against the built-in simulator, or watch a whole migration in one command
  profile-import sim
  profile-import demo

  # Shell completions and the manual page
  profile-import completions bash > ~/.local/share/bash-completion/completions/profile-import
  profile-import man > ~/.local/share/man/man1/profile-import.1";

pub(crate) const CONFIG_HELP: &str = "\
Config file (sdkappid, admin, region, endpoint, key_file, custom_fields), used when --config
  is not given:
  $XDG_CONFIG_HOME/profile-import/config.toml (or ~/.config/profile-import/config.toml),
  then /etc/profile-import/config.toml; the first that exists is read. A relative key_file
  is resolved against the config file's folder. Flags win over the environment, the
  environment over the file.";

pub(crate) const IMPORT_EXAMPLES: &str = "\
Examples:
  # Validate a file without sending anything; invalid rows go to users.dry-run-failures.csv
  profile-import import users.csv --dry-run

  # Show the exact JSON the first 3 rows would send
  profile-import import users.csv --dry-run --show-requests 3

  # Import for real (the key is read from the environment, never from a flag)
  export PROFILE_IMPORT_SECRET_KEY=...    # or --key-file /etc/profile-import/key
  profile-import import users.csv --sdkappid 1400000000 --region singapore

  # Rehearse against the built-in simulator (run `profile-import sim` first)
  PROFILE_IMPORT_SECRET_KEY=sim-secret profile-import import users.csv \\
      --sdkappid 1400000000 --endpoint http://127.0.0.1:8080

  # A whole migration: import the accounts first, then the profiles
  profile-import import users.csv --sdkappid 1400000000 --region singapore --create-accounts

  # Nick and Image 100 users a call (multiaccount_import), checked by reading a sample back;
  # other columns still go through portrait_set
  profile-import import users.csv --sdkappid 1400000000 --region singapore --batch-nick-image

  # Cron: resume after a crash or kill, never overlap, leave a JSON summary; with --state a
  # regenerated export starts fresh instead of being refused
  profile-import import users.csv --config chat.toml --resume --state state.db \\
    --summary-json run.json

  # Nightly sync: send only the profiles that changed since the last accepted run
  profile-import import users.csv --config chat.toml --state /var/lib/profile-import/state.db

  # Send only what differs from what Chat holds now (1 portrait_get per 100 users)
  profile-import import users.csv --config chat.toml --changes-only

  # The plan: what --changes-only would create, update and leave alone (users.plan.csv)
  profile-import import users.csv --config chat.toml --dry-run --changes-only

  # An unattended nightly sync: fill Nick and Image only for users who have none, log every
  # change, write Prometheus metrics, stop if over 5 % fail, refuse a shrunken export
  profile-import import users.csv --config chat.toml --resume --state state.db \
    --only-if-empty Nick,Image --changes-log changes.csv \
    --metrics-file /var/lib/node_exporter/textfile/profile_import.prom \
    --max-error-rate 5 --min-rows 900000 --max-shrink 10

  # A canary: send the first 50 users only; --resume sends the rest
  profile-import import users.csv --config chat.toml --limit 50

  # Rebuild a lost state file (or seed a new one) from what Chat holds, repairing drift
  profile-import import users.csv --config chat.toml --changes-only --state state.db

  # Retry only the rows that failed last time
  profile-import import users.failures.csv --sdkappid 1400000000 --region singapore

  # Read a compressed export, or standard input or a pipe (dry runs, imports with --state)
  profile-import import users.csv.gz --dry-run
  zcat users.csv.gz | profile-import import - --config chat.toml --state state.db
  profile-import import <(zcat users.csv.gz) --dry-run    # outputs: stdin.*

  # A semicolon-separated export with its own column names
  profile-import import export.csv --delimiter ';' --mapping mapping.toml --dry-run";

pub(crate) const SIM_EXAMPLES: &str = "\
Examples:
  # Terminal 1: a simulator with realistic latency and some transient faults
  profile-import sim --latency-ms 20-80 --fail-40006 0.1

  # Terminal 2: rehearse the real import against it
  PROFILE_IMPORT_SECRET_KEY=sim-secret profile-import import users.csv \\
      --sdkappid 1400000000 --endpoint http://127.0.0.1:8080";

pub(crate) const VERIFY_OUTPUT: &str = "\
Writes a diff CSV (UserID,Tag,Expected,Actual); rows that are invalid cannot be compared and
are written to <CSV stem>.verify-failures.csv as the import writes them.";

pub(crate) const VERIFY_EXIT_CODES: &str = "\
Exit codes:
  0    every row was checked and every value matches
  1    fatal: unreadable input, bad settings, Chat's answer stopped the run
  2    usage error
  3    some values differ, accounts are missing, or rows are invalid (not checked)
  141  stdout or stderr was closed (a broken pipe)";

pub(crate) const VERIFY_EXAMPLES: &str = "\
Examples:
  profile-import verify users.csv --sdkappid 1400000000 --region singapore
  profile-import verify users.csv --sample 1000 --config chat.toml";

pub(crate) const CHECK_ACCOUNTS_EXIT_CODES: &str = "\
Exit codes:
  0    every user of the file is a Chat account
  1    fatal: unreadable input, bad settings, Chat's answer stopped the run
  2    usage error
  3    some users are not imported (listed in <CSV stem>.missing-accounts.csv)
  141  stdout or stderr was closed (a broken pipe)";

pub(crate) const STATE_EXAMPLES: &str = "\
Examples:
  # What the last runs did (every import, dry run and verify run with --state is recorded)
  profile-import state runs /var/lib/profile-import/state.db
  profile-import state runs /var/lib/profile-import/state.db --id 41 --json

  # The users whose last send failed: the next import sends them again
  profile-import state failed /var/lib/profile-import/state.db

  # How many users the state holds; every user's last accepted body hash as CSV
  profile-import state stats /var/lib/profile-import/state.db
  profile-import state export /var/lib/profile-import/state.db --output state.csv";
