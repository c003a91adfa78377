//! `profile-import verify`: reads profiles back with portrait_get (100 users a call, paced at
//! most 200 calls/s) and compares them with what the CSV says each user should hold, after the
//! same mapping and normalisation as the import, the last row winning for each user.
//!
//! Memory stays flat: users with a single row are checked as the file streams by; only users
//! with several rows (found first, in constant memory) are held until the end.
//!
//! Rows that fail validation cannot be compared: they are reported as not checked and written
//! to a failure CSV, as the import writes them, and the run does not pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use csv::ByteRecord;
use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::chat::api::command::PORTRAIT_GET;
use crate::chat::api::ChatApi;
use crate::chat::retry::Answer;
use crate::input::dupes::DuplicateFinder;
use crate::input::reader::{CsvInput, InputOptions};
use crate::input::row::{failure_from, unterminated_quote, RowMapper, RowRules, Verdict};
use crate::run::row_warnings::RowWarnings;
use crate::store::failures::FailureWriter;

/// Users per portrait_get call (spec §5.6).
const USERS_PER_CALL: usize = 100;

/// What the CSV says one user should hold: tag → value.
type Expected = BTreeMap<String, serde_json::Value>;

/// The result of a verify run.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub users: u64,
    pub values: u64,
    pub differences: u64,
    pub missing_accounts: u64,
    pub calls: u64,
    pub diff_csv: Option<PathBuf>,
    /// Rows rejected by validation: not checked.
    pub invalid: u64,
    pub failure_csv: Option<PathBuf>,
}

impl VerifyReport {
    /// True when every row was checked and every value matches.
    pub fn passed(&self) -> bool {
        self.differences == 0 && self.invalid == 0
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "── verify ──")?;
        writeln!(f, "users checked    {:>10}", self.users)?;
        writeln!(f, "values compared  {:>10}", self.values)?;
        writeln!(f, "differences      {:>10}", self.differences)?;
        writeln!(f, "missing accounts {:>10}", self.missing_accounts)?;
        writeln!(
            f,
            "not checked      {:>10}   (invalid rows, as the import rejects them)",
            self.invalid
        )?;
        writeln!(f, "portrait_get     {:>10} calls", self.calls)?;
        match &self.diff_csv {
            Some(path) => writeln!(f, "diff CSV         {}", path.display())?,
            None => writeln!(f, "diff CSV         none (everything checked matches)")?,
        }
        match &self.failure_csv {
            Some(path) => writeln!(f, "failure CSV      {}", path.display()),
            None => writeln!(f, "failure CSV      none (every row is valid)"),
        }
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "From_Account")]
    user: String,
    #[serde(rename = "ProfileItem")]
    items: Vec<Item>,
}

#[derive(Deserialize)]
pub(crate) struct Item {
    #[serde(rename = "Tag")]
    pub(crate) tag: String,
    #[serde(rename = "Value")]
    pub(crate) value: serde_json::Value,
}

/// portrait_get's answer beyond the envelope (also read by the batch path's self-check).
#[derive(Deserialize)]
pub(crate) struct GetAnswer {
    #[serde(rename = "UserProfileItem", default)]
    pub(crate) users: Vec<UserProfile>,
    #[serde(rename = "Fail_Account", default)]
    pub(crate) failed: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct UserProfile {
    #[serde(rename = "To_Account")]
    pub(crate) user: String,
    #[serde(rename = "ProfileItem", default)]
    pub(crate) items: Vec<Item>,
    #[serde(rename = "ResultCode", default)]
    pub(crate) code: u32,
}

/// Everything a verify run needs: a handle on Chat paced at `--rate` portrait_get calls.
pub struct Verifier<'a> {
    pub api: &'a ChatApi,
}

impl Verifier<'_> {
    /// Compares Chat with the CSV. `sample`: check about this many users, chosen by a hash of
    /// the UserID (the same users every time). Invalid rows go to `failures_path`.
    pub async fn run(
        &self,
        input: &InputOptions,
        rules: RowRules,
        sample: Option<u64>,
        diff_path: &Path,
        failures_path: &Path,
    ) -> anyhow::Result<VerifyReport> {
        let mut csv = CsvInput::open(input)?;
        let mapper = RowMapper::new(csv.columns.clone(), rules);
        let mut failures = FailureWriter::lazy(failures_path, mapper.columns(), input.delimiter)?;
        let mut warnings = RowWarnings::default();
        let tags: Vec<String> = mapper.columns().fields().map(|(_, t)| t.name()).collect();
        let mut record = ByteRecord::new();
        let mut body = Vec::new();

        // Pass 1: which users have several valid rows, and how many rows there are.
        let mut finder = DuplicateFinder::default();
        let mut rows = 0u64;
        while csv.read(&mut record)?.is_some() {
            rows += 1;
            if let Verdict::Ready { user_id, .. } = mapper.map(&record, &mut body) {
                finder.observe(user_id);
            }
        }
        let repeated: HashSet<String> = if finder.is_clear() {
            HashSet::new()
        } else {
            let mut recount = finder.into_recount();
            let mut again = CsvInput::open(input)?;
            while again.read(&mut record)?.is_some() {
                if let Verdict::Ready { user_id, .. } = mapper.map(&record, &mut body) {
                    recount.observe(user_id);
                }
            }
            recount.repeated_users()
        };
        let keep = |user: &str| match sample {
            Some(n) if rows > 0 && n < rows => {
                (xxh3_64(user.as_bytes()) % 1_000_000) < n * 1_000_000 / rows
            }
            _ => true,
        };

        // Pass 2: compare, 100 users at a time.
        let mut diff = DiffWriter::new(diff_path)?;
        let mut report = VerifyReport::default();
        let mut held: HashMap<String, Expected> = HashMap::new();
        let mut batch: Vec<(String, Expected)> = Vec::with_capacity(USERS_PER_CALL);
        let mut csv = CsvInput::open(input)?;
        while let Some(line) = csv.read(&mut record)? {
            let verdict = if csv.unterminated() {
                Verdict::Invalid(vec![unterminated_quote(line)])
            } else {
                mapper.map(&record, &mut body)
            };
            match verdict {
                Verdict::Ready { .. } => {}
                Verdict::Invalid(violations) => {
                    report.invalid += 1;
                    warnings.invalid(line, &violations);
                    failures.write(&record, line, &failure_from(&violations), input.delimiter)?;
                    continue;
                }
                Verdict::Skipped { .. } => continue,
            }
            let parsed: Body = serde_json::from_slice(&body)?;
            if !keep(&parsed.user) {
                continue;
            }
            let expected: Expected = parsed.items.into_iter().map(|i| (i.tag, i.value)).collect();
            if repeated.contains(&parsed.user) {
                // A later row overrides only the tags it sets.
                held.entry(parsed.user).or_default().extend(expected);
                continue;
            }
            batch.push((parsed.user, expected));
            if batch.len() == USERS_PER_CALL {
                self.compare(&tags, &mut batch, &mut diff, &mut report)
                    .await?;
            }
        }
        for entry in held {
            batch.push(entry);
            if batch.len() == USERS_PER_CALL {
                self.compare(&tags, &mut batch, &mut diff, &mut report)
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.compare(&tags, &mut batch, &mut diff, &mut report)
                .await?;
        }
        report.diff_csv = diff.finish()?;
        report.failure_csv = failures.finish()?;
        Ok(report)
    }

    async fn compare(
        &self,
        tags: &[String],
        batch: &mut Vec<(String, Expected)>,
        diff: &mut DiffWriter,
        report: &mut VerifyReport,
    ) -> anyhow::Result<()> {
        let users: Vec<&str> = batch.iter().map(|(u, _)| u.as_str()).collect();
        let request = serde_json::json!({ "To_Account": users, "TagList": tags });
        let (answer, _) = self
            .api
            .call(PORTRAIT_GET, Bytes::from(serde_json::to_vec(&request)?))
            .await;
        report.calls += 1;
        let raw = match answer {
            Answer::Ok(_, raw) => raw,
            Answer::Failed { code, message } => {
                anyhow::bail!("portrait_get failed: {code} {message}")
            }
            Answer::Fatal { why, .. } => anyhow::bail!("{why}"),
            Answer::Stopped => anyhow::bail!("stopped"),
        };
        let answer: GetAnswer = serde_json::from_slice(&raw)
            .map_err(|e| anyhow::anyhow!("portrait_get answered something unexpected: {e}"))?;
        let failed: HashSet<&str> = answer.failed.iter().map(String::as_str).collect();
        let actual: HashMap<&str, &UserProfile> =
            answer.users.iter().map(|u| (u.user.as_str(), u)).collect();
        for (user, expected) in batch.drain(..) {
            report.users += 1;
            let profile = actual.get(user.as_str()).filter(|p| p.code == 0);
            let Some(profile) = profile.filter(|_| !failed.contains(user.as_str())) else {
                report.missing_accounts += 1;
                report.differences += expected.len() as u64;
                for (tag, value) in &expected {
                    diff.write(&user, tag, value, "(account missing)")?;
                }
                continue;
            };
            let held: HashMap<&str, &serde_json::Value> = profile
                .items
                .iter()
                .map(|i| (i.tag.as_str(), &i.value))
                .collect();
            for (tag, value) in &expected {
                report.values += 1;
                let matches = match held.get(tag.as_str()) {
                    Some(actual) => *actual == value,
                    // Chat leaves unset values out; an empty string or 0 reads back as unset.
                    None => value == "" || value == 0,
                };
                if !matches {
                    report.differences += 1;
                    let actual = held
                        .get(tag.as_str())
                        .map_or("(unset)".to_string(), |v| v.to_string());
                    diff.write(&user, tag, value, &actual)?;
                }
            }
        }
        Ok(())
    }
}

/// The diff CSV: `UserID,Tag,Expected,Actual`, created only when there is a difference.
struct DiffWriter {
    path: PathBuf,
    writer: Option<csv::Writer<std::fs::File>>,
}

impl DiffWriter {
    fn new(path: &Path) -> anyhow::Result<DiffWriter> {
        // A stale diff from an earlier run must not be mistaken for this one's.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        Ok(DiffWriter {
            path: path.to_path_buf(),
            writer: None,
        })
    }

    fn write(
        &mut self,
        user: &str,
        tag: &str,
        expected: &serde_json::Value,
        actual: &str,
    ) -> anyhow::Result<()> {
        if self.writer.is_none() {
            let mut writer = csv::Writer::from_writer(crate::fsutil::create_private(&self.path)?);
            writer.write_record(["UserID", "Tag", "Expected", "Actual"])?;
            self.writer = Some(writer);
        }
        if let Some(writer) = &mut self.writer {
            writer.write_record([user, tag, &expected.to_string(), actual])?;
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        match self.writer {
            Some(mut writer) => {
                writer.flush()?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// The default diff path: `users.csv` → `users.diff.csv`.
pub fn default_diff_path(input: &Path) -> PathBuf {
    crate::fsutil::beside(input, ".diff.csv")
}
