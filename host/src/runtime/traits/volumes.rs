//! The `volumes` interface: labelled volumes of the application categories,
//! volume backups (a volume to or from a tar under the share root), and the
//! engine's volumes as the API's `volumes` routes show them.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::images::ArchiveFile;
use super::{Backend, ContainerRef, Label, Labelled};
use crate::runtime::{CallContext, ContainerSummary, RtResult, VolumeInfo};

calls! { "volumes": CREATE = "create", REMOVE = "remove", LIST = "list",
EXPORT_TO_PATH = "export-to-path", IMPORT_FROM_PATH = "import-from-path",
EXPORT_SUBTREE_TO_PATH = "export-subtree-to-path", IMPORT_SUBTREE_FROM_PATH = "import-subtree-from-path" }

// The calls of the API's `volumes` routes (no WIT interface carries them).
calls! { "volumes": USERS = "users", DETAILS = "details", INSPECT = "inspect", CREATE_SPEC = "create-spec" }

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

/// `volumes.export-to-path`: a volume's files as a tar under the share root.
#[derive(Debug, Clone)]
pub struct ExportVolume {
    /// The volume's name.
    pub volume: String,
    /// Where to write, and how.
    pub file: ArchiveFile,
    /// Leave the containers using the volume running (else they are
    /// paused while it is read).
    pub live: bool,
}

/// `volumes.import-from-path`: a tar under the share root restored into a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportVolume {
    /// The volume's name; created when missing.
    pub volume: String,
    /// The archive, relative to the share root.
    pub path: String,
    /// Lay the archive over a volume that holds files (else: `conflict`).
    pub overwrite: bool,
    /// The labels of a volume the import creates (the guard sets the owner's).
    pub labels: Vec<(String, String)>,
}

/// `volumes.export-subtree-to-path`: a folder of an LXC container's root
/// file system as a tar under the share root. Carried by
/// [`super::Containers`] (routed by the container's kind), as the
/// container is what the policy checks.
#[derive(Debug, Clone)]
pub struct ExportSubtree {
    /// The container.
    pub container: ContainerRef,
    /// The folder, an absolute path inside the container's root.
    pub subtree: String,
    /// Where to write, and how.
    pub file: ArchiveFile,
    /// Leave the container running (else it is frozen while read).
    pub live: bool,
}

/// `volumes.import-subtree-from-path`: a tar under the share root restored
/// into a folder of an LXC container's root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSubtree {
    /// The container.
    pub container: ContainerRef,
    /// The folder, an absolute path inside the container's root; created
    /// when missing.
    pub subtree: String,
    /// The archive, relative to the share root.
    pub path: String,
    /// Lay the archive over a folder that holds files (else: `conflict`).
    pub overwrite: bool,
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

    /// Write a volume's files to a tar under the share root; bytes written.
    async fn volume_export(&self, cx: &CallContext, req: ExportVolume) -> RtResult<u64> {
        Err(self.unsupported(EXPORT_TO_PATH))
    }
    /// Restore a tar under the share root into a volume; bytes read.
    async fn volume_import(&self, cx: &CallContext, req: ImportVolume) -> RtResult<u64> {
        Err(self.unsupported(IMPORT_FROM_PATH))
    }
    /// The containers (of any state) that mount volume `name`; the guard
    /// reads their owners. A missing volume is `not-found`.
    async fn volume_users(
        &self,
        cx: &CallContext,
        name: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        Err(self.unsupported(USERS))
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
