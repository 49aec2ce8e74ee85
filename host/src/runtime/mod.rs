//! Container runtimes, reached by plugins only through WIT capabilities.
//!
//! The plugin host calls one small trait per WIT interface ([`traits`]),
//! bundled as [`Backends`]; the Docker engine (bollard), LXC, the
//! application store and the [`simulated`] runtime implement the ones they
//! serve, [`router`] routes the two that carry a runtime kind, and [`guard`]
//! checks the user's policy. Host calls are async and take a [`CallContext`]
//! so that long operations report progress to their task and stop when it
//! is cancelled.

pub mod app_secrets;
pub mod apps;
pub mod archives;
pub mod beneath;
pub mod catalog;
pub mod config;
pub mod docker;
pub mod error;
pub mod folders;
pub mod guard;
pub mod icons;
pub mod image_owners;
pub mod log_lines;
pub mod lxc;
pub mod output;
pub mod pgzip;
pub mod pins;
pub mod reference;
pub mod router;
pub mod simulated;
pub mod storage;
pub mod subtree;
pub mod traits;
pub mod usage;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::queue::Reporter;
pub use crate::wit::{
    BindMount, ContainerExtra, ContainerHealth, ContainerSpec, ContainerSummary, Credential,
    ImageInfo, Mount, MountSource, NetworkAttachment, NetworkChoice, NetworkInfo, NetworkMode,
    PortBinding, PullRequest, Replacement, RuntimeKind, Source, Template, VolumeInfo,
};
pub use error::Error;

pub use traits::{
    AppFile, AppFolders, Backend, Backends, ContainerRef, Containers, Credentials, Engine, Images,
    InstallTemplate, Label, Labelled, Networks, NoAppStore, Templates, Unavailable, Volumes,
};

pub use traits::containers::{ChangeSettings, Limits, SettingsChange};
pub use traits::containers::{
    ContainerLogs, CreateOnNetwork, CreateWith, DeleteContainer, ExportContainer, ImportImage,
    LabelQuery, LogStream, Recreate, RemoveContainer, Restore, StopContainer, UsageQuery, Usages,
};
pub use traits::images::{ArchiveFile, ImageRef, PushImage, RemoveImage, SaveImages, TagImage};
pub use traits::volumes::{ExportSubtree, ExportVolume, ImportSubtree, ImportVolume};

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
