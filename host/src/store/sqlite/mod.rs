//! The SQLite driver: the stores of one node, in files of its data folder.

pub mod alloc;
pub mod audit;
pub mod credentials;
pub mod registries;
pub mod sessions;
pub mod tasks;
mod wal_sync;

pub use super::secret::KEY_FILE;
pub use credentials::FileCredentials;
pub use registries::SqliteRegistries;
pub use sessions::SqliteSessions;
pub use tasks::{SqliteStore, DB_FILE};
