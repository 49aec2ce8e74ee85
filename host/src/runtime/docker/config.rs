//! The Docker runtime's registries: `[registries.NAME]` and the
//! `[repositories]` that the API's `dockerhub` and `qnap` point to. The
//! engine's address (`docker_host`) and its stall limit
//! (`docker_stall_secs`) are top-level keys, read in `crate::config`.
//!
//! ```toml
//! [registries.corp]
//! url = "https://registry.corp.example:5000"
//! username = "bot"
//! password = "secret"
//!
//! [repositories]
//! dockerhub = "https://mirror.corp.example"   # a mirror for Docker Hub
//! qnap = "corp"                               # a name from [registries]
//! ```

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use crate::secret::Secret;

/// A container registry that `repository = "private"` (with `registry_name`)
/// or the `[repositories]` mappings can name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry address, e.g. `https://registry.example:5000` or `127.0.0.1:5000`.
    pub url: String,
    /// Login user name, if the registry needs one.
    pub username: Option<String>,
    /// Login password.
    pub password: Option<Secret>,
    /// Refused with an explanation: whether the engine may talk plain HTTP
    /// (or unverified TLS) to a registry is the Docker engine's own setting
    /// (`insecure-registries` in `daemon.json`), which no API request can
    /// change. Accepting the key would promise what the server cannot do.
    pub insecure: Option<bool>,
}

/// Where the `dockerhub` and `qnap` repositories of the API point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoriesConfig {
    /// A registry name from `[registries]` or a URL used for `dockerhub`
    /// (a mirror); absent: Docker Hub itself.
    pub dockerhub: Option<String>,
    /// A registry name from `[registries]` or a URL used for `qnap`.
    pub qnap: Option<String>,
}

/// No registry asks for what only the engine decides, and each repository
/// names a URL or a configured registry.
pub fn check_registries(
    registries: &BTreeMap<String, RegistryConfig>,
    repositories: &RepositoriesConfig,
) -> anyhow::Result<()> {
    for (name, registry) in registries {
        if registry.insecure.is_some() {
            bail!(
                "registries.{name}.insecure: plain-HTTP registries are the Docker engine's \
                 setting: list `{}` in `insecure-registries` of its daemon.json and remove \
                 this key",
                registry.url
            );
        }
    }
    for (key, value) in [
        ("dockerhub", &repositories.dockerhub),
        ("qnap", &repositories.qnap),
    ] {
        if let Some(v) = value {
            if !v.contains("://") && !v.contains(':') && !registries.contains_key(v) {
                bail!("repositories.{key}: `{v}` is neither a URL nor a name in [registries]");
            }
        }
    }
    Ok(())
}
