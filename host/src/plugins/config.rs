//! The `[plugins]` section: where the category components are, the cache of
//! their compiled code, the sandbox's limits and the interfaces granted.
//!
//! ```toml
//! [plugins]
//! dir = "/usr/lib/stevedore/plugins"
//! cpu_budget_ms = 10000
//! memory_mb = 64
//! [plugins.grants]
//! create = ["task", "images", "containers"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::PluginConfig;
use crate::setting::{env_vars, EnvVar};

/// Default guest CPU time per plugin call.
pub const DEFAULT_CPU_BUDGET_MS: u64 = 10_000;
/// Default linear-memory cap per plugin instance.
pub const DEFAULT_MEMORY_MB: u64 = 64;

/// `[plugins]`: loading and sandboxing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsSection {
    /// Folder scanned for `*.wasm` components. Absent: found beside the
    /// binary (see [`default_plugins_dir`]), whatever the working directory.
    pub dir: PathBuf,
    /// Folder for compiled-code cache entries (see `crate::plugins::cache`
    /// for when an entry is trusted). Absent: `<data_dir>/cache`.
    pub cache_dir: PathBuf,
    /// Guest CPU time per call, in milliseconds.
    pub cpu_budget_ms: u64,
    /// Linear-memory cap per plugin instance, in MiB.
    pub memory_mb: u64,
    /// Interfaces granted per category.
    pub grants: BTreeMap<String, Vec<String>>,
}

impl Default for PluginsSection {
    fn default() -> Self {
        PluginsSection {
            dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
            cpu_budget_ms: DEFAULT_CPU_BUDGET_MS,
            memory_mb: DEFAULT_MEMORY_MB,
            grants: BTreeMap::new(),
        }
    }
}

/// The environment variables of `[plugins]`.
pub const VARS: &[EnvVar<PluginsSection>] = env_vars! {
    "STEVEDORE_PLUGINS_DIR", "plugins.dir" => |s, v| s.dir = PathBuf::from(v);
    "STEVEDORE_CACHE_DIR", "plugins.cache_dir" => |s, v| s.cache_dir = PathBuf::from(v);
};

impl PluginsSection {
    /// The folders left unset: the cache under `data_dir`, the plugins
    /// found from the binary `exe`.
    pub fn fill_defaults(&mut self, exe: Option<&Path>, data_dir: &Path) {
        if self.cache_dir.as_os_str().is_empty() {
            self.cache_dir = data_dir.join("cache");
        }
        if self.dir.as_os_str().is_empty() {
            self.dir = default_plugins_dir(exe, data_dir);
        }
    }

    /// Positive limits, and grants that name interfaces the host grants.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.cpu_budget_ms == 0 {
            bail!("plugins.cpu_budget_ms: must be at least 1");
        }
        if self.memory_mb == 0 {
            bail!("plugins.memory_mb: must be at least 1");
        }
        // One list of grantable interfaces: the granter's.
        const INTERFACES: &[&str] = super::grants::CAPABILITIES;
        for (cat, list) in &self.grants {
            for i in list {
                if !INTERFACES.contains(&i.as_str()) {
                    bail!(
                        "plugins.grants.{cat}: unknown interface `{i}` (known: {})",
                        INTERFACES.join(", ")
                    );
                }
            }
        }
        Ok(())
    }

    /// The plugin host's settings.
    pub fn plugin_config(&self) -> PluginConfig {
        PluginConfig {
            dir: self.dir.clone(),
            cache_dir: self.cache_dir.clone(),
            cpu_budget: Duration::from_millis(self.cpu_budget_ms),
            memory_limit: self.memory_mb * 1024 * 1024,
            grants: self.grants.clone(),
        }
    }
}

/// Where the plugins are when no setting names a folder, found from the
/// binary `exe` so that the working directory never matters:
/// - installed: `<prefix>/bin/stevedore` → `<prefix>/lib/stevedore/plugins`;
/// - built in this repository: `target/release/stevedore` → `target/plugins`;
/// - otherwise `<data_dir>/plugins`.
pub fn default_plugins_dir(exe: Option<&Path>, data_dir: &Path) -> PathBuf {
    let prefix = exe.and_then(Path::parent).and_then(Path::parent);
    if let Some(prefix) = prefix {
        for candidate in [prefix.join("lib/stevedore/plugins"), prefix.join("plugins")] {
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    data_dir.join("plugins")
}
