//! The `credentials` interface: registry credentials per user.

use async_trait::async_trait;

use crate::runtime::{CallContext, Credential, Error, RtResult};

/// `credentials.lookup`.
pub const LOOKUP: &str = "credentials.lookup";
/// `credentials.remember`.
pub const REMEMBER: &str = "credentials.remember";

/// A backend for the `credentials` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Credentials: Send + Sync {
    /// The answer of a call this backend does not serve.
    fn unsupported(&self, what: &str) -> Error {
        Error::Other(format!("{what} is not supported by this runtime"))
    }
    /// Credentials remembered or configured for a registry.
    async fn credential_lookup(&self, cx: &CallContext, registry: String) -> Option<Credential> {
        None
    }
    /// Remember credentials for the calling user.
    async fn credential_remember(&self, cx: &CallContext, credential: Credential) -> RtResult<()> {
        Err(self.unsupported(REMEMBER))
    }
}
