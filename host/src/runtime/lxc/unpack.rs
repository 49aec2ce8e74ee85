//! Reading rootfs archives: gzip, xz or plain tar, with the files at the top
//! level or in LXC's layout (`rootfs/` beside a `config`), and extracting
//! them safely.
//!
//! Every entry is first checked by [`archives::Checker`] (no `..`, no
//! absolute name, nothing through a link the archive made, the expanded
//! size under its cap), then extracted by the `tar` crate's `unpack_in`,
//! which also refuses entries that would land outside the destination. Any
//! refusal fails the whole extraction rather than dropping an entry
//! silently. FIFOs and the safe character devices ([`SAFE_DEVICES`]: null,
//! zero, full, random, urandom, tty, console, ptmx), which the crate would
//! write as plain files, are made with `mknod` under the same confinement;
//! any other device node is left out and named in [`Extracted::skipped`].
//!
//! What the host gets from an image is never more than an unprivileged
//! user's:
//! - for an unprivileged container ([`IdMap`]) every owner is shifted into
//!   its range, so a setuid-root file of the image is setuid to the
//!   container's root, an unprivileged id on the host; for a privileged one
//!   the setuid and setgid bits are dropped;
//! - extended attributes are kept in the `user.` namespace only:
//!   `security.capability` (file capabilities, which the host honours),
//!   `security.selinux`, `trusted.*` and ACLs (whose ids would not be
//!   shifted) are left out.

use std::io::Read;
use std::path::Path;

use super::idmap::IdMap;
pub use crate::runtime::archives::Compression;
use crate::runtime::archives::CONFIG_ENTRY;
use crate::runtime::archives::{self, ArchiveError, Checker};
use crate::runtime::Error;

/// Open `path` decompressed (capped at `cap` expanded bytes).
fn open(path: &Path, cap: u64) -> Result<archives::Stream, Error> {
    let file =
        std::fs::File::open(path).map_err(|e| bad("path", format!("cannot read archive: {e}")))?;
    archives::open(file, cap)
        .map(|(_, stream)| stream)
        .map_err(|e| bad("path", format!("cannot read archive: {e}")))
}

fn refused(e: ArchiveError) -> Error {
    bad("path", e)
}

/// Where the root filesystem is inside an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Files at the top level.
    Flat,
    /// LXC's layout: `rootfs/...` (plus `config`, ignored).
    Lxc,
}

/// An error with its sources (the tar crate puts the cause in `source`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

fn bad(path_field: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidParams(format!("{path_field}: {e}"))
}

/// Look at the first entries to tell the layout (stops at the first file of the rootfs).
pub fn layout(archive: &Path) -> Result<Layout, Error> {
    let reader = open(archive, archives::DEFAULT_MAX_EXPANDED_BYTES)?;
    let mut tar = tar::Archive::new(reader);
    let mut checker = Checker::new(archives::DEFAULT_MAX_EXPANDED_BYTES);
    let entries = tar
        .entries()
        .map_err(|e| bad("path", format!("not a tar archive: {e}")))?;
    let mut seen = 0;
    for entry in entries {
        let entry = entry.map_err(|e| bad("path", format!("not a tar archive: {e}")))?;
        seen += 1;
        let name = checker.check(&entry).map_err(refused)?;
        let first = name
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        match first.as_deref() {
            None => continue,
            Some(".stevedore") => continue,
            Some("config") if name.components().count() == 1 => continue,
            Some("rootfs") => return Ok(Layout::Lxc),
            Some(_) => return Ok(Layout::Flat),
        }
    }
    if seen == 0 {
        return Err(bad("path", "the archive holds no files"));
    }
    Ok(Layout::Flat)
}

/// The character devices an image may carry, as `(major, minor)`: null,
/// zero, full, random, urandom, tty, console, ptmx.
pub const SAFE_DEVICES: [(u32, u32); 8] = [
    (1, 3),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 9),
    (5, 0),
    (5, 1),
    (5, 2),
];

/// What an extraction wrote.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Entries written.
    pub written: u64,
    /// Device nodes left out (not in [`SAFE_DEVICES`]), by name.
    pub skipped: Vec<String>,
}

/// Extract `archive` into the container folder `dir` (its root filesystem
/// goes to `dir/rootfs`, which must exist and be empty), expanding at most
/// `max_expanded` bytes, owners shifted by `idmap` (an unprivileged
/// container) or kept with the setuid and setgid bits dropped (`None`).
pub fn extract(
    archive: &Path,
    dir: &Path,
    layout: Layout,
    max_expanded: u64,
    idmap: Option<IdMap>,
) -> Result<Extracted, Error> {
    let rootfs = dir.join("rootfs");
    let (dest, strip_rootfs) = match layout {
        Layout::Flat => (rootfs.clone(), false),
        Layout::Lxc => (dir.to_path_buf(), true),
    };
    let reader = open(archive, max_expanded)?;
    if let Some(map) = idmap {
        let (uid, gid) = map.shift(0, 0);
        chown(&rootfs, uid, gid)?;
    }
    let what = if strip_rootfs {
        What::LxcRootfs
    } else {
        What::Image
    };
    unpack(reader, &dest, what, max_expanded, idmap)
}

/// Extract the tar (or tar.gz, tar.xz) `archive` into the folder `dest`,
/// every entry kept (a folder backup: nothing is taken for LXC's layout or
/// the server's settings), under the same rules as [`extract`]. The
/// archive was checked whole before ([`archives::check_backup`]).
pub fn extract_into(
    archive: std::fs::File,
    dest: &Path,
    max_expanded: u64,
    idmap: Option<IdMap>,
) -> Result<Extracted, Error> {
    let reader = archives::open(archive, max_expanded)
        .map(|(_, stream)| stream)
        .map_err(|e| bad("path", format!("cannot read archive: {e}")))?;
    unpack(reader, dest, What::Folder, max_expanded, idmap)
}

/// What an archive being extracted holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum What {
    /// An image's files at the top level (the server's `.stevedore` left out).
    Image,
    /// LXC's layout: only `rootfs/...`, stripped of `rootfs`.
    LxcRootfs,
    /// A folder backup: every entry.
    Folder,
}

fn unpack(
    reader: archives::Stream,
    dest: &Path,
    what: What,
    max_expanded: u64,
    idmap: Option<IdMap>,
) -> Result<Extracted, Error> {
    let strip_rootfs = what == What::LxcRootfs;
    let mut tar = tar::Archive::new(reader);
    let mut checker = Checker::new(max_expanded);
    tar.set_preserve_permissions(true);
    // Owners, modes and attributes are set by `settle`, after each entry.
    tar.set_preserve_ownerships(false);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);
    let entries = tar
        .entries()
        .map_err(|e| bad("path", format!("not a tar archive: {e}")))?;
    let mut done = Extracted::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| refused(ArchiveError::from_io(&e)))?;
        let raw = entry.path().map_err(|e| bad("path", e))?.into_owned();
        let name = checker.check(&entry).map_err(refused)?;
        let first = name.components().next();
        let Some(first) = first else { continue };
        if what != What::Folder && first.as_os_str() == ".stevedore" {
            continue;
        }
        if strip_rootfs {
            if first.as_os_str() != "rootfs" {
                continue; // `config` and anything else beside the rootfs
            }
            if name.components().count() == 1 {
                if !entry.header().entry_type().is_dir() {
                    return Err(bad("path", "archive entry `rootfs` is not a folder"));
                }
                continue;
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            if special(&entry, dest, &name, idmap)? {
                done.written += 1;
            } else {
                done.skipped.push(raw.display().to_string());
            }
            continue;
        }
        if kind.is_hard_link() && what == What::Folder {
            unlink_beneath(dest, &name)?;
        }
        let unpacked = entry
            .unpack_in(dest)
            .map_err(|e| match ArchiveError::from_io(&e) {
                too_large @ ArchiveError::TooLarge { .. } => refused(too_large),
                _ => bad(
                    "path",
                    format!("archive entry `{}`: {}", raw.display(), chain(&e)),
                ),
            })?;
        if !unpacked {
            return Err(bad(
                "path",
                format!("archive entry `{}` leaves the root", raw.display()),
            ));
        }
        if !kind.is_hard_link() {
            settle(&mut entry, &dest.join(&name), idmap)?;
        }
        done.written += 1;
    }
    Ok(done)
}

/// Remove the file (not a folder) at `name` beneath `dest`, if any, no
/// link followed on the way: a hard link laid over a folder that holds
/// files replaces a file of its name, as a regular file's entry does.
fn unlink_beneath(dest: &Path, name: &Path) -> Result<(), Error> {
    use std::os::fd::AsFd;
    let (Some(parent), Some(file)) = (name.parent(), name.file_name()) else {
        return Ok(());
    };
    let io = |e: std::io::Error| bad("path", format!("archive entry `{}`: {e}", name.display()));
    let root = std::fs::File::open(dest).map_err(io)?;
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = match crate::runtime::beneath::open(
        root.as_fd(),
        parent,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    ) {
        Ok(dir) => dir,
        // No folder yet: nothing to replace (unpacking then says why).
        Err(_) => return Ok(()),
    };
    match crate::runtime::beneath::kind(dir.as_fd(), file).map_err(io)? {
        Some(kind) if kind != libc::S_IFDIR => {
            crate::runtime::beneath::unlink(dir.as_fd(), file).map_err(io)
        }
        _ => Ok(()),
    }
}

fn c_path(path: &Path) -> Result<std::ffi::CString, Error> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| bad("path", format!("bad name `{}`", path.display())))
}

/// `lchown`: the owner of `path` itself, never of what a link leads to.
fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| Error::Runtime(format!("chown {}: {e}", path.display())))
}

/// The owner, mode and extended attributes of an entry just written at
/// `target`: owners shifted by `idmap` (or kept), setuid and setgid only
/// under an idmap, `user.` attributes only.
fn settle<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Path,
    idmap: Option<IdMap>,
) -> Result<(), Error> {
    let header = entry.header();
    let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
    let (uid, gid) = match idmap {
        Some(map) => map.shift(uid, gid),
        None => (
            u32::try_from(uid).unwrap_or(u32::MAX - 1),
            u32::try_from(gid).unwrap_or(u32::MAX - 1),
        ),
    };
    let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
    if idmap.is_none() {
        mode &= !0o6000;
    }
    let link = header.entry_type().is_symlink();
    // chown drops the setuid and setgid bits: the mode comes after it.
    chown(target, uid, gid)?;
    if !link {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::Runtime(format!("chmod {}: {e}", target.display())))?;
    }
    let Ok(Some(pax)) = entry.pax_extensions() else {
        return Ok(());
    };
    let c = c_path(target)?;
    for ext in pax.flatten() {
        let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
            continue;
        };
        if !name.starts_with("user.") {
            continue;
        }
        let Ok(c_name) = std::ffi::CString::new(name) else {
            continue;
        };
        let value = ext.value_bytes();
        // SAFETY: NUL-terminated name and path, a value slice of its own length.
        unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c_name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
    }
    Ok(())
}

/// Make a FIFO or a safe device node at `dest/name`, confined to `dest`;
/// `false` for a device node left out.
fn special<R: Read>(
    entry: &tar::Entry<'_, R>,
    dest: &Path,
    name: &Path,
    idmap: Option<IdMap>,
) -> Result<bool, Error> {
    let shown = name.display().to_string();
    let (Some(parent), Some(file)) = (name.parent(), name.file_name()) else {
        return Ok(true);
    };
    let header = entry.header();
    let kind = header.entry_type();
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    let safe =
        kind.is_fifo() || (kind.is_character_special() && SAFE_DEVICES.contains(&(major, minor)));
    if !safe {
        tracing::warn!("archive entry `{shown}`: device {major}:{minor} left out");
        return Ok(false);
    }
    let root = dest
        .canonicalize()
        .map_err(|e| Error::Runtime(format!("{}: {e}", dest.display())))?;
    let parent = dest.join(parent);
    let real = parent.canonicalize().map_err(|e| {
        bad(
            "path",
            format!("archive entry `{shown}`: its folder is missing ({e})"),
        )
    })?;
    if !real.starts_with(&root) {
        return Err(bad(
            "path",
            format!("archive entry `{shown}` leaves the root through a link"),
        ));
    }
    let target = real.join(file);
    let mode = header.mode().unwrap_or(0o600) & 0o777;
    let type_bits = if kind.is_character_special() {
        libc::S_IFCHR
    } else {
        libc::S_IFIFO
    };
    let _ = std::fs::remove_file(&target);
    let c_path = c_path(&target)?;
    // SAFETY: a plain system call on a NUL-terminated path we own.
    let rc = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            type_bits | mode as libc::mode_t,
            libc::makedev(major, minor),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!("archive entry `{shown}`: mknod: {e}; left out");
        return Ok(false);
    }
    let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
    let (uid, gid) = match idmap {
        Some(map) => map.shift(uid, gid),
        None => (uid as u32, gid as u32),
    };
    chown(&target, uid, gid)?;
    Ok(true)
}

/// The recorded settings of an export archive (its first entry), if any.
pub fn recorded_config(archive: std::fs::File) -> Result<Option<serde_json::Value>, Error> {
    let (_, reader) = archives::open(archive, archives::DEFAULT_MAX_EXPANDED_BYTES)
        .map_err(|e| bad("path", format!("cannot read archive: {e}")))?;
    let mut tar = tar::Archive::new(reader);
    let mut entries = tar
        .entries()
        .map_err(|e| bad("path", format!("not a tar archive: {e}")))?;
    let Some(first) = entries.next() else {
        return Err(bad("path", "not a tar archive (no entries)"));
    };
    let mut first = first.map_err(|e| bad("path", format!("not a tar archive: {e}")))?;
    let name = Checker::new(archives::DEFAULT_MAX_EXPANDED_BYTES)
        .check(&first)
        .map_err(refused)?;
    if name != Path::new(CONFIG_ENTRY) {
        return Ok(None);
    }
    if first.size() > 16 << 20 {
        return Err(bad("path", format!("{CONFIG_ENTRY} is too large")));
    }
    let mut text = Vec::new();
    first
        .read_to_end(&mut text)
        .map_err(|e| bad("path", format!("reading {CONFIG_ENTRY}: {e}")))?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| bad("path", format!("bad {CONFIG_ENTRY}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use std::path::PathBuf;

    const CAP: u64 = archives::DEFAULT_MAX_EXPANDED_BYTES;

    fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        // Raw bytes: `set_path` itself refuses `..`, and hostile archives don't ask.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        h
    }

    fn archive(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = header(name, *kind, 0);
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                h.set_link_name(data).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn setup(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.tar");
        std::fs::write(&file, bytes).unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        (tmp, file, dir)
    }

    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};

    #[test]
    fn flat_and_lxc_layouts_land_in_rootfs() {
        let (_t, file, dir) = setup(&archive(&[
            ("./", D, ""),
            ("./etc/", D, ""),
            ("./etc/hostname", F, "x\n"),
            ("./bin/", D, ""),
            ("./bin/busybox", F, "elf"),
            ("./bin/sh", H, "./bin/busybox"),
        ]));
        assert_eq!(layout(&file).unwrap(), Layout::Flat);
        extract(&file, &dir, Layout::Flat, CAP, None).unwrap();
        assert_eq!(
            std::fs::read(dir.join("rootfs/etc/hostname")).unwrap(),
            b"x\n"
        );
        assert_eq!(std::fs::read(dir.join("rootfs/bin/sh")).unwrap(), b"elf");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&archive(&[
            (CONFIG_ENTRY, F, "{}"),
            ("config", F, "lxc.hook.pre-start = /bin/evil\n"),
            ("rootfs/", D, ""),
            ("rootfs/etc/", D, ""),
            ("rootfs/etc/hostname", F, "y\n"),
            ("rootfs/etc/h2", H, "rootfs/etc/hostname"),
        ]))
        .unwrap();
        let (_t, file, dir) = setup(&gz.finish().unwrap());
        assert_eq!(layout(&file).unwrap(), Layout::Lxc);
        extract(&file, &dir, Layout::Lxc, CAP, None).unwrap();
        assert_eq!(std::fs::read(dir.join("rootfs/etc/h2")).unwrap(), b"y\n");
        assert!(
            !dir.join("config").exists(),
            "the archive's config is not taken"
        );
        assert_eq!(
            recorded_config(std::fs::File::open(&file).unwrap()).unwrap(),
            Some(serde_json::json!({}))
        );
    }

    /// An archive with a setuid-root file, a `security.capability` and a
    /// `user.` attribute, a block device, `/dev/mem` and `/dev/null`.
    fn hostile() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut suid = header("suid", F, 2);
        suid.set_mode(0o4755);
        suid.set_cksum();
        b.append(&suid, &b"#!"[..]).unwrap();
        b.append_pax_extensions([
            ("SCHILY.xattr.security.capability", &[1u8, 0, 0, 2][..]),
            ("SCHILY.xattr.user.note", &b"kept"[..]),
        ])
        .unwrap();
        b.append(&header("capped", F, 0), std::io::empty()).unwrap();
        for (name, kind, major, minor) in [
            ("sda", tar::EntryType::Block, 8, 0),
            ("mem", tar::EntryType::Char, 1, 1),
            ("null", tar::EntryType::Char, 1, 3),
        ] {
            let mut h = header(name, kind, 0);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn xattr_names(path: &Path) -> String {
        let c = c_path(path).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: a buffer of its own length, a NUL-terminated path.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        String::from_utf8_lossy(&buf[..n.max(0) as usize]).replace('\0', " ")
    }

    #[test]
    fn images_give_the_host_no_setuid_root_device_or_capability() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let root = unsafe { libc::geteuid() } == 0;
        let (_t, file, dir) = setup(&hostile());
        let done = extract(&file, &dir, Layout::Flat, CAP, None).unwrap();
        let rootfs = dir.join("rootfs");
        assert_eq!(done.skipped, ["sda", "mem"]);
        assert!(!rootfs.join("sda").exists() && !rootfs.join("mem").exists());
        let meta = std::fs::metadata(rootfs.join("suid")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755, "setuid dropped");
        let names = xattr_names(&rootfs.join("capped"));
        assert!(!names.contains("security."), "{names}");
        if root {
            assert!(std::fs::symlink_metadata(rootfs.join("null"))
                .unwrap()
                .file_type()
                .is_char_device());
            let (_t, file, dir) = setup(&hostile());
            let map = IdMap {
                uid: 131_072,
                gid: 196_608,
            };
            extract(&file, &dir, Layout::Flat, CAP, Some(map)).unwrap();
            let rootfs = dir.join("rootfs");
            let meta = std::fs::metadata(rootfs.join("suid")).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (131_072, 196_608, 0o4755),
                "setuid to the container's root, an unprivileged host id"
            );
            let top = std::fs::metadata(&rootfs).unwrap();
            assert_eq!((top.uid(), top.gid()), (131_072, 196_608));
        }
    }

    #[test]
    fn xz_archives_are_read() {
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&archive(&[("hello", F, "hi")])).unwrap();
        let (_t, file, dir) = setup(&xz.finish().unwrap());
        extract(&file, &dir, layout(&file).unwrap(), CAP, None).unwrap();
        assert_eq!(std::fs::read(dir.join("rootfs/hello")).unwrap(), b"hi");
        assert_eq!(
            recorded_config(std::fs::File::open(&file).unwrap()).unwrap(),
            None
        );
    }

    fn refused(entries: &[(&str, tar::EntryType, &str)], layout: Layout) {
        let (tmp, file, dir) = setup(&archive(entries));
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        match extract(&file, &dir, layout, CAP, None) {
            Err(Error::InvalidParams(m)) => {
                eprintln!("refused: {m}");
                assert!(m.starts_with("path: "), "{m}")
            }
            other => panic!("{entries:?}: {other:?}"),
        }
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "{entries:?} wrote outside"
        );
        assert!(!tmp.path().join("evil").exists());
    }

    #[test]
    fn hostile_archives_are_refused_and_write_nothing_outside() {
        // `..` in the name.
        refused(&[("../evil", F, "x")], Layout::Flat);
        refused(&[("a/../../evil", F, "x")], Layout::Flat);
        refused(&[("rootfs/../../evil", F, "x")], Layout::Lxc);
        // A link planted earlier, then a file through it.
        refused(
            &[("link", S, "../../outside"), ("link/evil", F, "x")],
            Layout::Flat,
        );
        refused(
            &[("link", S, "/tmp"), ("link/stevedore-evil", F, "x")],
            Layout::Flat,
        );
        refused(
            &[
                ("rootfs/", D, ""),
                ("rootfs/l", S, "../../outside"),
                ("rootfs/l/evil", F, "x"),
            ],
            Layout::Lxc,
        );
        // A hard link to a file outside.
        refused(&[("passwd", H, "/etc/passwd")], Layout::Flat);
        refused(&[("passwd", H, "../../outside/x")], Layout::Flat);
        // `rootfs` itself as a link in the LXC layout.
        refused(&[("rootfs", S, "/")], Layout::Lxc);
        assert!(!Path::new("/tmp/stevedore-evil").exists());
    }

    #[test]
    fn absolute_names_are_refused() {
        refused(&[("/abs-evil", F, "x")], Layout::Flat);
        assert!(!Path::new("/abs-evil").exists());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let (_t, file, _dir) = setup(b"not a tar at all, not at all");
        assert!(matches!(layout(&file), Err(Error::InvalidParams(m)) if m.starts_with("path: ")));
    }
}
