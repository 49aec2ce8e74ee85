//! Who gave each image reference its content, kept by the host.
//!
//! Image names are shared by every user of an engine: Docker keeps one
//! `busybox:latest`, and a label cannot be put on an image that exists.
//! So the host records, per canonical reference
//! ([`super::reference::Reference::canonical`]), which users set it and to
//! which image id:
//!
//! - a non-admin's import, load or tag records the user as the maker of
//!   the name; a non-admin may point a name at new content only when the
//!   name is new or recorded as theirs, and only its maker may use it (so
//!   a name made before anyone pulled it cannot stand in for the
//!   registry's image);
//! - a pull with credentials records the puller (the image is theirs, and
//!   only users who pulled it with credentials of their own may use it); a
//!   pull without credentials clears the record (the content is public).
//!
//! A record holds only while the engine's reference still points to the
//! recorded id: a name changed since (by an admin, a pull, the CLI) is no
//! longer anyone's. Names no record covers (pulled anonymously, made by an
//! admin or outside the server) belong to no non-admin, so none may replace
//! them. The records live in one JSON file in the data folder, rewritten
//! whole (a new file renamed into place) on each change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The file in the data folder.
pub const FILE: &str = "image-owners.json";

/// What the host knows of one reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The image id the reference pointed to when recorded.
    pub id: String,
    /// The users who set it (one for a local name; everyone who pulled it
    /// with credentials for a private pull).
    pub users: BTreeSet<String>,
    /// Pulled with credentials: only `users` may use it.
    #[serde(default)]
    pub private: bool,
}

/// The records, in memory and (when opened in a folder) on disk.
#[derive(Debug, Default)]
pub struct ImageOwners {
    path: Option<PathBuf>,
    records: Mutex<BTreeMap<String, Record>>,
}

impl ImageOwners {
    /// Records kept in memory only (tests, `plugin test`).
    pub fn in_memory() -> ImageOwners {
        ImageOwners::default()
    }

    /// The records of `data_dir`; a missing file is no records, an
    /// unreadable one is logged and read as none (names then belong to no
    /// non-admin: the safe side).
    pub fn open(data_dir: &Path) -> ImageOwners {
        let path = data_dir.join(FILE);
        let records = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{}: {e}; starting with no image owners", path.display());
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("{}: {e}; starting with no image owners", path.display());
                BTreeMap::new()
            }
        };
        ImageOwners {
            path: Some(path),
            records: Mutex::new(records),
        }
    }

    /// Whether nothing is recorded (every image is public).
    pub fn is_empty(&self) -> bool {
        self.records.lock().is_empty()
    }

    /// The record of `reference` if it still describes image `id`.
    pub fn current(&self, reference: &str, id: &str) -> Option<Record> {
        self.records
            .lock()
            .get(reference)
            .filter(|r| r.id == id)
            .cloned()
    }

    /// Record that `user` set `reference` to `id` (import, load, tag).
    pub fn set_local(&self, reference: &str, id: &str, user: &str) {
        self.change(|all| {
            all.insert(
                reference.to_string(),
                Record {
                    id: id.to_string(),
                    users: BTreeSet::from([user.to_string()]),
                    private: false,
                },
            );
        });
    }

    /// Record a pull of `reference` (now `id`) by `user`, with or without
    /// credentials.
    pub fn pulled(&self, reference: &str, id: &str, user: &str, with_credentials: bool) {
        self.change(|all| {
            if !with_credentials {
                all.remove(reference);
                return;
            }
            let entry = all.entry(reference.to_string()).or_insert_with(|| Record {
                id: id.to_string(),
                users: BTreeSet::new(),
                private: true,
            });
            if entry.id != id || !entry.private {
                entry.id = id.to_string();
                entry.users.clear();
                entry.private = true;
            }
            entry.users.insert(user.to_string());
        });
    }

    /// Whether `user` may use image `id`, whose names (canonical) are
    /// `names`: one of them is no one's or is the user's; an image without
    /// names when no record of its id is someone else's only.
    pub fn may_use(&self, id: &str, names: &[String], user: &str) -> bool {
        let all = self.records.lock();
        if names.is_empty() {
            let mut of_id = all.values().filter(|r| r.id == id).peekable();
            return of_id.peek().is_none() || of_id.any(|r| r.users.contains(user));
        }
        names.iter().any(|n| match all.get(n) {
            Some(r) if r.id == id => r.users.contains(user),
            _ => true,
        })
    }

    fn change(&self, edit: impl FnOnce(&mut BTreeMap<String, Record>)) {
        let mut all = self.records.lock();
        edit(&mut all);
        if let Some(path) = &self.path {
            if let Err(e) = write_whole(path, &all) {
                tracing::warn!("{}: {e}", path.display());
            }
        }
    }
}

/// Write `records` to a new file beside `path` and rename it into place.
fn write_whole(path: &Path, records: &BTreeMap<String, Record>) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(records).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_hold_while_the_name_keeps_its_id_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let owners = ImageOwners::open(dir.path());
        owners.set_local("docker.io/library/a:1", "sha256:1", "bob");
        assert!(owners
            .current("docker.io/library/a:1", "sha256:1")
            .is_some());
        assert!(owners
            .current("docker.io/library/a:1", "sha256:2")
            .is_none());
        owners.pulled("r:5000/p:1", "sha256:p", "alice", true);
        owners.pulled("r:5000/p:1", "sha256:p", "carol", true);
        let again = ImageOwners::open(dir.path());
        let p = again.current("r:5000/p:1", "sha256:p").unwrap();
        assert!(p.private);
        assert_eq!(p.users, BTreeSet::from(["alice".into(), "carol".into()]));
        again.pulled("r:5000/p:1", "sha256:p", "dave", false);
        assert!(again.current("r:5000/p:1", "sha256:p").is_none());
    }
}
