//! Configuration: a TOML file (`STEVEDORE_CONFIG`) plus environment overrides.
//!
//! Every section refuses unknown keys, so a typo is a start-up error that
//! names the key (and its line) instead of a setting silently ignored.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "/var/lib/stevedore"
//! share_root = "/share"
//! docker_host = "unix:///run/docker.sock"
//! docker_stall_secs = 120     # a pull, push, save, export or import with no byte moving this long fails
//!
//! [http]
//! max_body_bytes = 1048576
//! session_ttl_secs = 86400   # a session unused this long ends
//! session_max_secs = 604800  # a session ends this long after its login, however used
//! header_read_timeout_secs = 10  # a request's headers must arrive within this
//! body_read_timeout_secs = 30    # a request's body must arrive whole within this
//! streams_per_user = 16      # event streams a user may hold open at once
//! secure_cookies = false     # true behind HTTPS: the session cookie gets `Secure`
//!
//! [users.alice]
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! admin = false
//! [users.alice.policy]        # see `crate::policy` for every key
//! privileged = true
//!
//! [policy.default]            # what non-admins may do
//! categories = ["create", "image_download"]
//! [policy.default.limits]
//! memory = "1g"
//! running_tasks = 2
//!
//! [registries.corp]
//! url = "https://registry.corp.example:5000"
//! username = "bot"
//! password = "secret"
//!
//! [repositories]
//! dockerhub = "https://mirror.corp.example"   # a mirror for Docker Hub
//! qnap = "corp"                               # a name from [registries]
//!
//! [catalog]                  # the `qnap` repository of LXC images and app templates
//! url = "https://raw.githubusercontent.com/qnap-dev/container-apps/master"  # or a folder
//! trusted = false            # allow app templates to bind host paths outside share_root
//!
//! [lxc]
//! path = "/var/lib/lxc"       # where LXC containers live
//! bridge = "stvlxc0"          # the bridge the server manages for them
//! subnet = "10.213.0.0/24"    # its /24; the bridge takes .1
//!
//! [archives]
//! max_expanded_bytes = 68719476736  # cap on an imported archive's expanded size (64 GiB)
//!
//! [queue]
//! workers = 8                 # default 8; tasks mostly wait on the engine
//! retention_days = 30         # finished tasks are deleted this long after their end; 0 keeps them
//! [queue.limits]
//! image_download = 2
//!
//! [proxy]                    # serves each application's `virtual_path` (see `crate::proxy`)
//! listen = "0.0.0.0:8081"     # absent (the default): no proxy
//!
//! [plugins]
//! dir = "/usr/lib/stevedore/plugins"
//! cpu_budget_ms = 10000
//! memory_mb = 64
//! [plugins.grants]
//! create = ["task", "images", "containers"]
//! ```
//!
//! Environment overrides (they win over the file): `STEVEDORE_LISTEN`,
//! `STEVEDORE_DATA_DIR`, `STEVEDORE_SHARE_ROOT`, `STEVEDORE_PLUGINS_DIR`,
//! `STEVEDORE_ADMIN_PASSWORD`, `STEVEDORE_WORKERS`, `STEVEDORE_RETENTION_DAYS`,
//! `STEVEDORE_CACHE_DIR`
//! (compiled plugins; see `crate::plugins::cache` for when an entry is trusted),
//! `DOCKER_HOST`, `STEVEDORE_DOCKER_STALL_SECS`, `STEVEDORE_CATALOG`, `STEVEDORE_LXC_PATH`,
//! `STEVEDORE_LXC_BRIDGE`, `STEVEDORE_LXC_SUBNET`, `STEVEDORE_MAX_EXPANDED_BYTES`,
//! `STEVEDORE_PROXY_LISTEN`;
//! `[database]` and its `STEVEDORE_DATABASE_URL`, `STEVEDORE_NODE`,
//! `STEVEDORE_LEASE_SECS` are in [`crate::pg::config`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::pg::config::DatabaseSection;
use crate::plugins::PluginConfig;
use crate::policy::{Policies, PolicyConfig, PolicySection};
use crate::queue::QueueConfig;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data folder, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".stevedore";
/// Default request body limit (1 MiB): task params are small JSON documents.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default session lifetime (24 h).
pub const DEFAULT_SESSION_TTL_SECS: u64 = 24 * 3600;
/// Default absolute session lifetime (7 days), however often it is used.
pub const DEFAULT_SESSION_MAX_SECS: u64 = 7 * 24 * 3600;
/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default time a client has to send a request's body whole.
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 30;
/// Default guest CPU time per plugin call.
pub const DEFAULT_CPU_BUDGET_MS: u64 = 10_000;
/// Default linear-memory cap per plugin instance.
pub const DEFAULT_MEMORY_MB: u64 = 64;

/// A secret string: shown as `******` by `Debug`, so a config dump never leaks it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself; use only where it is needed (hashing, a registry login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"******\"")
    }
}

/// A user allowed to log in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// PHC string of an argon2 hash (`$argon2id$...`).
    pub password_hash: String,
    /// Admins see and delete every user's tasks.
    #[serde(default)]
    pub admin: bool,
    /// What this user may do, over `[policy.default]` (non-admins) or no
    /// restriction (admins); see [`crate::policy`].
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
}

/// A container registry that `repository = "private"` (with `registry_name`)
/// or the `[repositories]` mappings can name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry address, e.g. `https://registry.example:5000` or `127.0.0.1:5000`.
    pub url: String,
    /// Login user name, if the registry needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// Login password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Refused with an explanation: whether the engine may talk plain HTTP
    /// (or unverified TLS) to a registry is the Docker engine's own setting
    /// (`insecure-registries` in `daemon.json`), which no API request can
    /// change. Accepting the key would promise what the server cannot do.
    #[serde(default)]
    pub insecure: Option<bool>,
}

/// Where the `dockerhub` and `qnap` repositories of the API point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoriesConfig {
    /// A registry name from `[registries]` or a URL used for `dockerhub`
    /// (a mirror); absent: Docker Hub itself.
    #[serde(default)]
    pub dockerhub: Option<String>,
    /// A registry name from `[registries]` or a URL used for `qnap`.
    #[serde(default)]
    pub qnap: Option<String>,
}

/// `[catalog]`: the image and application repository (`qnap`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// `http(s)://` URL of the repository root (holding `list.json`), or a local folder.
    #[serde(default)]
    pub url: Option<String>,
    /// Trust the repository's application templates with absolute host
    /// paths outside the share root in their bind mounts (default false:
    /// refused).
    #[serde(default)]
    pub trusted: bool,
}

/// Default folder of LXC containers.
pub const DEFAULT_LXC_PATH: &str = "/var/lib/lxc";
/// Default bridge of LXC containers.
pub const DEFAULT_LXC_BRIDGE: &str = "stvlxc0";
/// Default subnet of the LXC bridge.
pub const DEFAULT_LXC_SUBNET: &str = "10.213.0.0/24";

/// `[lxc]`: the LXC runtime.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxcSection {
    /// Folder of the containers (`lxc-* -P`).
    #[serde(default = "default_lxc_path")]
    pub path: PathBuf,
    /// Name of the bridge the server creates for the containers.
    #[serde(default = "default_lxc_bridge")]
    pub bridge: String,
    /// The bridge's IPv4 subnet, a `/24` (`10.213.0.0/24`).
    #[serde(default = "default_lxc_subnet")]
    pub subnet: String,
}

/// `[archives]`: limits on the archives the server reads (imports, LXC images).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivesSection {
    /// Cap on an archive's expanded (decompressed) size, in bytes: past it
    /// the task ends in error, so a decompression bomb stops early.
    #[serde(default = "default_max_expanded_bytes")]
    pub max_expanded_bytes: u64,
}

impl Default for ArchivesSection {
    fn default() -> Self {
        ArchivesSection {
            max_expanded_bytes: default_max_expanded_bytes(),
        }
    }
}

fn default_max_expanded_bytes() -> u64 {
    crate::runtime::archives::DEFAULT_MAX_EXPANDED_BYTES
}

fn default_lxc_path() -> PathBuf {
    PathBuf::from(DEFAULT_LXC_PATH)
}
fn default_lxc_bridge() -> String {
    DEFAULT_LXC_BRIDGE.to_string()
}
fn default_lxc_subnet() -> String {
    DEFAULT_LXC_SUBNET.to_string()
}

impl Default for LxcSection {
    fn default() -> Self {
        LxcSection {
            path: default_lxc_path(),
            bridge: default_lxc_bridge(),
            subnet: default_lxc_subnet(),
        }
    }
}

/// `[queue]`: the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// Tasks running at once, all categories together.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Per-category limits on tasks running at once.
    #[serde(default)]
    pub limits: BTreeMap<String, usize>,
    /// Days a finished (`completed`/`error`) task is kept after its end
    /// before it is deleted; 0 keeps finished tasks forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u64,
}

fn default_workers() -> usize {
    8
}
fn default_retention_days() -> u64 {
    crate::queue::DEFAULT_RETENTION.as_secs() / (24 * 3600)
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            workers: default_workers(),
            limits: BTreeMap::new(),
            retention_days: default_retention_days(),
        }
    }
}

/// `[plugins]`: loading and sandboxing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSection {
    /// Folder scanned for `*.wasm` components. Absent: found beside the
    /// binary (see [`default_plugins_dir`]), whatever the working directory.
    #[serde(default)]
    pub dir: PathBuf,
    /// Folder for compiled-code cache entries. Absent: `<data_dir>/cache`.
    #[serde(default)]
    pub cache_dir: PathBuf,
    /// Guest CPU time per call, in milliseconds.
    #[serde(default = "default_cpu_budget_ms")]
    pub cpu_budget_ms: u64,
    /// Linear-memory cap per plugin instance, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Interfaces granted per category.
    #[serde(default)]
    pub grants: BTreeMap<String, Vec<String>>,
}

fn default_cpu_budget_ms() -> u64 {
    DEFAULT_CPU_BUDGET_MS
}
fn default_memory_mb() -> u64 {
    DEFAULT_MEMORY_MB
}

impl Default for PluginsSection {
    fn default() -> Self {
        PluginsSection {
            dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
            cpu_budget_ms: DEFAULT_CPU_BUDGET_MS,
            memory_mb: DEFAULT_MEMORY_MB,
            grants: BTreeMap::new(),
        }
    }
}

/// `[proxy]`: the reverse proxy that serves applications' `virtual_path`
/// ([`crate::proxy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Address of the proxy's own listener; absent: no proxy.
    #[serde(default, deserialize_with = "optional_listen_from_toml")]
    pub listen: Option<SocketAddr>,
}

/// `[http]`: limits of the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long a session lasts without `login_refresh`, in seconds.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (serve behind HTTPS).
    #[serde(default)]
    pub secure_cookies: bool,
    /// How long a session lasts after its login, however often it is used, in seconds.
    #[serde(default = "default_session_max")]
    pub session_max_secs: u64,
    /// How long a client may take to send a request's headers, in seconds
    /// (then the connection is closed).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// How long a client may take to send a request's body whole, in
    /// seconds (then 408, and the connection is closed).
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_secs: u64,
    /// Event streams (`GET background/events`) a user may hold open at once.
    #[serde(default = "default_streams_per_user")]
    pub streams_per_user: usize,
}

fn default_session_max() -> u64 {
    DEFAULT_SESSION_MAX_SECS
}
fn default_header_read_timeout() -> u64 {
    DEFAULT_HEADER_READ_TIMEOUT_SECS
}
fn default_body_read_timeout() -> u64 {
    DEFAULT_BODY_READ_TIMEOUT_SECS
}
fn default_streams_per_user() -> usize {
    crate::api::streams::DEFAULT_STREAMS_PER_USER
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_session_ttl() -> u64 {
    DEFAULT_SESSION_TTL_SECS
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            secure_cookies: false,
            session_max_secs: DEFAULT_SESSION_MAX_SECS,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            body_read_timeout_secs: DEFAULT_BODY_READ_TIMEOUT_SECS,
            streams_per_user: crate::api::streams::DEFAULT_STREAMS_PER_USER,
        }
    }
}

/// The configuration: one struct, read from the file (every key optional,
/// unknown keys refused), then overridden by the environment
/// ([`Config::apply_env`]), then completed ([`Config::fill_defaults`]) where a
/// default depends on another setting. There is no second copy of the fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`).
    #[serde(default = "default_listen", deserialize_with = "listen_from_toml")]
    pub listen: SocketAddr,
    /// Data folder (store, sessions, generated admin hash, cache).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Root of the paths that tasks read and write (`path` params).
    /// Absent: `<data_dir>/share`.
    #[serde(default)]
    pub share_root: PathBuf,
    /// Docker endpoint, as `DOCKER_HOST`.
    #[serde(default)]
    pub docker_host: Option<String>,
    /// Seconds an engine call may go without a byte moving
    /// (`STEVEDORE_DOCKER_STALL_SECS`); absent: the runtime's default.
    #[serde(default)]
    pub docker_stall_secs: Option<u64>,
    /// Password for a generated `admin`: only from `STEVEDORE_ADMIN_PASSWORD`,
    /// never from the file.
    #[serde(skip)]
    pub admin_password: Option<Secret>,
    /// REST API limits.
    #[serde(default)]
    pub http: HttpSection,
    /// The applications' reverse proxy.
    #[serde(default)]
    pub proxy: ProxySection,
    /// Users by name.
    #[serde(default)]
    pub users: BTreeMap<String, UserConfig>,
    /// Registries by name.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryConfig>,
    /// `dockerhub` / `qnap` mappings.
    #[serde(default)]
    pub repositories: RepositoriesConfig,
    /// The image and application repository.
    #[serde(default)]
    pub catalog: CatalogSection,
    /// The LXC runtime.
    #[serde(default)]
    pub lxc: LxcSection,
    /// Archive limits.
    #[serde(default)]
    pub archives: ArchivesSection,
    /// Scheduler.
    #[serde(default)]
    pub queue: QueueSection,
    /// Plugins: folder, cache, sandbox settings, grants.
    #[serde(default)]
    pub plugins: PluginsSection,
    /// User policies: `[policy.default]` for non-admins.
    #[serde(default)]
    pub policy: PolicySection,
    /// The shared PostgreSQL store, the node name and its lease ([`crate::pg::config`]).
    #[serde(default)]
    pub database: DatabaseSection,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("a socket address")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

fn listen_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen(&text).map_err(serde::de::Error::custom)
}

fn optional_listen_from_toml<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    listen_from_toml(d).map(Some)
}

impl Default for Config {
    fn default() -> Self {
        parse_file("").expect("an empty file is a valid configuration")
    }
}

impl Config {
    /// Load from `STEVEDORE_CONFIG` (if set) and the process environment.
    pub fn load() -> anyhow::Result<Config> {
        Self::load_with(|k| std::env::var(k).ok())
    }

    /// Load with an explicit environment lookup (for tests).
    pub fn load_with(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let file = match env("STEVEDORE_CONFIG").filter(|s| !s.is_empty()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading config file {path}"))?;
                parse_file(&text).with_context(|| format!("config file {path}"))?
            }
            None => Config::default(),
        };
        Self::resolve(file, env)
    }

    /// The file's settings, then the environment's, then the defaults that
    /// depend on other settings; checked.
    pub fn resolve(
        mut config: Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        config.apply_env(|k| env(k).filter(|v| !v.is_empty()))?;
        config.fill_defaults(std::env::current_exe().ok().as_deref());
        config.check()?;
        Ok(config)
    }

    /// Environment overrides: each variable replaces one setting.
    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let path = |k: &str| env(k).map(PathBuf::from);
        if let Some(l) = env("STEVEDORE_LISTEN") {
            self.listen = parse_listen(&l)?;
        }
        if let Some(l) = env("STEVEDORE_PROXY_LISTEN") {
            self.proxy.listen =
                Some(parse_listen(&l).map_err(|e| anyhow::anyhow!("STEVEDORE_PROXY_LISTEN: {e}"))?);
        }
        if let Some(p) = path("STEVEDORE_DATA_DIR") {
            self.data_dir = p;
        }
        if let Some(p) = path("STEVEDORE_SHARE_ROOT") {
            self.share_root = p;
        }
        if let Some(p) = path("STEVEDORE_PLUGINS_DIR") {
            self.plugins.dir = p;
        }
        if let Some(p) = path("STEVEDORE_CACHE_DIR") {
            self.plugins.cache_dir = p;
        }
        if let Some(h) = env("DOCKER_HOST") {
            self.docker_host = Some(h);
        }
        if let Some(s) = env("STEVEDORE_DOCKER_STALL_SECS") {
            self.docker_stall_secs =
                Some(s.parse::<u64>().ok().filter(|n| *n > 0).with_context(|| {
                    format!("STEVEDORE_DOCKER_STALL_SECS: `{s}` is not a positive number")
                })?);
        }
        self.admin_password = env("STEVEDORE_ADMIN_PASSWORD").map(Secret);
        if let Some(w) = env("STEVEDORE_WORKERS") {
            self.queue.workers = w
                .parse()
                .with_context(|| format!("STEVEDORE_WORKERS: `{w}` is not a number"))?;
        }
        if let Some(d) = env("STEVEDORE_RETENTION_DAYS") {
            self.queue.retention_days = d.parse().with_context(|| {
                format!("STEVEDORE_RETENTION_DAYS: `{d}` is not a number of days (0 keeps finished tasks)")
            })?;
        }
        if let Some(url) = env("STEVEDORE_CATALOG") {
            self.catalog.url = Some(url);
        }
        if let Some(p) = path("STEVEDORE_LXC_PATH") {
            self.lxc.path = p;
        }
        if let Some(bridge) = env("STEVEDORE_LXC_BRIDGE") {
            self.lxc.bridge = bridge;
        }
        if let Some(subnet) = env("STEVEDORE_LXC_SUBNET") {
            self.lxc.subnet = subnet;
        }
        self.database = std::mem::take(&mut self.database).resolve(&env)?;
        if let Some(cap) = env("STEVEDORE_MAX_EXPANDED_BYTES") {
            self.archives.max_expanded_bytes = cap.parse().with_context(|| {
                format!("STEVEDORE_MAX_EXPANDED_BYTES: `{cap}` is not a number of bytes")
            })?;
        }
        Ok(())
    }

    /// Defaults that depend on other settings (the data folder, where the
    /// binary `exe` is installed).
    fn fill_defaults(&mut self, exe: Option<&Path>) {
        if self.share_root.as_os_str().is_empty() {
            self.share_root = self.data_dir.join("share");
        }
        if self.plugins.cache_dir.as_os_str().is_empty() {
            self.plugins.cache_dir = self.data_dir.join("cache");
        }
        if self.plugins.dir.as_os_str().is_empty() {
            self.plugins.dir = default_plugins_dir(exe, &self.data_dir);
        }
    }

    /// Checks that span keys: names that must exist, numbers that must be positive.
    fn check(&self) -> anyhow::Result<()> {
        if self.docker_stall_secs == Some(0) {
            anyhow::bail!("docker_stall_secs: must be at least 1");
        }
        if let Some(proxy) = self.proxy.listen {
            if proxy.port() != 0
                && proxy.port() == self.listen.port()
                && proxy.ip() == self.listen.ip()
            {
                anyhow::bail!("proxy.listen: `{proxy}` is the API's own address (listen)");
            }
        }
        if self.queue.workers == 0 {
            anyhow::bail!("queue.workers: must be at least 1");
        }
        for (cat, n) in &self.queue.limits {
            if *n == 0 {
                anyhow::bail!("queue.limits.{cat}: must be at least 1");
            }
        }
        if self.http.max_body_bytes < 1024 {
            anyhow::bail!("http.max_body_bytes: must be at least 1024");
        }
        if self.archives.max_expanded_bytes == 0 {
            anyhow::bail!("archives.max_expanded_bytes: must be at least 1");
        }
        for (key, value) in [
            ("session_ttl_secs", self.http.session_ttl_secs),
            ("session_max_secs", self.http.session_max_secs),
            (
                "header_read_timeout_secs",
                self.http.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", self.http.body_read_timeout_secs),
            ("streams_per_user", self.http.streams_per_user as u64),
        ] {
            if value == 0 {
                anyhow::bail!("http.{key}: must be at least 1");
            }
        }
        for (name, user) in &self.users {
            if let Err(why) = check_user_name(name) {
                anyhow::bail!("users.{name:?}: {why}");
            }
            if argon2::password_hash::PasswordHash::new(&user.password_hash).is_err() {
                anyhow::bail!(
                    "users.{name}.password_hash: not a PHC hash string like `$argon2id$v=19$...`"
                );
            }
        }
        for (name, registry) in &self.registries {
            if registry.insecure.is_some() {
                anyhow::bail!(
                    "registries.{name}.insecure: plain-HTTP registries are the Docker engine's \
                     setting: list `{}` in `insecure-registries` of its daemon.json and remove \
                     this key",
                    registry.url
                );
            }
        }
        for (key, value) in [
            ("dockerhub", &self.repositories.dockerhub),
            ("qnap", &self.repositories.qnap),
        ] {
            if let Some(v) = value {
                if !v.contains("://") && !v.contains(':') && !self.registries.contains_key(v) {
                    anyhow::bail!(
                        "repositories.{key}: `{v}` is neither a URL nor a name in [registries]"
                    );
                }
            }
        }
        // Bad policy keys are start-up errors naming the key.
        self.policies(self.users.iter().map(|(n, u)| (n.clone(), u.admin)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let bridge = &self.lxc.bridge;
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            anyhow::bail!(
                "lxc.bridge: `{bridge}` is not an interface name (1 to 15 letters, digits, `_`, `-`)"
            );
        }
        crate::runtime::lxc::network::Subnet::parse(&self.lxc.subnet)
            .map_err(|e| anyhow::anyhow!("lxc.subnet: {e}"))?;
        if self.plugins.cpu_budget_ms == 0 {
            anyhow::bail!("plugins.cpu_budget_ms: must be at least 1");
        }
        if self.plugins.memory_mb == 0 {
            anyhow::bail!("plugins.memory_mb: must be at least 1");
        }
        // One list of grantable interfaces: the granter's.
        const INTERFACES: &[&str] = crate::plugins::grants::CAPABILITIES;
        for (cat, list) in &self.plugins.grants {
            for i in list {
                if !INTERFACES.contains(&i.as_str()) {
                    anyhow::bail!(
                        "plugins.grants.{cat}: unknown interface `{i}` (known: {})",
                        INTERFACES.join(", ")
                    );
                }
            }
        }
        Ok(())
    }

    /// The effective policy of each of `users` (name, admin): their own
    /// `[users.NAME.policy]` over `[policy.default]` or over none.
    pub fn policies(
        &self,
        users: impl IntoIterator<Item = (String, bool)>,
    ) -> Result<Policies, String> {
        Policies::new(
            users.into_iter().map(|(name, admin)| {
                let own = self.users.get(&name).and_then(|u| u.policy.clone());
                (name, admin, own)
            }),
            self.policy.default.clone(),
        )
    }

    /// Whether any configured user is an admin.
    pub fn has_admin(&self) -> bool {
        self.users.values().any(|u| u.admin)
    }

    /// The plugin host's settings.
    pub fn plugin_config(&self) -> PluginConfig {
        PluginConfig {
            dir: self.plugins.dir.clone(),
            cache_dir: self.plugins.cache_dir.clone(),
            cpu_budget: Duration::from_millis(self.plugins.cpu_budget_ms),
            memory_limit: self.plugins.memory_mb * 1024 * 1024,
            grants: self.plugins.grants.clone(),
        }
    }

    /// The scheduler's settings.
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            workers: self.queue.workers,
            per_category: self
                .queue
                .limits
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect::<HashMap<_, _>>(),
            // Filled from the user policies by the server (`limits.running_tasks`).
            per_user: HashMap::new(),
            lease: self.database.lease(),
            retention: (self.queue.retention_days > 0)
                .then(|| Duration::from_secs(self.queue.retention_days.saturating_mul(24 * 3600))),
        }
    }

    /// The session store's file.
    pub fn sessions_path(&self) -> PathBuf {
        self.data_dir.join("sessions.db")
    }
}

/// Parse the TOML text of a configuration file.
pub fn parse_file(text: &str) -> anyhow::Result<Config> {
    // toml's error names the key and shows the line, e.g.
    // "unknown field `wokers`, expected `workers` or `limits`".
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

/// `127.0.0.1:8080`, `[::1]:8080`, or a host name with a port (`localhost:8080`).
fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = || format!("listen: `{text}` is not an address like 127.0.0.1:8080");
    text.to_socket_addrs()
        .with_context(bad)?
        .next()
        .with_context(bad)
}

/// Where the plugins are when no setting names a folder, found from the
/// binary `exe` so that the working directory never matters:
/// - installed: `<prefix>/bin/stevedore` → `<prefix>/lib/stevedore/plugins`;
/// - built in this repository: `target/release/stevedore` → `target/plugins`;
/// - otherwise `<data_dir>/plugins`.
pub fn default_plugins_dir(exe: Option<&Path>, data_dir: &Path) -> PathBuf {
    let prefix = exe.and_then(Path::parent).and_then(Path::parent);
    if let Some(prefix) = prefix {
        for candidate in [prefix.join("lib/stevedore/plugins"), prefix.join("plugins")] {
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    data_dir.join("plugins")
}

/// A user name: 1 to 64 of `[A-Za-z0-9_.-]`, and not `.` or `..` (a user
/// name is a folder name under the share root and the data folder).
pub fn valid_user_name(name: &str) -> bool {
    check_user_name(name).is_ok()
}

/// [`valid_user_name`], with the sentence that says why not.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let chars_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !chars_ok {
        return Err("a user name is 1 to 64 letters, digits, `_`, `.` or `-`".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not a user name: it names a folder's own or parent folder"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c = Config::resolve(Config::default(), env_of(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from(".stevedore"));
        assert_eq!(c.share_root, PathBuf::from(".stevedore/share"));
        assert_eq!(c.queue.workers, 8);
        assert_eq!(c.http.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(c.users.is_empty());
        assert!(!c.has_admin());
        let p = c.plugin_config();
        assert_eq!(p.cpu_budget, Duration::from_secs(10));
        assert_eq!(p.memory_limit, 64 * 1024 * 1024);
        assert_eq!(p.cache_dir, PathBuf::from(".stevedore/cache"));
    }

    #[test]
    fn full_file_parses() {
        let text = format!(
            r#"
listen = "0.0.0.0:9000"
data_dir = "/var/lib/stevedore"
docker_host = "unix:///run/docker.sock"

[http]
max_body_bytes = 65536
secure_cookies = true

[users.alice]
password_hash = "{HASH}"
admin = true

[users.bob]
password_hash = "{HASH}"

[registries.corp]
url = "https://registry.corp.example:5000"
username = "bot"
password = "s3cret"

[repositories]
dockerhub = "https://mirror.example"
qnap = "corp"

[queue]
workers = 8
[queue.limits]
image_download = 2

[plugins]
dir = "/plugins"
cpu_budget_ms = 500
memory_mb = 32
[plugins.grants]
create = ["task", "images", "containers"]
"#
        );
        let file = parse_file(&text).unwrap();
        let c = Config::resolve(file, env_of(&[])).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.share_root, PathBuf::from("/var/lib/stevedore/share"));
        assert_eq!(c.docker_host.as_deref(), Some("unix:///run/docker.sock"));
        assert!(c.users["alice"].admin);
        assert!(!c.users["bob"].admin);
        assert!(c.has_admin());
        assert_eq!(
            c.registries["corp"].password.as_ref().unwrap().expose(),
            "s3cret"
        );
        assert_eq!(c.repositories.qnap.as_deref(), Some("corp"));
        let q = c.queue_config();
        assert_eq!(q.workers, 8);
        assert_eq!(q.per_category["image_download"], 2);
        let p = c.plugin_config();
        assert_eq!(p.dir, PathBuf::from("/plugins"));
        assert_eq!(p.cpu_budget, Duration::from_millis(500));
        assert_eq!(p.memory_limit, 32 * 1024 * 1024);
        assert_eq!(p.grants["create"], vec!["task", "images", "containers"]);
        assert_eq!(c.http.max_body_bytes, 65536);
        assert!(c.http.secure_cookies);
        // Secrets stay out of Debug output.
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn the_docker_stall_limit_comes_from_the_file_or_the_environment() {
        let file = parse_file("docker_stall_secs = 30\n").unwrap();
        let c = Config::resolve(file.clone(), env_of(&[])).unwrap();
        assert_eq!(c.docker_stall_secs, Some(30));
        let c = Config::resolve(file, env_of(&[("STEVEDORE_DOCKER_STALL_SECS", "2")])).unwrap();
        assert_eq!(c.docker_stall_secs, Some(2));
        let c = Config::resolve(Config::default(), env_of(&[])).unwrap();
        assert_eq!(c.docker_stall_secs, None, "the runtime's default");
        for bad in [
            env_of(&[("STEVEDORE_DOCKER_STALL_SECS", "0")]),
            env_of(&[("STEVEDORE_DOCKER_STALL_SECS", "soon")]),
        ] {
            let e = Config::resolve(Config::default(), bad).unwrap_err();
            assert!(e.to_string().contains("STEVEDORE_DOCKER_STALL_SECS"), "{e}");
        }
        let e = parse_file("docker_stall_secs = 0\n")
            .and_then(|f| Config::resolve(f, env_of(&[])))
            .unwrap_err();
        assert!(e.to_string().contains("docker_stall_secs"), "{e}");
    }

    #[test]
    fn env_overrides_win() {
        let file =
            parse_file("listen = \"127.0.0.1:1\"\n[plugins]\ndir = \"/from-file\"\n").unwrap();
        let c = Config::resolve(
            file,
            env_of(&[
                ("STEVEDORE_LISTEN", "127.0.0.1:4242"),
                ("STEVEDORE_DATA_DIR", "/d"),
                ("STEVEDORE_PLUGINS_DIR", "/p"),
                ("STEVEDORE_ADMIN_PASSWORD", "pw"),
                ("STEVEDORE_WORKERS", "3"),
                ("DOCKER_HOST", "tcp://127.0.0.1:2375"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 4242);
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert_eq!(c.share_root, PathBuf::from("/d/share"));
        assert_eq!(c.sessions_path(), PathBuf::from("/d/sessions.db"));
        assert_eq!(c.plugins.dir, PathBuf::from("/p"));
        assert_eq!(c.admin_password.as_ref().unwrap().expose(), "pw");
        assert_eq!(c.queue.workers, 3);
        assert_eq!(c.docker_host.as_deref(), Some("tcp://127.0.0.1:2375"));
        let c =
            Config::resolve(Config::default(), env_of(&[("STEVEDORE_SHARE_ROOT", "/s")])).unwrap();
        assert_eq!(c.share_root, PathBuf::from("/s"));
        let c = Config::resolve(
            Config::default(),
            env_of(&[("STEVEDORE_LISTEN", "localhost:9")]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9);
        assert!(c.listen.ip().is_loopback());
    }

    #[test]
    fn the_proxy_is_off_by_default_and_listens_where_the_file_or_the_environment_says() {
        let c = Config::resolve(Config::default(), env_of(&[])).unwrap();
        assert_eq!(c.proxy.listen, None);
        let file = parse_file("[proxy]\nlisten = \"127.0.0.1:8081\"\n").unwrap();
        let c = Config::resolve(file.clone(), env_of(&[])).unwrap();
        assert_eq!(c.proxy.listen.unwrap().port(), 8081);
        let c = Config::resolve(
            file,
            env_of(&[("STEVEDORE_PROXY_LISTEN", "127.0.0.1:9091")]),
        )
        .unwrap();
        assert_eq!(c.proxy.listen.unwrap().port(), 9091);
        let e = Config::resolve(
            Config::default(),
            env_of(&[("STEVEDORE_PROXY_LISTEN", "nowhere")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("STEVEDORE_PROXY_LISTEN"), "{e}");
        let e = parse_file("[proxy]\nlisten = \"127.0.0.1:8080\"\n")
            .and_then(|f| Config::resolve(f, env_of(&[])))
            .unwrap_err();
        assert!(e.to_string().contains("proxy.listen"), "{e}");
        let e = parse_file("[proxy]\nport = 1\n").unwrap_err().to_string();
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn retention_is_days_from_the_file_or_the_environment_and_zero_keeps_forever() {
        let day = Duration::from_secs(24 * 3600);
        let c = Config::resolve(Config::default(), env_of(&[])).unwrap();
        assert_eq!(c.queue.retention_days, 30);
        assert_eq!(c.queue_config().retention, Some(30 * day));
        let file = parse_file("[queue]\nretention_days = 7\n").unwrap();
        let c = Config::resolve(file.clone(), env_of(&[])).unwrap();
        assert_eq!(c.queue_config().retention, Some(7 * day));
        let c = Config::resolve(file, env_of(&[("STEVEDORE_RETENTION_DAYS", "0")])).unwrap();
        assert_eq!(c.queue_config().retention, None, "0 keeps finished tasks");
        let e = Config::resolve(
            Config::default(),
            env_of(&[("STEVEDORE_RETENTION_DAYS", "-1")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("STEVEDORE_RETENTION_DAYS"), "{e}");
        let e = parse_file("[queue]\nretention_days = \"long\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention_days"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse_file("[queue]\nwokers = 3\n").unwrap_err().to_string();
        assert!(e.contains("wokers"), "{e}");
        let e = parse_file("lisen = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = parse_file(&format!(
            "[users.a]\npassword_hash = \"{HASH}\"\nadmn = true\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("admn"), "{e}");
        let e = parse_file("[plugins]\nmemory = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory"), "{e}");
        let e = parse_file("[registries.x]\nurl = \"u\"\ntoken = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("token"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let check = |text: &str, want: &str| {
            let e = parse_file(text)
                .and_then(|f| Config::resolve(f, env_of(&[])))
                .unwrap_err();
            let e = format!("{e:#}");
            assert!(e.contains(want), "{want} not in {e}");
        };
        check("listen = \"nowhere\"", "listen");
        check("listen = \"127.0.0.1\"", "listen");
        check("[queue]\nworkers = 0", "queue.workers");
        check(
            "[queue.limits]\nimage_download = 0",
            "queue.limits.image_download",
        );
        check(
            "[users.bob]\npassword_hash = \"plain\"",
            "users.bob.password_hash",
        );
        check("[users.bob]\nadmin = true", "password_hash");
        check("[repositories]\nqnap = \"nosuch\"", "repositories.qnap");
        check(
            "[plugins.grants]\ncreate = [\"network\"]",
            "plugins.grants.create",
        );
        check("[queue]\nworkers = \"many\"", "workers");
        for key in [
            "session_max_secs",
            "header_read_timeout_secs",
            "body_read_timeout_secs",
            "streams_per_user",
        ] {
            check(&format!("[http]\n{key} = 0"), &format!("http.{key}"));
        }
        for name in [".", ".."] {
            let text = format!("[users.\"{name}\"]\npassword_hash = \"{HASH}\"");
            check(&text, "is not a user name");
        }
        check(
            &format!("[users.\"a/b\"]\npassword_hash = \"{HASH}\""),
            "a user name is",
        );
        let e =
            Config::resolve(Config::default(), env_of(&[("STEVEDORE_WORKERS", "x")])).unwrap_err();
        assert!(e.to_string().contains("STEVEDORE_WORKERS"));
    }

    #[test]
    fn the_plugins_folder_is_found_from_the_binary_not_the_working_directory() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        // Installed: <prefix>/bin/stevedore and <prefix>/lib/stevedore/plugins.
        let prefix = root.path().join("usr");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        let exe = prefix.join("bin/stevedore");
        assert_eq!(default_plugins_dir(Some(&exe), &data), data.join("plugins"));
        std::fs::create_dir_all(prefix.join("lib/stevedore/plugins")).unwrap();
        assert_eq!(
            default_plugins_dir(Some(&exe), &data),
            prefix.join("lib/stevedore/plugins")
        );
        // A build of the repository: target/release/stevedore and target/plugins.
        let target = root.path().join("target");
        std::fs::create_dir_all(target.join("release")).unwrap();
        std::fs::create_dir_all(target.join("plugins")).unwrap();
        let exe = target.join("release/stevedore");
        assert_eq!(
            default_plugins_dir(Some(&exe), &data),
            target.join("plugins")
        );
        assert_eq!(default_plugins_dir(None, &data), data.join("plugins"));
        // A setting wins; an absent one is filled from the binary.
        let mut c = Config::default();
        c.fill_defaults(Some(&exe));
        assert_eq!(c.plugins.dir, target.join("plugins"));
        let mut c = parse_file("[plugins]\ndir = \"/p\"\n").unwrap();
        c.fill_defaults(Some(&exe));
        assert_eq!(c.plugins.dir, PathBuf::from("/p"));
    }

    #[test]
    fn an_insecure_registry_is_refused_with_the_engine_setting_named() {
        let e = parse_file("[registries.lab]\nurl = \"10.0.0.5:5000\"\ninsecure = true\n")
            .and_then(|f| Config::resolve(f, env_of(&[])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("registries.lab.insecure"), "{e}");
        assert!(
            e.contains("insecure-registries") && e.contains("10.0.0.5:5000"),
            "{e}"
        );
    }

    #[test]
    fn load_reads_the_file_named_by_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[queue]\nworkers = 2\n").unwrap();
        let p = path.to_str().unwrap().to_string();
        let c = Config::load_with(move |k| (k == "STEVEDORE_CONFIG").then(|| p.clone())).unwrap();
        assert_eq!(c.queue.workers, 2);
        std::fs::write(&path, "[queue]\nwrkers = 2\n").unwrap();
        let p = path.to_str().unwrap().to_string();
        let e =
            Config::load_with(move |k| (k == "STEVEDORE_CONFIG").then(|| p.clone())).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("wrkers") && e.contains("s.toml"), "{e}");
    }
}
