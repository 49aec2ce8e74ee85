//! The `[lxc]` section: where LXC containers live and the bridge the server
//! manages for them.
//!
//! ```toml
//! [lxc]
//! path = "/var/lib/lxc"       # where LXC containers live
//! bridge = "stvlxc0"          # the bridge the server manages for them
//! subnet = "10.213.0.0/24"    # its /24; the bridge takes .1
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::network::Subnet;
use crate::setting::{env_vars, EnvVar};

/// Default folder of LXC containers.
pub const DEFAULT_LXC_PATH: &str = "/var/lib/lxc";
/// Default bridge of LXC containers.
pub const DEFAULT_LXC_BRIDGE: &str = "stvlxc0";
/// Default subnet of the LXC bridge.
pub const DEFAULT_LXC_SUBNET: &str = "10.213.0.0/24";

/// `[lxc]`: the LXC runtime.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LxcSection {
    /// Folder of the containers (`lxc-* -P`).
    pub path: PathBuf,
    /// Name of the bridge the server creates for the containers.
    pub bridge: String,
    /// The bridge's IPv4 subnet, a `/24` (`10.213.0.0/24`).
    pub subnet: String,
}

impl Default for LxcSection {
    fn default() -> Self {
        LxcSection {
            path: PathBuf::from(DEFAULT_LXC_PATH),
            bridge: DEFAULT_LXC_BRIDGE.to_string(),
            subnet: DEFAULT_LXC_SUBNET.to_string(),
        }
    }
}

/// The environment variables of `[lxc]`.
pub const VARS: &[EnvVar<LxcSection>] = env_vars! {
    "STEVEDORE_LXC_PATH", "lxc.path" => |s, v| s.path = PathBuf::from(v);
    "STEVEDORE_LXC_BRIDGE", "lxc.bridge" => |s, v| s.bridge = v.to_string();
    "STEVEDORE_LXC_SUBNET", "lxc.subnet" => |s, v| s.subnet = v.to_string();
};

impl LxcSection {
    /// A bridge name the kernel accepts and a `/24` subnet.
    pub fn check(&self) -> anyhow::Result<()> {
        let bridge = &self.bridge;
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            anyhow::bail!(
                "lxc.bridge: `{bridge}` is not an interface name (1 to 15 letters, digits, `_`, `-`)"
            );
        }
        Subnet::parse(&self.subnet).map_err(|e| anyhow::anyhow!("lxc.subnet: {e}"))?;
        Ok(())
    }
}
