//! Registry credentials remembered with `rememberme`: one JSON file in the
//! data folder, mode 0600, keyed by user then registry. Never in task params.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::runtime::{Credential, Error};

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    username: String,
    password: String,
}

/// The remembered-credentials file.
pub struct CredentialStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl CredentialStore {
    /// Credentials kept at `path`.
    pub fn new(path: PathBuf) -> CredentialStore {
        CredentialStore {
            path,
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> BTreeMap<String, BTreeMap<String, Saved>> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// What `user` remembered for `registry`.
    pub fn lookup(&self, user: &str, registry: &str) -> Option<Credential> {
        let _guard = self.lock.lock().unwrap();
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
        let _guard = self.lock.lock().unwrap();
        let mut all = self.read();
        all.entry(user.to_string()).or_default().insert(
            credential.registry.clone(),
            Saved {
                username: credential.username.clone(),
                password: credential.password.clone(),
            },
        );
        let fail = |e: std::io::Error| Error::Other(format!("cannot store credentials: {e}"));
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
            file.write_all(&serde_json::to_vec(&all).unwrap_or_default())
                .map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn remembered_per_user_and_private_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("credentials.json"));
        let c = Credential {
            registry: "r:5000".into(),
            username: "u".into(),
            password: "p+/=".into(),
        };
        store.remember("alice", &c).unwrap();
        assert_eq!(store.lookup("alice", "r:5000"), Some(c));
        assert_eq!(store.lookup("bob", "r:5000"), None);
        let mode = std::fs::metadata(dir.path().join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
