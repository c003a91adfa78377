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

/// Moves `path` aside (renamed, not deleted) to `<name>.set-aside-<UTC time>`, and returns
/// the new path.
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
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps_follow_the_calendar() {
        let at = |secs| utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
