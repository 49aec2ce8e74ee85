//! Folder backups of LXC containers: the files under a `subtree` of a
//! container's root file system written to a tar under the share root, and
//! a tar restored into such a folder (`volume_export` / `volume_import`
//! with `type: lxc`).
//!
//! The subtree is opened once, beneath the root file system by the kernel
//! ([`beneath::open`]: `..`, absolute links and links leading out are
//! refused), and what is read or written is that open folder: tar runs in
//! it (`fchdir` on the descriptor), the import unpacks into its real path.
//!
//! Owners are the container's: an unprivileged container's host ids
//! (`base + n`, [`IdMap`]) are written as `n` (GNU tar's `--owner-map` and
//! `--group-map`), and an archive's ids are shifted back into the range
//! when restored. A privileged container's ids are the host's, kept as
//! they are.
//!
//! Export: GNU tar (`--numeric-owner`, `user.` extended attributes, links
//! kept as links), through the parallel gzip when asked, as a container
//! export is written ([`super::export::archive`]). A running container is
//! frozen while the folder is read (unless `live`) and thawed afterwards,
//! also when the export fails or is cancelled.
//!
//! Import: the whole archive is checked first ([`archives::check_backup`]:
//! absolute names, `..`, writes through a link the archive made, hard links
//! leading out, device nodes, too large a content), then the folder is
//! made (missing parts owned by the container's root) and checked empty
//! unless `overwrite`, then the archive is unpacked by the rules of image
//! extraction ([`unpack::extract_into`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::export::{self, Progress, Thaw, TAR_BLOCKING_FACTOR};
use super::idmap::{IdMap, COUNT};
use super::{tools, unpack};
use crate::queue::LogLevel;
use crate::runtime::output::Output;
use crate::runtime::{archives, beneath, subtree, CallContext, Error, RtResult};

/// The ids of the container whose LXC config is `config`: `None` when it
/// maps none (`lxc.idmap`), a privileged container.
pub fn idmap_of(config: &str) -> Option<IdMap> {
    let (mut uid, mut gid) = (None, None);
    for line in config.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "lxc.idmap" {
            continue;
        }
        let fields: Vec<&str> = value.split_whitespace().collect();
        if let [kind, "0", base, _] = fields[..] {
            let base = base.parse::<u32>().ok();
            match kind {
                "u" => uid = uid.or(base),
                "g" => gid = gid.or(base),
                _ => {}
            }
        }
    }
    Some(IdMap {
        uid: uid?,
        gid: gid?,
    })
}

/// The refusal for an open of `subtree` that failed with `e`.
fn refusal(subtree: &str, e: &std::io::Error) -> Error {
    let why = if beneath::escaped(e) {
        "leaves the container's root through a link"
    } else {
        match e.raw_os_error() {
            Some(libc::ENOENT) => "does not exist in the container",
            Some(libc::ENOTDIR) => "is not a folder",
            _ => return Error::Runtime(format!("opening subtree `{subtree}`: {e}")),
        }
    };
    Error::InvalidParams(format!("subtree: `{subtree}` {why}"))
}

/// The container's root file system, opened as a folder.
fn open_root(rootfs: &Path) -> RtResult<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(rootfs)
        .map(OwnedFd::from)
        .map_err(|e| Error::Runtime(format!("opening {}: {e}", rootfs.display())))
}

/// `rel` beneath `root`, a folder, opened with `flags`.
fn open_beneath(root: &OwnedFd, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    beneath::open(root.as_fd(), rel, flags | libc::O_DIRECTORY, 0)
}

/// Bytes of the files under `dir`, no link followed, on one file system
/// (for progress).
fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            total += 512;
            if meta.is_dir() && meta.dev() == root.dev() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len().div_ceil(512) * 512;
            }
        }
    }
    total
}

/// GNU tar's `--owner-map` / `--group-map` files turning an unprivileged
/// container's host ids into its own (`+<base+n> +<n>` for each id).
struct Maps {
    dir: tempfile::TempDir,
}

impl Maps {
    fn write(map: IdMap) -> RtResult<Maps> {
        let io = |e: std::io::Error| Error::Runtime(format!("writing tar's id maps: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("stevedore-idmap-")
            .tempdir()
            .map_err(io)?;
        for (file, base) in [("owners", map.uid), ("groups", map.gid)] {
            let mut text = String::with_capacity(COUNT as usize * 16);
            for n in 0..COUNT {
                text.push_str(&format!("+{} +{n}\n", u64::from(base) + u64::from(n)));
            }
            std::fs::write(dir.path().join(file), text).map_err(io)?;
        }
        Ok(Maps { dir })
    }

    fn args(&self) -> [String; 2] {
        let path = |f: &str| self.dir.path().join(f).display().to_string();
        [
            format!("--owner-map={}", path("owners")),
            format!("--group-map={}", path("groups")),
        ]
    }
}

/// A folder export: the container `name` of `lxc_path`, its folder `dir`.
pub struct Export<'a> {
    /// The LXC path.
    pub lxc_path: &'a Path,
    /// The container's name.
    pub name: &'a str,
    /// The container's folder (holding `rootfs`).
    pub dir: &'a Path,
    /// The folder inside the container, as given (`/var/lib/data`).
    pub subtree: &'a str,
    /// Freeze the container while reading (it runs and `live` is off).
    pub freeze: bool,
    /// The container's ids, when unprivileged.
    pub idmap: Option<IdMap>,
    /// Gzip the tar.
    pub gzip: bool,
}

/// Write the folder to `output`; bytes written.
pub async fn export(cx: &CallContext, req: Export<'_>, output: Output) -> RtResult<u64> {
    let rel = subtree::relative(req.subtree)?;
    let root = open_root(&req.dir.join("rootfs"))?;
    let folder = open_beneath(&root, &rel, libc::O_RDONLY).map_err(|e| refusal(req.subtree, &e))?;
    let real = beneath::real_path(&folder)
        .map_err(|e| Error::Runtime(format!("subtree `{}`: {e}", req.subtree)))?;
    let total = Arc::new(AtomicU64::new(0));
    {
        let total = total.clone();
        tokio::task::spawn_blocking(move || {
            total.store(tree_size(&real).max(1), Ordering::Relaxed)
        });
    }
    let maps = req.idmap.map(Maps::write).transpose()?;
    let mut thaw = Thaw {
        path: req.lxc_path.to_path_buf(),
        name: req.name.to_string(),
        armed: false,
    };
    if req.freeze {
        tools::lxc("freeze", req.lxc_path, req.name, &[]).await?;
        thaw.armed = true;
        // What LXC itself says, for the task's log.
        let state = tools::lxc("info", req.lxc_path, req.name, &["-s", "-H"])
            .await
            .unwrap_or_default();
        cx.reporter.log(
            LogLevel::Info,
            &format!(
                "container {} is {} while {} is read",
                req.name,
                state.trim(),
                req.subtree
            ),
        );
    }
    let mut cmd = tools::command("tar")?;
    cmd.arg("--numeric-owner")
        .arg("--xattrs")
        .arg("--xattrs-include=user.*")
        .arg("--warning=no-file-ignored")
        .arg(format!("--blocking-factor={TAR_BLOCKING_FACTOR}"));
    if let Some(maps) = &maps {
        cmd.args(maps.args());
    }
    cmd.args(["-cf", "-", "."]).stderr(Stdio::piped());
    let at = folder.as_raw_fd();
    // SAFETY: `fchdir` is async-signal-safe; `folder` outlives the spawn
    // (it is dropped after tar ended), so `at` is open in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fchdir(at) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let progress = Progress {
        cx,
        label: format!("{}:{}", req.name, req.subtree),
        total,
        last: -1,
    };
    let archived = export::archive(cmd, Vec::new(), &output, progress, req.gzip).await;
    drop(folder);
    if req.freeze {
        thaw.armed = false;
        tools::lxc("unfreeze", req.lxc_path, req.name, &[]).await?;
        cx.reporter
            .log(LogLevel::Info, &format!("container {} thawed", req.name));
    }
    let (status, written, errors) = archived?;
    let written = written?;
    // 1: "some files changed while being read" (a live export).
    if !matches!(status.code(), Some(0) | Some(1)) {
        return Err(Error::Runtime(format!(
            "archiving {} of container {}: tar failed ({status}): {}",
            req.subtree,
            req.name,
            errors.trim()
        )));
    }
    output.commit()?;
    Ok(written)
}

/// A folder import into the container whose folder is `dir`.
pub struct Import {
    /// The container's folder (holding `rootfs`).
    pub dir: PathBuf,
    /// The folder inside the container, as given; made when missing.
    pub subtree: String,
    /// The archive (opened under the share root).
    pub file: std::fs::File,
    /// Lay the archive over a folder that holds files.
    pub overwrite: bool,
    /// The container's ids, when unprivileged.
    pub idmap: Option<IdMap>,
    /// The cap on the archive's expanded size.
    pub cap: u64,
}

/// Open `rel` beneath `root`, making its missing folders (mode 0755,
/// owned by the container's root), none through a link.
fn make_folder(root: &OwnedFd, rel: &Path, shown: &str, owner: (u32, u32)) -> RtResult<OwnedFd> {
    let refuse = |e: std::io::Error| refusal(shown, &e);
    let mut at = open_beneath(root, Path::new(""), libc::O_PATH).map_err(refuse)?;
    let mut prefix = PathBuf::new();
    for part in rel.components() {
        prefix.push(part);
        match open_beneath(root, &prefix, libc::O_PATH) {
            Ok(fd) => at = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = part.as_os_str();
                beneath::mkdir(at.as_fd(), name, 0o755).map_err(refuse)?;
                let next = beneath::open_no_links(
                    at.as_fd(),
                    Path::new(name),
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                )
                .map_err(refuse)?;
                chown_fd(&next, owner, shown)?;
                at = next;
            }
            Err(e) => return Err(refuse(e)),
        }
    }
    Ok(at)
}

/// `fchownat(fd, "", AT_EMPTY_PATH)`: the owner of the open folder itself.
fn chown_fd(fd: &OwnedFd, (uid, gid): (u32, u32), shown: &str) -> RtResult<()> {
    // SAFETY: a live descriptor and a static empty NUL-terminated path.
    let rc = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Runtime(format!("subtree `{shown}`: chown: {e}")));
    }
    Ok(())
}

/// Restore the archive into the folder (blocking); the archive's bytes.
pub fn import(req: Import) -> RtResult<u64> {
    let rel = subtree::relative(&req.subtree)?;
    let length = req
        .file
        .metadata()
        .map_err(|e| Error::Other(format!("path: {e}")))?
        .len();
    let probe = req
        .file
        .try_clone()
        .map_err(|e| Error::Other(format!("path: {e}")))?;
    archives::check_backup(probe, req.cap)?;
    let root = open_root(&req.dir.join("rootfs"))?;
    let owner = req.idmap.map(|m| m.shift(0, 0)).unwrap_or((0, 0));
    let folder = make_folder(&root, &rel, &req.subtree, owner)?;
    let real = beneath::real_path(&folder)
        .map_err(|e| Error::Runtime(format!("subtree `{}`: {e}", req.subtree)))?;
    if !req.overwrite {
        let mut entries = std::fs::read_dir(&real)
            .map_err(|e| Error::Runtime(format!("subtree `{}`: {e}", req.subtree)))?;
        if entries.next().is_some() {
            return Err(Error::Conflict(format!(
                "subtree `{}` holds files; set `overwrite` to lay the archive over them",
                req.subtree
            )));
        }
    }
    unpack::extract_into(req.file, &real, req.cap, req.idmap)?;
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idmap_is_read_from_the_config() {
        let config = "lxc.rootfs.path = dir:/x/rootfs\nlxc.idmap = u 0 131072 65536\nlxc.idmap = g 0 196608 65536\n";
        assert_eq!(
            idmap_of(config),
            Some(IdMap {
                uid: 131072,
                gid: 196608
            })
        );
        assert_eq!(idmap_of("lxc.uts.name = a\n"), None);
        assert_eq!(idmap_of("lxc.idmap = u 0 131072 65536\n"), None);
    }

    #[test]
    fn subtrees_are_opened_beneath_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("var/lib/data")).unwrap();
        std::os::unix::fs::symlink("../../..", rootfs.join("var/lib/out")).unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.join("abs")).unwrap();
        std::os::unix::fs::symlink("lib/data", rootfs.join("var/inside")).unwrap();
        std::fs::write(rootfs.join("file"), "x").unwrap();
        let root = open_root(&rootfs).unwrap();
        let open = |s: &str| {
            let rel = subtree::relative(s)?;
            open_beneath(&root, &rel, libc::O_PATH).map_err(|e| refusal(s, &e))
        };
        open("/var/lib/data").unwrap();
        open("/var/inside").unwrap();
        open("/").unwrap();
        for (bad, words) in [
            ("/var/lib/out/..", "`..`"),
            ("/var/lib/out/x", "leaves the container's root"),
            ("/abs", "leaves the container's root"),
            ("/missing", "does not exist"),
            ("/file", "is not a folder"),
        ] {
            let e = open(bad).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidParams(m) if m.starts_with("subtree: ") && m.contains(words)),
                "{bad}: {e:?}"
            );
        }
        // A missing folder is made, not through a link.
        let made = make_folder(&root, Path::new("srv/new/deep"), "/srv/new/deep", (0, 0)).unwrap();
        assert_eq!(
            beneath::real_path(&made).unwrap(),
            rootfs.canonicalize().unwrap().join("srv/new/deep")
        );
        let e = make_folder(&root, Path::new("abs/x"), "/abs/x", (0, 0)).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParams(m) if m.contains("leaves")),
            "{e:?}"
        );
        assert!(!Path::new("/etc/x").exists());
    }
}
