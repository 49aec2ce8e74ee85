//! Remembered registry credentials in the shared database (table
//! `credentials`, one sealed row per user and registry, under the key every
//! node shares), so what a user remembered on one node serves on all.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Database;
use crate::store::credentials::{Credentials, RegistryLogin, SEAL_ID};
use crate::store::secret::SecretBox;

/// One sealed row of the shared table: who and where are sealed with the
/// secret, so a row moved to another user or registry does not open.
#[derive(Serialize, Deserialize)]
struct SharedRow {
    user: String,
    registry: String,
    username: String,
    password: String,
}

/// The credentials of the shared database, sealed with the key every node
/// of it shares ([`Database::shared_secrets`]).
pub struct PgCredentials {
    db: Arc<Database>,
    secrets: SecretBox,
}

impl PgCredentials {
    /// The credentials of `db`, sealed with `secrets`.
    pub fn new(db: Arc<Database>, secrets: SecretBox) -> PgCredentials {
        PgCredentials { db, secrets }
    }
}

#[async_trait]
impl Credentials for PgCredentials {
    async fn lookup(&self, user: &str, registry: &str) -> Result<Option<RegistryLogin>> {
        let row = self
            .db
            .client()
            .await?
            .query_opt(
                "SELECT sealed FROM credentials WHERE username = $1 AND registry = $2",
                &[&user, &registry],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.get(0);
        let saved: SharedRow = serde_json::from_slice(&self.secrets.open(SEAL_ID, &sealed)?)?;
        if saved.user != user || saved.registry != registry {
            anyhow::bail!("a sealed row of another user or registry");
        }
        Ok(Some(RegistryLogin {
            username: saved.username,
            password: saved.password,
        }))
    }

    async fn remember(&self, user: &str, registry: &str, login: &RegistryLogin) -> Result<()> {
        let row = SharedRow {
            user: user.to_string(),
            registry: registry.to_string(),
            username: login.username.clone(),
            password: login.password.clone(),
        };
        let plain = serde_json::to_vec(&row).unwrap_or_default();
        let sealed = self.secrets.seal(SEAL_ID, &plain)?;
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO credentials (username, registry, sealed) VALUES ($1, $2, $3)
                 ON CONFLICT (username, registry) DO UPDATE SET sealed = excluded.sealed",
                &[&user, &registry, &sealed],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_between_nodes_and_sealed_in_the_database() {
        let url = super::super::testing::fresh_database("creds")
            .await
            .unwrap();
        let key = [3u8; 32];
        let a = PgCredentials::new(
            Database::connect(&url, "a").await.unwrap(),
            SecretBox::from_key(&key),
        );
        let b_db = Database::connect(&url, "b").await.unwrap();
        let b = PgCredentials::new(b_db.clone(), SecretBox::from_key(&key));
        let login = RegistryLogin {
            username: "u".into(),
            password: "p+/=".into(),
        };
        a.remember("alice", "r:5000", &login).await.unwrap();
        assert_eq!(b.lookup("alice", "r:5000").await.unwrap(), Some(login));
        assert_eq!(b.lookup("bob", "r:5000").await.unwrap(), None);
        let client = b_db.client().await.unwrap();
        let sealed: Vec<u8> = client
            .query_one("SELECT sealed FROM credentials", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!sealed.windows(4).any(|w| w == b"p+/="));
        // A row moved to another user does not open.
        client
            .execute("UPDATE credentials SET username = 'mallory'", &[])
            .await
            .unwrap();
        assert!(b.lookup("mallory", "r:5000").await.is_err());
    }
}
