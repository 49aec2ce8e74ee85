//! The LXC backend: containers under `STEVEDORE_LXC_PATH` (config
//! `[lxc] path`, default `/var/lib/lxc`), images from the catalog
//! ([`super::catalog`]) in a store under the data folder.
//!
//! It drives Debian's `lxc` 5.0 command-line tools (`lxc-start`,
//! `lxc-stop`, `lxc-info`, `lxc-freeze`, `lxc-destroy`, ...) rather than
//! linking liblxc: liblxc's API is C only (its Rust bindings are
//! unmaintained), it forks and changes process-wide state (signal
//! handlers, namespaces) inside the caller, which does not mix with a
//! multi-threaded tokio server; and the tools are what operators use, so
//! what the server does can be repeated and inspected by hand. A host
//! without `lxc` still serves Docker; each LXC call there fails naming the
//! missing tool.
//!
//! - [`images`]: the image store (pull from the catalog, import, list, remove).
//! - [`unpack`]: safe extraction of rootfs tarballs (gzip, xz; flat or LXC layout).
//! - [`conf`]: the LXC `config` written from a create spec, and our record beside it.
//! - [`idmap`]: the host ids of unprivileged containers.
//!
//! A container is unprivileged unless its spec says `privileged` (which the
//! policy allows admins only): root inside is an unprivileged host id
//! ([`idmap`]), its image's owners are shifted to match, and its config
//! never says `unconfined`.
//! - [`network`]: the bridge, addresses and published ports (nftables).
//! - [`export`]: container exports.
//! - [`tools`]: running the tools.

pub mod conf;
pub mod config;
mod console;
mod containers;
pub mod export;
pub mod idmap;
pub mod images;
pub mod network;
mod settings;
mod stats;
pub mod subtree;
pub mod tools;
pub mod unpack;

use std::path::{Path, PathBuf};

use self::conf::{Cgroups, Record};
use self::idmap::IdMap;
use self::images::Store;
use self::network::{Network, Subnet};
use super::catalog::{Catalog, CatalogSwitch};
use super::pins::Pins;
use super::storage::ShareRoot;
use super::{CallContext, ContainerEntry, ContainerSpec, ContainerState, Error, RtResult};

/// What the LXC backend needs from the configuration.
#[derive(Debug, Clone)]
pub struct LxcSettings {
    /// Folder of the containers (`lxc-* -P`).
    pub path: PathBuf,
    /// The bridge the server manages.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// The image repository (`[catalog] url`), if configured.
    pub catalog: Option<String>,
    /// The data folder (the image store goes to `<data>/lxc/images`).
    pub data_dir: PathBuf,
    /// Where user paths are confined.
    pub share_root: PathBuf,
    /// Cap on an archive's expanded size (imports and images), in bytes.
    pub max_expanded_bytes: u64,
}

/// The LXC runtime.
pub struct LxcRuntime {
    path: PathBuf,
    store: Store,
    catalog: CatalogSwitch,
    network: Network,
    share: ShareRoot,
    cgroups: Cgroups,
    /// Bind sources pinned for `lxc.mount.entry`.
    pins: Pins,
    /// Creates take a name under this lock, so two cannot take the same one.
    creating: tokio::sync::Mutex<()>,
    /// The host ids of unprivileged containers, once looked up.
    idmap: parking_lot::Mutex<Option<IdMap>>,
    /// The previous counters of each container, for rates.
    sampler: crate::runtime::usage::Sampler,
}

/// Seconds since the Unix epoch (0 on a clock set before it): when an
/// image or a container was made, as their records keep it.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Runtime(format!("{what} {}: {e}", path.display()))
}

/// An LXC state as `lxc-info -s -H` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Frozen,
    Stopped,
}

/// What one create builds from: the spec, the container's folder, its
/// address, its image and its published ports.
#[derive(Clone, Copy)]
struct Parts<'a> {
    spec: &'a ContainerSpec,
    dir: &'a Path,
    lease: &'a network::Lease,
    image: &'a images::ImageRecord,
    ports: &'a [network::Port],
}

impl super::Backend for LxcRuntime {
    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported(format!("{what} is not supported for LXC containers"))
    }
}

impl LxcRuntime {
    /// The staging folders of bind sources, beside the containers in the
    /// LXC path: LXC mounts an unprivileged container's entries inside its
    /// user namespace, so its mapped root must be able to walk down to them
    /// (search, not read, for others on the LXC path and the pins' folders,
    /// as LXC asks of the path of every unprivileged container).
    fn pins(path: &Path) -> std::io::Result<Pins> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path)?;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
        Pins::with_mode(&path.join(".stevedore-binds"), 0o711)
    }

    /// Take images from the repository `switch` holds at each pull (shared
    /// with the API, which may replace it while the server runs).
    pub fn with_catalog(mut self, switch: CatalogSwitch) -> Self {
        self.catalog = switch;
        self
    }

    /// Set up the store and settings (no tool is run: a host without LXC still starts).
    pub fn new(settings: LxcSettings) -> anyhow::Result<LxcRuntime> {
        let store = Store::new(&settings.data_dir.join("lxc/images"))?
            .with_max_expanded(settings.max_expanded_bytes);
        let catalog = settings.catalog.as_deref().map(Catalog::new).transpose()?;
        let share = ShareRoot::new(&settings.share_root)?;
        let runtime = LxcRuntime {
            path: settings.path.clone(),
            store,
            catalog: CatalogSwitch::new(catalog),
            network: Network::new(&settings.bridge, settings.subnet),
            share,
            cgroups: Cgroups::detect(),
            pins: Self::pins(&settings.path)?,
            creating: tokio::sync::Mutex::new(()),
            idmap: parking_lot::Mutex::new(None),
            sampler: Default::default(),
        };
        runtime.sweep_pins();
        runtime.autostart();
        Ok(runtime)
    }

    /// Start the containers marked `lxc.start.auto = 1`, as a restarted engine would.
    fn autostart(&self) {
        let wanted = self.names().into_iter().any(|n| {
            std::fs::read_to_string(self.path.join(&n).join("config"))
                .is_ok_and(|c| c.lines().any(|l| l.replace(' ', "") == "lxc.start.auto=1"))
        });
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !wanted || tools::which("lxc-autostart").is_none() {
            return;
        }
        let (network, path) = (self.network.clone(), self.path.clone());
        handle.spawn(async move {
            if let Err(e) = network.ensure().await {
                tracing::warn!("LXC autostart: network: {e:?}");
            }
            let path = path.to_string_lossy().into_owned();
            if let Err(e) = tools::run("lxc-autostart", ["-P", path.as_str()]).await {
                tracing::warn!("LXC autostart: {e}");
            }
        });
    }

    /// The host folders of a container's `lxc.mount.entry` lines.
    fn mount_sources(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path.join(name).join("config"))
            .map(|c| conf::mount_sources(&c))
            .unwrap_or_default()
    }

    /// Release the pins of containers that no longer exist; re-make those
    /// whose mount is gone (after a host restart), before autostart.
    fn sweep_pins(&self) {
        let since = std::time::SystemTime::now();
        let sources: Vec<String> = self
            .names()
            .iter()
            .flat_map(|n| self.mount_sources(n))
            .collect();
        let in_use = self.pins.tokens(sources.iter().map(String::as_str));
        self.pins.sweep(&in_use, since);
    }

    /// The names of the containers in the LXC path (folders with a `config`).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("config").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The folder of an existing container.
    fn existing(&self, name: &str) -> RtResult<PathBuf> {
        let dir = conf::container_dir(&self.path, name)
            .map_err(|_| Error::NotFound(format!("no such container: {name}")))?;
        if dir.join("config").is_file() {
            Ok(dir)
        } else {
            Err(Error::NotFound(format!("no such container: {name}")))
        }
    }

    async fn state(&self, name: &str) -> RtResult<State> {
        let out = tools::lxc("info", &self.path, name, &["-s", "-H"]).await?;
        Ok(match out.trim() {
            "RUNNING" | "STARTING" | "STOPPING" => State::Running,
            "FROZEN" | "FREEZING" | "THAWED" => State::Frozen,
            _ => State::Stopped,
        })
    }

    fn catalog(&self) -> RtResult<Catalog> {
        self.catalog.current().ok_or_else(|| {
            Error::InvalidParams(
                "repository: no `qnap` image repository is configured (set STEVEDORE_CATALOG or [catalog] url)"
                    .into(),
            )
        })
    }

    /// The ids of an unprivileged container (root's subordinate range, set up once).
    async fn idmap(&self) -> RtResult<IdMap> {
        if let Some(map) = *self.idmap.lock() {
            return Ok(map);
        }
        let map = tokio::task::spawn_blocking(idmap::host_range)
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        *self.idmap.lock() = Some(map);
        Ok(map)
    }

    /// Create the container's files, config and record; on error the caller removes `dir`.
    async fn build(&self, cx: &CallContext, parts: Parts<'_>) -> RtResult<()> {
        let spec = parts.spec;
        let sources = self.share.pin_sources(&spec.binds)?;
        let staged = self.pins.pin(&sources)?;
        let built = self.build_pinned(cx, parts, &staged).await;
        if built.is_err() {
            let staged: Vec<String> = staged.iter().map(|p| p.display().to_string()).collect();
            self.pins.release(staged.iter().map(String::as_str));
        }
        built
    }

    /// [`LxcRuntime::build`] with the bind sources pinned at `staged`.
    async fn build_pinned(
        &self,
        cx: &CallContext,
        parts: Parts<'_>,
        staged: &[PathBuf],
    ) -> RtResult<()> {
        let Parts {
            spec,
            dir,
            lease,
            image,
            ports,
        } = parts;
        let idmap = if spec.privileged {
            None
        } else {
            Some(self.idmap().await?)
        };
        let context = |halt_signal| conf::Context {
            dir,
            cgroups: self.cgroups,
            network: &self.network,
            lease,
            binds: staged,
            halt_signal,
            idmap,
        };
        // Check the settings before the slow part.
        conf::config_text(spec, &context(None))?;
        let archive = self.store.file(image);
        let target = dir.to_path_buf();
        let cap = self.store.max_expanded();
        let extracted = tokio::task::spawn_blocking(move || {
            let layout = unpack::layout(&archive)?;
            unpack::extract(&archive, &target, layout, cap, idmap)
        })
        .await
        .map_err(|e| Error::Other(e.to_string()))?
        .map_err(|e| match e {
            Error::InvalidParams(m) => Error::Runtime(format!("image {}: {m}", image.reference)),
            other => other,
        })?;
        if !extracted.skipped.is_empty() {
            cx.reporter.log(
                crate::queue::LogLevel::Warn,
                &format!(
                    "image {}: device nodes left out: {}",
                    image.reference,
                    extracted.skipped.join(", ")
                ),
            );
        }
        conf::write_resolv_conf(&dir.join("rootfs"), &spec.dns, idmap)?;
        let halt = conf::halt_signal(&dir.join("rootfs"));
        let text = conf::config_text(spec, &context(halt))?;
        std::fs::write(dir.join("config"), text)
            .map_err(|e| io_err("writing", &dir.join("config"), e))?;
        let record = Record {
            image: image.reference.clone(),
            image_id: image.id.clone(),
            lease: Some(lease.clone()),
            ports: ports.to_vec(),
            created: unix_now(),
            create: conf::create_settings(spec, ports),
        };
        record.write(dir)?;
        self.network.publish(lease, ports).await
    }

    async fn entry(&self, name: &str) -> RtResult<ContainerEntry> {
        let dir = self.existing(name)?;
        let state = self.state(name).await?;
        let record = Record::read(&dir).unwrap_or_default();
        let state = match state {
            State::Stopped => ContainerState::Stopped,
            State::Running | State::Frozen => ContainerState::Running,
        };
        Ok(ContainerEntry {
            id: name.to_string(),
            name: name.to_string(),
            image: record.image.clone(),
            // The recorded LXC entries have none of these keys.
            image_id: None,
            project: None,
            project_path: None,
            network_mode: None,
            external_ip: None,
            state,
            kind: "lxc",
            tcp_port: record
                .ports
                .iter()
                .filter(|p| !p.udp)
                .map(|p| p.host)
                .collect(),
            cpu: None,
            memory: None,
            rx: None,
            tx: None,
            ipaddress: (state == ContainerState::Running).then(|| {
                record
                    .lease
                    .as_ref()
                    .map(|l| l.ip.to_string())
                    .into_iter()
                    .collect()
            }),
            // Recorded at create time, as Docker keeps them (the owner label
            // of the user policies among them).
            labels: record
                .create
                .get("labels")
                .and_then(serde_json::Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    async fn remove(&self, name: &str, force: bool) -> RtResult<()> {
        let dir = self.existing(name)?;
        match self.state(name).await? {
            State::Stopped => {}
            _ if !force => {
                return Err(Error::Conflict(format!(
                    "container {name} is running; stop it first"
                )))
            }
            State::Frozen => {
                tools::lxc("unfreeze", &self.path, name, &[]).await?;
                tools::lxc("stop", &self.path, name, &["-k"]).await?;
            }
            State::Running => {
                tools::lxc("stop", &self.path, name, &["-k"]).await?;
            }
        }
        let record = Record::read(&dir);
        let sources = self.mount_sources(name);
        tools::lxc("destroy", &self.path, name, &[]).await?;
        self.pins.release(sources.iter().map(String::as_str));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io_err("removing", &dir, e))?;
        }
        if let Some(lease) = record.and_then(|r| r.lease) {
            self.network.release(&lease).await?;
        }
        Ok(())
    }
}
