//! Sessions in the shared database (table `sessions`), asked on every
//! lookup, so a session made on one node works on every node and a logout
//! anywhere ends it everywhere.

use std::sync::Arc;

use async_trait::async_trait;

use super::Database;
use crate::store::sessions::{Session, SessionKey, Sessions};

/// The sessions of the shared database (its migrations made the table).
pub struct PgSessions {
    db: Arc<Database>,
}

impl PgSessions {
    /// The sessions of `db`.
    pub fn new(db: Arc<Database>) -> PgSessions {
        PgSessions { db }
    }
}

#[async_trait]
impl Sessions for PgSessions {
    async fn insert(&self, key: &SessionKey, session: &Session) -> anyhow::Result<()> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO sessions (key, username, login_time, expires, stamp) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (key) DO UPDATE SET username = excluded.username,
                     login_time = excluded.login_time, expires = excluded.expires,
                     stamp = excluded.stamp",
                &[&hex::encode(key), &session.username, &session.login_time, &session.expires, &session.stamp],
            )
            .await?;
        Ok(())
    }

    async fn get(&self, key: &SessionKey) -> anyhow::Result<Option<Session>> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT username, login_time, expires, stamp FROM sessions WHERE key = $1",
            )
            .await?;
        let row = client.query_opt(&statement, &[&hex::encode(key)]).await?;
        Ok(row.map(|r| Session {
            username: r.get(0),
            login_time: r.get(1),
            expires: r.get(2),
            stamp: r.get(3),
        }))
    }

    async fn extend(&self, key: &SessionKey, expires: i64) -> anyhow::Result<()> {
        self.db
            .client()
            .await?
            .execute(
                "UPDATE sessions SET expires = $2 WHERE key = $1",
                &[&hex::encode(key), &expires],
            )
            .await?;
        Ok(())
    }

    async fn remove(&self, key: &SessionKey) -> anyhow::Result<()> {
        self.db
            .client()
            .await?
            .execute("DELETE FROM sessions WHERE key = $1", &[&hex::encode(key)])
            .await?;
        Ok(())
    }

    async fn purge(&self, now: i64) -> anyhow::Result<()> {
        self.db
            .client()
            .await?
            .execute("DELETE FROM sessions WHERE expires <= $1", &[&now])
            .await?;
        Ok(())
    }
}
