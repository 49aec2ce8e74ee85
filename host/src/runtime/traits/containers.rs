//! The `containers` interface: create, run, list, read and export containers,
//! and import an export as an image.

use std::collections::HashMap;

use async_trait::async_trait;

use super::images::ArchiveFile;
use super::volumes::{self, ExportSubtree, ImportSubtree};
use super::{Backend, ContainerRef};
use crate::runtime::{
    BindMount, CallContext, ContainerEntry, ContainerExtra, ContainerHealth, ContainerSpec,
    ContainerSummary, Error, NetworkChoice, PortBinding, Replacement, RtResult, RuntimeKind, Usage,
};

calls! {
    "containers":
    CREATE = "create", CREATE_WITH = "create-with", CREATE_ON_NETWORK = "create-on-network",
    LIST_LABELLED = "list-labelled", START = "start", STOP = "stop", REMOVE = "remove",
    INSPECT = "inspect", LOGS = "logs", EXPORT_TO_PATH = "export-to-path",
    READ_ARCHIVE_CONFIG = "read-archive-config",
    IMPORT_IMAGE_FROM_PATH = "import-image-from-path", RECREATE = "recreate",
    RESTORE = "restore", HEALTH = "health",
}

/// A container's settings, read by the resource routes (no WIT call).
pub const SETTINGS: &str = "containers.settings";
/// A change of a container's settings, by the resource routes (no WIT call).
pub const CHANGE_SETTINGS: &str = "containers.change-settings";

/// A container's logs, followed as it writes them (the logs route's
/// `follow`; no WIT call).
pub const FOLLOW_LOGS: &str = "containers.follow-logs";

/// The container routes' listing (no WIT call).
pub const LIST: &str = "containers.list";
/// The engine's version (no WIT call).
pub const ENGINE_VERSION: &str = "engine.version";

/// A container's output as it writes it: chunks of whole lines, each
/// ending in `\n`. It ends when the container stops or is removed; an
/// error ends it too (it is the last item).
pub type LogStream = futures::stream::BoxStream<'static, RtResult<String>>;

/// One resource sample per container, by the id or name it was asked by.
pub type Usages = HashMap<String, Usage>;

/// `containers.create-with`: a container with the networks, mounts and
/// restart policy of an application category.
#[derive(Debug, Clone)]
pub struct CreateWith {
    /// The container (its `runtime` is what the router routes on).
    pub spec: ContainerSpec,
    /// Its networks, mounts and restart policy.
    pub extra: ContainerExtra,
}

/// `containers.create-on-network`: a container on the network `network` names.
#[derive(Debug, Clone)]
pub struct CreateOnNetwork {
    /// The container (its `runtime` is what the router routes on).
    pub spec: ContainerSpec,
    /// The network it is created on.
    pub network: NetworkChoice,
}

/// `containers.stop`, and a restart: a container stopped, killed when it
/// has not stopped after `timeout_secs`.
#[derive(Debug, Clone)]
pub struct StopContainer {
    /// The container stopped.
    pub container: ContainerRef,
    /// How long it has to stop before it is killed.
    pub timeout_secs: u32,
}

impl StopContainer {
    /// Stop `container`, killing it after `timeout_secs`.
    pub fn new(container: ContainerRef, timeout_secs: u32) -> StopContainer {
        StopContainer {
            container,
            timeout_secs,
        }
    }
}

/// `containers.remove`: a container, removed even while running when `force`.
#[derive(Debug, Clone)]
pub struct RemoveContainer {
    /// The container removed.
    pub container: ContainerRef,
    /// Remove it even while it runs.
    pub force: bool,
}

/// Container Station's `DELETE container/...`: a container, stopped first
/// when running, with its anonymous volumes when `remove_volumes`.
#[derive(Debug, Clone)]
pub struct DeleteContainer {
    /// The container deleted.
    pub container: ContainerRef,
    /// Remove its anonymous volumes too.
    pub remove_volumes: bool,
}

/// `containers.logs`: the last `tail` lines of a container's output (and,
/// followed, what it writes next).
#[derive(Debug, Clone)]
pub struct ContainerLogs {
    /// The container read.
    pub container: ContainerRef,
    /// How many lines, from the end.
    pub tail: u32,
}

/// `containers.export-to-path`: a container's files and configuration, in
/// one archive under the share root.
#[derive(Debug, Clone)]
pub struct ExportContainer {
    /// The container exported.
    pub container: ContainerRef,
    /// Where the archive goes.
    pub file: ArchiveFile,
}

/// `containers.import-image-from-path`: an export or a saved image, made
/// the image `repository:tag` of runtime `kind`.
#[derive(Debug, Clone)]
pub struct ImportImage {
    /// The runtime the image is made in.
    pub kind: RuntimeKind,
    /// The archive's path under the share root.
    pub path: String,
    /// The new image's repository.
    pub repository: String,
    /// The new image's tag.
    pub tag: String,
}

/// `containers.list-labelled`: the containers of `kind` whose label `key`
/// is `value`.
#[derive(Debug, Clone)]
pub struct LabelQuery {
    /// The runtime listed.
    pub kind: RuntimeKind,
    /// The label's key.
    pub key: String,
    /// The value it must have.
    pub value: String,
}

impl LabelQuery {
    /// The Docker containers whose label `key` is `value`.
    pub fn docker(key: impl Into<String>, value: impl Into<String>) -> LabelQuery {
        LabelQuery {
            kind: RuntimeKind::Docker,
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A resource sample of some containers of `kind`.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// The runtime sampled.
    pub kind: RuntimeKind,
    /// The containers, by id or name.
    pub containers: Vec<String>,
}

/// `containers.recreate`: a container replaced by one of the same settings
/// on another image.
#[derive(Debug, Clone)]
pub struct Recreate {
    /// The container replaced.
    pub container: ContainerRef,
    /// The new container's image, `repository:tag`.
    pub image: String,
    /// The image id the policy checked `image` as (set by the guard): the
    /// new container must run that one, or it is not kept.
    pub pinned: Option<String>,
}

/// `containers.restore`: a `recreate` undone.
#[derive(Debug, Clone)]
pub struct Restore {
    /// The runtime of both containers.
    pub kind: RuntimeKind,
    /// What `recreate` answered.
    pub replaced: Replacement,
}

/// A container's CPU and memory limits; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Relative CPU weight (CPU shares), 2..=1024.
    pub cpu_shares: Option<u32>,
    /// Milliseconds of CPU time per 1000 ms, 10..=999.
    pub cpu_time_ms: Option<u32>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
}

/// One setting of a container, changed: each replaces the whole setting
/// (the routes that add or remove one entry send the whole new list).
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsChange {
    /// Start the container when the engine (or the host) starts.
    Autostart(bool),
    /// The published ports.
    Ports(Vec<PortBinding>),
    /// The device cgroup rules (`c 81:* rwm`).
    Devices(Vec<String>),
    /// The CPU and memory limits.
    Limits(Limits),
    /// The host folders mounted (paths relative to the share root, as at create).
    HostBinds(Vec<BindMount>),
}

impl SettingsChange {
    /// The create body's field the change is about (for messages).
    pub fn field(&self) -> &'static str {
        match self {
            SettingsChange::Autostart(_) => "autostart",
            SettingsChange::Ports(_) => "network.port",
            SettingsChange::Devices(_) => "resource.device",
            SettingsChange::Limits(_) => "resource.limit",
            SettingsChange::HostBinds(_) => "volume.host",
        }
    }
}

/// A change of one container's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSettings {
    /// The container changed.
    pub container: ContainerRef,
    /// What changes.
    pub change: SettingsChange,
}

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
    async fn container_create_with(&self, cx: &CallContext, req: CreateWith) -> RtResult<String> {
        Err(self.unsupported(CREATE_WITH))
    }
    /// Create a container on the network `network` names (the
    /// `containers.create-on-network` call of `create`).
    async fn container_create_on_network(
        &self,
        cx: &CallContext,
        req: CreateOnNetwork,
    ) -> RtResult<String> {
        Err(self.unsupported(CREATE_ON_NETWORK))
    }
    /// Start a container.
    async fn container_start(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        Err(self.unsupported(START))
    }
    /// Stop a container.
    async fn container_stop(&self, cx: &CallContext, req: StopContainer) -> RtResult<()> {
        Err(self.unsupported(STOP))
    }
    /// Restart a container: stop (killing it after `timeout_secs`), then start.
    async fn container_restart(&self, cx: &CallContext, req: StopContainer) -> RtResult<()> {
        self.container_stop(cx, req.clone()).await?;
        self.container_start(cx, &req.container).await
    }
    /// Remove a container.
    async fn container_remove(&self, cx: &CallContext, req: RemoveContainer) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
    /// Delete a container as Container Station's `DELETE container/...`
    /// does: a running one is stopped first; its anonymous volumes go too
    /// when `remove_volumes`. The default removes it by force and keeps volumes.
    async fn container_delete(&self, cx: &CallContext, req: DeleteContainer) -> RtResult<()> {
        let (container, force) = (req.container, true);
        self.container_remove(cx, RemoveContainer { container, force })
            .await
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
        req: LabelQuery,
    ) -> RtResult<Vec<ContainerSummary>> {
        Err(self.unsupported(LIST_LABELLED))
    }
    /// One resource sample of each running container of `containers`
    /// (ids or names), taken concurrently; a container that could not be
    /// sampled is left out. The default samples nothing.
    async fn container_usage(&self, cx: &CallContext, req: UsageQuery) -> RtResult<Usages> {
        Ok(HashMap::new())
    }
    /// The last `tail` lines of a container's output (Docker: stdout and
    /// stderr from the engine; LXC: the console log).
    async fn container_logs(&self, cx: &CallContext, req: ContainerLogs) -> RtResult<String> {
        Err(self.unsupported(LOGS))
    }
    /// The last `tail` lines of a container's output, then each line it
    /// writes, until it stops or is removed (a stopped container's stream
    /// ends after its last lines), as a real engine's `logs --follow` does.
    /// The stream holds no lock and reads only as fast as it is read.
    async fn container_follow_logs(
        &self,
        cx: &CallContext,
        req: ContainerLogs,
    ) -> RtResult<LogStream> {
        Err(self.unsupported(FOLLOW_LOGS))
    }
    /// Inspect a container (JSON text).
    async fn container_inspect(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        Err(self.unsupported(INSPECT))
    }
    /// Export a container to a file under the share root.
    async fn container_export(&self, cx: &CallContext, req: ExportContainer) -> RtResult<u64> {
        Err(self.unsupported(EXPORT_TO_PATH))
    }
    /// Write a folder of a container's root file system to a tar under
    /// the share root (`volumes.export-subtree-to-path`); bytes written.
    async fn container_subtree_export(
        &self,
        cx: &CallContext,
        req: ExportSubtree,
    ) -> RtResult<u64> {
        Err(self.unsupported(volumes::EXPORT_SUBTREE_TO_PATH))
    }
    /// Restore a tar under the share root into a folder of a container's
    /// root file system (`volumes.import-subtree-from-path`); bytes read.
    async fn container_subtree_import(
        &self,
        cx: &CallContext,
        req: ImportSubtree,
    ) -> RtResult<u64> {
        Err(self.unsupported(volumes::IMPORT_SUBTREE_FROM_PATH))
    }
    /// The configuration recorded in an export archive.
    async fn archive_config(&self, cx: &CallContext, path: String) -> RtResult<Option<String>> {
        Err(self.unsupported(READ_ARCHIVE_CONFIG))
    }
    /// Import an archive's files as an image.
    async fn image_import(&self, cx: &CallContext, req: ImportImage) -> RtResult<String> {
        Err(self.unsupported(IMPORT_IMAGE_FROM_PATH))
    }
    /// Replace a container with one of the same settings on another image,
    /// started; the previous one is kept aside, stopped (see the WIT's
    /// `containers.recreate`).
    async fn container_recreate(&self, cx: &CallContext, req: Recreate) -> RtResult<Replacement> {
        Err(self.unsupported(RECREATE))
    }
    /// Undo a recreate: remove the new container, put the previous one back.
    async fn container_restore(&self, cx: &CallContext, req: Restore) -> RtResult<()> {
        Err(self.unsupported(RESTORE))
    }
    /// A container's state and health check.
    async fn container_health(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerHealth> {
        Err(self.unsupported(HEALTH))
    }
    /// The version of the engine or tools behind `kind`.
    async fn engine_version(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<String> {
        Err(self.unsupported(ENGINE_VERSION))
    }

    /// A container's settings in the shape of the create body
    /// ([`stevedore_contract::create::CreateParams`], as an export records
    /// them): what `GET container/{type}/{id}/all` shows.
    async fn container_settings(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<serde_json::Value> {
        Err(self.unsupported(SETTINGS))
    }
    /// Change one setting of a container: in place where the runtime can,
    /// else by recreating the container (same name, labels, volumes and
    /// networks), rolled back when the new one fails to be created or started.
    async fn container_change_settings(
        &self,
        cx: &CallContext,
        req: ChangeSettings,
    ) -> RtResult<()> {
        Err(self.unsupported(CHANGE_SETTINGS))
    }
}
