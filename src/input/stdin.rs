//! Input that can be read only once, from start to end: standard input (`-`), or a pipe or
//! device given by name (`/dev/stdin`, a named pipe, `<(zcat users.csv.gz)`). It is copied
//! once to a private temporary file, because every command reads its input more than once
//! (counting rows, finding repeated users, the parallel dry run), which a pipe cannot do.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// True if `path` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// True if `path` is read like `-`: it names something that exists but is neither a file nor
/// a folder (a pipe such as `/dev/stdin` fed by a pipe, a named pipe or a shell's `<(…)`; a
/// device; a socket), which can be read once only, or it lies under `/dev` or `/proc`
/// (`/dev/stdin` redirected from a file is that file, but outputs named beside it would be
/// written into `/dev`).
pub fn is_stream(path: &Path) -> bool {
    let system = path.starts_with("/dev") || path.starts_with("/proc");
    !is_stdin(path)
        && std::fs::metadata(path).is_ok_and(|meta| system || (!meta.is_file() && !meta.is_dir()))
}

/// The input, read to its end into `<temp dir>/profile-import-stdin-<pid>-<random>/stdin`
/// (folder 0700, file 0600: rows carry personal data). Removed when dropped.
pub struct StdinSpool {
    dir: PathBuf,
    path: PathBuf,
}

impl StdinSpool {
    /// Copies `csv` to the spool file: standard input for `-`, else the pipe or device it names.
    pub fn read(csv: &Path) -> anyhow::Result<StdinSpool> {
        if is_stdin(csv) {
            Self::copy(&mut std::io::stdin().lock(), "standard input")
        } else {
            let mut source = std::fs::File::open(csv)
                .with_context(|| format!("cannot open {}", csv.display()))?;
            Self::copy(&mut source, &csv.display().to_string())
        }
    }

    fn copy(source: &mut dyn Read, what: &str) -> anyhow::Result<StdinSpool> {
        let dir = std::env::temp_dir().join(format!(
            "profile-import-stdin-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        crate::fsutil::create_private_dir(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // From here on the folder is removed on every path out, errors included.
        let spool = StdinSpool {
            path: dir.join("stdin"),
            dir,
        };
        let mut file = crate::fsutil::create_private(&spool.path)
            .with_context(|| format!("cannot create {}", spool.path.display()))?;
        std::io::copy(source, &mut file)
            .with_context(|| format!("cannot copy {what} to {}", spool.path.display()))?;
        file.flush()?;
        Ok(spool)
    }

    /// The spooled copy, to read like any input file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StdinSpool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
