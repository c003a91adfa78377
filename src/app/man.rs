//! The manual pages: clap_mangen's sections, then EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES
//! and SEE ALSO of our own, where clap_mangen would put the whole `--help` epilogue under one
//! EXTRA heading.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;
use clap_mangen::roff::{roman, Roff};

use crate::app::cli::{self, Cli};

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
    for (title, text) in cli::man_sections(command) {
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
