//! The API's registries in the shared database (table `registries`, logins
//! sealed under the key every node shares) and its preferences (the shared
//! `settings` table, keys prefixed `preference.`), so every node sees what
//! one node added.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use tokio_postgres::error::SqlState;

use super::Database;
use crate::store::registries::{
    open_login, seal_login, Edited, NewRegistry, Registries, StoredRegistry,
};
use crate::store::secret::SecretBox;

/// Prefix of the preferences' keys in `settings`.
const PREFERENCE: &str = "preference.";

/// The registries and preferences of the shared database.
pub struct PgRegistries {
    db: Arc<Database>,
    secrets: SecretBox,
}

impl PgRegistries {
    /// The registries of `db`, sealed with `secrets` (from [`Database::shared_secrets`]).
    pub fn new(db: Arc<Database>, secrets: SecretBox) -> PgRegistries {
        PgRegistries { db, secrets }
    }

    fn row(&self, r: &tokio_postgres::Row) -> Result<StoredRegistry> {
        let name: String = r.get(1);
        let sealed: Option<Vec<u8>> = r.get(5);
        let login = open_login(&self.secrets, &name, sealed.as_deref())?;
        Ok(StoredRegistry {
            id: r.get(0),
            registry: NewRegistry {
                name,
                url: r.get(2),
                trust_cert: r.get(3),
                version: r.get(4),
                login,
            },
        })
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

#[async_trait]
impl Registries for PgRegistries {
    async fn list(&self) -> Result<Vec<StoredRegistry>> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT id, name, url, trust_cert, version, sealed FROM registries ORDER BY id",
                &[],
            )
            .await?;
        rows.iter().map(|r| self.row(r)).collect()
    }

    async fn add(&self, new: &NewRegistry) -> Result<Option<StoredRegistry>> {
        let sealed = seal_login(&self.secrets, new)?;
        let inserted = self
            .db
            .client()
            .await?
            .query_one(
                "INSERT INTO registries (name, url, trust_cert, version, sealed)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&new.name, &new.url, &new.trust_cert, &new.version, &sealed],
            )
            .await;
        match inserted {
            Ok(row) => Ok(Some(StoredRegistry {
                id: row.get(0),
                registry: new.clone(),
            })),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn edit(&self, old_name: &str, new: &NewRegistry) -> Result<Edited> {
        let sealed = seal_login(&self.secrets, new)?;
        let updated = self
            .db
            .client()
            .await?
            .query_opt(
                "UPDATE registries SET name = $1, url = $2, trust_cert = $3, version = $4, sealed = $5
                 WHERE name = $6 RETURNING id",
                &[
                    &new.name,
                    &new.url,
                    &new.trust_cert,
                    &new.version,
                    &sealed,
                    &old_name,
                ],
            )
            .await;
        match updated {
            Ok(Some(row)) => Ok(Edited::Done(StoredRegistry {
                id: row.get(0),
                registry: new.clone(),
            })),
            Ok(None) => Ok(Edited::Missing),
            Err(e) if is_unique_violation(&e) => Ok(Edited::Taken),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove(&self, name: &str) -> Result<bool> {
        let removed = self
            .db
            .client()
            .await?
            .execute("DELETE FROM registries WHERE name = $1", &[&name])
            .await?;
        Ok(removed > 0)
    }

    async fn preference(&self, key: &str) -> Result<Option<String>> {
        self.db.setting(&format!("{PREFERENCE}{key}")).await
    }

    async fn set_preference(&self, key: &str, value: Option<&str>) -> Result<()> {
        let key = format!("{PREFERENCE}{key}");
        match value {
            Some(v) => self.db.set_setting(&key, v).await,
            None => {
                self.db
                    .client()
                    .await?
                    .execute("DELETE FROM settings WHERE key = $1", &[&key])
                    .await?;
                Ok(())
            }
        }
    }
}
