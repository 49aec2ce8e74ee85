//! The `networks` interface: labelled networks of the application categories.

use async_trait::async_trait;

use super::{Backend, Label, Labelled};
use crate::runtime::{CallContext, NetworkInfo, RtResult};

calls! { "networks": CREATE = "create", REMOVE = "remove", LIST = "list" }

/// A backend for the `networks` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Networks: Backend {
    /// Create a network; returns its id.
    async fn network_create(&self, cx: &CallContext, req: Labelled) -> RtResult<String> {
        Err(self.unsupported(CREATE))
    }
    /// Remove a network.
    async fn network_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
    /// The networks that carry `label`.
    async fn network_list(&self, cx: &CallContext, label: Label) -> RtResult<Vec<NetworkInfo>> {
        Err(self.unsupported(LIST))
    }
}
