//! Small file-system helpers shared by every layer: paths beside the input, owner-only files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Checks before a run that `path`, given with `option` (e.g. `--summary-json`), can be
/// written when the run ends: not a folder, and its folder exists and takes new files. A
/// mistyped path then stops the run at once instead of after it did its work. The file itself
/// is not created.
pub fn check_can_create(path: &Path, option: &str) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "{option} {} is a folder; give the path of a file",
            path.display()
        );
    }
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let probe = path.with_file_name(format!(".{name}.probe-{}", std::process::id()));
    match create_private(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(err) => Err(anyhow::anyhow!(
            "{option} {}: cannot create a file there: {err}",
            path.display()
        )),
    }
}

/// A path beside the input named after its stem: `users.csv` + `.journal` → `users.journal`.
/// A gzip input is named as what it holds: `users.csv.gz` → `users.journal`.
pub fn beside(input: &Path, suffix: &str) -> PathBuf {
    let unzipped = input
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_suffix(".gz"))
        .map(Path::new);
    let stem = unzipped
        .unwrap_or(input)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    input.with_file_name(format!("{stem}{suffix}"))
}

/// Whether two paths name the same file (by their canonical forms when both exist).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Creates a file for writing with mode 0600 (owner read/write only), truncating it.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // `mode` applies only when the file is created; an existing file keeps its old mode.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

/// Creates a directory only the owner can enter.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// A UTC time as `2024-05-01T02:30:00.123Z` (RFC 3339, milliseconds): every JSON line's.
pub fn utc_timestamp_millis(time: std::time::SystemTime) -> String {
    let millis = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    let whole = utc_timestamp(time);
    format!("{}.{millis:03}Z", whole.trim_end_matches('Z'))
}

/// A UTC time as `2024-05-01T02:30:00Z` (RFC 3339, whole seconds).
pub fn utc_timestamp(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// How many set-aside copies of one file [`set_aside`] keeps: a nightly run that keeps
/// breaking would otherwise leave one more every night.
pub const SET_ASIDE_KEPT: usize = 5;

/// Moves `path` aside (renamed, not deleted) to `<name>.set-aside-<UTC time>`, and returns
/// the new path. Only the newest [`SET_ASIDE_KEPT`] set-aside copies of `path` are kept: older
/// ones are removed, with a warning naming them.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = utc_timestamp(std::time::SystemTime::now()).replace(':', "");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut aside = path.with_file_name(format!("{name}.set-aside-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = path.with_file_name(format!("{name}.set-aside-{stamp}-{n}"));
    }
    std::fs::rename(path, &aside)?;
    remove_old_set_asides(path, &name);
    Ok(aside)
}

/// Removes all but the newest [`SET_ASIDE_KEPT`] of `<name>.set-aside-<UTC time>[-<n>]` beside
/// `path`. Files whose names do not end in such a time are left alone: the tool did not make
/// them.
fn remove_old_set_asides(path: &Path, name: &str) {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let prefix = format!("{name}.set-aside-");
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let mut copies: Vec<((String, u32), PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let file_name = entry.file_name().into_string().ok()?;
            let order = set_aside_order(file_name.strip_prefix(&prefix)?)?;
            Some((order, entry.path()))
        })
        .collect();
    if copies.len() <= SET_ASIDE_KEPT {
        return;
    }
    copies.sort();
    let old = copies.len() - SET_ASIDE_KEPT;
    let mut removed = Vec::new();
    for (_, copy) in copies.into_iter().take(old) {
        match std::fs::remove_file(&copy) {
            Ok(()) => removed.push(copy.display().to_string()),
            Err(err) => tracing::warn!("cannot remove the old {}: {err}", copy.display()),
        }
    }
    if !removed.is_empty() {
        tracing::warn!(
            "removed {} older set-aside cop{} of {name}, keeping the newest {SET_ASIDE_KEPT}: {}",
            removed.len(),
            if removed.len() == 1 { "y" } else { "ies" },
            removed.join(", ")
        );
    }
}

/// The order of a set-aside copy from what follows `.set-aside-` in its name:
/// `2024-05-01T023000Z`, or `2024-05-01T023000Z-2` for a second copy in the same second.
fn set_aside_order(suffix: &str) -> Option<(String, u32)> {
    let (stamp, n) = match suffix.split_once("Z-") {
        Some((stamp, n)) => (stamp, n.parse().ok()?),
        None => (suffix.strip_suffix('Z')?, 1),
    };
    let well_formed = stamp.len() == "2024-05-01T023000".len()
        && stamp
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'T');
    well_formed.then(|| (stamp.to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_set_aside_copies_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("users.journal");
        let old = [
            "2020-01-01T000000Z",
            "2020-01-02T000000Z",
            "2020-01-02T000000Z-2",
            "2020-01-02T000000Z-10",
            "2020-01-03T000000Z",
            "2020-01-04T000000Z",
            "2020-01-05T000000Z",
        ];
        for stamp in old {
            std::fs::write(
                dir.path().join(format!("users.journal.set-aside-{stamp}")),
                "",
            )
            .unwrap();
        }
        // Not the tool's: left alone.
        std::fs::write(dir.path().join("users.journal.set-aside-mine"), "").unwrap();
        std::fs::write(&journal, "j").unwrap();
        let aside = set_aside(&journal).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let newest = aside.file_name().unwrap().to_str().unwrap().to_string();
        // Eight copies: the three oldest go; `-10` is the tenth copy of its second, after `-2`.
        let mut expected = vec![
            "users.journal.set-aside-2020-01-02T000000Z-10".to_string(),
            "users.journal.set-aside-2020-01-03T000000Z".to_string(),
            "users.journal.set-aside-2020-01-04T000000Z".to_string(),
            "users.journal.set-aside-2020-01-05T000000Z".to_string(),
            "users.journal.set-aside-mine".to_string(),
            newest,
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn utc_timestamps_follow_the_calendar() {
        let at = |secs| utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
        let later = std::time::UNIX_EPOCH + std::time::Duration::from_millis(951_782_400_042);
        assert_eq!(utc_timestamp_millis(later), "2000-02-29T00:00:00.042Z");
    }
}
