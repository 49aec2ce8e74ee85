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
pub mod credentials;
pub mod files;
pub mod listing;
pub mod live_stats;
pub mod load;
pub mod network;
pub mod progress;
pub mod raw;
pub mod shared_pull;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListImagesOptions, RemoveContainerOptions, RemoveImageOptions,
    StopContainerOptions, TagImageOptions,
};
use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;

use self::credentials::CredentialStore;
use self::files::Output;
use self::raw::{query, RawClient};
use self::shared_pull::{PullKey, SharedPulls};
use super::archives;
use super::pins::Pins;
use super::reference;
use super::storage::ShareRoot;
use super::{
    CallContext, ContainerEntry, ContainerExtra, ContainerRef, ContainerSpec, ContainerSummary,
    Containers, Credential, Credentials, Error, ImageInfo, Images, NetworkChoice, NetworkInfo,
    Networks, PullRequest, RtResult, RuntimeKind, Source, VolumeInfo, Volumes,
};

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
    /// Pulls in flight, shared by the tasks asking for the same image.
    pulls: SharedPulls,
    /// Bind sources pinned for the engine.
    pins: Pins,
    /// Running containers' stats, followed while they are listed.
    live: live_stats::LiveStats,
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
        let runtime = DockerRuntime {
            api,
            raw: RawClient::new(socket, settings.stall.unwrap_or(raw::DEFAULT_STALL)),
            share,
            settings,
            credentials,
            pulls: SharedPulls::default(),
            pins,
            live: Default::default(),
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

    /// The configured registry named `name_or_url`, or one made from a URL.
    fn registry(&self, name_or_url: &str) -> Registry {
        self.settings
            .registries
            .get(name_or_url)
            .cloned()
            .unwrap_or(Registry {
                url: name_or_url.to_string(),
                ..Default::default()
            })
    }

    /// Keep remembered credentials in `store` instead of the data folder
    /// (the shared database of several nodes).
    pub fn with_credentials(mut self, store: CredentialStore) -> Self {
        self.credentials = store;
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

#[async_trait]
impl Images for DockerRuntime {
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        match source {
            Source::Dockerhub => Ok(self
                .settings
                .dockerhub
                .as_deref()
                .map(|r| self.registry(r).host())
                .unwrap_or_default()),
            Source::Qnap => match &self.settings.qnap {
                Some(r) => Ok(self.registry(r).host()),
                None => Err(Error::InvalidParams(
                    "repository: no `qnap` registry is configured".into(),
                )),
            },
            Source::Private(name) => match self.settings.registries.get(name) {
                Some(r) => Ok(r.host()),
                None => {
                    let known: Vec<&str> = self
                        .settings
                        .registries
                        .keys()
                        .map(String::as_str)
                        .collect();
                    Err(Error::InvalidParams(format!(
                        "registry_name: unknown registry `{name}` (configured: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )))
                }
            },
        }
    }

    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        let registry = self.resolve_source(&req.source)?;
        // A Docker Hub mirror keeps official images under `library/`.
        let from = reference::pull_source(
            matches!(req.source, Source::Dockerhub),
            &registry,
            &req.image,
        );
        let tag = if req.tag.is_empty() {
            "latest".to_string()
        } else {
            req.tag.clone()
        };
        // Credentials go to the registry the engine contacts: the domain of
        // the reference it pulls, whatever the source said.
        let contacted = reference::Reference::parse(&format!("{from}:{tag}"))
            .map_err(|e| Error::InvalidParams(format!("image: {e}")))?;
        let host = if contacted.domain == reference::DOCKER_HUB {
            String::new()
        } else {
            contacted.domain
        };
        let credential = self.credential_for(cx, &host, req.credential).await;
        let header = auth::registry_auth(credential.as_ref(), &host);
        let what = format!("{from}:{tag}");
        cx.reporter.progress(0, &format!("pulling {what}"));
        let path = format!(
            "/images/create?fromImage={}&tag={}",
            query(&from),
            query(&tag)
        );
        // Tasks pulling the same image with the same credentials at the
        // same time share one engine pull.
        let key = PullKey::new(&from, &tag, &header);
        let raw = self.raw.clone();
        let driver_what = what.clone();
        self.pulls
            .pull(key, cx, move |progress| async move {
                let auth = [("X-Registry-Auth", header.as_str())];
                let response = raw.send(Method::POST, &path, &auth, raw::empty()).await?;
                progress::follow(&driver_what, response, |p, d| progress.report(p, d)).await
            })
            .await?;
        // A mirror or private registry prefix is an implementation detail of
        // Docker Hub pulls: name the image as the user asked for it too.
        if matches!(req.source, Source::Dockerhub) && !registry.is_empty() {
            self.image_tag(cx, what.clone(), req.image.clone(), tag.clone())
                .await?;
        }
        let info = self
            .image_inspect(cx, RuntimeKind::Docker, what.clone())
            .await?;
        cx.reporter.progress(100, &format!("pulled {what}"));
        Ok(info)
    }

    async fn image_inspect(
        &self,
        _cx: &CallContext,
        _kind: RuntimeKind,
        reference: String,
    ) -> RtResult<ImageInfo> {
        let inspect = self.api.inspect_image(&reference).await.map_err(engine)?;
        Ok(Self::image_info(inspect))
    }

    async fn image_list(&self, _cx: &CallContext, _kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        let list = self
            .api
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(engine)?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i.repo_tags,
                size: i.size.max(0) as u64,
                created: i.created,
            })
            .collect())
    }

    async fn image_remove(
        &self,
        _cx: &CallContext,
        _kind: RuntimeKind,
        reference: String,
        force: bool,
    ) -> RtResult<Vec<String>> {
        let options = RemoveImageOptions {
            force,
            noprune: false,
            platforms: None,
        };
        let removed = self
            .api
            .remove_image(&reference, Some(options), None)
            .await
            .map_err(engine)?;
        Ok(removed
            .into_iter()
            .flat_map(|r| r.untagged.into_iter().chain(r.deleted))
            .collect())
    }

    async fn image_tag(
        &self,
        _cx: &CallContext,
        source: String,
        repository: String,
        tag: String,
    ) -> RtResult<()> {
        let options = TagImageOptions {
            repo: Some(repository),
            tag: Some(tag),
        };
        self.api
            .tag_image(&source, Some(options))
            .await
            .map_err(engine)
    }

    async fn image_push(
        &self,
        cx: &CallContext,
        repository: String,
        tag: String,
        registry: String,
        credential: Option<Credential>,
    ) -> RtResult<()> {
        let credential = self.credential_for(cx, &registry, credential).await;
        let header = auth::registry_auth(credential.as_ref(), &registry);
        let what = format!("{repository}:{tag}");
        cx.reporter.progress(0, &format!("pushing {what}"));
        let path = format!("/images/{}/push?tag={}", repository, query(&tag));
        self.with_registry_auth(cx, &what, &path, &header).await?;
        cx.reporter.progress(100, &format!("pushed {what}"));
        Ok(())
    }

    async fn image_save(
        &self,
        cx: &CallContext,
        references: Vec<String>,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        let output = Output::prepare(&self.share, &path, cx.task_id, overwrite)?;
        // Fail early with a clear message rather than a truncated tar.
        for r in &references {
            self.api.inspect_image(r).await.map_err(engine)?;
        }
        cx.reporter
            .progress(-1, &format!("saving {} to {path}", references.join(", ")));
        let names: Vec<String> = references
            .iter()
            .map(|r| format!("names={}", query(r)))
            .collect();
        let response = self
            .raw
            .send(
                Method::GET,
                &format!("/images/get?{}", names.join("&")),
                &[],
                raw::empty(),
            )
            .await?;
        let stream = response.bytes();
        let size = output.write(Vec::new(), stream, gzip).await?;
        output.commit()?;
        cx.reporter
            .progress(100, &format!("saved {} to {path}", references.join(", ")));
        Ok(size)
    }
}

#[async_trait]
impl Containers for DockerRuntime {
    async fn container_create(&self, _cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        let staged = self.pin_binds(&spec)?;
        let body = self.spec_to_body(&spec, &staged)?;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            platform: String::new(),
        };
        let create = async {
            let created = self
                .api
                .create_container(Some(options), body)
                .await
                .map_err(engine)?;
            Ok(created.id)
        };
        self.create_pinned(&staged, create).await
    }

    async fn container_create_with(
        &self,
        _cx: &CallContext,
        spec: ContainerSpec,
        extra: ContainerExtra,
    ) -> RtResult<String> {
        let staged = self.pin_binds(&spec)?;
        let create = async {
            let mut body = self.spec_to_body(&spec, &staged)?;
            compose::apply_extra(&mut body, &extra)?;
            compose::create_with(&self.api, spec.name.clone(), body, &extra).await
        };
        self.create_pinned(&staged, create).await
    }

    async fn container_create_on_network(
        &self,
        _cx: &CallContext,
        spec: ContainerSpec,
        choice: NetworkChoice,
    ) -> RtResult<String> {
        let staged = self.pin_binds(&spec)?;
        let create = async {
            let mut body = self.spec_to_body(&spec, &staged)?;
            network::apply(&self.api, &mut body, &choice).await?;
            network::create(&self.raw, &spec.name, &body, choice.mac_address.as_deref()).await
        };
        self.create_pinned(&staged, create).await
    }

    async fn container_list_labelled(
        &self,
        _cx: &CallContext,
        _kind: RuntimeKind,
        key: String,
        value: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        compose::containers_labelled(&self.api, &key, &value).await
    }

    async fn container_start(&self, _cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        let container = &c.id;
        // The engine binds staging folders; re-pin them from the user's
        // folder now, so what it mounts is what the path names today
        // (a link there is refused).
        let sources = self.bind_sources(container).await?;
        self.pins.refresh(sources.iter().map(String::as_str))?;
        self.api
            .start_container(container, None)
            .await
            .map_err(engine)
    }

    async fn container_stop(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
        timeout_secs: u32,
    ) -> RtResult<()> {
        let container = &c.id;
        let options = StopContainerOptions {
            signal: None,
            t: Some(timeout_secs as i32),
        };
        self.api
            .stop_container(container, Some(options))
            .await
            .map_err(engine)
    }

    async fn container_remove(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
        force: bool,
    ) -> RtResult<()> {
        let container = &c.id;
        let options = RemoveContainerOptions {
            v: false,
            force,
            link: false,
        };
        let sources = self.bind_sources(container).await.unwrap_or_default();
        self.api
            .remove_container(container, Some(options))
            .await
            .map_err(engine)?;
        self.pins.release(sources.iter().map(String::as_str));
        Ok(())
    }

    async fn container_inspect(&self, _cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        let container = &c.id;
        let inspect = self
            .api
            .inspect_container(container, None)
            .await
            .map_err(engine)?;
        serde_json::to_string(&inspect).map_err(|e| Error::Other(e.to_string()))
    }

    async fn container_export(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        let container = &c.id;
        let output = Output::prepare(&self.share, &path, cx.task_id, overwrite)?;
        let mut inspect = self
            .api
            .inspect_container(container, None)
            .await
            .map_err(engine)?;
        // The export records the user's folders, not their staging folders.
        let binds = inspect.host_config.as_mut().and_then(|h| h.binds.as_mut());
        for bind in binds.into_iter().flatten() {
            let (source, rest) = bind.split_once(':').unwrap_or((bind.as_str(), ""));
            if let Some(original) = self.pins.original(source) {
                *bind = format!("{}:{rest}", original.display());
            }
        }
        let config = archive::config_from_inspect(&inspect, self.share.root());
        let entry = archive::tar_entry(
            archive::CONFIG_ENTRY,
            &serde_json::to_vec_pretty(&config).unwrap_or_default(),
        );
        cx.reporter
            .progress(-1, &format!("exporting {container} to {path}"));
        let response = self
            .raw
            .send(
                Method::GET,
                &format!("/containers/{}/export", query(container)),
                &[],
                raw::empty(),
            )
            .await?;
        let stream = response.bytes();
        let size = output.write(entry, stream, gzip).await?;
        output.commit()?;
        cx.reporter
            .progress(100, &format!("exported {container} to {path}"));
        Ok(size)
    }

    async fn archive_config(&self, _cx: &CallContext, path: String) -> RtResult<Option<String>> {
        let (file, _) = self.share.open_file(&path)?;
        let cap = self.settings.max_expanded_bytes;
        let kind = tokio::task::spawn_blocking(move || archive::inspect(file, cap))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        Ok(match kind {
            archive::Kind::Rootfs {
                config: Some(c), ..
            } => Some(c.to_string()),
            _ => None,
        })
    }

    async fn image_import(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        path: String,
        repository: String,
        tag: String,
    ) -> RtResult<String> {
        // One open file for the check and the upload: what was checked is what is sent.
        let (file, _) = self.share.open_file(&path)?;
        let probe = file
            .try_clone()
            .map_err(|e| Error::Other(format!("path `{path}`: {e}")))?;
        let cap = self.settings.max_expanded_bytes;
        let archive_kind = tokio::task::spawn_blocking(move || archive::inspect(probe, cap))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        let target = format!("{repository}:{tag}");
        cx.reporter
            .progress(-1, &format!("importing {path} as {target}"));
        match archive_kind {
            archive::Kind::Saved => {
                let response = self
                    .raw
                    .send(
                        Method::POST,
                        "/images/load?quiet=1",
                        &[("Content-Type", "application/x-tar")],
                        load::unnamed_body(file, self.settings.max_expanded_bytes)?,
                    )
                    .await?;
                let messages = response.json_lines::<serde_json::Value>();
                futures::pin_mut!(messages);
                let mut loaded = None;
                while let Some(m) = messages.next().await {
                    let m = m?;
                    if let Some(e) = m
                        .get("errorDetail")
                        .and_then(|d| d.get("message"))
                        .and_then(|s| s.as_str())
                    {
                        return Err(Error::Runtime(e.to_string()));
                    }
                    if let Some(s) = m.get("stream").and_then(|s| s.as_str()) {
                        if let Some(name) = s
                            .trim()
                            .strip_prefix("Loaded image: ")
                            .or_else(|| s.trim().strip_prefix("Loaded image ID: "))
                        {
                            loaded.get_or_insert_with(|| name.to_string());
                        }
                    }
                }
                let loaded = loaded.ok_or_else(|| {
                    Error::Runtime("the engine loaded no image from the archive".into())
                })?;
                self.image_tag(cx, loaded, repository, tag).await?;
            }
            archive::Kind::Rootfs { skip, .. } => {
                let path_q = format!(
                    "/images/create?fromSrc=-&repo={}&tag={}",
                    query(&repository),
                    query(&tag)
                );
                let response = self
                    .raw
                    .send(
                        Method::POST,
                        &path_q,
                        &[("Content-Type", "application/x-tar")],
                        Self::file_body(file, skip, self.settings.max_expanded_bytes)?,
                    )
                    .await?;
                progress::follow(&target, response, |p, d| cx.reporter.progress(p, d)).await?;
            }
        }
        let info = self.image_inspect(cx, kind, target).await?;
        Ok(info.id)
    }

    async fn container_list(
        &self,
        _cx: &CallContext,
        _kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        listing::list(&self.api).await
    }

    async fn container_usage(
        &self,
        _cx: &CallContext,
        _kind: RuntimeKind,
        containers: Vec<String>,
    ) -> RtResult<std::collections::HashMap<String, crate::runtime::Usage>> {
        Ok(listing::usage(&self.api, &self.live, containers).await)
    }

    async fn container_logs(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
        tail: u32,
    ) -> RtResult<String> {
        let container = &c.id;
        listing::logs(&self.api, container, tail).await
    }

    async fn engine_version(&self, _cx: &CallContext, _kind: RuntimeKind) -> RtResult<String> {
        listing::version(&self.api).await
    }

    async fn container_delete(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
        remove_volumes: bool,
    ) -> RtResult<()> {
        let container = &c.id;
        let sources = self.bind_sources(container).await.unwrap_or_default();
        listing::delete(&self.api, container, remove_volumes).await?;
        self.pins.release(sources.iter().map(String::as_str));
        Ok(())
    }
}

#[async_trait]
impl Networks for DockerRuntime {
    async fn network_create(
        &self,
        _cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<String> {
        compose::network_create(&self.api, name, labels).await
    }

    async fn network_remove(&self, _cx: &CallContext, name: String) -> RtResult<()> {
        compose::network_remove(&self.api, &name).await
    }

    async fn network_list(
        &self,
        _cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<NetworkInfo>> {
        compose::network_list(&self.api, &key, &value).await
    }
}

#[async_trait]
impl Volumes for DockerRuntime {
    async fn volume_create(
        &self,
        _cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<()> {
        compose::volume_create(&self.api, name, labels).await
    }

    async fn volume_remove(&self, _cx: &CallContext, name: String) -> RtResult<()> {
        compose::volume_remove(&self.api, &name).await
    }

    async fn volume_list(
        &self,
        _cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<VolumeInfo>> {
        compose::volume_list(&self.api, &key, &value).await
    }
}

#[async_trait]
impl Credentials for DockerRuntime {
    async fn credential_lookup(&self, cx: &CallContext, registry: String) -> Option<Credential> {
        self.credential_for(cx, &registry, None).await
    }

    async fn credential_remember(&self, cx: &CallContext, credential: Credential) -> RtResult<()> {
        self.credentials.remember(&cx.user, &credential).await
    }
}
