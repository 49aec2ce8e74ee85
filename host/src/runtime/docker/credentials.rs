//! Registry credentials remembered with `rememberme`, keyed by user then
//! registry. Never in task params; at rest they are sealed with the data
//! folder's key (`secret.key`, as task secrets are), in
//! `credentials.sealed` (mode 0600), so no password is in clear on disk. A
//! `credentials.json` of an earlier release is sealed and removed on start.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::queue::secret::SecretBox;
use crate::runtime::{Credential, Error};

/// The file the credentials are sealed in, in the data folder.
pub const SEALED_FILE: &str = "credentials.sealed";
/// The clear-text file of earlier releases.
const LEGACY_FILE: &str = "credentials.json";
/// Associated data of the sealed file (task ids, the other users of the
/// key, are positive), so a task's sealed params cannot pass for it.
const SEAL_ID: i64 = -1;

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    username: String,
    password: String,
}

type All = BTreeMap<String, BTreeMap<String, Saved>>;

/// The remembered credentials of every user.
pub struct CredentialStore {
    path: PathBuf,
    secrets: SecretBox,
    lock: Mutex<()>,
}

impl CredentialStore {
    /// The credentials kept in `data_dir`, sealed with its `secret.key`
    /// (created if missing); an earlier clear-text file is sealed and removed.
    pub fn open(data_dir: &Path) -> anyhow::Result<CredentialStore> {
        std::fs::create_dir_all(data_dir)?;
        let secrets = SecretBox::load_or_create(&data_dir.join(crate::queue::sqlite::KEY_FILE))?;
        let store = CredentialStore {
            path: data_dir.join(SEALED_FILE),
            secrets,
            lock: Mutex::new(()),
        };
        let legacy = data_dir.join(LEGACY_FILE);
        if let Ok(bytes) = std::fs::read(&legacy) {
            let old: All = serde_json::from_slice(&bytes).unwrap_or_default();
            let mut all = store.read();
            for (user, regs) in old {
                let mine = all.entry(user).or_default();
                for (reg, saved) in regs {
                    mine.entry(reg).or_insert(saved);
                }
            }
            store
                .write(&all)
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            std::fs::remove_file(&legacy)?;
            tracing::info!("sealed the remembered registry credentials of an earlier release");
        }
        Ok(store)
    }

    fn read(&self) -> All {
        let Ok(sealed) = std::fs::read(&self.path) else {
            return All::default();
        };
        match self.secrets.open(SEAL_ID, &sealed) {
            Ok(plain) => serde_json::from_slice(&plain).unwrap_or_default(),
            Err(e) => {
                tracing::warn!("remembered credentials unreadable, ignored: {e}");
                All::default()
            }
        }
    }

    fn write(&self, all: &All) -> Result<(), Error> {
        let fail = |e: std::io::Error| Error::Other(format!("cannot store credentials: {e}"));
        let plain = serde_json::to_vec(all).unwrap_or_default();
        let sealed = self
            .secrets
            .seal(SEAL_ID, &plain)
            .map_err(|e| Error::Other(format!("cannot store credentials: {e}")))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(fail)?;
            file.write_all(&sealed).map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }

    /// What `user` remembered for `registry`.
    pub fn lookup(&self, user: &str, registry: &str) -> Option<Credential> {
        let _guard = self.lock.lock();
        let all = self.read();
        let saved = all.get(user)?.get(registry)?;
        Some(Credential {
            registry: registry.to_string(),
            username: saved.username.clone(),
            password: saved.password.clone(),
        })
    }

    /// Remember `credential` for `user`.
    pub fn remember(&self, user: &str, credential: &Credential) -> Result<(), Error> {
        let _guard = self.lock.lock();
        let mut all = self.read();
        all.entry(user.to_string()).or_default().insert(
            credential.registry.clone(),
            Saved {
                username: credential.username.clone(),
                password: credential.password.clone(),
            },
        );
        self.write(&all)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn remembered_per_user_and_private_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let c = Credential {
            registry: "r:5000".into(),
            username: "u".into(),
            password: "p+/=".into(),
        };
        store.remember("alice", &c).unwrap();
        assert_eq!(store.lookup("alice", "r:5000"), Some(c));
        assert_eq!(store.lookup("bob", "r:5000"), None);
        let mode = std::fs::metadata(dir.path().join(SEALED_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing in clear anywhere in the folder; a new store reads it back.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(4).any(|w| w == b"p+/="));
        }
        let again = CredentialStore::open(dir.path()).unwrap();
        assert_eq!(again.lookup("alice", "r:5000").unwrap().password, "p+/=");
    }

    #[test]
    fn an_earlier_clear_text_file_is_sealed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LEGACY_FILE),
            r#"{"bob": {"r:5000": {"username": "b", "password": "clear-pw"}}}"#,
        )
        .unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        assert!(!dir.path().join(LEGACY_FILE).exists());
        assert_eq!(store.lookup("bob", "r:5000").unwrap().password, "clear-pw");
        let sealed = std::fs::read(dir.path().join(SEALED_FILE)).unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"clear-pw"));
    }
}
