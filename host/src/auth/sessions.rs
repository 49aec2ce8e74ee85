//! Login sessions, written through to a small SQLite file
//! (`<data>/sessions.db`) so they survive a restart and looked up in memory;
//! or, with several nodes, kept in the shared PostgreSQL database (table
//! `sessions`) and looked up there, so a session made on one node works on
//! every node and a logout anywhere ends it everywhere.
//!
//! Only the SHA-256 of a session id is stored, so a copy of the file (or of
//! the table) does not give anyone a usable cookie.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use anyhow::Context;
use rand::RngCore;
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use crate::pg::Database;
/// One logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// User name.
    pub username: String,
    /// Login time, epoch seconds.
    pub login_time: i64,
    /// Expiry, epoch seconds.
    pub expires: i64,
    /// A fingerprint of the user's password hash when the session was made
    /// ([`super::hash_stamp`]): a session made under another hash (the
    /// password changed since) is refused.
    pub stamp: String,
}

/// Where the sessions are kept.
enum Backend {
    /// One node: an SQLite file, mirrored in memory.
    Sqlite {
        conn: Mutex<Connection>,
        /// By the SHA-256 of the session id (its hex is the table's key).
        cache: Mutex<HashMap<Digest32, Session>>,
    },
    /// Several nodes: the shared database, asked on every lookup.
    Postgres(Arc<Database>),
}

/// The session table.
pub struct SessionStore {
    backend: Backend,
}

/// The SHA-256 of a session id.
type Digest32 = [u8; 32];

fn digest_of(id: &str) -> Digest32 {
    Sha256::digest(id.as_bytes()).into()
}

/// The stored key of a session id: the hex of its SHA-256.
fn key_of(id: &str) -> String {
    hex::encode(digest_of(id))
}

/// A new random session id: 256 bits, hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
}

impl SessionStore {
    /// Open (or create) the file and load the sessions that have not expired.
    pub fn open(path: &Path, now: i64) -> anyhow::Result<SessionStore> {
        crate::queue::sqlite_alloc::install();
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::init(conn, now)
    }

    /// A store that lives in memory only (tests).
    pub fn in_memory() -> anyhow::Result<SessionStore> {
        Self::init(Connection::open_in_memory()?, 0)
    }

    /// The sessions of the shared database (its migrations made the table).
    pub fn postgres(db: Arc<Database>) -> SessionStore {
        SessionStore {
            backend: Backend::Postgres(db),
        }
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
        // Sessions made before stamps existed have none, and are refused.
        let has_stamp = conn
            .prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'stamp'")?
            .exists([])?;
        if !has_stamp {
            conn.execute_batch("ALTER TABLE sessions ADD COLUMN stamp TEXT NOT NULL DEFAULT '';")?;
        }
        conn.execute("DELETE FROM sessions WHERE expires <= ?1", params![now])?;
        let mut cache = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT key, username, login_time, expires, stamp FROM sessions")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Session {
                        username: r.get(1)?,
                        login_time: r.get(2)?,
                        expires: r.get(3)?,
                        stamp: r.get(4)?,
                    },
                ))
            })?;
            for row in rows {
                let (k, s) = row?;
                let mut digest = Digest32::default();
                match hex::decode_to_slice(&k, &mut digest) {
                    Ok(()) => {
                        cache.insert(digest, s);
                    }
                    Err(_) => {
                        tracing::warn!("a stored session key is not a SHA-256; it is ignored")
                    }
                }
            }
        }
        Ok(SessionStore {
            backend: Backend::Sqlite {
                conn: Mutex::new(conn),
                cache: Mutex::new(cache),
            },
        })
    }

    /// Store a new session under `id`.
    pub async fn insert(&self, id: &str, session: &Session) -> anyhow::Result<()> {
        let digest = digest_of(id);
        let key = hex::encode(digest);
        match &self.backend {
            Backend::Sqlite { conn, cache } => {
                lock(conn).execute(
                    "INSERT OR REPLACE INTO sessions (key, username, login_time, expires, stamp) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key, session.username, session.login_time, session.expires, session.stamp],
                )?;
                lock(cache).insert(digest, session.clone());
            }
            Backend::Postgres(db) => {
                db.client()
                    .await?
                    .execute(
                        "INSERT INTO sessions (key, username, login_time, expires, stamp) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (key) DO UPDATE SET username = excluded.username,
                             login_time = excluded.login_time, expires = excluded.expires,
                             stamp = excluded.stamp",
                        &[&key, &session.username, &session.login_time, &session.expires, &session.stamp],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// The live session for `id` at `now`, if any (an expired one is removed).
    /// A store that cannot be read answers `None` (logged).
    pub async fn get(&self, id: &str, now: i64) -> Option<Session> {
        let found = match &self.backend {
            // Every request asks: no hex, no allocation for the key.
            Backend::Sqlite { cache, .. } => lock(cache).get(&digest_of(id)).cloned()?,
            Backend::Postgres(db) => {
                let key = key_of(id);
                let row = async {
                    let client = db.client().await?;
                    let statement = client
                        .prepare_cached(
                            "SELECT username, login_time, expires, stamp FROM sessions WHERE key = $1",
                        )
                        .await?;
                    client
                        .query_opt(&statement, &[&key])
                        .await
                        .map_err(anyhow::Error::from)
                }
                .await;
                match row {
                    Ok(row) => {
                        let r = row?;
                        Session {
                            username: r.get(0),
                            login_time: r.get(1),
                            expires: r.get(2),
                            stamp: r.get(3),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "reading a session");
                        return None;
                    }
                }
            }
        };
        if found.expires <= now {
            let _ = self.remove(id).await;
            return None;
        }
        Some(found)
    }

    /// Move the expiry of `id` to `expires`.
    pub async fn extend(&self, id: &str, expires: i64) -> anyhow::Result<()> {
        let digest = digest_of(id);
        let key = hex::encode(digest);
        match &self.backend {
            Backend::Sqlite { conn, cache } => {
                if let Some(s) = lock(cache).get_mut(&digest) {
                    s.expires = expires;
                }
                lock(conn).execute(
                    "UPDATE sessions SET expires = ?2 WHERE key = ?1",
                    params![key, expires],
                )?;
            }
            Backend::Postgres(db) => {
                db.client()
                    .await?
                    .execute(
                        "UPDATE sessions SET expires = $2 WHERE key = $1",
                        &[&key, &expires],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Forget `id`.
    pub async fn remove(&self, id: &str) -> anyhow::Result<()> {
        let digest = digest_of(id);
        let key = hex::encode(digest);
        match &self.backend {
            Backend::Sqlite { conn, cache } => {
                lock(cache).remove(&digest);
                lock(conn).execute("DELETE FROM sessions WHERE key = ?1", params![key])?;
            }
            Backend::Postgres(db) => {
                db.client()
                    .await?
                    .execute("DELETE FROM sessions WHERE key = $1", &[&key])
                    .await?;
            }
        }
        Ok(())
    }

    /// Drop every session that expired by `now`.
    pub async fn purge(&self, now: i64) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite { conn, cache } => {
                lock(cache).retain(|_, s| s.expires > now);
                lock(conn).execute("DELETE FROM sessions WHERE expires <= ?1", params![now])?;
            }
            Backend::Postgres(db) => {
                db.client()
                    .await?
                    .execute("DELETE FROM sessions WHERE expires <= $1", &[&now])
                    .await?;
            }
        }
        Ok(())
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
