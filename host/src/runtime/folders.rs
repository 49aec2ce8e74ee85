//! Listing a folder beneath the share root (`GET sharefolder/`): the folder
//! is opened beneath the root with no link followed on the way, and its
//! entries are read from that descriptor, so what is listed is the folder
//! that was checked. Sizes are counted without following links or leaving
//! the file system, within a budget of entries.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::storage::ShareRoot;
use super::{beneath, Error};

/// Most entries one listing answers (the rest are left out).
pub const MAX_ENTRIES: usize = 10_000;
/// Most files and folders counted for the sizes of one listing; beyond
/// it, a size is a lower bound.
pub const SIZE_BUDGET: usize = 200_000;

/// One entry of a listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// Its name (lossy UTF-8).
    pub name: String,
    /// A folder (a link to one is not).
    pub is_dir: bool,
    /// Bytes it uses on disk (a folder: everything beneath it), when asked.
    pub used_bytes: Option<u64>,
}

/// A listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Folders first, then the rest, each by name (byte order).
    pub entries: Vec<FolderEntry>,
    /// The size of the file system that holds it, in bytes, when asked.
    pub total_bytes: Option<u64>,
    /// Whether the size budget ran out (sizes are lower bounds).
    pub sizes_cut: bool,
}

fn io_error(shown: &str, e: std::io::Error) -> Error {
    if beneath::escaped(&e) || e.raw_os_error() == Some(libc::ELOOP) {
        Error::Denied(format!(
            "path `{shown}`: leaves the share root through a link"
        ))
    } else if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound(format!("path `{shown}`: no such folder"))
    } else if e.raw_os_error() == Some(libc::ENOTDIR) {
        Error::InvalidParams(format!("path `{shown}`: not a folder"))
    } else {
        Error::Other(format!("path `{shown}`: {e}"))
    }
}

/// `stat` of `name` in `dir`, no link followed.
fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<libc::stat> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `stat` is plain old data, filled by the kernel on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated name, a live descriptor and a valid out-pointer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// The names in the open folder `dir`, read through its descriptor.
fn names(dir: BorrowedFd<'_>) -> std::io::Result<Vec<std::ffi::OsString>> {
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    Ok(listing
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect())
}

fn open_dir(dir: BorrowedFd<'_>, rel: &Path) -> std::io::Result<OwnedFd> {
    beneath::open_no_links(dir, rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// Bytes used beneath the folder `dir` (device `dev`), counting at most
/// `budget` entries; `false` when the budget ran out.
fn used_beneath(dir: BorrowedFd<'_>, dev: libc::dev_t, budget: &mut usize) -> (u64, bool) {
    let Ok(list) = names(dir) else {
        return (0, true);
    };
    let mut total = 0u64;
    for name in list {
        if *budget == 0 {
            return (total, false);
        }
        *budget -= 1;
        let Ok(st) = stat_at(dir, &name) else {
            continue;
        };
        total += st.st_blocks as u64 * 512;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR && st.st_dev == dev {
            if let Ok(sub) = open_dir(dir, Path::new(&name)) {
                let (bytes, whole) = used_beneath(sub.as_fd(), dev, budget);
                total += bytes;
                if !whole {
                    return (total, false);
                }
            }
        }
    }
    (total, true)
}

impl ShareRoot {
    /// The entries of the folder `rel` (relative to the root, `""`: the
    /// root itself), with the sizes when `sizes`. `shown` names the folder
    /// in errors.
    pub fn list_folder(&self, rel: &str, shown: &str, sizes: bool) -> Result<Folder, Error> {
        let rel = rel.trim_matches('/');
        let path = if rel.is_empty() {
            Path::new(".").to_path_buf()
        } else {
            ShareRoot::relative(rel)?
        };
        let dir = open_dir(self.dir_fd(), &path).map_err(|e| io_error(shown, e))?;
        let mut entries = Vec::new();
        for name in names(dir.as_fd()).map_err(|e| io_error(shown, e))? {
            if entries.len() == MAX_ENTRIES {
                break;
            }
            let Ok(st) = stat_at(dir.as_fd(), &name) else {
                continue;
            };
            entries.push((name, st));
        }
        let mut budget = SIZE_BUDGET;
        let mut sizes_cut = false;
        let mut out: Vec<FolderEntry> = entries
            .into_iter()
            .map(|(name, st)| {
                let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                let used_bytes = sizes.then(|| {
                    let own = st.st_blocks as u64 * 512;
                    if !is_dir {
                        return own;
                    }
                    let Ok(sub) = open_dir(dir.as_fd(), Path::new(&name)) else {
                        return own;
                    };
                    let (beneath, whole) = used_beneath(sub.as_fd(), st.st_dev, &mut budget);
                    sizes_cut |= !whole;
                    own + beneath
                });
                FolderEntry {
                    name: name.to_string_lossy().into_owned(),
                    is_dir,
                    used_bytes,
                }
            })
            .collect();
        out.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
        let total_bytes = if sizes {
            // SAFETY: `statvfs` is plain old data, filled by the kernel on success.
            let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: a live descriptor and a valid out-pointer.
            let rc = unsafe { libc::fstatvfs(dir.as_raw_fd(), &mut vfs) };
            (rc == 0).then(|| vfs.f_blocks as u64 * vfs.f_frsize as u64)
        } else {
            None
        };
        Ok(Folder {
            entries: out,
            total_bytes,
            sizes_cut,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_folders_first_and_never_follows_a_link_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("share");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("alice/b-dir")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "x").unwrap();
        std::fs::write(root.join("alice/a-file"), vec![1u8; 10_000]).unwrap();
        std::fs::write(root.join("alice/b-dir/inner"), vec![1u8; 10_000]).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("alice/link")).unwrap();
        let share = ShareRoot::new(&root).unwrap();

        let f = share.list_folder("alice", "alice", true).unwrap();
        let names: Vec<(&str, bool)> = f
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.is_dir))
            .collect();
        assert_eq!(names, [("b-dir", true), ("a-file", false), ("link", false)]);
        assert!(f.entries[0].used_bytes.unwrap() >= 10_000, "{f:?}");
        assert!(f.total_bytes.unwrap() > 0);
        assert!(!f.sizes_cut);

        // The link is listed, not entered.
        let e = share
            .list_folder("alice/link", "alice/link", false)
            .unwrap_err();
        assert!(matches!(e, Error::Denied(_)), "{e:?}");
        let e = share
            .list_folder("alice/a-file", "alice/a-file", false)
            .unwrap_err();
        assert!(matches!(e, Error::InvalidParams(_)), "{e:?}");
        let e = share
            .list_folder("alice/none", "alice/none", false)
            .unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        let e = share
            .list_folder("alice/../..", "alice/../..", false)
            .unwrap_err();
        assert!(matches!(e, Error::Denied(_)), "{e:?}");
    }
}
