//! The cache of compiled plugins on disk (`[plugins] cache_dir`).
//!
//! Loading a cache entry maps native code into the server (wasmtime's
//! `deserialize` is `unsafe` for that reason): whoever can write an entry
//! can run code as the server. So an entry is loaded only when it, its
//! folder and every folder above are owned by the server's user or root and
//! writable by no one else (a sticky world-writable folder such as `/tmp`
//! is accepted above the cache folder, as OpenSSH's `StrictModes` accepts
//! it). Anything else is refused with a warning that names the path and the
//! reason, and the plugin is compiled afresh in memory instead: a bad cache
//! costs start-up time, never safety. Servers of one user may share a cache
//! folder: entries are named by the hash of the component and of the
//! engine's settings.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Why a cache entry may not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// Owned by another user.
    #[error("{path} is owned by uid {owner}, not by this server's user (uid {uid}) or root")]
    Owner {
        /// The file or folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The server's effective uid.
        uid: u32,
    },
    /// Writable by group or others.
    #[error("{path} is writable by other users (mode {mode:04o})")]
    Writable {
        /// The file or folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file (a symbolic link, a device...).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The entry.
        path: PathBuf,
    },
    /// Could not be examined.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Whether the entry `file` may be loaded by a process running as `uid`
/// (see the module documentation for the rule).
pub fn check_trusted(file: &Path, uid: u32) -> Result<(), Untrusted> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Untrusted::Io { path, source }
    };
    let meta = std::fs::symlink_metadata(file).map_err(io(file))?;
    if !meta.file_type().is_file() {
        return Err(Untrusted::NotAFile {
            path: file.to_path_buf(),
        });
    }
    owned(file, &meta, uid, false)?;
    let folder = file.parent().unwrap_or(Path::new("."));
    let folder = std::fs::canonicalize(folder).map_err(io(folder))?;
    for (depth, dir) in folder.ancestors().enumerate() {
        let meta = std::fs::metadata(dir).map_err(io(dir))?;
        // The cache folder itself may not be a shared sticky one.
        owned(dir, &meta, uid, depth > 0)?;
    }
    Ok(())
}

fn owned(
    path: &Path,
    meta: &std::fs::Metadata,
    uid: u32,
    sticky_ok: bool,
) -> Result<(), Untrusted> {
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(Untrusted::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky_ok && sticky && meta.is_dir()) {
        return Err(Untrusted::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The effective uid of this process.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The cache entry of `bytes` for `engine` under `cache_dir`.
fn entry_path(engine: &Engine, cache_dir: &Path, bytes: &[u8]) -> PathBuf {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let key = format!(
        "{}-{:016x}",
        hex::encode(Sha256::digest(bytes)),
        compat.finish()
    );
    cache_dir.join(format!("{key}.cwasm"))
}

/// Compile `bytes`, or load the compiled code cached under `cache_dir` when
/// the entry passes [`check_trusted`].
pub fn load_component(
    engine: &Engine,
    cache_dir: &Path,
    bytes: &[u8],
) -> anyhow::Result<Component> {
    let path = entry_path(engine, cache_dir, bytes);
    let mut store = true;
    if path.exists() {
        match check_trusted(&path, euid()) {
            Ok(()) => {
                // SAFETY: the entry and every folder above it can be written
                // only by this server's user or root (checked just above),
                // and it is named by the hash of its source and of the
                // engine's settings.
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(component) => return Ok(component),
                    Err(e) => tracing::warn!("discarding cache entry {}: {e}", path.display()),
                }
            }
            Err(e) => {
                tracing::warn!(
                    "not loading the compiled-plugin cache entry: {e}; compiling instead \
                     (make the cache folder the server's own, mode 0700)"
                );
                store = false;
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    if store {
        if let Err(e) = store_entry(cache_dir, &path, &component) {
            tracing::warn!(
                "could not cache compiled plugin at {}: {e:#}",
                path.display()
            );
        }
    }
    Ok(component)
}

fn store_entry(cache_dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("create {}", cache_dir.display()))?;
    std::fs::set_permissions(cache_dir, std::fs::Permissions::from_mode(0o700))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_entries_no_one_else_can_write_are_trusted() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        chmod(root.path(), 0o700);
        chmod(&cache, 0o700);
        let entry = cache.join("e.cwasm");
        std::fs::write(&entry, b"code").unwrap();
        chmod(&entry, 0o600);
        let me = euid();
        check_trusted(&entry, me).unwrap();

        chmod(&entry, 0o666);
        let e = check_trusted(&entry, me).unwrap_err();
        assert!(
            matches!(e, Untrusted::Writable { ref path, mode: 0o666 } if path == &entry),
            "{e}"
        );
        chmod(&entry, 0o600);

        // The folder, even with the sticky bit: the cache folder itself is never shared.
        chmod(&cache, 0o1777);
        let e = check_trusted(&entry, me).unwrap_err();
        assert!(
            matches!(e, Untrusted::Writable { ref path, .. } if path.ends_with("cache")),
            "{e}"
        );
        chmod(&cache, 0o700);

        // A folder above: writable by others, unless sticky (like /tmp).
        chmod(root.path(), 0o777);
        assert!(matches!(
            check_trusted(&entry, me),
            Err(Untrusted::Writable { .. })
        ));
        chmod(root.path(), 0o1777);
        check_trusted(&entry, me).unwrap();
        chmod(root.path(), 0o700);

        // Another owner (the test runs as root, so it can hand the file away).
        if me == 0 {
            std::os::unix::fs::chown(&entry, Some(12345), None).unwrap();
            let e = check_trusted(&entry, me).unwrap_err();
            assert!(matches!(e, Untrusted::Owner { owner: 12345, .. }), "{e}");
            assert!(e.to_string().contains("uid 12345"), "{e}");
            std::os::unix::fs::chown(&entry, Some(0), None).unwrap();
        }
        // Seen from another user, root's files are fine but not ones it can't own.
        check_trusted(&entry, 4242).unwrap();

        // A symbolic link is never followed.
        let link = cache.join("l.cwasm");
        std::os::unix::fs::symlink(&entry, &link).unwrap();
        assert!(matches!(
            check_trusted(&link, me),
            Err(Untrusted::NotAFile { .. })
        ));
    }

    #[test]
    fn an_untrusted_entry_is_compiled_afresh_and_left_alone() {
        let engine = super::super::engine::new_engine(16 << 20).unwrap();
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        // The empty component: magic, version 0x0d, layer 1.
        let bytes = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        // First load compiles and stores a trusted entry, 0600 in a 0700 folder.
        load_component(&engine, &cache, &bytes).unwrap();
        let entry = entry_path(&engine, &cache, &bytes);
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Planted garbage, writable by anyone: not loaded (it would fail to
        // deserialize), not replaced, and the plugin still compiles.
        std::fs::write(&entry, b"not code").unwrap();
        chmod(&entry, 0o666);
        load_component(&engine, &cache, &bytes).unwrap();
        assert_eq!(std::fs::read(&entry).unwrap(), b"not code");
    }
}
