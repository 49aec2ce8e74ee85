//! Bind sources pinned for the engines.
//!
//! An engine given a path string resolves it again at every start (Docker
//! at each `start` and at its own restarts, LXC from `lxc.mount.entry`), so
//! a user who swaps a folder of the path for a symbolic link after the
//! policy checked it would have the engine mount whatever the link names.
//! Instead, each bind source is opened once beneath its folder (the user's
//! share folder, or an application's folder) by descriptor, refusing every
//! link on the way ([`beneath::open_no_links`]), and that exact folder is
//! bind-mounted onto a staging folder no user can write:
//! `<data>/binds/<engine>/<token>/<n>`. The engine is given the staging folder.
//!
//! - A later swap of the user's path changes nothing the engine sees: the
//!   staging mount holds the folder's inode, across engine restarts and
//!   autostarts, for as long as the host is up.
//! - The server re-makes a container's pins before every start it performs
//!   ([`Pins::refresh`]), so a folder the user renamed or replaced by a
//!   real folder is followed, and one replaced by a link is refused.
//! - `<token>/pins.json` records each source as (folder, path beneath it);
//!   pins of removed containers are released ([`Pins::release`], and
//!   [`Pins::sweep`] at start-up).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{beneath, Error, RtResult};

/// The record of a container's pins, `<token>/pins.json`.
const RECORD: &str = "pins.json";

/// One pinned source: a folder the path may not leave, and the path beneath it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The folder (absolute, as the server set it up: a user's share
    /// folder or an application's folder). No link beneath it is followed.
    pub folder: PathBuf,
    /// The path beneath `folder` (relative; empty: the folder itself).
    pub path: PathBuf,
}

/// The staging folders of pinned bind sources, under `<data>/binds`.
#[derive(Debug, Clone)]
pub struct Pins {
    root: PathBuf,
    /// The mode of the root and of each token's folder.
    mode: u32,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Other(format!("{what}: {e}"))
}

fn c_path(p: &Path) -> RtResult<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidParams(format!("`{}`: contains NUL", p.display())))
}

/// `mount(2)`; `source` and `fstype` may be absent.
fn mount(source: Option<&Path>, target: &Path, flags: libc::c_ulong) -> std::io::Result<()> {
    let source = source
        .map(c_path)
        .transpose()
        .map_err(std::io::Error::other)?;
    let target = c_path(target).map_err(std::io::Error::other)?;
    // SAFETY: NUL-terminated strings (or null) that live across the call.
    let rc = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Detach every mount stacked on `target` (none: fine).
fn unmount_all(target: &Path) {
    let Ok(c) = c_path(target) else { return };
    // Each call removes the topmost mount; EINVAL once none is left.
    for _ in 0..64 {
        // SAFETY: a NUL-terminated path.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        if rc != 0 {
            return;
        }
    }
}

/// `path` as clean relative components; `..` and absolute paths refused.
fn clean(path: &Path) -> RtResult<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(Error::Denied(format!(
                    "volume `{}`: must stay inside its folder",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

impl Source {
    /// Open the source (creating missing folders, as engines do for a bind)
    /// beneath its folder, no link followed. Returns an `O_PATH` descriptor.
    fn open(&self) -> RtResult<OwnedFd> {
        let shown = || self.folder.join(&self.path).display().to_string();
        let refused = |e: std::io::Error| {
            if beneath::escaped(&e) {
                Error::Denied(format!(
                    "volume `{}`: is or passes through a symbolic link, refused: \
                     one that leaves the share root or its folder would reach the host",
                    shown()
                ))
            } else {
                Error::Other(format!("volume `{}`: {e}", shown()))
            }
        };
        let folder = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.folder)
            .map_err(|e| Error::Other(format!("folder `{}`: {e}", self.folder.display())))?;
        let path = clean(&self.path)?;
        beneath::make_dirs(folder.as_fd(), &path).map_err(|e| match e.raw_os_error() {
            // A file where a folder is expected.
            Some(libc::ENOTDIR) | Some(libc::EEXIST) => {
                Error::InvalidParams(format!("volume `{}`: is not a folder", shown()))
            }
            _ => refused(e),
        })
    }
}

impl Pins {
    /// Pins of one engine's containers (`docker`, `lxc`), kept in
    /// `<data_dir>/binds/<engine>` (created, mode 0700). Each engine sweeps
    /// its own folder, against its own containers.
    pub fn new(data_dir: &Path, engine: &str) -> std::io::Result<Pins> {
        Self::with_mode(&data_dir.join("binds").join(engine), 0o700)
    }

    /// Pins kept in `root`, whose folders (the staging tokens included) are
    /// created with `mode`: 0711 where an unprivileged container's mapped
    /// root must walk down to its staging folder, as LXC does when it
    /// mounts the entries inside the container's user namespace. Search
    /// without read: the random token names are not listed.
    pub fn with_mode(root: &Path, mode: u32) -> std::io::Result<Pins> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(root)?;
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        Ok(Pins {
            root: root.canonicalize()?,
            mode,
        })
    }

    /// Where staging folders are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Pin `sources` for a new container: a new token, its record, and one
    /// staging folder per source, in order (their paths are returned, to
    /// give the engine). Nothing is left behind on error.
    pub fn pin(&self, sources: &[Source]) -> RtResult<Vec<PathBuf>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let token = hex::encode(rand::random::<[u8; 16]>());
        let dir = self.root.join(&token);
        std::fs::DirBuilder::new()
            .mode(self.mode)
            .create(&dir)
            .map_err(io(dir.display()))?;
        let made = (|| {
            let record =
                serde_json::to_vec_pretty(sources).map_err(|e| Error::Other(e.to_string()))?;
            std::fs::write(dir.join(RECORD), record).map_err(io(dir.join(RECORD).display()))?;
            let mut staged = Vec::new();
            for (n, source) in sources.iter().enumerate() {
                let target = dir.join(n.to_string());
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&target)
                    .map_err(io(target.display()))?;
                Self::mount_source(source, &target)?;
                staged.push(target);
            }
            Ok(staged)
        })();
        if made.is_err() {
            self.remove_token(&token);
        }
        made
    }

    /// Bind-mount the folder `source` opens onto `target` (private, not
    /// recursive: mounts beneath the source are not carried along).
    fn mount_source(source: &Source, target: &Path) -> RtResult<()> {
        let fd = source.open()?;
        unmount_all(target);
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        mount(Some(&proc_path), target, libc::MS_BIND).map_err(|e| {
            Error::Runtime(format!(
                "pinning volume `{}`: bind mount: {e}",
                source.folder.join(&source.path).display()
            ))
        })?;
        mount(None, target, libc::MS_PRIVATE).map_err(|e| {
            unmount_all(target);
            Error::Runtime(format!("pinning volume: making it private: {e}"))
        })
    }

    /// The token and index of a staging path, when `path` is one.
    fn staged(&self, path: &str) -> Option<(String, usize)> {
        let rest = Path::new(path).strip_prefix(&self.root).ok()?;
        let mut parts = rest.components();
        let token = parts.next()?.as_os_str().to_str()?.to_string();
        let n = parts.next()?.as_os_str().to_str()?.parse().ok()?;
        (parts.next().is_none() && token.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some((token, n))
    }

    fn record(&self, token: &str) -> RtResult<Vec<Source>> {
        let file = self.root.join(token).join(RECORD);
        let text = std::fs::read(&file).map_err(io(file.display()))?;
        serde_json::from_slice(&text).map_err(|e| Error::Other(format!("{}: {e}", file.display())))
    }

    /// Re-make the pins among `paths` (a container's bind sources; those
    /// that are not staging folders are ignored) before a start: each
    /// source is opened again beneath its folder, no link followed.
    pub fn refresh<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> RtResult<()> {
        for path in paths {
            let Some((token, n)) = self.staged(path) else {
                continue;
            };
            let sources = self.record(&token)?;
            let source = sources.get(n).ok_or_else(|| {
                Error::Other(format!("{path}: no such pinned volume in its record"))
            })?;
            Self::mount_source(source, Path::new(path))?;
        }
        Ok(())
    }

    /// The tokens among `paths` (a container's bind sources).
    pub fn tokens<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
        paths
            .into_iter()
            .filter_map(|p| self.staged(p).map(|(t, _)| t))
            .collect()
    }

    /// Unmount and remove the pins among `paths` (of a removed container).
    pub fn release<'a>(&self, paths: impl IntoIterator<Item = &'a str>) {
        for token in self.tokens(paths) {
            self.remove_token(&token);
        }
    }

    fn remove_token(&self, token: &str) {
        let dir = self.root.join(token);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    unmount_all(&path);
                    // An empty mount point after the unmount; a folder that
                    // is still mounted (busy) is left for the next sweep.
                    let _ = std::fs::remove_dir(&path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }

    /// Where the staging folder `path` was pinned from (its folder and path
    /// joined), when it is one.
    pub fn original(&self, path: &str) -> Option<PathBuf> {
        let (token, n) = self.staged(path)?;
        let source = self.record(&token).ok()?.into_iter().nth(n)?;
        Some(source.folder.join(source.path))
    }

    /// Release every pin made before `since` whose token is not in `in_use`
    /// (containers that no longer exist; newer ones may belong to a create
    /// in progress), re-make those in use whose mount is gone (the host
    /// restarted) or doubled, and first unmount every other mount beneath
    /// the root (what a killed server or a stray mount left: on a token's
    /// folder, inside a staging folder, past a record's end), so that
    /// removing a token's folder never reaches into something mounted
    /// there. Nothing outside the root is touched. Returns how many pins
    /// were released.
    pub fn sweep(&self, in_use: &HashSet<String>, since: std::time::SystemTime) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let mut tokens = Vec::new();
        let mut needed = HashSet::new();
        let mut fresh = HashSet::new();
        for e in entries.flatten() {
            let token = e.file_name().to_string_lossy().into_owned();
            let new = e
                .metadata()
                .and_then(|m| m.modified())
                .map_or(true, |t| t >= since);
            if in_use.contains(&token) {
                let count = self.record(&token).map_or(0, |r| r.len());
                needed.extend((0..count).map(|n| e.path().join(n.to_string())));
            } else if new {
                fresh.insert(token.clone());
            }
            tokens.push((token, new));
        }
        let mounted = || {
            let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            mounts_beneath(&text, &self.root)
        };
        for point in strays(mounted().keys(), &self.root, &needed, &fresh) {
            unmount_all(&point);
            tracing::info!("unmounted {}: no pin needs it", point.display());
        }
        let mounted = mounted();
        let mut released = 0;
        for (token, new) in tokens {
            if !in_use.contains(&token) {
                if !new {
                    self.remove_token(&token);
                    released += 1;
                }
                continue;
            }
            let Ok(sources) = self.record(&token) else {
                continue;
            };
            for (n, source) in sources.iter().enumerate() {
                let target = self.root.join(&token).join(n.to_string());
                if mounted.get(&target) != Some(&1) {
                    if let Err(err) = Self::mount_source(source, &target) {
                        tracing::warn!("re-pinning {}: {err}", target.display());
                    }
                }
            }
        }
        released
    }
}

/// The mount points strictly beneath `root` in `mountinfo` (the text of
/// `/proc/self/mountinfo`; escapes such as `\040` undone), each with how
/// many mounts are stacked on it.
fn mounts_beneath(mountinfo: &str, root: &Path) -> HashMap<PathBuf, usize> {
    let mut out = HashMap::new();
    for point in mountinfo.lines().filter_map(|l| l.split(' ').nth(4)) {
        let point = PathBuf::from(unescape_octal(point));
        if point.starts_with(root) && point != root {
            *out.entry(point).or_insert(0) += 1;
        }
    }
    out
}

/// Which of `mounted` no pin needs, shallowest first (unmounting one
/// detaches those beneath it, and one mounted over a folder hides the
/// mounts inside that folder): beneath `root` and
/// neither a `needed` staging folder nor beneath the folder of a `fresh`
/// token (one a create in progress may be making). Anything not strictly
/// beneath `root` is never among them.
fn strays<'a>(
    mounted: impl IntoIterator<Item = &'a PathBuf>,
    root: &Path,
    needed: &HashSet<PathBuf>,
    fresh: &HashSet<String>,
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mounted
        .into_iter()
        .filter(|p| p.starts_with(root) && p.as_path() != root && !needed.contains(*p))
        .filter(|p| {
            let token = p
                .strip_prefix(root)
                .ok()
                .and_then(|r| r.components().next());
            !token.is_some_and(|t| fresh.contains(&*t.as_os_str().to_string_lossy()))
        })
        .cloned()
        .collect();
    out.sort_by_key(|p| p.components().count());
    out
}

/// Undo the octal escapes of mountinfo and fstab fields (`\040` for a space, ...).
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Pins, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let pins = Pins::new(&dir.path().join("data"), "docker").unwrap();
        let user = dir.path().join("share/bob");
        std::fs::create_dir_all(user.join("p/t")).unwrap();
        std::fs::write(user.join("p/t/mine"), b"bob").unwrap();
        (dir, pins, user)
    }

    fn source(folder: &Path, path: &str) -> Source {
        Source {
            folder: folder.to_path_buf(),
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn a_pin_holds_the_folder_not_the_path() {
        let (dir, pins, user) = setup();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("marker"), b"host").unwrap();
        let staged = pins.pin(&[source(&user, "p/t")]).unwrap();
        assert!(staged[0].join("mine").is_file());
        // Swapped for a link after the pin: the pin still shows bob's folder.
        std::fs::rename(user.join("p/t"), user.join("p/old")).unwrap();
        std::os::unix::fs::symlink(&host, user.join("p/t")).unwrap();
        assert!(staged[0].join("mine").is_file());
        assert!(!staged[0].join("marker").exists());
        // Re-made before a start: the link is refused, nothing is mounted.
        let path = staged[0].to_string_lossy().into_owned();
        let e = pins.refresh([path.as_str()]).unwrap_err();
        assert!(matches!(e, Error::Denied(_)), "{e:?}");
        assert!(!staged[0].join("marker").exists());
        // A link as a parent is refused too.
        std::fs::remove_file(user.join("p/t")).unwrap();
        std::fs::rename(user.join("p"), user.join("q")).unwrap();
        std::os::unix::fs::symlink(&host, user.join("p")).unwrap();
        assert!(matches!(
            pins.pin(&[source(&user, "p/t")]),
            Err(Error::Denied(_))
        ));
        pins.release([path.as_str()]);
        assert!(!staged[0].exists());
        assert_eq!(std::fs::read_dir(pins.root()).unwrap().count(), 0);
    }

    #[test]
    fn sweep_releases_unused_tokens() {
        let (_dir, pins, user) = setup();
        let a = pins.pin(&[source(&user, "p/t")]).unwrap();
        let b = pins.pin(&[source(&user, "p")]).unwrap();
        let keep = pins.tokens([a[0].to_str().unwrap()]);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(pins.sweep(&keep, std::time::SystemTime::UNIX_EPOCH), 0);
        assert!(b[0].join("t/mine").is_file(), "a newer pin is kept");
        assert_eq!(pins.sweep(&keep, later), 1);
        assert!(a[0].join("mine").is_file());
        assert!(!b[0].exists());
        pins.release([a[0].to_str().unwrap()]);
    }

    #[test]
    fn only_mounts_beneath_the_root_are_strays() {
        let root = Path::new("/srv/data dir/binds/docker");
        let info = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 8:1 /x /srv/data\\040dir/binds/docker rw - ext4 /dev/sda1 rw
31 22 8:1 /x /srv/data\\040dir/binds/docker2/ab/0 rw - ext4 /dev/sda1 rw
32 22 8:1 /x /srv/data\\040dir/binds/docker/ab/0 rw - ext4 /dev/sda1 rw
33 22 8:1 /x /srv/data\\040dir/binds/docker/ab/0 rw - ext4 /dev/sda1 rw
34 22 8:1 /x /srv/data\\040dir/binds/docker/ab/0/in\\040it rw - ext4 /dev/sda1 rw
35 22 8:1 /x /srv/data\\040dir/binds/docker/cd rw - ext4 /dev/sda1 rw
36 22 8:1 /x /srv/data\\040dir/binds/docker/ef/0 rw - ext4 /dev/sda1 rw
37 22 8:1 /x /srv/data\\040dir/binds rw - ext4 /dev/sda1 rw
";
        let mounted = mounts_beneath(info, root);
        assert_eq!(mounted.len(), 4, "{mounted:?}");
        assert_eq!(mounted[&root.join("ab/0")], 2, "stacked mounts are counted");
        let needed = HashSet::from([root.join("ab/0")]);
        let fresh = HashSet::from(["ef".to_string()]);
        let outside = [
            PathBuf::from("/"),
            PathBuf::from("/srv/data dir/binds/docker2/ab/0"),
            root.to_path_buf(),
        ];
        let all: Vec<&PathBuf> = mounted.keys().chain(&outside).collect();
        assert_eq!(
            strays(all, root, &needed, &fresh),
            [root.join("cd"), root.join("ab/0/in it")],
            "shallowest first; a needed pin, a fresh token and anything not beneath the root are kept"
        );
    }

    #[test]
    fn sweep_unmounts_what_no_pin_needs() {
        let (dir, pins, user) = setup();
        let a = pins.pin(&[source(&user, "p")]).unwrap();
        let b = pins.pin(&[source(&user, "p/t")]).unwrap();
        let count = || {
            let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            mounts_beneath(&text, pins.root()).values().sum::<usize>()
        };
        // Left behind: a mount inside a pin in use, one on the folder of an
        // unused token, and one outside the root (never touched).
        let stray = dir.path().join("stray");
        std::fs::create_dir(&stray).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let token_b = b[0].parent().unwrap().to_path_buf();
        for target in [&a[0].join("t"), &token_b, &outside] {
            mount(Some(stray.as_path()), target, libc::MS_BIND).unwrap();
        }
        assert_eq!(count(), 4);
        let keep = pins.tokens([a[0].to_str().unwrap()]);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(pins.sweep(&keep, later), 1);
        assert_eq!(count(), 1, "only the pin in use is mounted");
        assert!(a[0].join("t/mine").is_file());
        assert!(!token_b.exists());
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            text.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|p| Path::new(&unescape_octal(p)) == outside),
            "a mount outside the root stays"
        );
        unmount_all(&outside);
        pins.release([a[0].to_str().unwrap()]);
        assert_eq!(count(), 0);
    }
}
