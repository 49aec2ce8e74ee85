//! The `[http]` section: the REST API's limits.
//!
//! ```toml
//! [http]
//! max_body_bytes = 1048576
//! session_ttl_secs = 86400   # a session unused this long ends
//! session_max_secs = 604800  # a session ends this long after its login, however used
//! header_read_timeout_secs = 10  # a request's headers must arrive within this
//! body_read_timeout_secs = 30    # a request's body must arrive whole within this
//! streams_per_user = 16      # event streams a user may hold open at once
//! secure_cookies = false     # true behind HTTPS: the session cookie gets `Secure`
//! ```
//!
//! The two session lifetimes are handed to [`crate::auth`], which ends sessions.

use anyhow::bail;
use serde::Deserialize;

use super::streams::DEFAULT_STREAMS_PER_USER;
use crate::auth::config::{DEFAULT_SESSION_MAX_SECS, DEFAULT_SESSION_TTL_SECS};

/// Default request body limit (1 MiB): task params are small JSON documents.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default time a client has to send a request's body whole.
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 30;

/// `[http]`: limits of the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a session lasts without `login_refresh`, in seconds.
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (serve behind HTTPS).
    pub secure_cookies: bool,
    /// How long a session lasts after its login, however often it is used, in seconds.
    pub session_max_secs: u64,
    /// How long a client may take to send a request's headers, in seconds
    /// (then the connection is closed).
    pub header_read_timeout_secs: u64,
    /// How long a client may take to send a request's body whole, in
    /// seconds (then 408, and the connection is closed).
    pub body_read_timeout_secs: u64,
    /// Event streams (`GET background/events`) a user may hold open at once.
    pub streams_per_user: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            secure_cookies: false,
            session_max_secs: DEFAULT_SESSION_MAX_SECS,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            body_read_timeout_secs: DEFAULT_BODY_READ_TIMEOUT_SECS,
            streams_per_user: DEFAULT_STREAMS_PER_USER,
        }
    }
}

impl HttpSection {
    /// A body limit that fits a request, and positive durations and counts.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.max_body_bytes < 1024 {
            bail!("http.max_body_bytes: must be at least 1024");
        }
        for (key, value) in [
            ("session_ttl_secs", self.session_ttl_secs),
            ("session_max_secs", self.session_max_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
            ("streams_per_user", self.streams_per_user as u64),
        ] {
            if value == 0 {
                bail!("http.{key}: must be at least 1");
            }
        }
        Ok(())
    }
}
