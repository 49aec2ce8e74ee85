//! The Docker Engine backend, on bollard (pinned: 0.21.1) for typed calls
//! and on [`raw`] for the calls that carry registry credentials or stream a
//! request body.
//!
//! LXC calls never reach this backend: [`super::router::Runtimes`] routes
//! on the runtime kind above the backends.
//!
//! Large data never enters wasm: saves, exports and imports stream between
//! the engine and files under the share root.

pub mod archive;
pub mod auth;
pub mod compose;
pub mod config;
mod containers;
pub mod credentials;
mod images;
pub mod listing;
pub mod live_stats;
pub mod load;
pub mod network;
mod networks;
pub mod progress;
pub mod raw;
pub mod recovery;
pub mod settings;
pub mod shared_pull;
mod volume_backup;
mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;

use self::credentials::CredentialStore;
use self::raw::RawClient;
use self::shared_pull::SharedPulls;
use super::archives;
use super::pins::Pins;
use super::storage::ShareRoot;
use super::{CallContext, ContainerSpec, Credential, Credentials, Error, ImageInfo, RtResult};

/// A registry the configuration names.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Address as configured (`https://host:port`, `host:port`).
    pub url: String,
    /// Login, if configured.
    pub username: Option<String>,
    /// Password, if configured.
    pub password: Option<String>,
}

impl Registry {
    /// The host (and port) part, as image references spell it.
    pub fn host(&self) -> String {
        host_of(&self.url)
    }
}

fn host_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.trim_end_matches('/').to_string()
}

/// Registries added through the API (by name), beside the configured
/// ones: shared with the API, which replaces the set when one is added,
/// edited or removed. A configured registry of the same name wins.
#[derive(Debug, Clone, Default)]
pub struct AddedRegistries(std::sync::Arc<parking_lot::RwLock<BTreeMap<String, Registry>>>);

impl AddedRegistries {
    /// Use `all` from now on.
    pub fn set(&self, all: BTreeMap<String, Registry>) {
        *self.0.write() = all;
    }

    fn get(&self, name: &str) -> Option<Registry> {
        self.0.read().get(name).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.0.read().keys().cloned().collect()
    }

    fn login_for(&self, host: &str) -> Option<(String, String)> {
        self.0
            .read()
            .values()
            .find(|r| r.host() == host)
            .and_then(|r| Some((r.username.clone()?, r.password.clone()?)))
    }
}

/// What the Docker backend needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct DockerSettings {
    /// `DOCKER_HOST` (`unix:///path`); default `/var/run/docker.sock`.
    pub host: Option<String>,
    /// Named registries.
    pub registries: BTreeMap<String, Registry>,
    /// Registry name or URL standing for Docker Hub (a mirror).
    pub dockerhub: Option<String>,
    /// Registry name or URL for the `qnap` repository.
    pub qnap: Option<String>,
    /// Where user paths are confined.
    pub share_root: PathBuf,
    /// Where remembered credentials are kept.
    pub data_dir: PathBuf,
    /// How long a pull, push, save, export or import may go without a
    /// byte moving before it fails; `None`: [`raw::DEFAULT_STALL`].
    pub stall: Option<std::time::Duration>,
    /// Cap on an imported archive's expanded size, in bytes.
    pub max_expanded_bytes: u64,
}

/// The Docker Engine runtime.
pub struct DockerRuntime {
    api: Docker,
    raw: RawClient,
    share: ShareRoot,
    settings: DockerSettings,
    credentials: CredentialStore,
    /// Registries added through the API.
    added: AddedRegistries,
    /// Pulls in flight, shared by the tasks asking for the same image.
    pulls: SharedPulls,
    /// Bind sources pinned for the engine.
    pins: Pins,
    /// Running containers' stats, followed while they are listed.
    live: live_stats::LiveStats,
    /// This server's mark on the containers it recreates ([`recovery::maker_id`]).
    maker: String,
}

/// The Unix socket named by `DOCKER_HOST`.
pub fn socket_path(host: Option<&str>) -> anyhow::Result<PathBuf> {
    match host {
        None | Some("") => Ok(PathBuf::from("/var/run/docker.sock")),
        Some(h) => match h.strip_prefix("unix://") {
            Some(path) => Ok(PathBuf::from(path)),
            None => anyhow::bail!("DOCKER_HOST `{h}`: only unix:// sockets are supported"),
        },
    }
}

fn engine(e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => raw::engine_error(
            hyper::StatusCode::from_u16(status_code)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR),
            message.as_bytes(),
        ),
        bollard::errors::Error::DockerStreamError { error } => Error::Runtime(error),
        other => Error::Runtime(format!("Docker engine: {other}")),
    }
}

impl DockerRuntime {
    /// Connect (lazily: the engine may start later) to the engine of `settings.host`.
    pub fn new(settings: DockerSettings) -> anyhow::Result<DockerRuntime> {
        let socket = socket_path(settings.host.as_deref())?;
        let version = ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        let api = Docker::connect_with_unix(&socket.to_string_lossy(), 600, &version)?;
        let share = ShareRoot::new(&settings.share_root)?;
        let removed = share.remove_stale_temporaries();
        if removed > 0 {
            tracing::info!(removed, "removed partial outputs of interrupted tasks");
        }
        let credentials = CredentialStore::open(&settings.data_dir)?;
        let pins = Pins::new(&settings.data_dir, "docker")?;
        let maker = recovery::maker_id("", &settings.data_dir);
        let runtime = DockerRuntime {
            api,
            raw: RawClient::new(socket, settings.stall.unwrap_or(raw::DEFAULT_STALL)),
            share,
            settings,
            credentials,
            added: AddedRegistries::default(),
            pulls: SharedPulls::default(),
            pins,
            live: Default::default(),
            maker,
        };
        runtime.sweep_pins();
        Ok(runtime)
    }

    /// In the background: release the pins of containers that no longer
    /// exist, re-make those whose mount is gone (after a host restart).
    fn sweep_pins(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (api, pins) = (self.api.clone(), self.pins.clone());
        handle.spawn(async move {
            let since = std::time::SystemTime::now();
            let options = bollard::query_parameters::ListContainersOptions {
                all: true,
                ..Default::default()
            };
            let Ok(listed) = api.list_containers(Some(options)).await else {
                return;
            };
            let sources: Vec<String> = listed
                .iter()
                .flat_map(|c| c.mounts.iter().flatten())
                .filter_map(|m| m.source.clone())
                .collect();
            let in_use = pins.tokens(sources.iter().map(String::as_str));
            let released = pins.sweep(&in_use, since);
            if released > 0 {
                tracing::info!(
                    released,
                    "released the pinned volumes of removed containers"
                );
            }
        });
    }

    /// The bind sources of a container (its `Binds` and bind `Mounts`).
    async fn bind_sources(&self, container: &str) -> RtResult<Vec<String>> {
        let inspect = self
            .api
            .inspect_container(container, None)
            .await
            .map_err(engine)?;
        let host = inspect.host_config.unwrap_or_default();
        let binds = host
            .binds
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| b.split(':').next().map(str::to_string));
        let mounts = host
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ == Some(bollard::models::MountType::BIND))
            .filter_map(|m| m.source);
        Ok(binds.chain(mounts).collect())
    }

    /// Create the container of `body`; its pins are released when the engine refuses it.
    async fn create_pinned(
        &self,
        staged: &[String],
        create: impl std::future::Future<Output = RtResult<String>>,
    ) -> RtResult<String> {
        let created = create.await;
        if created.is_err() {
            self.pins.release(staged.iter().map(String::as_str));
        }
        created
    }

    /// The configured (or API-added) registry named `name_or_url`, or one
    /// made from a URL.
    fn registry(&self, name_or_url: &str) -> Registry {
        self.settings
            .registries
            .get(name_or_url)
            .cloned()
            .or_else(|| self.added.get(name_or_url))
            .unwrap_or(Registry {
                url: name_or_url.to_string(),
                ..Default::default()
            })
    }

    /// Also use the registries added through the API that `added` holds.
    pub fn with_added_registries(mut self, added: AddedRegistries) -> Self {
        self.added = added;
        self
    }

    /// Keep remembered credentials in `store` instead of the data folder
    /// (the shared database of several nodes).
    pub fn with_credentials(mut self, store: CredentialStore) -> Self {
        self.credentials = store;
        self
    }

    /// Mark the containers this server recreates as node `node`'s (with
    /// its data folder), so that only this server recovers them after a
    /// crash ([`recovery`]).
    pub fn with_node(mut self, node: &str) -> Self {
        self.maker = recovery::maker_id(node, &self.settings.data_dir);
        self
    }

    /// Credentials for `registry_host`: given ones, else configured, else remembered by the user.
    async fn credential_for(
        &self,
        cx: &CallContext,
        registry_host: &str,
        given: Option<Credential>,
    ) -> Option<Credential> {
        let found = given.or_else(|| {
            self.settings
                .registries
                .values()
                .find(|r| r.host() == registry_host)
                .and_then(|r| {
                    Some(Credential {
                        registry: registry_host.to_string(),
                        username: r.username.clone()?,
                        password: r.password.clone()?,
                    })
                })
                .or_else(|| {
                    let (username, password) = self.added.login_for(registry_host)?;
                    Some(Credential {
                        registry: registry_host.to_string(),
                        username,
                        password,
                    })
                })
        });
        match found {
            Some(c) => Some(c),
            None => self.credentials.lookup(&cx.user, registry_host).await,
        }
    }

    /// POST `path` with our URL-safe `X-Registry-Auth` and follow the
    /// progress stream to its end (pulls and pushes).
    async fn with_registry_auth(
        &self,
        cx: &CallContext,
        what: &str,
        path: &str,
        header: &str,
    ) -> RtResult<()> {
        let response = self
            .raw
            .send(
                Method::POST,
                path,
                &[("X-Registry-Auth", header)],
                raw::empty(),
            )
            .await?;
        progress::follow(what, response, |p, d| cx.reporter.progress(p, d)).await
    }

    fn image_info(inspect: bollard::models::ImageInspect) -> ImageInfo {
        ImageInfo {
            id: inspect.id.unwrap_or_default(),
            tags: inspect.repo_tags.unwrap_or_default(),
            size: inspect.size.unwrap_or(0).max(0) as u64,
            created: inspect
                .created
                .and_then(|c| c.parse::<chrono_like::Rfc3339>().ok())
                .map(|t| t.0)
                .unwrap_or(0),
        }
    }

    /// Pin the bind sources of `spec` ([`Pins`]): the staging folders to give the engine.
    fn pin_binds(&self, spec: &ContainerSpec) -> RtResult<Vec<String>> {
        let sources = self.share.pin_sources(&spec.binds)?;
        Ok(self
            .pins
            .pin(&sources)?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect())
    }

    /// The create body of `spec`, its binds given as the `staged` folders.
    fn spec_to_body(
        &self,
        spec: &ContainerSpec,
        staged: &[String],
    ) -> RtResult<ContainerCreateBody> {
        let binds: Vec<String> = spec
            .binds
            .iter()
            .zip(staged)
            .map(|(b, host)| {
                format!(
                    "{host}:{}{}",
                    b.container_path,
                    if b.read_only { ":ro" } else { "" }
                )
            })
            .collect();
        let mut port_bindings = std::collections::HashMap::new();
        let mut exposed: Vec<String> = spec
            .expose_ports
            .iter()
            .map(|p| format!("{p}/tcp"))
            .collect();
        for p in &spec.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            exposed.push(key.clone());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: None,
                    host_port: Some(p.host_port.to_string()),
                });
        }
        exposed.sort();
        exposed.dedup();
        let host_config = HostConfig {
            binds: Some(binds).filter(|b| !b.is_empty()),
            port_bindings: Some(port_bindings).filter(|p| !p.is_empty()),
            privileged: Some(spec.privileged),
            cpu_shares: spec.cpu_shares.map(i64::from),
            cpu_period: spec.cpu_time_ms.map(|_| 100_000),
            cpu_quota: spec.cpu_time_ms.map(|ms| i64::from(ms) * 100),
            memory: spec.memory_bytes.map(|m| m as i64),
            device_cgroup_rules: Some(spec.device_rules.clone()).filter(|d| !d.is_empty()),
            volumes_from: Some(spec.volumes_from.clone()).filter(|v| !v.is_empty()),
            links: Some(
                spec.links
                    .iter()
                    .map(|(name, alias)| format!("{name}:{alias}"))
                    .collect::<Vec<_>>(),
            )
            .filter(|l| !l.is_empty()),
            dns: Some(spec.dns.clone()).filter(|d| !d.is_empty()),
            restart_policy: Some(RestartPolicy {
                name: Some(if spec.autostart {
                    RestartPolicyNameEnum::ALWAYS
                } else {
                    RestartPolicyNameEnum::NO
                }),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            hostname: spec.hostname.clone(),
            user: spec.user.clone(),
            working_dir: spec.working_dir.clone(),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.command.clone(),
            env: Some(spec.environment.clone()).filter(|e| !e.is_empty()),
            exposed_ports: Some(exposed).filter(|e| !e.is_empty()),
            volumes: Some(spec.new_volumes.clone()).filter(|v| !v.is_empty()),
            labels: Some(spec.labels.iter().cloned().collect())
                .filter(|l: &std::collections::HashMap<String, String>| !l.is_empty()),
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    /// Stream a file (skipping `skip` bytes of its decompressed content) as a request body.
    /// Stream `file` from its start to the engine; with `skip`, decompressed
    /// and without its first `skip` bytes (at most `max_expanded` in all).
    fn file_body(file: std::fs::File, skip: u64, max_expanded: u64) -> RtResult<raw::Body> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
        tokio::task::spawn_blocking(move || {
            let result = (|| -> std::io::Result<()> {
                let mut file = file;
                std::io::Seek::rewind(&mut file)?;
                let mut reader: Box<dyn std::io::Read + Send> = if skip > 0 {
                    Box::new(archives::open(file, max_expanded)?.1)
                } else {
                    Box::new(file)
                };
                std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())?;
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    if tx
                        .blocking_send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..n]))))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            })();
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(BodyExt::boxed(StreamBody::new(stream)))
    }
}

use std::io::Read as _;

/// Parse the engine's RFC 3339 timestamps to epoch seconds, without a date crate.
mod chrono_like {
    /// Epoch seconds.
    pub struct Rfc3339(pub i64);

    impl std::str::FromStr for Rfc3339 {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let num =
                |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok()).ok_or(());
            let (y, m, d, hh, mm, ss) = (
                num(0..4)?,
                num(5..7)?,
                num(8..10)?,
                num(11..13)?,
                num(14..16)?,
                num(17..19)?,
            );
            // Days from civil (Howard Hinnant's algorithm).
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - 719_468;
            Ok(Rfc3339(days * 86_400 + hh * 3600 + mm * 60 + ss))
        }
    }
}

impl super::Backend for DockerRuntime {}

#[async_trait]
impl Credentials for DockerRuntime {
    async fn credential_lookup(&self, cx: &CallContext, registry: String) -> Option<Credential> {
        self.credential_for(cx, &registry, None).await
    }

    async fn credential_remember(&self, cx: &CallContext, credential: Credential) -> RtResult<()> {
        self.credentials.remember(&cx.user, &credential).await
    }
}
