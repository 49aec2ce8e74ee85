//! The `volumes` interface: labelled volumes of the application categories.

use async_trait::async_trait;

use super::{Backend, Label, Labelled};
use crate::runtime::{CallContext, RtResult, VolumeInfo};

calls! { "volumes": CREATE = "create", REMOVE = "remove", LIST = "list" }

/// A backend for the `volumes` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Volumes: Backend {
    /// Create a named volume.
    async fn volume_create(&self, cx: &CallContext, req: Labelled) -> RtResult<()> {
        Err(self.unsupported(CREATE))
    }
    /// Remove a named volume.
    async fn volume_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
    /// The volumes that carry `label`.
    async fn volume_list(&self, cx: &CallContext, label: Label) -> RtResult<Vec<VolumeInfo>> {
        Err(self.unsupported(LIST))
    }
}
