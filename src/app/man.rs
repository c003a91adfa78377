//! The manual pages: clap_mangen's sections, then EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES
//! and SEE ALSO of our own, where clap_mangen would put the whole `--help` epilogue under one
//! EXTRA heading.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;
use clap_mangen::roff::{roman, Roff};

use crate::app::cli::Cli;
use crate::app::help::{
    CHECK_ACCOUNTS_EXIT_CODES, EXIT_CODES, IMPORT_EXAMPLES, SIM_EXAMPLES, STATE_EXAMPLES,
    TOP_EXAMPLES, VERIFY_EXAMPLES, VERIFY_EXIT_CODES,
};

/// Writes the page of `command` (a subcommand's name), or the main page, in roff.
pub fn render(command: Option<&str>, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut cli = Cli::command();
    // Building names each subcommand `profile-import-<name>`, as its page is titled.
    cli.build();
    let page = match command {
        Some(name) => cli
            .find_subcommand(name)
            .cloned()
            .with_context(|| format!("no command {name}"))?,
        None => cli,
    };
    let man = clap_mangen::Man::new(page.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if page.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if page.get_subcommands().any(|sub| !sub.is_hide_set()) {
        man.render_subcommands_section(out)?;
    }
    let mut roff = Roff::new();
    for (title, text) in sections(command) {
        roff.control("SH", [title]);
        // Lines as written: tables of codes and example commands keep their columns.
        roff.control("nf", []);
        for line in text.lines() {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
    }
    roff.to_writer(out)?;
    if page.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// The exit codes of the commands that check no rows.
const OTHER_EXIT_CODES: &str = "\
Exit codes:
  0    done
  1    error
  2    usage error
  141  stdout or stderr was closed (a broken pipe)";

/// ENVIRONMENT of the pages of commands that connect to Chat.
const ENVIRONMENT: &str = "\
Environment:
  PROFILE_IMPORT_SECRET_KEY  the app's secret key (it is never a flag)
  PROFILE_IMPORT_KEY_FILE    a file holding the secret key (--key-file)
  PROFILE_IMPORT_USERSIG     a ready UserSig, used as is (it cannot be renewed)
  PROFILE_IMPORT_SDKAPPID    the SDKAppID (--sdkappid)
  PROFILE_IMPORT_ADMIN       the admin account (--admin)
  PROFILE_IMPORT_REGION      the data center (--region)
  PROFILE_IMPORT_ENDPOINT    a base URL instead of a region (--endpoint)
  XDG_CONFIG_HOME, HOME      where the user's config file is looked for (see FILES)
  RUST_LOG                   a log filter instead of -v/-q
  NO_COLOR                   no colour with --color auto";

const SIM_ENVIRONMENT: &str = "\
Environment:
  PROFILE_IMPORT_SIM_KEY     the key UserSigs are checked with (default sim-secret)";

/// FILES of the pages of commands that connect to Chat.
const CONFIG_FILES: &str = "\
Files:
  $XDG_CONFIG_HOME/profile-import/config.toml (or ~/.config/profile-import/config.toml)
  /etc/profile-import/config.toml
      The config file (sdkappid, admin, region, endpoint, key_file) when --config is not
      given: the first of these that exists is read. A relative key_file is resolved against
      the config file's folder. Flags win over the environment, the environment over the
      file.";

const IMPORT_FILES: &str = "\
Files:
  <CSV stem>.failures.csv, <CSV stem>.dry-run-failures.csv
      Failed and invalid rows, beside the input (--failures); valid input for a rerun.
      Standard input and pipes given by name: stdin.* in the working folder.
  <CSV stem>.journal
      A real import's journal, which --resume continues (--journal).
  <CSV stem>.journal.set-aside-<UTC time>
      The journal of an unfinished run over an input that changed since, set aside by
      --state; the newest 5 are kept.
  <file>.lock
      Held while a run writes <file>; it names the running process.";

/// A manual page's sections after clap's own (NAME … SUBCOMMANDS), in page order: each
/// title with its text, one line per line of the page. EXIT STATUS and EXAMPLES are the texts
/// `--help` ends with, so both say the same.
fn sections(command: Option<&str>) -> Vec<(&'static str, String)> {
    let connects = matches!(
        command,
        None | Some("import" | "check-accounts" | "verify" | "usersig")
    );
    let exit_codes = match command {
        None | Some("import") => EXIT_CODES,
        Some("verify") => VERIFY_EXIT_CODES,
        Some("check-accounts") => CHECK_ACCOUNTS_EXIT_CODES,
        Some(_) => OTHER_EXIT_CODES,
    };
    let mut sections = vec![("EXIT STATUS", man_text(exit_codes))];
    if connects {
        let mut environment = man_text(ENVIRONMENT);
        if command.is_none() {
            environment.push('\n');
            environment.push_str(&man_text(SIM_ENVIRONMENT));
        }
        sections.push(("ENVIRONMENT", environment));
        let mut files = man_text(CONFIG_FILES);
        if matches!(command, None | Some("import")) {
            files.push('\n');
            files.push_str(&man_text(IMPORT_FILES));
        }
        sections.push(("FILES", files));
    } else if command == Some("sim") {
        sections.push(("ENVIRONMENT", man_text(SIM_ENVIRONMENT)));
    }
    let examples = match command {
        None => Some(TOP_EXAMPLES),
        Some("import") => Some(IMPORT_EXAMPLES),
        Some("verify") => Some(VERIFY_EXAMPLES),
        Some("sim") => Some(SIM_EXAMPLES),
        Some("state") => Some(STATE_EXAMPLES),
        Some(_) => None,
    };
    sections.extend(examples.map(|text| ("EXAMPLES", man_text(text))));
    if command.is_some() {
        sections.push(("SEE ALSO", "profile-import(1)".to_string()));
    }
    sections
}

/// A `--help` block as a man page section's text: without its heading line (`Examples:`),
/// dedented by the two spaces the heading's items have.
fn man_text(help: &str) -> String {
    help.lines()
        .skip(1)
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}
