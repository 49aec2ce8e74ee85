//! Login sessions: kept in memory for fast lookups, written through to a
//! small SQLite file (`<data>/sessions.db`) so they survive a restart.
//!
//! Only the SHA-256 of a session id is stored, so a copy of the file does
//! not give anyone a usable cookie.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use rand::RngCore;
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

/// One logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// User name.
    pub username: String,
    /// Login time, epoch seconds.
    pub login_time: i64,
    /// Expiry, epoch seconds.
    pub expires: i64,
}

/// The session table.
pub struct SessionStore {
    conn: Mutex<Connection>,
    cache: Mutex<HashMap<String, Session>>,
}

fn key_of(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// A new random session id: 256 bits, hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl SessionStore {
    /// Open (or create) the file and load the sessions that have not expired.
    pub fn open(path: &Path, now: i64) -> anyhow::Result<SessionStore> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::init(conn, now)
    }

    /// A store that lives in memory only (tests).
    pub fn in_memory() -> anyhow::Result<SessionStore> {
        Self::init(Connection::open_in_memory()?, 0)
    }

    fn init(conn: Connection, now: i64) -> anyhow::Result<SessionStore> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                key TEXT PRIMARY KEY,
                username TEXT NOT NULL,
                login_time INTEGER NOT NULL,
                expires INTEGER NOT NULL
            );",
        )?;
        conn.execute("DELETE FROM sessions WHERE expires <= ?1", params![now])?;
        let mut cache = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT key, username, login_time, expires FROM sessions")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Session {
                        username: r.get(1)?,
                        login_time: r.get(2)?,
                        expires: r.get(3)?,
                    },
                ))
            })?;
            for row in rows {
                let (k, s) = row?;
                cache.insert(k, s);
            }
        }
        Ok(SessionStore {
            conn: Mutex::new(conn),
            cache: Mutex::new(cache),
        })
    }

    /// Store a new session under `id`.
    pub fn insert(&self, id: &str, session: &Session) -> anyhow::Result<()> {
        let key = key_of(id);
        self.conn
            .lock()
            .execute(
                "INSERT OR REPLACE INTO sessions (key, username, login_time, expires) VALUES (?1, ?2, ?3, ?4)",
                params![key, session.username, session.login_time, session.expires],
            )?;
        self.cache.lock().insert(key, session.clone());
        Ok(())
    }

    /// The live session for `id` at `now`, if any (an expired one is removed).
    pub fn get(&self, id: &str, now: i64) -> Option<Session> {
        let key = key_of(id);
        let found = self.cache.lock().get(&key).cloned()?;
        if found.expires <= now {
            let _ = self.remove(id);
            return None;
        }
        Some(found)
    }

    /// Move the expiry of `id` to `expires`.
    pub fn extend(&self, id: &str, expires: i64) -> anyhow::Result<()> {
        let key = key_of(id);
        if let Some(s) = self.cache.lock().get_mut(&key) {
            s.expires = expires;
        }
        self.conn.lock().execute(
            "UPDATE sessions SET expires = ?2 WHERE key = ?1",
            params![key, expires],
        )?;
        Ok(())
    }

    /// Forget `id`.
    pub fn remove(&self, id: &str) -> anyhow::Result<()> {
        let key = key_of(id);
        self.cache.lock().remove(&key);
        self.conn
            .lock()
            .execute("DELETE FROM sessions WHERE key = ?1", params![key])?;
        Ok(())
    }

    /// Drop every session that expired by `now`.
    pub fn purge(&self, now: i64) -> anyhow::Result<()> {
        self.cache.lock().retain(|_, s| s.expires > now);
        self.conn
            .lock()
            .execute("DELETE FROM sessions WHERE expires <= ?1", params![now])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_survive_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let id = new_id();
        assert_eq!(id.len(), 64);
        let s = Session {
            username: "alice".into(),
            login_time: 100,
            expires: 200,
        };
        {
            let store = SessionStore::open(&path, 100).unwrap();
            store.insert(&id, &s).unwrap();
            assert_eq!(store.get(&id, 150), Some(s.clone()));
            assert_eq!(store.get("other", 150), None);
        }
        let store = SessionStore::open(&path, 150).unwrap();
        assert_eq!(store.get(&id, 150), Some(s.clone()));
        store.extend(&id, 300).unwrap();
        assert_eq!(store.get(&id, 250).unwrap().expires, 300);
        assert_eq!(store.get(&id, 300), None);
        let store = SessionStore::open(&path, 150).unwrap();
        assert_eq!(store.get(&id, 150), None, "an expired session was removed");
        // The file holds no raw id.
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&id));
    }
}
