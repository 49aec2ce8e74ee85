//! The storage layer: what the server keeps durably, behind one trait per
//! kind of record, with one driver per database (as River's `riverdriver`).
//!
//! - [`tasks`]: the task queue's rows ([`TaskStore`]), their model and the
//!   claim protocol;
//! - [`sessions`]: login sessions ([`Sessions`]);
//! - [`audit`]: the audit log of state-changing API calls ([`AuditLog`]);
//! - [`credentials`]: remembered registry credentials ([`Credentials`]);
//! - [`registries`]: the API's registries and preferences ([`Registries`]);
//! - [`task_log`]: each task's log lines, bounded, stored with the task
//!   through [`TaskStore`].
//! - [`schedules`]: scheduled tasks ([`ScheduleStore`]), kept by the task
//!   stores themselves ([`TaskStore::schedules`]).
//! - [`webhooks`]: users' webhooks and the outbox of their deliveries
//!   ([`WebhookStore`], [`TaskStore::webhooks`]).
//!
//! Drivers: [`sqlite`] (the data folder of one node) and [`postgres`] (one
//! database shared by several nodes). Each implements every trait; the
//! shared test suite (`suite`) runs each of them.
//!
//! The layer sits below the queue, authentication, the runtimes and the
//! configuration: nothing here imports them. Their code reaches storage
//! through the traits, and only the wiring that opens the stores names a
//! driver.

pub mod audit;
pub mod credentials;
pub mod durable;
pub mod notice;
pub mod postgres;
pub mod private;
pub mod registries;
pub mod schedules;
pub mod secret;
pub mod sessions;
pub mod sqlite;
#[cfg(test)]
mod suite;
pub mod task_log;
pub mod tasks;
pub mod webhooks;

pub use audit::AuditLog;
pub use credentials::Credentials;
pub use notice::Notice;
pub use postgres::Database;
pub use registries::Registries;
pub use schedules::ScheduleStore;
pub use sessions::Sessions;
pub use tasks::TaskStore;
pub use webhooks::WebhookStore;

use std::path::Path;
use std::sync::Arc;

/// The sessions of one node, in the SQLite file `path` (created if
/// missing), the ones expired by `now` dropped. With several nodes:
/// [`Database::sessions`].
pub fn sessions_in_file(path: &Path, now: i64) -> anyhow::Result<Arc<dyn Sessions>> {
    Ok(Arc::new(sqlite::SqliteSessions::open(path, now)?))
}

/// Sessions that live in memory only (tests).
pub fn sessions_in_memory() -> anyhow::Result<Arc<dyn Sessions>> {
    Ok(Arc::new(sqlite::SqliteSessions::in_memory()?))
}

/// The remembered credentials of one node, sealed in `data_dir` with its
/// `secret.key` (created if missing). With several nodes:
/// [`Database::credentials`].
pub fn credentials_in_folder(data_dir: &Path) -> anyhow::Result<Arc<dyn Credentials>> {
    Ok(Arc::new(sqlite::FileCredentials::open(data_dir)?))
}

/// The audit log of one node, in the SQLite file `audit.db` of `data_dir`
/// (created if missing). With several nodes: [`Database::audit`].
pub fn audit_in_folder(data_dir: &Path) -> anyhow::Result<Arc<dyn AuditLog>> {
    Ok(Arc::new(sqlite::audit::SqliteAudit::open(
        &data_dir.join(sqlite::audit::AUDIT_FILE),
    )?))
}
