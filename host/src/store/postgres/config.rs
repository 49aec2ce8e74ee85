//! The `[database]` section: which store the tasks, sessions and
//! credentials live in, this node's name and the liveness lease.
//!
//! ```toml
//! [database]
//! url = "postgres://stevedore:pw@db.example:5432/stevedore"  # default: SQLite in data_dir
//! node = "nas-1"            # default: the host name
//! lease_secs = 30           # a node silent this long is taken for dead
//! ```
//!
//! Environment overrides: `STEVEDORE_DATABASE_URL`, `STEVEDORE_NODE`,
//! `STEVEDORE_LEASE_SECS`.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use crate::secret::Secret;
use crate::setting::{apply_env, env_vars, parse_number, EnvVar};
use crate::user_name::valid_user_name;

/// How long a node may stay silent before the others take it for dead,
/// unless `[database] lease_secs` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The `[database]` section as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `postgres://...` to share the queue with other nodes; unset: SQLite.
    pub url: Option<Secret>,
    /// This node's name; unset: the host name.
    pub node: Option<String>,
    /// Seconds of silence after which a node is taken for dead (default 30).
    pub lease_secs: Option<u64>,
}

/// The environment variables of `[database]`.
pub const VARS: &[EnvVar<DatabaseSection>] = env_vars! {
    "STEVEDORE_DATABASE_URL", "database.url" => |s, v| s.url = Some(Secret(v.to_string()));
    "STEVEDORE_NODE", "database.node" => |s, v| s.node = Some(v.to_string());
    "STEVEDORE_LEASE_SECS", "database.lease_secs" => |s, v| s.lease_secs = Some(parse_number(v, "a number")?);
};

impl DatabaseSection {
    /// Apply the environment overrides and check the values.
    pub fn resolve(mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        apply_env(VARS, &mut self, &env)?;
        if let Some(url) = &self.url {
            if !super::is_postgres_url(url.expose()) {
                bail!("database.url: must start with postgres:// or postgresql://");
            }
        }
        if let Some(node) = &self.node {
            if !valid_user_name(node) {
                bail!("database.node: must be 1 to 64 letters, digits, `_`, `.` or `-`");
            }
        }
        if self.lease_secs == Some(0) {
            bail!("database.lease_secs: must be at least 1");
        }
        Ok(self)
    }

    /// The PostgreSQL URL, if the queue is shared.
    pub fn url(&self) -> Option<&str> {
        self.url.as_ref().map(Secret::expose)
    }

    /// This node's name: `node`, else the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(host_name)
    }

    /// The liveness lease.
    pub fn lease(&self) -> Duration {
        self.lease_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LEASE)
    }
}

/// The host name (`localhost` if it cannot be read).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (we cut at the first NUL anyway).
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}
