//! Registry credentials remembered with `rememberme`, keyed by user then
//! registry. Never in task params; at rest they are sealed with the data
//! folder's key (`secret.key`, as task secrets are), in
//! `credentials.sealed` (mode 0600), so no password is in clear on disk. A
//! `credentials.json` of an earlier release is sealed and removed on start.
//!
//! With several nodes they live in the shared database instead (table
//! `credentials`, one sealed row per user and registry, under the key every
//! node shares), so what a user remembered on one node serves on all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::pg::Database;

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
    /// Set: the rows of the shared database, not the file.
    shared: Option<Arc<Database>>,
}

/// One sealed row of the shared table: who and where are sealed with the
/// secret, so a row moved to another user or registry does not open.
#[derive(Serialize, Deserialize)]
struct SharedRow {
    user: String,
    registry: String,
    username: String,
    password: String,
}

impl CredentialStore {
    /// The credentials in the shared database, sealed with `secrets` (the
    /// key every node of the database shares).
    pub fn shared(db: Arc<Database>, secrets: SecretBox) -> CredentialStore {
        CredentialStore {
            path: PathBuf::new(),
            secrets,
            lock: Mutex::new(()),
            shared: Some(db),
        }
    }

    /// The credentials kept in `data_dir`, sealed with its `secret.key`
    /// (created if missing); an earlier clear-text file is sealed and removed.
    pub fn open(data_dir: &Path) -> anyhow::Result<CredentialStore> {
        std::fs::create_dir_all(data_dir)?;
        let secrets = SecretBox::load_or_create(&data_dir.join(crate::queue::sqlite::KEY_FILE))?;
        let store = CredentialStore {
            path: data_dir.join(SEALED_FILE),
            secrets,
            lock: Mutex::new(()),
            shared: None,
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
    pub async fn lookup(&self, user: &str, registry: &str) -> Option<Credential> {
        if let Some(db) = &self.shared {
            return match self.lookup_shared(db, user, registry).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("remembered credentials unreadable, ignored: {e:#}");
                    None
                }
            };
        }
        let _guard = self.lock.lock();
        let all = self.read();
        let saved = all.get(user)?.get(registry)?;
        Some(Credential {
            registry: registry.to_string(),
            username: saved.username.clone(),
            password: saved.password.clone(),
        })
    }

    async fn lookup_shared(
        &self,
        db: &Database,
        user: &str,
        registry: &str,
    ) -> anyhow::Result<Option<Credential>> {
        let row = db
            .client()
            .await?
            .query_opt(
                "SELECT sealed FROM credentials WHERE username = $1 AND registry = $2",
                &[&user, &registry],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.get(0);
        let saved: SharedRow = serde_json::from_slice(&self.secrets.open(SEAL_ID, &sealed)?)?;
        if saved.user != user || saved.registry != registry {
            anyhow::bail!("a sealed row of another user or registry");
        }
        Ok(Some(Credential {
            registry: registry.to_string(),
            username: saved.username,
            password: saved.password,
        }))
    }

    /// Remember `credential` for `user`.
    pub async fn remember(&self, user: &str, credential: &Credential) -> Result<(), Error> {
        if let Some(db) = &self.shared {
            let fail = |e: anyhow::Error| Error::Other(format!("cannot store credentials: {e:#}"));
            let row = SharedRow {
                user: user.to_string(),
                registry: credential.registry.clone(),
                username: credential.username.clone(),
                password: credential.password.clone(),
            };
            let plain = serde_json::to_vec(&row).unwrap_or_default();
            let sealed = self.secrets.seal(SEAL_ID, &plain).map_err(fail)?;
            let client = db.client().await.map_err(fail)?;
            client
                .execute(
                    "INSERT INTO credentials (username, registry, sealed) VALUES ($1, $2, $3)
                     ON CONFLICT (username, registry) DO UPDATE SET sealed = excluded.sealed",
                    &[&user, &credential.registry, &sealed],
                )
                .await
                .map_err(|e| fail(e.into()))?;
            return Ok(());
        }
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

    #[tokio::test]
    async fn remembered_per_user_and_private_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let c = Credential {
            registry: "r:5000".into(),
            username: "u".into(),
            password: "p+/=".into(),
        };
        store.remember("alice", &c).await.unwrap();
        assert_eq!(store.lookup("alice", "r:5000").await, Some(c));
        assert_eq!(store.lookup("bob", "r:5000").await, None);
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
        assert_eq!(
            again.lookup("alice", "r:5000").await.unwrap().password,
            "p+/="
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
        let store = CredentialStore::open(dir.path()).unwrap();
        assert!(!dir.path().join(LEGACY_FILE).exists());
        assert_eq!(
            store.lookup("bob", "r:5000").await.unwrap().password,
            "clear-pw"
        );
        let sealed = std::fs::read(dir.path().join(SEALED_FILE)).unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"clear-pw"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_between_nodes_and_sealed_in_the_database() {
        let url = crate::pg::testing::fresh_database("creds").await.unwrap();
        let key = [3u8; 32];
        let a = CredentialStore::shared(
            Database::connect(&url, "a").await.unwrap(),
            SecretBox::from_key(&key),
        );
        let b_db = Database::connect(&url, "b").await.unwrap();
        let b = CredentialStore::shared(b_db.clone(), SecretBox::from_key(&key));
        let c = Credential {
            registry: "r:5000".into(),
            username: "u".into(),
            password: "p+/=".into(),
        };
        a.remember("alice", &c).await.unwrap();
        assert_eq!(b.lookup("alice", "r:5000").await, Some(c.clone()));
        assert_eq!(b.lookup("bob", "r:5000").await, None);
        let client = b_db.client().await.unwrap();
        let sealed: Vec<u8> = client
            .query_one("SELECT sealed FROM credentials", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!sealed.windows(4).any(|w| w == b"p+/="));
        // A row moved to another user does not open.
        client
            .execute("UPDATE credentials SET username = 'mallory'", &[])
            .await
            .unwrap();
        assert_eq!(b.lookup("mallory", "r:5000").await, None);
    }
}
