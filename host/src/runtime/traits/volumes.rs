//! The `volumes` interface: labelled volumes of the application categories,
//! and the engine's volumes as the API's `volumes` routes show them.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Backend, Label, Labelled};
use crate::runtime::{CallContext, RtResult, VolumeInfo};

calls! { "volumes": CREATE = "create", REMOVE = "remove", LIST = "list" }

// The calls of the API's `volumes` routes (no WIT interface carries them).
calls! { "volumes": DETAILS = "details", INSPECT = "inspect", CREATE_SPEC = "create-spec" }

/// A volume as `POST volumes` asks for it, checked by the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VolumeSpec {
    /// Its name (unique on the engine).
    pub name: String,
    /// Its driver, e.g. `local`.
    pub driver: String,
    /// Driver options (for `local`: `type`, `device`, `o`).
    pub driver_opts: BTreeMap<String, String>,
    /// Labels, as `(key, value)`.
    pub labels: Vec<(String, String)>,
}

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

    // The API's `volumes` routes.

    /// Every volume, as the engine lists it (its JSON).
    async fn volume_details(&self, cx: &CallContext) -> RtResult<Vec<serde_json::Value>> {
        Err(self.unsupported(DETAILS))
    }
    /// One volume, as the engine inspects it.
    async fn volume_inspect(&self, cx: &CallContext, name: String) -> RtResult<serde_json::Value> {
        Err(self.unsupported(INSPECT))
    }
    /// Create a volume; a name already taken is a conflict. Answers the new
    /// volume as the engine inspects it.
    async fn volume_create_spec(
        &self,
        cx: &CallContext,
        spec: VolumeSpec,
    ) -> RtResult<serde_json::Value> {
        Err(self.unsupported(CREATE_SPEC))
    }
}
