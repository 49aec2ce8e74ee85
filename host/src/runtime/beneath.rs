//! Opening files confined to a folder by the kernel, not by string checks:
//! `openat2(2)` with `RESOLVE_BENEATH`, which refuses (`EXDEV`) any path,
//! symbolic link or `..` whose resolution would leave the folder, and
//! `RESOLVE_NO_MAGICLINKS` (no `/proc/self/fd/N` tricks).
//!
//! On a kernel without `openat2` (before 5.6: `ENOSYS`), the fallback walks
//! the path one component at a time with `openat(O_NOFOLLOW)`: stricter (no
//! symbolic link at all, even one that stays inside), never looser.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once `openat2` answered `ENOSYS`: every later call takes the fallback.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Open `rel` (relative, without `..`) beneath the folder `dir` with the
/// `open(2)` `flags` and `mode`. `O_CLOEXEC` is always added. A path that
/// would leave `dir` fails with `EXDEV` (or `ELOOP` in the fallback).
pub fn open(dir: BorrowedFd<'_>, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    open_resolving(dir, rel, flags, mode, 0)
}

/// [`open`], refusing (`ELOOP`) every symbolic link on the way, even one
/// that stays inside: what bind sources are opened with, so the folder an
/// engine mounts is the one the path names.
pub fn open_no_links(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: i32,
    mode: u32,
) -> io::Result<OwnedFd> {
    open_resolving(dir, rel, flags, mode, libc::RESOLVE_NO_SYMLINKS)
}

fn open_resolving(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match openat2(dir, rel, &open_how(flags, mode, resolve)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    open_walk(dir, rel, flags, mode)
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// What `openat2` is asked: `flags`, `mode` when creating, and the lookup
/// kept beneath the folder, with no magic link, plus `resolve`.
fn open_how(flags: i32, mode: u32, resolve: u64) -> libc::open_how {
    // SAFETY: `open_how` is plain integers; all zero is its "nothing set" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        how.mode = u64::from(mode);
    }
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | resolve;
    how
}

fn openat2(dir: BorrowedFd<'_>, rel: &Path, how: &libc::open_how) -> io::Result<OwnedFd> {
    let path = c_path(rel)?;
    loop {
        // SAFETY: `how` and `path` live across the call; the kernel reads
        // `size_of::<open_how>()` bytes of `how` and the NUL-terminated path.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor the kernel just gave us, owned by no one else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks to retry.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let name = c_path(Path::new(name))?;
    // SAFETY: a NUL-terminated name and a live directory descriptor.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, a new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The fallback: one component at a time, no symbolic link followed.
fn open_walk(dir: BorrowedFd<'_>, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EXDEV)),
        }
    }
    let Some((last, folders)) = parts.split_last() else {
        return openat(dir, OsStr::new("."), flags | libc::O_NOFOLLOW, mode);
    };
    let mut current: Option<OwnedFd> = None;
    for part in folders {
        let at = current.as_ref().map_or(dir, |fd| fd_borrow(fd));
        // O_NOFOLLOW with O_PATH opens a link itself: tell it apart from a
        // folder, and refuse it as the kernel's ELOOP would.
        match kind(at, part)? {
            Some(libc::S_IFLNK) => return Err(io::Error::from_raw_os_error(libc::ELOOP)),
            Some(libc::S_IFDIR) => {}
            Some(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
        let next = openat(
            at,
            part,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| match e.raw_os_error() {
            // Swapped for a link between the two calls.
            Some(libc::ENOTDIR) => io::Error::from_raw_os_error(libc::ELOOP),
            _ => e,
        })?;
        current = Some(next);
    }
    let at = current.as_ref().map_or(dir, |fd| fd_borrow(fd));
    // O_PATH | O_NOFOLLOW would open a final link itself: refuse it.
    if flags & libc::O_PATH != 0 && kind(at, last)? == Some(libc::S_IFLNK) {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    openat(at, last, flags | libc::O_NOFOLLOW, mode)
}

fn fd_borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

/// The path the kernel has for an open descriptor (its real location, links resolved).
pub fn real_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `mkdirat(dir, name)`: `name` is one component; an existing entry is fine.
pub fn mkdir(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let name = c_path(Path::new(name))?;
    // SAFETY: a NUL-terminated name and a live directory descriptor.
    let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

/// `renameat` within one folder: `from` and `to` are single names.
pub fn rename(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    let (from, to) = (c_path(Path::new(from))?, c_path(Path::new(to))?);
    // SAFETY: NUL-terminated names and a live directory descriptor.
    let rc =
        unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `unlinkat(dir, name, 0)`.
pub fn unlink(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let name = c_path(Path::new(name))?;
    // SAFETY: a NUL-terminated name and a live directory descriptor.
    let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What `name` in `dir` is, without following a link: `None` when missing.
pub fn kind(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<libc::mode_t>> {
    let c = c_path(Path::new(name))?;
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
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(st.st_mode & libc::S_IFMT))
}

/// Open (creating missing ones, mode 0755) the folder `rel` beneath `dir`,
/// no link followed. Returns an `O_PATH` descriptor.
pub fn make_dirs(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let mut at = open_no_links(dir, Path::new("."), libc::O_PATH | libc::O_DIRECTORY, 0)?;
    for part in rel.components() {
        let Component::Normal(name) = part else {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        };
        use std::os::fd::AsFd;
        mkdir(at.as_fd(), name, 0o755)?;
        at = open_no_links(
            at.as_fd(),
            Path::new(name),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
    }
    Ok(at)
}

/// The content of the file `rel` beneath `dir`, no link followed.
pub fn read(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<Vec<u8>> {
    let fd = open_no_links(dir, rel, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
    let mut file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut out)?;
    Ok(out)
}

/// Replace the file `rel` beneath `dir` with `content`: missing folders are
/// made, no link is followed, and the bytes go to a new temporary of a
/// random name (`O_CREAT | O_EXCL | O_NOFOLLOW`) renamed into place, so a
/// link or file planted under any name cannot receive them.
pub fn write_replace(dir: BorrowedFd<'_>, rel: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    use std::os::fd::AsFd;
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let parent = make_dirs(dir, rel.parent().unwrap_or(Path::new("")))?;
    let mut temp = std::ffi::OsString::from(format!(
        "{}{}-",
        super::storage::TEMP_MARKER,
        hex::encode(rand::random::<[u8; 8]>())
    ));
    temp.push(name);
    let fd = open_no_links(
        parent.as_fd(),
        Path::new(&temp),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        mode,
    )?;
    let written = (|| {
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, content)?;
        file.sync_all()?;
        rename(parent.as_fd(), &temp, name)
    })();
    if written.is_err() {
        let _ = unlink(parent.as_fd(), &temp);
    }
    written
}

/// Whether the error says the path left the folder.
pub fn escaped(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::ELOOP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let fd = OwnedFd::from(std::fs::File::open(dir.path().join("root")).unwrap());
        (dir, fd)
    }

    fn both(dir: BorrowedFd<'_>, rel: &str) -> [io::Result<OwnedFd>; 2] {
        [
            openat2(
                dir,
                Path::new(rel),
                &open_how(libc::O_RDONLY | libc::O_CLOEXEC, 0, 0),
            ),
            open_walk(dir, Path::new(rel), libc::O_RDONLY | libc::O_CLOEXEC, 0),
        ]
    }

    #[test]
    fn links_out_are_refused_by_both_ways() {
        let (tmp, fd) = root();
        let root = tmp.path().join("root");
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        std::fs::create_dir(root.join("in")).unwrap();
        std::fs::write(root.join("in/ok"), b"ok").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("up")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("..", root.join("dotdot")).unwrap();
        for bad in [
            "up",
            "abs/secret",
            "dotdot/secret",
            "../secret",
            "/etc/passwd",
        ] {
            for r in both(fd.as_fd(), bad) {
                let e = r.expect_err(bad);
                assert!(escaped(&e), "{bad}: {e}");
            }
        }
        for r in both(fd.as_fd(), "in/ok") {
            assert!(r.is_ok());
        }
        assert!(real_path(
            &openat2(
                fd.as_fd(),
                Path::new("in/ok"),
                &open_how(libc::O_PATH, 0, 0)
            )
            .unwrap()
        )
        .unwrap()
        .ends_with("root/in/ok"));
    }
}
