//! One PostgreSQL database shared by several Stevedore nodes: a connection
//! pool, versioned schema migrations, the sealing key's check, and the
//! `LISTEN` connection that turns other nodes' `NOTIFY`s into [`Notice`]s.
//!
//! Selected by `STEVEDORE_DATABASE_URL=postgres://...` (config `[database]
//! url`). The stores built on it: [`PgStore`] (tasks), [`PgSessions`] and
//! [`PgCredentials`].
//!
//! Driver: `tokio-postgres` with a `deadpool-postgres` pool. It is async
//! without a runtime of its own, needs no database at build time (unlike
//! `sqlx`'s checked macros), compiles far less code, and exposes `LISTEN`
//! notifications directly from the connection.

pub mod audit;
mod batch;
pub mod config;
pub mod credentials;
mod listen;
mod migrations;
pub mod registries;
mod schedules;
pub mod sessions;
pub mod tasks;
pub mod testing;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tokio_postgres::NoTls;

pub use credentials::PgCredentials;
pub use listen::CHANNEL;
pub use migrations::{schema_version, MIGRATIONS};
pub use registries::PgRegistries;
pub use sessions::PgSessions;
pub use tasks::PgStore;

use crate::store::credentials::Credentials;
use crate::store::secret::{SecretBox, KEY_LEN};
use crate::store::sessions::Sessions;
use crate::store::Notice;

/// Most connections a node keeps open.
const POOL_SIZE: usize = 16;
/// Capacity of the notice channel; slower subscribers see `Lagged`.
const NOTICE_CAPACITY: usize = 4096;

/// Whether a database URL names PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The value of the one column of the one row that `sql` (which takes no
/// parameters) returns.
async fn one_value<T: tokio_postgres::types::FromSqlOwned>(
    client: &impl tokio_postgres::GenericClient,
    sql: &str,
) -> Result<T, tokio_postgres::Error> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// A node's handle on the shared database.
pub struct Database {
    pool: Pool,
    node: String,
    notices: broadcast::Sender<Notice>,
    listener: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("node", &self.node)
            .finish()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Database {
    /// Connect as node `node`, apply pending migrations (one node at a time,
    /// under an advisory lock) and start listening for notifications.
    pub async fn connect(url: &str, node: &str) -> anyhow::Result<Arc<Database>> {
        let config: tokio_postgres::Config = url
            .parse()
            .with_context(|| "database url: not a valid PostgreSQL URL".to_string())?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("building the database pool")?;
        {
            let mut client = pool.get().await.context("connecting to the database")?;
            migrations::migrate(&mut client).await?;
        }
        let (notices, _) = broadcast::channel(NOTICE_CAPACITY);
        let ready = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen::run(config, notices.clone(), ready.0));
        // The first LISTEN is in place before anyone submits through us.
        ready
            .1
            .await
            .map_err(|_| anyhow::anyhow!("the database listener stopped"))??;
        Ok(Arc::new(Database {
            pool,
            node: node.to_string(),
            notices,
            listener,
        }))
    }

    /// The audit log of this database.
    pub fn audit(self: &Arc<Self>) -> Arc<dyn crate::store::AuditLog> {
        Arc::new(audit::PgAudit::new(self.clone()))
    }

    /// The sessions of this database.
    pub fn sessions(self: &Arc<Self>) -> Arc<dyn Sessions> {
        Arc::new(PgSessions::new(self.clone()))
    }

    /// The remembered credentials of this database, sealed with `secrets`
    /// (from [`Database::shared_secrets`]).
    pub fn credentials(self: &Arc<Self>, secrets: SecretBox) -> Arc<dyn Credentials> {
        Arc::new(PgCredentials::new(self.clone(), secrets))
    }

    /// The registries and preferences of this database, sealed with
    /// `secrets` (from [`Database::shared_secrets`]).
    pub fn registries(self: &Arc<Self>, secrets: SecretBox) -> Arc<dyn crate::store::Registries> {
        Arc::new(PgRegistries::new(self.clone(), secrets))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A pooled connection.
    pub async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .context("getting a database connection")
    }

    /// Notifications from every node (this one's included) from now on.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Check that the sealing key in `key_file` is the one every other node
    /// uses (the first node to start records its SHA-256), so a task sealed
    /// on one node opens on another. Returns the box for that key.
    pub async fn shared_secrets(&self, key_file: &std::path::Path) -> anyhow::Result<SecretBox> {
        let secrets = SecretBox::load_or_create(key_file)?;
        let key =
            std::fs::read(key_file).with_context(|| format!("reading {}", key_file.display()))?;
        if key.len() != KEY_LEN {
            bail!("{}: expected {KEY_LEN} bytes", key_file.display());
        }
        let fingerprint = hex::encode(Sha256::digest(&key));
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ('secret_key_sha256', $1)
                 ON CONFLICT (key) DO NOTHING",
                &[&fingerprint],
            )
            .await?;
        let stored: String = one_value(
            &**client,
            "SELECT value FROM settings WHERE key = 'secret_key_sha256'",
        )
        .await?;
        if stored != fingerprint {
            bail!(
                "{} is not the sealing key the other nodes of this database use; \
                 copy `secret.key` from a node's data folder to this one",
                key_file.display()
            );
        }
        Ok(secrets)
    }

    /// A setting shared by every node.
    pub async fn setting(&self, key: &str) -> anyhow::Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Store a setting shared by every node.
    pub async fn set_setting(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }
}
