//! Registry credentials remembered with `rememberme`, keyed by user then
//! registry. Never in task params; kept sealed by the storage layer
//! ([`crate::store::Credentials`]): in the data folder, or with several
//! nodes in the shared database, so what a user remembered on one node
//! serves on all.

use std::path::Path;
use std::sync::Arc;

use crate::runtime::{Credential, Error};
use crate::store::credentials::{Credentials, RegistryLogin};

/// The remembered credentials of every user.
pub struct CredentialStore {
    rows: Arc<dyn Credentials>,
}

impl CredentialStore {
    /// The credentials kept by `rows`.
    pub fn new(rows: Arc<dyn Credentials>) -> CredentialStore {
        CredentialStore { rows }
    }

    /// The credentials kept in `data_dir`, sealed with its `secret.key`
    /// (created if missing); an earlier clear-text file is sealed and removed.
    pub fn open(data_dir: &Path) -> anyhow::Result<CredentialStore> {
        Ok(Self::new(crate::store::credentials_in_folder(data_dir)?))
    }

    /// What `user` remembered for `registry`; unreadable ones are ignored
    /// (logged).
    pub async fn lookup(&self, user: &str, registry: &str) -> Option<Credential> {
        match self.rows.lookup(user, registry).await {
            Ok(found) => found.map(|login| Credential {
                registry: registry.to_string(),
                username: login.username,
                password: login.password,
            }),
            Err(e) => {
                tracing::warn!("remembered credentials unreadable, ignored: {e:#}");
                None
            }
        }
    }

    /// Remember `credential` for `user`.
    pub async fn remember(&self, user: &str, credential: &Credential) -> Result<(), Error> {
        let login = RegistryLogin {
            username: credential.username.clone(),
            password: credential.password.clone(),
        };
        self.rows
            .remember(user, &credential.registry, &login)
            .await
            .map_err(|e| Error::Other(format!("cannot store credentials: {e:#}")))
    }
}
