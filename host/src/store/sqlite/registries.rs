//! The API's registries and preferences of one node, in a small SQLite
//! file of its data folder (`registries.db`), logins sealed with the data
//! folder's `secret.key`.

use std::path::Path;

use anyhow::{Context, Result};
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::registries::{
    open_login, seal_login, Edited, NewRegistry, Registries, StoredRegistry,
};
use crate::store::secret::{SecretBox, KEY_FILE};

/// The file, in the data folder.
pub const REGISTRIES_FILE: &str = "registries.db";

/// The registries and preferences of one node.
pub struct SqliteRegistries {
    conn: Mutex<Connection>,
    secrets: SecretBox,
}

impl SqliteRegistries {
    /// The store in `data_dir`, sealed with its `secret.key` (both created if missing).
    pub fn open_in(data_dir: &Path) -> Result<SqliteRegistries> {
        std::fs::create_dir_all(data_dir)?;
        let secrets = SecretBox::load_or_create(&data_dir.join(KEY_FILE))?;
        let path = data_dir.join(REGISTRIES_FILE);
        super::alloc::install();
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Self::init(conn, secrets)
    }

    /// A store in memory (tests).
    pub fn in_memory(secrets: SecretBox) -> Result<SqliteRegistries> {
        Self::init(Connection::open_in_memory()?, secrets)
    }

    fn init(conn: Connection, secrets: SecretBox) -> Result<SqliteRegistries> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // AUTOINCREMENT: an id is never reused for another registry.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS registries (
                id         INTEGER PRIMARY KEY AUTOINCREMENT,
                name       TEXT    NOT NULL UNIQUE,
                url        TEXT    NOT NULL,
                trust_cert INTEGER NOT NULL,
                version    TEXT    NOT NULL DEFAULT '',
                sealed     BLOB
            );
            CREATE TABLE IF NOT EXISTS preferences (
                key   TEXT PRIMARY KEY,
                value TEXT NOT NULL
            );",
        )?;
        Ok(SqliteRegistries {
            conn: Mutex::new(conn),
            secrets,
        })
    }

    fn row(
        &self,
        id: i64,
        name: String,
        url: String,
        trust: bool,
        version: String,
        sealed: Option<Vec<u8>>,
    ) -> Result<StoredRegistry> {
        let login = open_login(&self.secrets, &name, sealed.as_deref())?;
        Ok(StoredRegistry {
            id,
            registry: NewRegistry {
                name,
                url,
                trust_cert: trust,
                version,
                login,
            },
        })
    }

    fn get(&self, conn: &Connection, name: &str) -> Result<Option<StoredRegistry>> {
        let found = conn
            .query_row(
                "SELECT id, name, url, trust_cert, version, sealed FROM registries WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<Vec<u8>>>(5)?,
                    ))
                },
            )
            .optional()?;
        found
            .map(|(id, n, u, t, v, s)| self.row(id, n, u, t, v, s))
            .transpose()
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

#[async_trait]
impl Registries for SqliteRegistries {
    async fn list(&self) -> Result<Vec<StoredRegistry>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, name, url, trust_cert, version, sealed FROM registries ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<Vec<u8>>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, n, u, t, v, s) = row?;
            out.push(self.row(id, n, u, t, v, s)?);
        }
        Ok(out)
    }

    async fn add(&self, new: &NewRegistry) -> Result<Option<StoredRegistry>> {
        let sealed = seal_login(&self.secrets, new)?;
        let conn = self.conn.lock();
        let inserted = conn.execute(
            "INSERT INTO registries (name, url, trust_cert, version, sealed) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![new.name, new.url, new.trust_cert, new.version, sealed],
        );
        match inserted {
            Ok(_) => Ok(Some(StoredRegistry {
                id: conn.last_insert_rowid(),
                registry: new.clone(),
            })),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn edit(&self, old_name: &str, new: &NewRegistry) -> Result<Edited> {
        let sealed = seal_login(&self.secrets, new)?;
        let conn = self.conn.lock();
        let Some(old) = self.get(&conn, old_name)? else {
            return Ok(Edited::Missing);
        };
        let updated = conn.execute(
            "UPDATE registries SET name = ?1, url = ?2, trust_cert = ?3, version = ?4, sealed = ?5
             WHERE id = ?6",
            params![
                new.name,
                new.url,
                new.trust_cert,
                new.version,
                sealed,
                old.id
            ],
        );
        match updated {
            Ok(_) => Ok(Edited::Done(StoredRegistry {
                id: old.id,
                registry: new.clone(),
            })),
            Err(e) if is_unique_violation(&e) => Ok(Edited::Taken),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove(&self, name: &str) -> Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute("DELETE FROM registries WHERE name = ?1", params![name])? > 0)
    }

    async fn preference(&self, key: &str) -> Result<Option<String>> {
        let conn = self.conn.lock();
        Ok(conn
            .query_row(
                "SELECT value FROM preferences WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    async fn set_preference(&self, key: &str, value: Option<&str>) -> Result<()> {
        let conn = self.conn.lock();
        match value {
            Some(v) => conn.execute(
                "INSERT INTO preferences (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => conn.execute("DELETE FROM preferences WHERE key = ?1", params![key])?,
        };
        Ok(())
    }
}
