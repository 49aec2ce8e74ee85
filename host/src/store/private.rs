//! Files only their owner may read: sealed credentials, password hashes.

use std::io::Write;
use std::path::Path;

/// Create `path` afresh with `bytes`, readable by its owner only before a
/// byte is written, and on disk when this returns. A file already there
/// is removed first, whatever its mode was.
pub fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Write `bytes` to `path` (through a temporary file beside it and a rename), in a file
/// created readable by its owner only before a byte is written: a file
/// holding a hash or a key is never readable by others, not even for a
/// moment. A leftover temporary file is replaced, whatever its mode was.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    create_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
