//! The audit log in the shared database (table `audit_log`): every node's
//! calls in one log.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::Database;
use crate::store::audit::{query_tail, AuditEntry, AuditFilter, AuditLog, Bound, NewAuditEntry};

/// The audit log of the shared database (its migrations made the table).
pub struct PgAudit {
    db: Arc<Database>,
}

impl PgAudit {
    /// The audit log of `db`.
    pub fn new(db: Arc<Database>) -> PgAudit {
        PgAudit { db }
    }
}

#[async_trait]
impl AuditLog for PgAudit {
    async fn append(&self, entries: &[NewAuditEntry]) -> anyhow::Result<()> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO audit_log (ts, level, category, username, message)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        for e in entries {
            tx.execute(
                &stmt,
                &[&e.ts_micros, &e.level, &e.category, &e.user, &e.message],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list(&self, filter: &AuditFilter) -> anyhow::Result<Vec<AuditEntry>> {
        let (tail, values) = query_tail(filter, |n| format!("${n}"));
        let sql = format!("SELECT id, ts, level, category, username, message FROM audit_log{tail}");
        let bound: Vec<Box<dyn ToSql + Sync + Send>> = values
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync + Send> {
                match v {
                    Bound::Int(i) => Box::new(i),
                    Bound::Text(t) => Box::new(t),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.db.client().await?.query(&sql, &refs).await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                entry: NewAuditEntry {
                    ts_micros: r.get(1),
                    level: r.get(2),
                    category: r.get(3),
                    user: r.get(4),
                    message: r.get(5),
                },
            })
            .collect())
    }

    async fn clear(&self) -> anyhow::Result<u64> {
        Ok(self
            .db
            .client()
            .await?
            .execute("DELETE FROM audit_log", &[])
            .await?)
    }

    async fn prune(&self, before_micros: i64) -> anyhow::Result<u64> {
        Ok(self
            .db
            .client()
            .await?
            .execute("DELETE FROM audit_log WHERE ts < $1", &[&before_micros])
            .await?)
    }
}
