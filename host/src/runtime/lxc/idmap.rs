//! The subordinate ids of unprivileged containers: root's range in
//! `/etc/subuid` and `/etc/subgid`, set up by the server when missing.
//!
//! A container that is not `privileged` runs in a user namespace
//! (`lxc.idmap`): its ids 0..65536 are host ids `base..base+65536`, so root
//! inside is an unprivileged id outside, and a file it makes setuid, or a
//! file of its image that is, belongs to that id on the host. Its root
//! filesystem is extracted with every owner shifted into the range
//! ([`IdMap::shift`]).
//!
//! The range is root's first entry of at least 65,536 ids in both files;
//! when either has none, the server appends `root:<base>:65536` to both,
//! `base` being the first multiple of 65,536 (at least 131,072) past every
//! range the files already hand out, so that no user's rootless containers
//! share the ids. Every unprivileged container
//! of the host shares the range, as LXC's own default configuration does.

use std::path::Path;

use crate::runtime::Error;

/// How many ids a container gets.
pub const COUNT: u32 = 65536;

/// Where the server's own lock for editing the files lives.
const LOCK: &str = "/run/stevedore/subid.lock";

/// A container's ids on the host: inside id `n` is host uid `uid + n`, gid `gid + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// Host uid of root inside.
    pub uid: u32,
    /// Host gid of root inside.
    pub gid: u32,
}

/// The id that stands for an id outside the range (`nobody`).
const NOBODY: u32 = 65534;

impl IdMap {
    /// The `lxc.idmap` lines.
    pub fn config_lines(&self) -> [String; 2] {
        [
            format!("u 0 {} {COUNT}", self.uid),
            format!("g 0 {} {COUNT}", self.gid),
        ]
    }

    /// The host ids for an archive's `(uid, gid)`: ids of the container
    /// (`0..65536`) move into the range, ids already in it (an export of an
    /// unprivileged container) stay, anything else becomes `nobody`.
    pub fn shift(&self, uid: u64, gid: u64) -> (u32, u32) {
        (one(self.uid, uid), one(self.gid, gid))
    }
}

fn one(base: u32, id: u64) -> u32 {
    let (base64, count) = (u64::from(base), u64::from(COUNT));
    if id < count {
        base + id as u32
    } else if (base64..base64 + count).contains(&id) {
        id as u32
    } else {
        base + NOBODY
    }
}

/// `(start, count)` of every `name:start:count` line, and root's first
/// range of at least [`COUNT`] ids.
fn ranges(text: &str) -> (Vec<(u64, u64)>, Option<u32>) {
    let mut all = Vec::new();
    let mut root = None;
    for line in text.lines() {
        let mut f = line.trim().split(':');
        let (Some(name), Some(start), Some(count)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) else {
            continue;
        };
        all.push((start, count));
        if root.is_none()
            && name == "root"
            && count >= u64::from(COUNT)
            && start + u64::from(COUNT) <= u64::from(u32::MAX)
        {
            root = Some(start as u32);
        }
    }
    (all, root)
}

/// The first multiple of [`COUNT`], at least 131,072, past every range.
fn free_base(taken: &[(u64, u64)]) -> Result<u32, Error> {
    let end = taken.iter().map(|(s, c)| s + c).max().unwrap_or(0);
    let step = u64::from(COUNT);
    let base = end.max(2 * step).div_ceil(step) * step;
    u32::try_from(base + step)
        .map(|_| base as u32)
        .map_err(|_| Error::Runtime("no free range of subordinate ids left".into()))
}

/// Root's range in `subuid` and `subgid` (`/etc/subuid`, `/etc/subgid`),
/// appended to both when either lacks one.
pub fn host_range_in(subuid: &Path, subgid: &Path) -> Result<IdMap, Error> {
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::Runtime(format!("reading {}: {e}", p.display()))),
    };
    let (u_text, g_text) = (read(subuid)?, read(subgid)?);
    let (u_all, u_root) = ranges(&u_text);
    let (g_all, g_root) = ranges(&g_text);
    if let (Some(uid), Some(gid)) = (u_root, g_root) {
        return Ok(IdMap { uid, gid });
    }
    let taken: Vec<(u64, u64)> = u_all.into_iter().chain(g_all).collect();
    let base = free_base(&taken)?;
    let append = |p: &Path, text: &str| {
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        std::fs::write(p, format!("{text}{sep}root:{base}:{COUNT}\n"))
            .map_err(|e| Error::Runtime(format!("writing {}: {e}", p.display())))
    };
    let uid = match u_root {
        Some(uid) => uid,
        None => {
            append(subuid, &u_text)?;
            base
        }
    };
    let gid = match g_root {
        Some(gid) => gid,
        None => {
            append(subgid, &g_text)?;
            base
        }
    };
    tracing::info!("LXC: unprivileged containers map root to host uid {uid}, gid {gid}");
    Ok(IdMap { uid, gid })
}

/// Root's range on this host, set up when missing (under a lock, so that
/// servers starting together append one entry).
pub fn host_range() -> Result<IdMap, Error> {
    use std::os::fd::AsRawFd;
    let lock_path = Path::new(LOCK);
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Runtime(format!("creating {}: {e}", parent.display())))?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| Error::Runtime(format!("opening {LOCK}: {e}")))?;
    // SAFETY: flock on a descriptor we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Runtime(format!("locking {LOCK}: {e}")));
    }
    host_range_in(Path::new("/etc/subuid"), Path::new("/etc/subgid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_range_is_found_or_appended_past_every_other() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = (dir.path().join("subuid"), dir.path().join("subgid"));
        std::fs::write(&u, "alice:100000:65536\nroot:1000000:65536\n").unwrap();
        std::fs::write(&g, "alice:100000:65536\nroot:2000000:70000\n").unwrap();
        assert_eq!(
            host_range_in(&u, &g).unwrap(),
            IdMap {
                uid: 1_000_000,
                gid: 2_000_000
            }
        );

        std::fs::write(&u, "alice:100000:65536").unwrap();
        std::fs::remove_file(&g).unwrap();
        let made = host_range_in(&u, &g).unwrap();
        assert_eq!(made.uid, 196_608, "past alice's range, on a 65536 boundary");
        assert_eq!(made.gid, 196_608);
        assert_eq!(
            std::fs::read_to_string(&u).unwrap(),
            "alice:100000:65536\nroot:196608:65536\n"
        );
        assert_eq!(std::fs::read_to_string(&g).unwrap(), "root:196608:65536\n");
        assert_eq!(
            host_range_in(&u, &g).unwrap(),
            made,
            "found the second time"
        );
    }

    #[test]
    fn ids_shift_into_the_range() {
        let m = IdMap {
            uid: 131_072,
            gid: 262_144,
        };
        assert_eq!(m.shift(0, 0), (131_072, 262_144));
        assert_eq!(m.shift(1000, 50), (132_072, 262_194));
        assert_eq!(
            m.shift(131_073, 262_145),
            (131_073, 262_145),
            "already shifted"
        );
        assert_eq!(
            m.shift(70_000, u64::from(u32::MAX)),
            (131_072 + 65534, 262_144 + 65534)
        );
        assert_eq!(
            m.config_lines(),
            [
                "u 0 131072 65536".to_string(),
                "g 0 262144 65536".to_string()
            ]
        );
    }
}
