//! Registries added through the API (`POST registry`) and the few
//! preferences the API stores (`PUT preference/repo`), one driver per
//! database: in the data folder of one node, or in the shared database so
//! every node sees them. A registry's login is sealed with the data
//! folder's key (`secret.key`, as remembered credentials are), bound to the
//! registry's name, so no password is in clear in a file or a table and a
//! sealed login moved to another row does not open.

use anyhow::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::credentials::RegistryLogin;
use crate::store::secret::SecretBox;

/// A registry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRegistry {
    /// The store's id (unique, never reused for another registry).
    pub id: i64,
    /// The registry's fields.
    pub registry: NewRegistry,
}

/// A registry to add, or what an edit replaces one with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRegistry {
    /// Unique name.
    pub name: String,
    /// Address (`https://host:port`).
    pub url: String,
    /// Trust a self-signed certificate (`enableTrustCert`).
    pub trust_cert: bool,
    /// The registry API version the caller gave (`v1`, `v2`), as given.
    pub version: String,
    /// The login, if the registry needs one (its `Debug` hides the password).
    pub login: Option<RegistryLogin>,
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edited {
    /// Replaced; the row as it is now.
    Done(StoredRegistry),
    /// No registry of the old name.
    Missing,
    /// The new name belongs to another registry.
    Taken,
}

/// Durable storage of the API's registries and preferences.
#[async_trait]
pub trait Registries: Send + Sync {
    /// Every registry, by id.
    async fn list(&self) -> Result<Vec<StoredRegistry>>;
    /// Add `new`; `None` when its name is taken.
    async fn add(&self, new: &NewRegistry) -> Result<Option<StoredRegistry>>;
    /// Replace the registry named `old_name` with `new` (same id).
    async fn edit(&self, old_name: &str, new: &NewRegistry) -> Result<Edited>;
    /// Remove the registry `name`; false when there was none.
    async fn remove(&self, name: &str) -> Result<bool>;
    /// The stored preference `key`.
    async fn preference(&self, key: &str) -> Result<Option<String>>;
    /// Store the preference `key` (`None`: remove it).
    async fn set_preference(&self, key: &str, value: Option<&str>) -> Result<()>;
}

/// The sealed part of a row: the name it belongs to and the login.
#[derive(Serialize, Deserialize)]
struct SealedLogin {
    name: String,
    username: String,
    password: String,
}

/// What binds a sealed login to its registry.
fn aad(name: &str) -> Vec<u8> {
    format!("registry:{name}").into_bytes()
}

/// Seal `registry`'s login (none: nothing stored).
pub(crate) fn seal_login(secrets: &SecretBox, registry: &NewRegistry) -> Result<Option<Vec<u8>>> {
    let Some(login) = &registry.login else {
        return Ok(None);
    };
    let plain = serde_json::to_vec(&SealedLogin {
        name: registry.name.clone(),
        username: login.username.clone(),
        password: login.password.clone(),
    })?;
    Ok(Some(secrets.seal_bound(&aad(&registry.name), &plain)?))
}

/// Open the login sealed for the registry `name`.
pub(crate) fn open_login(
    secrets: &SecretBox,
    name: &str,
    sealed: Option<&[u8]>,
) -> Result<Option<RegistryLogin>> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let saved: SealedLogin = serde_json::from_slice(&secrets.open_bound(&aad(name), sealed)?)?;
    if saved.name != name {
        anyhow::bail!("a sealed login of another registry");
    }
    Ok(Some(RegistryLogin {
        username: saved.username,
        password: saved.password,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_login_opens_only_for_its_registry() {
        let secrets = SecretBox::from_key(&[5; 32]);
        let reg = NewRegistry {
            name: "lab".into(),
            url: "https://r:5000".into(),
            trust_cert: false,
            version: "v2".into(),
            login: Some(RegistryLogin {
                username: "u".into(),
                password: "pw-clear".into(),
            }),
        };
        let sealed = seal_login(&secrets, &reg).unwrap().unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"pw-clear"));
        assert_eq!(
            open_login(&secrets, "lab", Some(&sealed)).unwrap(),
            reg.login
        );
        assert!(open_login(&secrets, "other", Some(&sealed)).is_err());
        assert_eq!(open_login(&secrets, "lab", None).unwrap(), None);
    }
}
