//! The `containers` interface: create, run, list, read and export containers,
//! and import an export as an image.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Backend, ContainerRef};
use crate::runtime::{
    CallContext, ContainerEntry, ContainerExtra, ContainerSpec, ContainerSummary, Error,
    NetworkChoice, RtResult, RuntimeKind, Usage,
};

calls! {
    "containers":
    CREATE = "create", CREATE_WITH = "create-with", CREATE_ON_NETWORK = "create-on-network",
    LIST_LABELLED = "list-labelled", START = "start", STOP = "stop", REMOVE = "remove",
    INSPECT = "inspect", LOGS = "logs", EXPORT_TO_PATH = "export-to-path",
    READ_ARCHIVE_CONFIG = "read-archive-config",
    IMPORT_IMAGE_FROM_PATH = "import-image-from-path",
}

/// The container routes' listing (no WIT call).
pub const LIST: &str = "containers.list";
/// The engine's version (no WIT call).
pub const ENGINE_VERSION: &str = "engine.version";

/// A backend for the `containers` interface (and the container routes).
/// Calls that name a container take a [`ContainerRef`]: the router has
/// routed on its `kind`, the backend reads its `id`.
#[async_trait]
#[allow(unused_variables)]
pub trait Containers: Backend {
    /// Create a container.
    async fn container_create(&self, cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        Err(self.unsupported(CREATE))
    }
    /// Create a container with the networks, mounts and restart policy of
    /// `extra` (the `containers.create-with` call of the application categories).
    async fn container_create_with(
        &self,
        cx: &CallContext,
        spec: ContainerSpec,
        extra: ContainerExtra,
    ) -> RtResult<String> {
        Err(self.unsupported(CREATE_WITH))
    }
    /// Create a container on the network `network` names (the
    /// `containers.create-on-network` call of `create`).
    async fn container_create_on_network(
        &self,
        cx: &CallContext,
        spec: ContainerSpec,
        network: NetworkChoice,
    ) -> RtResult<String> {
        Err(self.unsupported(CREATE_ON_NETWORK))
    }
    /// Start a container.
    async fn container_start(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        Err(self.unsupported(START))
    }
    /// Stop a container.
    async fn container_stop(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        timeout_secs: u32,
    ) -> RtResult<()> {
        Err(self.unsupported(STOP))
    }
    /// Restart a container: stop (killing it after `timeout_secs`), then start.
    async fn container_restart(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        timeout_secs: u32,
    ) -> RtResult<()> {
        self.container_stop(cx, c, timeout_secs).await?;
        self.container_start(cx, c).await
    }
    /// Remove a container.
    async fn container_remove(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        force: bool,
    ) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
    /// Delete a container as Container Station's `DELETE container/...`
    /// does: a running one is stopped first; its anonymous volumes go too
    /// when `remove_volumes`. The default removes it by force and keeps volumes.
    async fn container_delete(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        remove_volumes: bool,
    ) -> RtResult<()> {
        self.container_remove(cx, c, true).await
    }
    /// Every container of the runtime `kind`, running or not.
    async fn container_list(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        Err(self.unsupported(LIST))
    }
    /// One container by id, unique id prefix (12+ hex characters) or name.
    async fn container_entry(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerEntry> {
        let all = self.container_list(cx, c.kind).await?;
        let wanted = c.id.as_str();
        let by_name = all.iter().find(|e| e.name == wanted || e.id == wanted);
        let by_prefix = || {
            let mut m = all
                .iter()
                .filter(|e| wanted.len() >= 12 && e.id.starts_with(wanted));
            match (m.next(), m.next()) {
                (Some(e), None) => Some(e),
                _ => None,
            }
        };
        by_name
            .or_else(by_prefix)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no such container: {wanted}")))
    }
    /// Every container of `kind` whose label `key` is `value`.
    async fn container_list_labelled(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        key: String,
        value: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        Err(self.unsupported(LIST_LABELLED))
    }
    /// One resource sample of each running container of `containers`
    /// (ids or names), taken concurrently; a container that could not be
    /// sampled is left out. The default samples nothing.
    async fn container_usage(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        containers: Vec<String>,
    ) -> RtResult<HashMap<String, Usage>> {
        Ok(HashMap::new())
    }
    /// The last `tail` lines of a container's output (Docker: stdout and
    /// stderr from the engine; LXC: the console log).
    async fn container_logs(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        tail: u32,
    ) -> RtResult<String> {
        Err(self.unsupported(LOGS))
    }
    /// Inspect a container (JSON text).
    async fn container_inspect(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        Err(self.unsupported(INSPECT))
    }
    /// Export a container to a file under the share root.
    async fn container_export(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        Err(self.unsupported(EXPORT_TO_PATH))
    }
    /// The configuration recorded in an export archive.
    async fn archive_config(&self, cx: &CallContext, path: String) -> RtResult<Option<String>> {
        Err(self.unsupported(READ_ARCHIVE_CONFIG))
    }
    /// Import an archive's files as an image.
    async fn image_import(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        path: String,
        repository: String,
        tag: String,
    ) -> RtResult<String> {
        Err(self.unsupported(IMPORT_IMAGE_FROM_PATH))
    }
    /// The version of the engine or tools behind `kind`.
    async fn engine_version(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<String> {
        Err(self.unsupported(ENGINE_VERSION))
    }
}
