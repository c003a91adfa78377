//! The report as text: the table each command prints on stderr.

use std::fmt;

use super::{AccountsReport, BatchReport, Comparisons, Kind, Summary};

impl Comparisons {
    pub(super) fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "users compared   {:>10}", self.users_compared)?;
        writeln!(
            f,
            "unchanged in Chat{:>10}   (not sent)",
            self.unchanged_in_chat
        )?;
        writeln!(
            f,
            "updated          {:>10}   (only the tags that differ sent)",
            self.updated
        )?;
        writeln!(
            f,
            "not an account   {:>10}   (sent whole)",
            self.not_an_account
        )?;
        writeln!(
            f,
            "not compared     {:>10}   (read failed: sent whole)",
            self.not_compared
        )?;
        self.write_kept(f)?;
        writeln!(f, "tags sent        {:>10}", self.tags_sent)?;
        self.write_reads(f)
    }

    /// `--only-if-empty`: the values not sent because Chat holds one, by tag.
    pub(super) fn write_kept(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (tag, users) in &self.kept_by_tag {
            writeln!(
                f,
                "kept             {users:>10}   {tag} (Chat has a value: not sent)"
            )?;
        }
        Ok(())
    }

    /// The read calls, and whether their pace was slowed.
    pub(super) fn write_reads(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "read calls       {:>10}   (portrait_get, {} throttled)",
            self.read_calls, self.read_throttled
        )?;
        if self.read_pace_lowest < self.read_pace_ceiling {
            writeln!(
                f,
                "{}",
                slowed(self.read_pace_lowest, self.read_pace_ceiling)
            )?;
        }
        if self.account_checks > 0 {
            writeln!(
                f,
                "account checks   {:>10}   (account_check, for reads refused whole with 40003)",
                self.account_checks
            )?;
        }
        Ok(())
    }
}

/// The line under a command's counts when Chat's throttling (its own, or app-wide through a
/// sibling command) slowed its pace below its ceiling at some point.
fn slowed(lowest: u32, ceiling: u32) -> String {
    format!(
        "                 paced down to {lowest}/s of {ceiling}/s at the lowest (Chat throttled \
         it, or the app through another command)"
    )
}

impl fmt::Display for AccountsReport {
    /// `300 imported or already there, 0 failed (3 multiaccount_import calls)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let imported = self.users - self.failed.min(self.users);
        let how = match self.form {
            "on-demand" => "imported on demand (portrait_set answered 40003)",
            _ => "imported or already there",
        };
        write!(
            f,
            "{imported} {how}, {} failed ({} {} calls)",
            self.failed, self.calls, self.command
        )
    }
}

impl fmt::Display for BatchReport {
    /// The summary's two lines about the batch path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "batch            {} users in {} multiaccount_import calls ({} in FailAccounts)",
            self.users, self.calls, self.fail_accounts
        )?;
        if self.pace_lowest < self.pace_ceiling {
            writeln!(f, "{}", slowed(self.pace_lowest, self.pace_ceiling))?;
        }
        let sample = format!(
            "read back {} users in {} portrait_get calls",
            self.sample_users, self.check_calls
        );
        match &self.fell_back {
            Some(why) => {
                writeln!(
                    f,
                    "self-check       {sample}: Nick/Image did NOT land ({why}); batch path \
                     dropped, {} rows got Nick/Image through portrait_set",
                    self.fallback_rows
                )?;
                if self.confirmed_users > 0 {
                    // A sample vouched for them before the failing one: they were not re-sent.
                    writeln!(
                        f,
                        "                 {} users vouched for by earlier checks were not sent \
                         again: run verify to be sure",
                        self.confirmed_users
                    )?;
                }
                Ok(())
            }
            None if self.confirmed_users > 0 => writeln!(
                f,
                "self-check       {sample}: Nick/Image landed ({} users vouched for)",
                self.confirmed_users
            ),
            None => writeln!(f, "self-check       {sample}: no check finished"),
        }
    }
}

/// One summary line: a label, a count, and a note.
fn line(f: &mut fmt::Formatter<'_>, label: &str, n: u64, note: &str) -> fmt::Result {
    let text = format!("{label:<17}{n:>10}   {note}");
    writeln!(f, "{}", text.trim_end())
}

impl Summary {
    /// The send's own lines: rows left pending, requests, the pace, the account pass.
    fn write_requests(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not attempted    {:>10}", self.not_attempted)?;
        // account_import on demand goes through portrait_set's handle: its requests are part
        // of the count, and said apart so they are not taken for retries.
        let accounts = match &self.accounts {
            Some(report) if report.in_requests > 0 => {
                format!("{} {}, ", report.in_requests, report.command)
            }
            _ => String::new(),
        };
        writeln!(
            f,
            "requests         {:>10}   ({accounts}{} retries, {} throttled)",
            self.requests, self.retries, self.throttled
        )?;
        match self.pace {
            Some((lowest, now)) if self.throttled > 0 => writeln!(
                f,
                "pace             {now:>8.0}/s   (lowest {lowest:.0}/s while Chat throttled)"
            )?,
            Some((_, now)) => writeln!(f, "pace             {now:>8.0}/s")?,
            None => {}
        }
        if let Some(accounts) = &self.accounts {
            writeln!(f, "accounts         {accounts}")?;
        }
        if let Some(batch) = &self.batch {
            write!(f, "{batch}")?;
        }
        Ok(())
    }

    fn write_duplicates(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dupes = &self.duplicates;
        if dupes.users == 0 {
            return writeln!(f, "duplicate users  {:>10}", 0);
        }
        let at_least = if dupes.lower_bound { "at least " } else { "" };
        let examples: Vec<String> = dupes
            .examples
            .iter()
            .map(|(id, n)| format!("{id} ×{n}"))
            .collect();
        let extra = match dupes.extra_rows {
            1 => "1 extra row".to_string(),
            n => format!("{n} extra rows"),
        };
        writeln!(
            f,
            "duplicate users  {:>10}   ({at_least}{extra}; a user's rows are merged, the last \
             row that sets a field winning): {}",
            dupes.users,
            examples.join(", ")
        )
    }

    fn write_elapsed(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        if self.kind == Kind::DryRun {
            let rate = if secs > 0.0 {
                self.rows as f64 / secs
            } else {
                0.0
            };
            writeln!(f, "elapsed          {secs:>9.2}s   ({rate:.0} rows/s)")
        } else {
            writeln!(
                f,
                "elapsed          {secs:>9.1}s   (mean {:.1} requests/s)",
                self.mean_rate()
            )
        }
    }

    fn write_files(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure_csv {
            Some(path) => writeln!(f, "failure CSV      {}", path.display())?,
            // A dry run that could not create its file (the reason follows the summary).
            None if self.kind == Kind::DryRun && self.has_failures() => {
                writeln!(f, "failure CSV      not written")?
            }
            None => writeln!(f, "failure CSV      none (no row failed)")?,
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped early    {why}")?;
        }
        if let Some(why) = &self.refused {
            writeln!(f, "refused          {why}")?;
        }
        Ok(())
    }

    /// The import's and the dry run's table.
    fn write_import(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dry_run = self.kind == Kind::DryRun;
        let title = if dry_run {
            "dry run (nothing sent)"
        } else {
            "import"
        };
        writeln!(f, "── {title} ──")?;
        writeln!(f, "rows read        {:>10}", self.rows)?;
        if dry_run {
            writeln!(f, "valid            {:>10}   (would be sent)", self.valid)?;
        } else {
            writeln!(f, "ok               {:>10}", self.ok)?;
            writeln!(f, "failed           {:>10}", self.failed)?;
            for (code, count) in &self.failed_by_code {
                writeln!(f, "  {code:<28} {count:>6}")?;
            }
            if let Some(hint) = self.missing_accounts_hint() {
                writeln!(f, "hint             {hint}")?;
            }
        }
        self.write_invalid(f)?;
        writeln!(
            f,
            "skipped          {:>10}   (nothing to set)",
            self.skipped
        )?;
        if self.with_state {
            let note = match &self.compared {
                Some(_) => "(Chat already holds them: not sent)",
                None => "(unchanged since the last accepted run: not sent)",
            };
            line(f, "unchanged", self.unchanged, note)?;
        }
        if self.with_state || self.superseded > 0 {
            line(
                f,
                "superseded",
                self.superseded,
                "(merged into a later row of the same user)",
            )?;
        }
        if let Some(compared) = &self.compared {
            compared.write(f)?;
        }
        if !dry_run {
            self.write_requests(f)?;
        }
        self.write_duplicates(f)?;
        self.write_elapsed(f)?;
        self.write_files(f)?;
        if let Some(journal) = &self.journal {
            writeln!(
                f,
                "resume with      --resume   (journal {})",
                journal.display()
            )?;
        }
        Ok(())
    }

    fn write_invalid(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid          {:>10}", self.invalid)?;
        for (rule, count) in &self.invalid_by_rule {
            writeln!(f, "  {rule:<28} {count:>6}")?;
        }
        Ok(())
    }

    /// The `--changes-only` plan's table.
    fn write_plan(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compared = self.compared.clone().unwrap_or_default();
        writeln!(f, "── plan: import --changes-only (nothing sent) ──")?;
        line(f, "rows read", self.rows, "")?;
        let (create, missing) = match self.creates_accounts {
            true => (compared.not_an_account, 0),
            false => (0, compared.not_an_account),
        };
        line(
            f,
            "to create",
            create,
            "(not accounts yet: --create-accounts imports them, then they are sent whole)",
        )?;
        line(
            f,
            "to update",
            compared.updated,
            "(users; only the tags that differ are sent)",
        )?;
        for (tag, count) in &compared.update_by_tag {
            writeln!(f, "  {tag:<28} {count:>6}")?;
        }
        line(
            f,
            "unchanged",
            compared.unchanged_in_chat,
            "(Chat holds every value: not sent)",
        )?;
        compared.write_kept(f)?;
        line(
            f,
            "missing account",
            missing,
            "(not Chat accounts: sent whole, they fail with 40003; see --create-accounts)",
        )?;
        line(
            f,
            "not compared",
            compared.not_compared,
            "(read failed: sent whole)",
        )?;
        self.write_invalid(f)?;
        line(f, "skipped", self.skipped, "(nothing to set)")?;
        line(
            f,
            "superseded",
            self.superseded,
            "(merged into a later row of the same user)",
        )?;
        line(f, "would send", self.would_send(), "portrait_set calls")?;
        compared.write_reads(f)?;
        match &self.diff_csv {
            Some(path) => writeln!(f, "plan CSV         {}", path.display())?,
            None => writeln!(f, "plan CSV         none (nothing to send)")?,
        }
        self.write_files(f)
    }

    /// verify's table.
    fn write_verify(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compared = self.compared.clone().unwrap_or_default();
        writeln!(f, "── verify ──")?;
        let users = compared.users_compared + compared.not_an_account + compared.not_compared;
        line(f, "users checked", users, "")?;
        line(f, "values compared", compared.values, "")?;
        line(
            f,
            "differences",
            compared.differences,
            "(values Chat holds otherwise)",
        )?;
        line(
            f,
            "missing accounts",
            compared.not_an_account,
            "(users that are not Chat accounts: their values were not compared)",
        )?;
        if compared.not_compared > 0 {
            line(
                f,
                "not compared",
                compared.not_compared,
                "(users whose read failed)",
            )?;
        }
        line(
            f,
            "not checked",
            self.invalid,
            "(invalid rows, as the import rejects them)",
        )?;
        if self.superseded > 0 {
            line(
                f,
                "superseded",
                self.superseded,
                "(merged into a later row of the same user)",
            )?;
        }
        writeln!(f, "portrait_get     {:>10} calls", compared.read_calls)?;
        match &self.diff_csv {
            Some(path) => writeln!(f, "diff CSV         {}", path.display())?,
            None => writeln!(f, "diff CSV         none (everything checked matches)")?,
        }
        match &self.failure_csv {
            Some(path) => writeln!(f, "failure CSV      {}", path.display())?,
            None => writeln!(f, "failure CSV      none (every row is valid)")?,
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped early    {why}")?;
        }
        Ok(())
    }

    /// check-accounts' table.
    fn write_accounts_checked(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checked = self.accounts_checked.clone().unwrap_or_default();
        writeln!(f, "── check-accounts ──")?;
        line(f, "users checked", checked.users, "")?;
        line(f, "not imported", checked.not_imported, "")?;
        match &checked.missing_list {
            Some(path) => writeln!(f, "missing list     {}", path.display())?,
            None if self.stopped.is_none() => {
                writeln!(f, "missing list     none (every user is imported)")?
            }
            None => writeln!(f, "missing list     none")?,
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped early    {why}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Import | Kind::DryRun => self.write_import(f),
            Kind::Plan => self.write_plan(f),
            Kind::Verify => self.write_verify(f),
            Kind::CheckAccounts => self.write_accounts_checked(f),
        }
    }
}
