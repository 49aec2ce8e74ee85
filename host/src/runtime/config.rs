//! The runtime's sections shared by Docker and LXC: `[catalog]` (the `qnap`
//! repository) and `[archives]` (limits on the archives read). Each
//! runtime's own section is beside it (`docker/config.rs`, `lxc/config.rs`).
//!
//! ```toml
//! [catalog]                  # the `qnap` repository of LXC images and app templates
//! url = "https://raw.githubusercontent.com/qnap-dev/container-apps/master"  # or a folder
//! trusted = false            # allow app templates to bind host paths outside share_root
//!
//! [archives]
//! max_expanded_bytes = 68719476736  # cap on an imported archive's expanded size (64 GiB)
//! ```

use serde::Deserialize;

use super::archives::DEFAULT_MAX_EXPANDED_BYTES;
use crate::setting::{env_vars, parse_number, EnvVar};

/// `[catalog]`: the image and application repository (`qnap`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSection {
    /// `http(s)://` URL of the repository root (holding `list.json`), or a local folder.
    pub url: Option<String>,
    /// Trust the repository's application templates with absolute host
    /// paths outside the share root in their bind mounts (default false:
    /// refused).
    pub trusted: bool,
}

/// The environment variables of `[catalog]`.
pub const CATALOG_VARS: &[EnvVar<CatalogSection>] = env_vars! {
    "STEVEDORE_CATALOG", "catalog.url" => |s, v| s.url = Some(v.to_string());
};

/// `[archives]`: limits on the archives the server reads (imports, LXC images).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchivesSection {
    /// Cap on an archive's expanded (decompressed) size, in bytes: past it
    /// the task ends in error, so a decompression bomb stops early.
    pub max_expanded_bytes: u64,
}

impl Default for ArchivesSection {
    fn default() -> Self {
        ArchivesSection {
            max_expanded_bytes: DEFAULT_MAX_EXPANDED_BYTES,
        }
    }
}

/// The environment variables of `[archives]`.
pub const ARCHIVES_VARS: &[EnvVar<ArchivesSection>] = env_vars! {
    "STEVEDORE_MAX_EXPANDED_BYTES", "archives.max_expanded_bytes" => |s, v| s.max_expanded_bytes =
        parse_number(v, "a number of bytes")?;
};

impl ArchivesSection {
    /// A cap of at least one byte.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.max_expanded_bytes == 0 {
            anyhow::bail!("archives.max_expanded_bytes: must be at least 1");
        }
        Ok(())
    }
}
