//! The `subtree` of a folder backup of an LXC container: an absolute path
//! as the container sees it, taken apart into the relative path beneath
//! its root file system that the runtime opens (and the simulator checks
//! the same way). Only the words are checked here; links on the way are
//! resolved by the kernel beneath the root ([`crate::runtime::beneath`]).

use std::path::{Component, Path, PathBuf};

use crate::runtime::{Error, RtResult};

/// The longest subtree taken, in bytes (Linux's `PATH_MAX`).
const MAX_LEN: usize = 4096;

fn refuse(subtree: &str, why: &str) -> Error {
    Error::InvalidParams(format!("subtree: `{subtree}` {why}"))
}

/// `subtree` (e.g. `/var/lib/data`) as a path relative to the container's
/// root (`var/lib/data`; the root itself is empty). Refused, naming
/// `subtree`: a relative or empty path, `..`, a NUL byte, a name too long.
pub fn relative(subtree: &str) -> RtResult<PathBuf> {
    if subtree.len() > MAX_LEN {
        return Err(refuse(subtree, "is too long"));
    }
    if subtree.contains('\0') {
        return Err(refuse(subtree, "contains a NUL byte"));
    }
    if !subtree.starts_with('/') {
        return Err(refuse(
            subtree,
            "must be an absolute path inside the container, e.g. \"/var/lib/data\"",
        ));
    }
    let mut rel = PathBuf::new();
    for part in Path::new(subtree).components() {
        match part {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            Component::ParentDir => return Err(refuse(subtree, "must not contain `..`")),
            Component::Prefix(_) => return Err(refuse(subtree, "is not a Unix path")),
        }
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_become_relative_to_the_root() {
        assert_eq!(
            relative("/var/lib/data").unwrap(),
            Path::new("var/lib/data")
        );
        assert_eq!(relative("/srv//a/./b/").unwrap(), Path::new("srv/a/b"));
        assert_eq!(relative("/").unwrap(), Path::new(""));
    }

    #[test]
    fn escapes_are_refused_naming_subtree() {
        for bad in ["", "var/lib", "/var/../..", "/..", "/a/../b", "/a\0b"] {
            let e = relative(bad).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidParams(m) if m.starts_with("subtree: ")),
                "{bad:?}: {e:?}"
            );
        }
        assert!(relative(&format!("/{}", "a".repeat(5000))).is_err());
    }
}
