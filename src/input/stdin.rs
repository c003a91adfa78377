//! Standard input as the input file (`-`): copied once to a private temporary file, because
//! every command reads its input more than once (counting rows, finding repeated users, the
//! parallel dry run), which a pipe cannot do.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// True if `path` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Standard input, read to its end into `<temp dir>/profile-import-stdin-<pid>-<random>/stdin`
/// (folder 0700, file 0600: rows carry personal data). Removed when dropped.
pub struct StdinSpool {
    dir: PathBuf,
    path: PathBuf,
}

impl StdinSpool {
    /// Copies standard input to the spool file.
    pub fn read() -> anyhow::Result<StdinSpool> {
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
        std::io::copy(&mut std::io::stdin().lock(), &mut file)
            .with_context(|| format!("cannot copy standard input to {}", spool.path.display()))?;
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
