//! The `volumes` interface: labelled volumes of the application categories.

use async_trait::async_trait;

use crate::runtime::{CallContext, Error, RtResult, VolumeInfo};

/// `volumes.create`.
pub const CREATE: &str = "volumes.create";
/// `volumes.remove`.
pub const REMOVE: &str = "volumes.remove";
/// `volumes.list`.
pub const LIST: &str = "volumes.list";

/// A backend for the `volumes` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Volumes: Send + Sync {
    /// The answer of a call this backend does not serve.
    fn unsupported(&self, what: &str) -> Error {
        Error::Other(format!("{what} is not supported by this runtime"))
    }
    /// Create a named volume.
    async fn volume_create(
        &self,
        cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<()> {
        Err(self.unsupported(CREATE))
    }
    /// Remove a named volume.
    async fn volume_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
    /// The volumes whose label `key` is `value`.
    async fn volume_list(
        &self,
        cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<VolumeInfo>> {
        Err(self.unsupported(LIST))
    }
}
