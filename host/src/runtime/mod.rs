//! Container runtimes, reached by plugins only through WIT capabilities.
//!
//! [`Runtime`] is the one backend trait the plugin host calls; the Docker
//! engine (bollard), LXC and the [`simulated`] runtime implement it. Host
//! calls are async and take a [`CallContext`] so that long operations report
//! progress to their task and stop when it is cancelled.

pub mod app_secrets;
pub mod apps;
pub mod archives;
pub mod beneath;
pub mod catalog;
pub mod docker;
pub mod guard;
pub mod image_owners;
pub mod lxc;
pub mod pgzip;
pub mod pins;
pub mod reference;
pub mod router;
pub mod simulated;
pub mod storage;
pub mod usage;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use crate::wit::{
    BindMount, ContainerExtra, ContainerSpec, ContainerSummary, Credential, ImageInfo, Mount,
    MountSource, NetworkAttachment, NetworkChoice, NetworkInfo, NetworkMode, PortBinding,
    PullRequest, RuntimeKind, Source, Template, VolumeInfo, WitError as Error,
};
use crate::queue::Reporter;

/// Who a host call works for.
#[derive(Clone)]
pub struct CallContext {
    /// Task id, or 0 outside a task (e.g. `stevedore plugin test`).
    pub task_id: i64,
    /// The submitting user (credentials are remembered per user).
    pub user: String,
    /// Fires when the task is cancelled; long calls stop and clean up.
    pub cancel: CancellationToken,
    /// Progress of long calls (pull, push, save) goes here.
    pub reporter: Arc<dyn Reporter>,
}

/// Result of a runtime operation.
pub type RtResult<T> = Result<T, Error>;

/// Seconds a container gets to stop before it is killed, where the caller
/// gives no timeout (the container routes).
pub const STOP_TIMEOUT_SECS: u32 = 10;

/// Whether a container runs, as `GET container` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Running (a paused or frozen container counts as running).
    Running,
    /// Anything else: created, exited, stopped.
    Stopped,
}

/// One container as Container Station's `GET container` lists it. The keys
/// a runtime has no value for are left out, as the recorded answers do: an
/// LXC entry has no `imageID`, `project`, `projectPath`, `networkMode` or
/// `externalIP`; a stopped container has no `ipaddress`, `cpu`, `memory`,
/// `rx` or `tx`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ContainerEntry {
    /// The runtime's id (Docker: the full hex id; LXC: the name).
    pub id: String,
    /// Container name, without Docker's leading `/`.
    pub name: String,
    /// Image as `repository:tag` (LXC: the catalog image it came from, or `""`).
    pub image: String,
    /// Image id (`sha256:...`), or `""` when unknown (Docker only).
    #[serde(rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// `running` or `stopped`.
    pub state: ContainerState,
    /// `docker` or `lxc`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Published TCP host ports.
    #[serde(rename = "tcpPort")]
    pub tcp_port: Vec<u16>,
    /// Compose project label (`com.docker.compose.project`), or `""` (Docker only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The compose project's folder (`com.docker.compose.project.working_dir`),
    /// or `""` (Docker only).
    #[serde(rename = "projectPath", skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
    /// The engine's network mode (`host`, `none`, a network's name), `""`
    /// for the engine's default bridge (Docker only).
    #[serde(rename = "networkMode", skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// The address on a network of the host's LAN (a macvlan or ipvlan
    /// network), or `""` (Docker only).
    #[serde(rename = "externalIP", skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
    /// CPU usage in percent of one core's time since the previous sample
    /// (running containers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory in use in bytes (running containers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Bytes received per second since the previous sample (running containers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx: Option<u64>,
    /// Bytes sent per second since the previous sample (running containers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx: Option<u64>,
    /// The container's IP addresses (running containers only; may be empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipaddress: Option<Vec<String>>,
    /// Its labels (Docker) or recorded labels (LXC); not shown, used for
    /// ownership ([`crate::policy::OWNER_LABEL`]).
    #[serde(skip)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Resource use of one running container, from one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU in percent of one core since the previous sample (0 on the first).
    pub cpu: f64,
    /// Memory in use, in bytes.
    pub memory: u64,
    /// Bytes received per second since the previous sample (0 on the first).
    pub rx: u64,
    /// Bytes sent per second since the previous sample (0 on the first).
    pub tx: u64,
}

impl ContainerEntry {
    /// Show `usage` (zeros where the sample had none) if the container runs.
    pub fn set_usage(&mut self, usage: Option<Usage>) {
        if self.state != ContainerState::Running {
            return;
        }
        let u = usage.unwrap_or_default();
        self.cpu = Some(u.cpu);
        self.memory = Some(u.memory);
        self.rx = Some(u.rx);
        self.tx = Some(u.tx);
        self.ipaddress.get_or_insert_with(Vec::new);
    }
}

impl ContainerEntry {
    /// The user it was created for ([`crate::policy::OWNER_LABEL`]), if recorded.
    pub fn owner(&self) -> Option<&str> {
        self.labels
            .get(crate::policy::OWNER_LABEL)
            .map(String::as_str)
    }
}

/// The name `GET container` gives a runtime.
pub fn kind_name(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Docker => "docker",
        RuntimeKind::Lxc => "lxc",
    }
}

/// A backend for the `images`, `containers` and `credentials` capabilities.
/// Every method has a default that refuses, so a backend implements what it supports.
#[async_trait]
#[allow(unused_variables)]
pub trait Runtime: Send + Sync {
    /// The answer of every call this backend does not implement.
    fn unsupported(&self, what: &str) -> Error {
        Error::Other(format!("{what} is not supported by this runtime"))
    }
    /// The registry a source maps to (empty: Docker Hub). Configuration
    /// only: no engine call, so it is allowed in `validate`.
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        match source {
            Source::Dockerhub => Ok(String::new()),
            Source::Qnap => Err(Error::InvalidParams(
                "repository: no `qnap` registry is configured".into(),
            )),
            Source::Private(name) => Err(Error::InvalidParams(format!(
                "registry_name: unknown registry `{name}`"
            ))),
        }
    }
    /// Pull an image, reporting progress.
    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        Err(self.unsupported("images.pull"))
    }
    /// Inspect an image.
    async fn image_inspect(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        reference: String,
    ) -> RtResult<ImageInfo> {
        Err(self.unsupported("images.inspect"))
    }
    /// List images.
    async fn image_list(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        Err(self.unsupported("images.list"))
    }
    /// Remove an image; returns what was removed.
    async fn image_remove(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        reference: String,
        force: bool,
    ) -> RtResult<Vec<String>> {
        Err(self.unsupported("images.remove"))
    }
    /// Tag an image.
    async fn image_tag(
        &self,
        cx: &CallContext,
        source: String,
        repository: String,
        tag: String,
    ) -> RtResult<()> {
        Err(self.unsupported("images.tag"))
    }
    /// Push an image, reporting progress.
    async fn image_push(
        &self,
        cx: &CallContext,
        repository: String,
        tag: String,
        registry: String,
        credential: Option<Credential>,
    ) -> RtResult<()> {
        Err(self.unsupported("images.push"))
    }
    /// Save images to a file under the share root.
    async fn image_save(
        &self,
        cx: &CallContext,
        references: Vec<String>,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        Err(self.unsupported("images.save-to-path"))
    }
    /// Create a container.
    async fn container_create(&self, cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        Err(self.unsupported("containers.create"))
    }
    /// Start a container.
    async fn container_start(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
    ) -> RtResult<()> {
        Err(self.unsupported("containers.start"))
    }
    /// Stop a container.
    async fn container_stop(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
        timeout_secs: u32,
    ) -> RtResult<()> {
        Err(self.unsupported("containers.stop"))
    }
    /// Remove a container.
    async fn container_remove(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
        force: bool,
    ) -> RtResult<()> {
        Err(self.unsupported("containers.remove"))
    }
    /// Delete a container as Container Station's `DELETE container/...`
    /// does: a running one is stopped first; its anonymous volumes go too
    /// when `remove_volumes`. The default removes it by force and keeps volumes.
    async fn container_delete(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
        remove_volumes: bool,
    ) -> RtResult<()> {
        self.container_remove(cx, kind, container, true).await
    }
    /// Every container of the runtime `kind`, running or not.
    async fn container_list(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        Err(self.unsupported("containers.list"))
    }
    /// One container by id, unique id prefix (12+ hex characters) or name.
    async fn container_entry(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
    ) -> RtResult<ContainerEntry> {
        let all = self.container_list(cx, kind).await?;
        let by_name = all
            .iter()
            .find(|c| c.name == container || c.id == container);
        let by_prefix = || {
            let mut m = all
                .iter()
                .filter(|c| container.len() >= 12 && c.id.starts_with(container.as_str()));
            match (m.next(), m.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        };
        by_name
            .or_else(by_prefix)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no such container: {container}")))
    }
    /// One resource sample of each running container of `containers`
    /// (ids or names), taken concurrently; a container that could not be
    /// sampled is left out. The default samples nothing.
    async fn container_usage(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        containers: Vec<String>,
    ) -> RtResult<std::collections::HashMap<String, Usage>> {
        Ok(std::collections::HashMap::new())
    }
    /// The last `tail` lines of a container's output (Docker: stdout and
    /// stderr from the engine; LXC: the console log).
    async fn container_logs(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
        tail: u32,
    ) -> RtResult<String> {
        Err(self.unsupported("containers.logs"))
    }
    /// The version of the engine or tools behind `kind`.
    async fn engine_version(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<String> {
        Err(self.unsupported("engine.version"))
    }
    /// Restart a container: stop (killing it after `timeout_secs`), then start.
    async fn container_restart(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
        timeout_secs: u32,
    ) -> RtResult<()> {
        self.container_stop(cx, kind, container.clone(), timeout_secs)
            .await?;
        self.container_start(cx, kind, container).await
    }
    /// Inspect a container (JSON text).
    async fn container_inspect(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
    ) -> RtResult<String> {
        Err(self.unsupported("containers.inspect"))
    }
    /// Export a container to a file under the share root.
    async fn container_export(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        container: String,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        Err(self.unsupported("containers.export-to-path"))
    }
    /// The configuration recorded in an export archive.
    async fn archive_config(&self, cx: &CallContext, path: String) -> RtResult<Option<String>> {
        Err(self.unsupported("containers.read-archive-config"))
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
        Err(self.unsupported("containers.import-image-from-path"))
    }
    /// Create a container with the networks, mounts and restart policy of
    /// `extra` (the `containers.create-with` call of the application categories).
    async fn container_create_with(
        &self,
        cx: &CallContext,
        spec: ContainerSpec,
        extra: ContainerExtra,
    ) -> RtResult<String> {
        Err(self.unsupported("containers.create-with"))
    }
    /// Create a container on the network `network` names (the
    /// `containers.create-on-network` call of `create`).
    async fn container_create_on_network(
        &self,
        cx: &CallContext,
        spec: ContainerSpec,
        network: NetworkChoice,
    ) -> RtResult<String> {
        Err(self.unsupported("containers.create-on-network"))
    }
    /// Every container of `kind` whose label `key` is `value`.
    async fn container_list_labelled(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        key: String,
        value: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        Err(self.unsupported("containers.list-labelled"))
    }
    /// Create a network; returns its id.
    async fn network_create(
        &self,
        cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<String> {
        Err(self.unsupported("networks.create"))
    }
    /// Remove a network.
    async fn network_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported("networks.remove"))
    }
    /// The networks whose label `key` is `value`.
    async fn network_list(
        &self,
        cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<NetworkInfo>> {
        Err(self.unsupported("networks.list"))
    }
    /// Create a named volume.
    async fn volume_create(
        &self,
        cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<()> {
        Err(self.unsupported("volumes.create"))
    }
    /// Remove a named volume.
    async fn volume_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported("volumes.remove"))
    }
    /// The volumes whose label `key` is `value`.
    async fn volume_list(
        &self,
        cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<VolumeInfo>> {
        Err(self.unsupported("volumes.list"))
    }
    /// The repository's application templates. A configuration lookup:
    /// allowed in `validate`, so it takes no [`CallContext`].
    async fn template_list(&self) -> RtResult<Vec<Template>> {
        Err(self.unsupported("repository.list"))
    }
    /// One application template by name (a lookup, allowed in `validate`).
    async fn template_get(&self, name: String) -> RtResult<Template> {
        Err(self.unsupported("repository.get"))
    }
    /// A text file of a template (a lookup, allowed in `validate`).
    async fn template_read(&self, name: String, path: String) -> RtResult<String> {
        Err(self.unsupported("repository.read-file"))
    }
    /// The record (JSON) of an installed application (a lookup, allowed in `validate`).
    async fn app_record(&self, name: String) -> RtResult<Option<String>> {
        Err(self.unsupported("app-store.record"))
    }
    /// Every installed application's `(name, record JSON)` (a lookup, allowed in `validate`).
    async fn app_records(&self) -> RtResult<Vec<(String, String)>> {
        Err(self.unsupported("app-store.records"))
    }
    /// The folder of an application, as the host sees it.
    async fn app_folder(&self, name: String) -> RtResult<String> {
        Err(self.unsupported("app-store.folder"))
    }
    /// Copy a template's files into an application's folder.
    async fn app_install_template(
        &self,
        cx: &CallContext,
        name: String,
        template: String,
        replace: bool,
    ) -> RtResult<()> {
        Err(self.unsupported("app-store.install-template"))
    }
    /// A text file of an application's folder.
    async fn app_read_file(
        &self,
        cx: &CallContext,
        name: String,
        path: String,
    ) -> RtResult<String> {
        Err(self.unsupported("app-store.read-file"))
    }
    /// Write a text file of an application's folder.
    async fn app_write_file(
        &self,
        cx: &CallContext,
        name: String,
        path: String,
        content: String,
    ) -> RtResult<()> {
        Err(self.unsupported("app-store.write-file"))
    }
    /// Remove an application's folder.
    async fn app_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported("app-store.remove"))
    }
    /// Credentials remembered or configured for a registry.
    async fn credential_lookup(&self, cx: &CallContext, registry: String) -> Option<Credential> {
        None
    }
    /// Remember credentials for the calling user.
    async fn credential_remember(&self, cx: &CallContext, credential: Credential) -> RtResult<()> {
        Err(self.unsupported("credentials.remember"))
    }
}

/// A runtime that refuses everything, saying why: what a plugin sees where
/// no engine could be set up.
pub struct Unavailable {
    /// Why there is no engine, e.g. "DOCKER_HOST `tcp://x`: only unix:// sockets are supported".
    pub reason: String,
}

#[async_trait]
impl Runtime for Unavailable {
    fn unsupported(&self, what: &str) -> Error {
        Error::Runtime(format!("{what}: no container engine: {}", self.reason))
    }
}
