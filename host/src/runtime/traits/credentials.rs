//! The `credentials` interface: registry credentials per user.

use async_trait::async_trait;

use super::Backend;
use crate::runtime::{CallContext, Credential, RtResult};

calls! { "credentials": LOOKUP = "lookup", REMEMBER = "remember" }

/// A backend for the `credentials` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Credentials: Backend {
    /// Credentials remembered or configured for a registry.
    async fn credential_lookup(&self, cx: &CallContext, registry: String) -> Option<Credential> {
        None
    }
    /// Remember credentials for the calling user.
    async fn credential_remember(&self, cx: &CallContext, credential: Credential) -> RtResult<()> {
        Err(self.unsupported(REMEMBER))
    }
}
