//! The configuration of webhooks: `[[webhooks]]` (an admin's, for every
//! user's events) and `[webhooks_policy]` (which outgoing hosts are allowed).
//!
//! ```toml
//! [[webhooks]]
//! url = "https://hooks.example.com/stevedore"
//! events = ["task.completed", "task.error"]
//! categories = ["image_download"]   # optional: only these categories
//! secret = "..."                    # signs each delivery; never shown
//!
//! [webhooks_policy]
//! allow_hosts = ["127.0.0.1", "10.1.0.0/16", "hooks.internal"]
//! ```

use serde::Deserialize;

use crate::secret::Secret;

/// One `[[webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where deliveries are POSTed (`http` or `https`).
    pub url: String,
    /// The events it gets (see [`super::EVENTS`]).
    pub events: Vec<String>,
    /// Only tasks of these categories; absent: every category.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// The signing secret.
    pub secret: Secret,
}

/// `[webhooks_policy]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksPolicySection {
    /// Hosts a webhook may reach although their addresses are refused by
    /// default (loopback, link-local, private, metadata): an IP address
    /// (`127.0.0.1`, `::1`), a network (`10.1.0.0/16`), or a host name
    /// (`hooks.internal`, allowed whatever it resolves to).
    pub allow_hosts: Vec<String>,
}
