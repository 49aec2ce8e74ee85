//! Registry credentials remembered with `rememberme`, keyed by user then
//! registry, sealed at rest with the data folder's key (`secret.key`, as
//! task secrets are), so no password is in clear on disk or in a table.

use anyhow::Result;
use async_trait::async_trait;

/// Associated data of sealed credentials (task ids, the other users of the
/// key, are positive), so a task's sealed params cannot pass for them.
pub const SEAL_ID: i64 = -1;

/// A login remembered for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// The registry's user name.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    /// The user name only: a password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Durable storage of remembered registry credentials, one driver per
/// database.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// What `user` remembered for `registry`.
    async fn lookup(&self, user: &str, registry: &str) -> Result<Option<RegistryLogin>>;
    /// Remember `login` for `user` at `registry`, replacing what was there.
    async fn remember(&self, user: &str, registry: &str, login: &RegistryLogin) -> Result<()>;
}
