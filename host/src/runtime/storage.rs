//! Paths under the share root. Every path a user gives goes through
//! [`ShareRoot::resolve`]: relative to the root (a leading `/` means the
//! root, as Container Station answers `"test/c.tgz"` as `"/test/c.tgz"`), no
//! `..`, and no symbolic link that leads out of the root.
//!
//! Outputs are written to a temporary name beside the target and renamed at
//! the end ([`ShareRoot::temp_for`]); temporaries left by a crash are removed
//! at start-up ([`ShareRoot::remove_stale_temporaries`]).

use std::borrow::Cow;
use std::ffi::OsString;
use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::{beneath, Error};

/// Marker in the names of temporary output files.
pub const TEMP_MARKER: &str = ".stevedore-partial-";
/// Longest `path` accepted, in bytes (Linux's `PATH_MAX` less the root).
pub const MAX_PATH_BYTES: usize = 4000;
/// Longest single name in a `path`, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

tokio::task_local! {
    /// The user's folder (relative to the share root) the current call's
    /// paths are confined to; set by the policy guard around each call.
    static CONFINED: String;
}

/// Run `call` with every user path it resolves through a [`ShareRoot`]
/// confined beneath `folder` (relative to the share root; `""`: the whole
/// root). The guard checks a path beneath the user's folder; this makes the
/// backend resolve it beneath the same folder, from a descriptor, so a link
/// swapped in between the check and the use cannot lead to another user's
/// folder. Calls nested in `call` (on the same task) see the same folder.
pub async fn confined<F: Future>(folder: &str, call: F) -> F::Output {
    CONFINED.scope(folder.to_string(), call).await
}

/// The folder the current call is confined to (`""`: none, the whole root).
pub fn confinement() -> String {
    CONFINED.try_with(Clone::clone).unwrap_or_default()
}

/// The folder user paths are confined to. Every lookup beneath it goes
/// through the kernel ([`beneath`]), from a descriptor of the root opened
/// once: a link planted anywhere in the path cannot lead out.
#[derive(Debug, Clone)]
pub struct ShareRoot {
    root: PathBuf,
    dir: Arc<OwnedFd>,
}

/// A user path split for creating a file: its folder (open, beneath the
/// root) and its last name.
#[derive(Debug)]
pub struct Beneath {
    /// The folder, opened `O_PATH` beneath the share root.
    pub dir: OwnedFd,
    /// The real path of the folder (links resolved).
    pub dir_path: PathBuf,
    /// The last component.
    pub name: OsString,
}

/// A user path as shown in messages: control characters escaped, at most
/// 200 characters (a hostile path may be long or hold a NUL).
fn shown(user_path: &str) -> String {
    let escaped: String = user_path.escape_debug().collect();
    match escaped.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

impl ShareRoot {
    /// Use `root` (created if missing) as the share root.
    pub fn new(root: &Path) -> std::io::Result<ShareRoot> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let dir = OwnedFd::from(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&root)?,
        );
        Ok(ShareRoot {
            root,
            dir: Arc::new(dir),
        })
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The descriptor of the root, every lookup's starting point.
    pub(super) fn dir_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// `user_path` as a clean relative path: a leading `/` means the root;
    /// refused with `Denied` when empty, with NUL, `..`, or too long.
    pub fn relative(user_path: &str) -> Result<PathBuf, Error> {
        let rel = user_path.trim_start_matches('/');
        let denied = |why: &str| Error::Denied(format!("path `{}`: {why}", shown(user_path)));
        if user_path.contains('\0') {
            return Err(denied("must not contain NUL"));
        }
        if rel.is_empty() {
            return Err(denied("must name a file under the share root"));
        }
        if user_path.len() > MAX_PATH_BYTES {
            return Err(denied(&format!("is longer than {MAX_PATH_BYTES} bytes")));
        }
        let mut clean = PathBuf::new();
        for part in Path::new(rel).components() {
            match part {
                Component::Normal(p) if p.len() > MAX_NAME_BYTES => {
                    return Err(denied(&format!(
                        "has a name longer than {MAX_NAME_BYTES} bytes"
                    )))
                }
                Component::Normal(p) => clean.push(p),
                Component::CurDir => {}
                Component::ParentDir => return Err(denied("must not contain `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(denied("must be relative to the share root"))
                }
            }
        }
        if clean.as_os_str().is_empty() {
            return Err(denied("must name a file under the share root"));
        }
        Ok(clean)
    }

    fn io_error(user_path: &str, e: std::io::Error) -> Error {
        if beneath::escaped(&e) {
            Error::Denied(format!(
                "path `{}`: leaves the share root through a link",
                shown(user_path)
            ))
        } else if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!("path `{}`: no such file", shown(user_path)))
        } else {
            Error::Other(format!("path `{}`: {e}", shown(user_path)))
        }
    }

    /// The root the current call's paths resolve beneath, and `user_path`
    /// relative to it: the share root itself, or the user's folder of
    /// [`confinement`] opened beneath it (a path outside that folder is
    /// refused).
    fn effective(&self, user_path: &str) -> Result<(Cow<'_, ShareRoot>, String), Error> {
        let folder = confinement();
        if folder.is_empty() {
            return Ok((Cow::Borrowed(self), user_path.to_string()));
        }
        let rel = Self::relative(user_path)?;
        let inner = rel.strip_prefix(&folder).map_err(|_| {
            Error::Denied(format!(
                "path `{}`: is outside the folder `{folder}`",
                shown(user_path)
            ))
        })?;
        let dir = beneath::open(
            self.dir.as_fd(),
            Path::new(&folder),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(|e| Self::io_error(user_path, e))?;
        let root = beneath::real_path(&dir).map_err(|e| Self::io_error(user_path, e))?;
        let sub = ShareRoot {
            root,
            dir: Arc::new(dir),
        };
        Ok((Cow::Owned(sub), inner.to_string_lossy().into_owned()))
    }

    /// Open (creating when missing) the folder `rel` beneath the root.
    fn folder_fd(&self, user_path: &str, rel: &Path) -> Result<OwnedFd, Error> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let mut at = PathBuf::new();
        for part in rel.components() {
            let parent = if at.as_os_str().is_empty() {
                None
            } else {
                Some(
                    beneath::open(self.dir.as_fd(), &at, flags, 0)
                        .map_err(|e| Self::io_error(user_path, e))?,
                )
            };
            let parent_fd = parent.as_ref().map_or(self.dir.as_fd(), |p| p.as_fd());
            beneath::mkdir(parent_fd, part.as_os_str(), 0o755)
                .map_err(|e| Self::io_error(user_path, e))?;
            at.push(part);
        }
        if at.as_os_str().is_empty() {
            return beneath::open(self.dir.as_fd(), Path::new("."), flags, 0)
                .map_err(|e| Self::io_error(user_path, e));
        }
        beneath::open(self.dir.as_fd(), &at, flags, 0).map_err(|e| Self::io_error(user_path, e))
    }

    /// The folder of `user_path` (created when missing, beneath the root)
    /// and its last name, for creating the file there.
    pub fn parent(&self, user_path: &str) -> Result<Beneath, Error> {
        let (root, path) = self.effective(user_path)?;
        root.parent_here(user_path, &path)
    }

    /// [`ShareRoot::parent`] of `path` beneath this root, `user_path` in messages.
    fn parent_here(&self, user_path: &str, path: &str) -> Result<Beneath, Error> {
        let rel = Self::relative(path)?;
        let name = rel
            .file_name()
            .map(|n| n.to_os_string())
            .ok_or_else(|| Error::Denied(format!("path `{}`: has no name", shown(user_path))))?;
        let folder = rel.parent().unwrap_or(Path::new(""));
        let dir = self.folder_fd(user_path, folder)?;
        let dir_path = beneath::real_path(&dir).map_err(|e| Self::io_error(user_path, e))?;
        if !dir_path.starts_with(&self.root) {
            return Err(Self::io_error(
                user_path,
                std::io::Error::from_raw_os_error(libc::EXDEV),
            ));
        }
        // A link as the last name must not lead out either.
        if beneath::kind(dir.as_fd(), &name).map_err(|e| Self::io_error(user_path, e))?
            == Some(libc::S_IFLNK)
        {
            beneath::open(self.dir.as_fd(), &rel, libc::O_PATH, 0)
                .map_err(|e| Self::io_error(user_path, e))?;
        }
        Ok(Beneath {
            dir,
            dir_path,
            name,
        })
    }

    /// Open the existing file `user_path` for reading, beneath the root.
    /// Returns the file and its real path.
    pub fn open_file(&self, user_path: &str) -> Result<(std::fs::File, PathBuf), Error> {
        let (root, path) = self.effective(user_path)?;
        root.open_file_here(user_path, &path)
    }

    /// [`ShareRoot::open_file`] of `path` beneath this root.
    fn open_file_here(
        &self,
        user_path: &str,
        path: &str,
    ) -> Result<(std::fs::File, PathBuf), Error> {
        let rel = Self::relative(path)?;
        let fd = beneath::open(self.dir.as_fd(), &rel, libc::O_RDONLY, 0)
            .map_err(|e| Self::io_error(user_path, e))?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(|e| Self::io_error(user_path, e))?;
        if !meta.is_file() {
            return Err(Error::NotFound(format!(
                "path `{}`: not a file",
                shown(user_path)
            )));
        }
        let real = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&file)
        ))
        .map_err(|e| Self::io_error(user_path, e))?;
        Ok((file, real))
    }

    /// `user_path` as a bind source to pin ([`super::pins`]): the folder it
    /// may not leave (the user's folder of [`confinement`], or the root) and
    /// the path beneath it. The folder is opened beneath the root here; the
    /// path is opened when pinned, no link followed.
    pub fn pin_source(&self, user_path: &str) -> Result<super::pins::Source, Error> {
        let (root, path) = self.effective(user_path)?;
        let path = if path.trim_matches('/').is_empty() {
            PathBuf::new()
        } else {
            Self::relative(&path)?
        };
        Ok(super::pins::Source {
            folder: root.root.clone(),
            path,
        })
    }

    /// The sources of a container's `binds`, in order ([`Self::pin_source`]);
    /// a bad one is refused naming `volume.host`.
    pub fn pin_sources(
        &self,
        binds: &[super::BindMount],
    ) -> Result<Vec<super::pins::Source>, Error> {
        binds
            .iter()
            .map(|b| self.pin_source(&b.host_path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| match e {
                Error::InvalidParams(m) => Error::InvalidParams(format!("volume.host: {m}")),
                other => other,
            })
    }

    /// The absolute path for `user_path`, refused with `Denied` when it
    /// escapes the root. Missing parent folders are created; the folder
    /// part comes back with its links resolved.
    pub fn resolve(&self, user_path: &str) -> Result<PathBuf, Error> {
        let parent = self.parent(user_path)?;
        Ok(parent.dir_path.join(parent.name))
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
    fn hostile_paths_are_denied_and_nothing_lands_outside() {
        let (dir, share) = root();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::create_dir(share.root().join("in")).unwrap();
        // Links planted inside, pointing out: as a parent and as the last name.
        std::os::unix::fs::symlink(&outside, share.root().join("in/up")).unwrap();
        std::os::unix::fs::symlink("../../outside", share.root().join("in/rel")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), share.root().join("in/last")).unwrap();
        let long_name = "n".repeat(MAX_NAME_BYTES + 1);
        let long_path = "d/".repeat(MAX_PATH_BYTES / 2 + 1);
        let hostile = [
            "../outside/secret",
            "in/../../outside/secret",
            "a/b/../../../x",
            "in/up/secret",
            "in/up/new",
            "in/rel/secret",
            "in/rel/sub/new",
            "in/last",
            "a\0b",
            "\0",
            long_name.as_str(),
            long_path.as_str(),
            "",
            "/",
            "./",
        ];
        let mut tried = 0;
        for bad in hostile {
            tried += 1;
            assert!(
                matches!(share.resolve(bad), Err(Error::Denied(_))),
                "resolve {bad:?}"
            );
            assert!(
                matches!(share.open_file(bad), Err(Error::Denied(_))),
                "open {bad:?}"
            );
            assert!(
                matches!(
                    crate::runtime::output::Output::prepare(&share, bad, 1, true),
                    Err(Error::Denied(_))
                ),
                "output {bad:?}"
            );
        }
        eprintln!("hostile paths tried: {tried}, each by resolve, open_file and Output::prepare");
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s");
        // A link that stays inside is followed.
        std::fs::write(share.root().join("in/real"), b"r").unwrap();
        std::os::unix::fs::symlink("real", share.root().join("in/alias")).unwrap();
        let (mut f, real) = share.open_file("in/alias").unwrap();
        assert_eq!(real, share.root().join("in/real"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert_eq!(text, "r");
    }

    #[tokio::test]
    async fn outputs_are_created_beneath_and_renamed_in_place() {
        use crate::runtime::output::Output;
        let (_d, share) = root();
        let out = Output::prepare(&share, "/exp/a.tar", 9, false).unwrap();
        let stream = futures::stream::iter([Ok(bytes::Bytes::from_static(b"data"))]);
        assert_eq!(out.write(Vec::new(), stream, false).await.unwrap(), 4);
        out.commit().unwrap();
        assert_eq!(
            std::fs::read(share.root().join("exp/a.tar")).unwrap(),
            b"data"
        );
        assert!(matches!(
            Output::prepare(&share, "exp/a.tar", 9, false),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            Output::prepare(&share, "exp", 9, true),
            Err(Error::Conflict(_))
        ));
        // Dropped without commit: nothing left.
        drop(Output::prepare(&share, "exp/b.tar", 9, false).unwrap());
        assert_eq!(
            std::fs::read_dir(share.root().join("exp")).unwrap().count(),
            1
        );
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
