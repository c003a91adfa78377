//! Small file-system helpers shared by every layer: paths beside the input, owner-only files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

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
