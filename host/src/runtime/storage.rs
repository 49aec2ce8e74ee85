//! Paths under the share root. Every path a user gives goes through
//! [`ShareRoot::resolve`]: relative to the root (a leading `/` means the
//! root, as Container Station answers `"test/c.tgz"` as `"/test/c.tgz"`), no
//! `..`, and no symbolic link that leads out of the root.
//!
//! Outputs are written to a temporary name beside the target and renamed at
//! the end ([`ShareRoot::temp_for`]); temporaries left by a crash are removed
//! at start-up ([`ShareRoot::remove_stale_temporaries`]).

use std::path::{Component, Path, PathBuf};

use super::Error;

/// Marker in the names of temporary output files.
pub const TEMP_MARKER: &str = ".stevedore-partial-";

/// The folder user paths are confined to.
#[derive(Debug, Clone)]
pub struct ShareRoot {
    root: PathBuf,
}

impl ShareRoot {
    /// Use `root` (created if missing) as the share root.
    pub fn new(root: &Path) -> std::io::Result<ShareRoot> {
        std::fs::create_dir_all(root)?;
        Ok(ShareRoot {
            root: root.canonicalize()?,
        })
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path for `user_path`, refused with `Denied` when it
    /// escapes the root. Missing parent folders are created.
    pub fn resolve(&self, user_path: &str) -> Result<PathBuf, Error> {
        let rel = user_path.trim_start_matches('/');
        let denied = |why: &str| Error::Denied(format!("path `{user_path}`: {why}"));
        if rel.is_empty() || user_path.contains('\0') {
            return Err(denied("must name a file under the share root"));
        }
        let mut clean = PathBuf::new();
        for part in Path::new(rel).components() {
            match part {
                Component::Normal(p) => clean.push(p),
                Component::CurDir => {}
                Component::ParentDir => return Err(denied("must not contain `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(denied("must be relative to the share root"))
                }
            }
        }
        let full = self.root.join(&clean);
        let parent = full
            .parent()
            .ok_or_else(|| denied("has no parent folder"))?;
        // Walk up to the deepest existing ancestor and check it after
        // following links; then create the rest (which cannot be links).
        let mut existing = parent.to_path_buf();
        while !existing.exists() {
            existing = existing
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| denied("has no parent folder"))?;
        }
        let real = existing
            .canonicalize()
            .map_err(|e| denied(&e.to_string()))?;
        if !real.starts_with(&self.root) {
            return Err(denied("leaves the share root through a link"));
        }
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Other(format!("path `{user_path}`: {e}")))?;
        if let Ok(meta) = std::fs::symlink_metadata(&full) {
            if meta.file_type().is_symlink() {
                let target = full.canonicalize().map_err(|e| denied(&e.to_string()))?;
                if !target.starts_with(&self.root) {
                    return Err(denied("leaves the share root through a link"));
                }
            }
        }
        Ok(full)
    }

    /// A temporary file name beside `target`, for writing then renaming.
    pub fn temp_for(target: &Path, task_id: i64) -> PathBuf {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.with_file_name(format!("{TEMP_MARKER}{task_id}-{name}"))
    }

    /// Remove temporaries left by tasks that were interrupted. Returns how many.
    pub fn remove_stale_temporaries(&self) -> usize {
        fn walk(dir: &Path, removed: &mut usize) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    walk(&entry.path(), removed);
                } else if entry.file_name().to_string_lossy().starts_with(TEMP_MARKER)
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    *removed += 1;
                }
            }
        }
        let mut removed = 0;
        walk(&self.root, &mut removed);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, ShareRoot) {
        let dir = tempfile::tempdir().unwrap();
        let share = ShareRoot::new(&dir.path().join("share")).unwrap();
        (dir, share)
    }

    #[test]
    fn relative_and_leading_slash_resolve_inside() {
        let (_d, share) = root();
        assert_eq!(
            share.resolve("test/c.tgz").unwrap(),
            share.root().join("test/c.tgz")
        );
        assert_eq!(
            share.resolve("/test/c.tgz").unwrap(),
            share.root().join("test/c.tgz")
        );
        assert!(share.root().join("test").is_dir(), "parent folder created");
    }

    #[test]
    fn dotdot_and_empty_are_denied() {
        let (_d, share) = root();
        for bad in ["../x", "a/../../x", "a/..", "", "/"] {
            assert!(matches!(share.resolve(bad), Err(Error::Denied(_))), "{bad}");
        }
    }

    #[test]
    fn links_out_of_the_root_are_denied() {
        let (dir, share) = root();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, share.root().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), share.root().join("file-link")).unwrap();
        std::fs::write(outside.join("f"), b"x").unwrap();
        assert!(matches!(
            share.resolve("escape/x.tar"),
            Err(Error::Denied(_))
        ));
        assert!(matches!(share.resolve("file-link"), Err(Error::Denied(_))));
        assert!(!outside.join("x.tar").exists());
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let (_d, share) = root();
        let target = share.resolve("out/img.tar").unwrap();
        std::fs::write(ShareRoot::temp_for(&target, 7), b"partial").unwrap();
        std::fs::write(&target, b"done").unwrap();
        assert_eq!(share.remove_stale_temporaries(), 1);
        assert!(target.exists());
    }
}
