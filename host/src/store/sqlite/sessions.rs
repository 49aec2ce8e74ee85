//! Sessions of one node: written through to a small SQLite file
//! (`<data>/sessions.db`) so they survive a restart, and looked up in
//! memory (every request asks).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection};

use crate::store::sessions::{Session, SessionKey, Sessions};

/// The SQLite sessions, mirrored in memory.
pub struct SqliteSessions {
    conn: Mutex<Connection>,
    cache: Mutex<HashMap<SessionKey, Session>>,
}

impl SqliteSessions {
    /// Open (or create) the file and load the sessions that have not expired
    /// by `now` (the expired ones are deleted).
    pub fn open(path: &Path, now: i64) -> anyhow::Result<SqliteSessions> {
        super::alloc::install();
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::init(conn, now)
    }

    /// Sessions that live in memory only (tests).
    pub fn in_memory() -> anyhow::Result<SqliteSessions> {
        Self::init(Connection::open_in_memory()?, 0)
    }

    fn init(conn: Connection, now: i64) -> anyhow::Result<SqliteSessions> {
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
                let mut key = SessionKey::default();
                match hex::decode_to_slice(&k, &mut key) {
                    Ok(()) => {
                        cache.insert(key, s);
                    }
                    Err(_) => {
                        tracing::warn!("a stored session key is not a SHA-256; it is ignored")
                    }
                }
            }
        }
        Ok(SqliteSessions {
            conn: Mutex::new(conn),
            cache: Mutex::new(cache),
        })
    }
}

#[async_trait]
impl Sessions for SqliteSessions {
    async fn insert(&self, key: &SessionKey, session: &Session) -> anyhow::Result<()> {
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO sessions (key, username, login_time, expires, stamp) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hex::encode(key), session.username, session.login_time, session.expires, session.stamp],
        )?;
        self.cache.lock().insert(*key, session.clone());
        Ok(())
    }

    async fn get(&self, key: &SessionKey) -> anyhow::Result<Option<Session>> {
        Ok(self.cache.lock().get(key).cloned())
    }

    async fn extend(&self, key: &SessionKey, expires: i64) -> anyhow::Result<()> {
        if let Some(s) = self.cache.lock().get_mut(key) {
            s.expires = expires;
        }
        self.conn.lock().execute(
            "UPDATE sessions SET expires = ?2 WHERE key = ?1",
            params![hex::encode(key), expires],
        )?;
        Ok(())
    }

    async fn remove(&self, key: &SessionKey) -> anyhow::Result<()> {
        self.cache.lock().remove(key);
        self.conn.lock().execute(
            "DELETE FROM sessions WHERE key = ?1",
            params![hex::encode(key)],
        )?;
        Ok(())
    }

    async fn purge(&self, now: i64) -> anyhow::Result<()> {
        self.cache.lock().retain(|_, s| s.expires > now);
        self.conn
            .lock()
            .execute("DELETE FROM sessions WHERE expires <= ?1", params![now])?;
        Ok(())
    }
}
