//! The audit log of one node, in its own SQLite file (`<data>/audit.db`),
//! so that its writes never wait on the task store's writer.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, params_from_iter, Connection};

use crate::store::audit::{query_tail, AuditEntry, AuditFilter, AuditLog, Bound, NewAuditEntry};

/// The file of the audit log in a data folder.
pub const AUDIT_FILE: &str = "audit.db";

/// The SQLite audit log.
pub struct SqliteAudit {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteAudit {
    /// Open (or create) the log in `path`.
    pub fn open(path: &Path) -> anyhow::Result<SqliteAudit> {
        super::alloc::install();
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::init(conn)
    }

    /// A log that lives in memory only (tests).
    pub fn in_memory() -> anyhow::Result<SqliteAudit> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> anyhow::Result<SqliteAudit> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS audit_log (
                id       INTEGER PRIMARY KEY AUTOINCREMENT,
                ts       INTEGER NOT NULL,
                level    TEXT    NOT NULL,
                category TEXT    NOT NULL,
                username TEXT    NOT NULL,
                message  TEXT    NOT NULL
            );
            CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts);",
        )?;
        Ok(SqliteAudit {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` on the connection off the async workers.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock()))
            .await
            .context("the audit log's thread stopped")?
    }
}

#[async_trait]
impl AuditLog for SqliteAudit {
    async fn append(&self, entries: &[NewAuditEntry]) -> anyhow::Result<()> {
        let entries = entries.to_vec();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO audit_log (ts, level, category, username, message)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in &entries {
                    stmt.execute(params![e.ts_micros, e.level, e.category, e.user, e.message])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list(&self, filter: &AuditFilter) -> anyhow::Result<Vec<AuditEntry>> {
        let (tail, values) = query_tail(filter, |n| format!("?{n}"));
        self.with(move |conn| {
            let sql =
                format!("SELECT id, ts, level, category, username, message FROM audit_log{tail}");
            let mut stmt = conn.prepare(&sql)?;
            let values = values.into_iter().map(|v| match v {
                Bound::Int(i) => rusqlite::types::Value::Integer(i),
                Bound::Text(t) => rusqlite::types::Value::Text(t),
            });
            let rows = stmt.query_map(params_from_iter(values), |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    entry: NewAuditEntry {
                        ts_micros: r.get(1)?,
                        level: r.get(2)?,
                        category: r.get(3)?,
                        user: r.get(4)?,
                        message: r.get(5)?,
                    },
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn clear(&self) -> anyhow::Result<u64> {
        self.with(|conn| Ok(conn.execute("DELETE FROM audit_log", [])? as u64))
            .await
    }

    async fn prune(&self, before_micros: i64) -> anyhow::Result<u64> {
        self.with(move |conn| {
            Ok(conn.execute(
                "DELETE FROM audit_log WHERE ts < ?1",
                params![before_micros],
            )? as u64)
        })
        .await
    }
}
