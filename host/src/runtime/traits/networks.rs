//! The `networks` interface: labelled networks of the application categories.

use async_trait::async_trait;

use crate::runtime::{CallContext, Error, NetworkInfo, RtResult};

/// `networks.create`.
pub const CREATE: &str = "networks.create";
/// `networks.remove`.
pub const REMOVE: &str = "networks.remove";
/// `networks.list`.
pub const LIST: &str = "networks.list";

/// A backend for the `networks` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Networks: Send + Sync {
    /// The answer of a call this backend does not serve.
    fn unsupported(&self, what: &str) -> Error {
        Error::Other(format!("{what} is not supported by this runtime"))
    }
    /// Create a network; returns its id.
    async fn network_create(
        &self,
        cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<String> {
        Err(self.unsupported(CREATE))
    }
    /// Remove a network.
    async fn network_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
    /// The networks whose label `key` is `value`.
    async fn network_list(
        &self,
        cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<NetworkInfo>> {
        Err(self.unsupported(LIST))
    }
}
