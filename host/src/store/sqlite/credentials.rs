//! Remembered registry credentials of one node: sealed with the data
//! folder's key in `credentials.sealed` (mode 0600, written to a temporary
//! file and renamed into place). A clear-text `credentials.json` of an
//! earlier release is sealed and removed on open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::store::credentials::{Credentials, RegistryLogin, SEAL_ID};
use crate::store::secret::{SecretBox, KEY_FILE};

/// The file the credentials are sealed in, in the data folder.
pub const SEALED_FILE: &str = "credentials.sealed";
/// The clear-text file of earlier releases.
const LEGACY_FILE: &str = "credentials.json";

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    username: String,
    password: String,
}

type All = BTreeMap<String, BTreeMap<String, Saved>>;

/// The remembered credentials of every user of one node.
pub struct FileCredentials {
    path: PathBuf,
    secrets: SecretBox,
    lock: Mutex<()>,
}

impl FileCredentials {
    /// The credentials kept in `data_dir`, sealed with its `secret.key`
    /// (created if missing); an earlier clear-text file is sealed and removed.
    pub fn open(data_dir: &Path) -> anyhow::Result<FileCredentials> {
        std::fs::create_dir_all(data_dir)?;
        let secrets = SecretBox::load_or_create(&data_dir.join(KEY_FILE))?;
        let store = FileCredentials {
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
            store.write(&all)?;
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

    fn write(&self, all: &All) -> anyhow::Result<()> {
        let plain = serde_json::to_vec(all).unwrap_or_default();
        let sealed = self.secrets.seal(SEAL_ID, &plain)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        crate::store::private::create_private(&tmp, &sealed)?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming {}", tmp.display()))
    }
}

#[async_trait]
impl Credentials for FileCredentials {
    async fn lookup(&self, user: &str, registry: &str) -> Result<Option<RegistryLogin>> {
        let _guard = self.lock.lock();
        let all = self.read();
        Ok(all
            .get(user)
            .and_then(|regs| regs.get(registry))
            .map(|saved| RegistryLogin {
                username: saved.username.clone(),
                password: saved.password.clone(),
            }))
    }

    async fn remember(&self, user: &str, registry: &str, login: &RegistryLogin) -> Result<()> {
        let _guard = self.lock.lock();
        let mut all = self.read();
        all.entry(user.to_string()).or_default().insert(
            registry.to_string(),
            Saved {
                username: login.username.clone(),
                password: login.password.clone(),
            },
        );
        self.write(&all)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn login(password: &str) -> RegistryLogin {
        RegistryLogin {
            username: "u".into(),
            password: password.into(),
        }
    }

    #[tokio::test]
    async fn sealed_in_a_private_file_that_a_new_store_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCredentials::open(dir.path()).unwrap();
        store
            .remember("alice", "r:5000", &login("p+/="))
            .await
            .unwrap();
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
        let again = FileCredentials::open(dir.path()).unwrap();
        assert_eq!(
            again.lookup("alice", "r:5000").await.unwrap(),
            Some(login("p+/="))
        );
    }

    #[tokio::test]
    async fn an_earlier_clear_text_file_is_sealed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LEGACY_FILE),
            r#"{"bob": {"r:5000": {"username": "b", "password": "clear-pw"}}}"#,
        )
        .unwrap();
        let store = FileCredentials::open(dir.path()).unwrap();
        assert!(!dir.path().join(LEGACY_FILE).exists());
        assert_eq!(
            store
                .lookup("bob", "r:5000")
                .await
                .unwrap()
                .unwrap()
                .password,
            "clear-pw"
        );
        let sealed = std::fs::read(dir.path().join(SEALED_FILE)).unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"clear-pw"));
    }
}
