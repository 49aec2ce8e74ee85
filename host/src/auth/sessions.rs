//! Login sessions: ids made and hashed here, expiry checked here, the
//! records kept by a driver of the storage layer ([`crate::store::Sessions`]):
//! a small SQLite file of the data folder, or the database shared by
//! several nodes.
//!
//! Only the SHA-256 of a session id is stored, so a copy of the file (or of
//! the table) does not give anyone a usable cookie.

use std::path::Path;
use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};

pub use crate::store::sessions::Session;
use crate::store::sessions::{SessionKey, Sessions};

/// The session table: ids hashed, expiry checked, over the store's driver.
pub struct SessionStore {
    rows: Arc<dyn Sessions>,
}

fn key_of(id: &str) -> SessionKey {
    Sha256::digest(id.as_bytes()).into()
}

/// A new random session id: 256 bits, hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl SessionStore {
    /// The sessions kept by `rows`.
    pub fn new(rows: Arc<dyn Sessions>) -> SessionStore {
        SessionStore { rows }
    }

    /// Open (or create) the file and load the sessions that have not expired.
    pub fn open(path: &Path, now: i64) -> anyhow::Result<SessionStore> {
        Ok(Self::new(crate::store::sessions_in_file(path, now)?))
    }

    /// A store that lives in memory only (tests).
    pub fn in_memory() -> anyhow::Result<SessionStore> {
        Ok(Self::new(crate::store::sessions_in_memory()?))
    }

    /// Store a new session under `id`.
    pub async fn insert(&self, id: &str, session: &Session) -> anyhow::Result<()> {
        self.rows.insert(&key_of(id), session).await
    }

    /// The live session for `id` at `now`, if any (an expired one is removed).
    /// A store that cannot be read answers `None` (logged).
    pub async fn get(&self, id: &str, now: i64) -> Option<Session> {
        let key = key_of(id);
        let found = match self.rows.get(&key).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading a session");
                return None;
            }
        };
        if found.expires <= now {
            let _ = self.rows.remove(&key).await;
            return None;
        }
        Some(found)
    }

    /// Move the expiry of `id` to `expires`.
    pub async fn extend(&self, id: &str, expires: i64) -> anyhow::Result<()> {
        self.rows.extend(&key_of(id), expires).await
    }

    /// Forget `id`.
    pub async fn remove(&self, id: &str) -> anyhow::Result<()> {
        self.rows.remove(&key_of(id)).await
    }

    /// Drop every session that expired by `now`.
    pub async fn purge(&self, now: i64) -> anyhow::Result<()> {
        self.rows.purge(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_survive_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let id = new_id();
        assert_eq!(id.len(), 64);
        let s = Session {
            username: "alice".into(),
            login_time: 100,
            expires: 200,
            stamp: "s1".into(),
        };
        {
            let store = SessionStore::open(&path, 100).unwrap();
            store.insert(&id, &s).await.unwrap();
            assert_eq!(store.get(&id, 150).await, Some(s.clone()));
            assert_eq!(store.get("other", 150).await, None);
        }
        let store = SessionStore::open(&path, 150).unwrap();
        assert_eq!(store.get(&id, 150).await, Some(s.clone()));
        store.extend(&id, 300).await.unwrap();
        assert_eq!(store.get(&id, 250).await.unwrap().expires, 300);
        assert_eq!(store.get(&id, 300).await, None);
        let store = SessionStore::open(&path, 150).unwrap();
        assert_eq!(
            store.get(&id, 150).await,
            None,
            "an expired session was removed"
        );
        // The file holds no raw id.
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&id));
    }
}
