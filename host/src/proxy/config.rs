//! The `[proxy]` section: where the applications' reverse proxy listens.
//!
//! ```toml
//! [proxy]                    # serves each application's `virtual_path`
//! listen = "0.0.0.0:8081"     # absent (the default): no proxy
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use crate::setting::{env_vars, optional_listen_from_toml, parse_listen, EnvVar};

/// `[proxy]`: the reverse proxy that serves applications' `virtual_path`
/// ([`crate::proxy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Address of the proxy's own listener; absent: no proxy.
    #[serde(default, deserialize_with = "optional_listen_from_toml")]
    pub listen: Option<SocketAddr>,
}

/// The environment variables of `[proxy]`.
pub const VARS: &[EnvVar<ProxySection>] = env_vars! {
    "STEVEDORE_PROXY_LISTEN", "proxy.listen" => |s, v| s.listen = Some(parse_listen(v)?);
};

impl ProxySection {
    /// The proxy must not take the API's own address `api`.
    pub fn check(&self, api: SocketAddr) -> anyhow::Result<()> {
        if let Some(proxy) = self.listen {
            if proxy.port() != 0 && proxy.port() == api.port() && proxy.ip() == api.ip() {
                anyhow::bail!("proxy.listen: `{proxy}` is the API's own address (listen)");
            }
        }
        Ok(())
    }
}
