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
//!
//! [http]
//! max_body_bytes = 1048576
//! session_ttl_secs = 86400
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
//! [queue]
//! workers = 8                 # default 8; tasks mostly wait on the engine
//! [queue.limits]
//! image_download = 2
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
//! `STEVEDORE_ADMIN_PASSWORD`, `STEVEDORE_WORKERS`, `STEVEDORE_CACHE_DIR`
//! (compiled plugins; entries are keyed by content, so servers may share it),
//! `DOCKER_HOST`, `STEVEDORE_CATALOG`, `STEVEDORE_LXC_PATH`,
//! `STEVEDORE_LXC_BRIDGE`, `STEVEDORE_LXC_SUBNET`; `[database]` and its
//! `STEVEDORE_DATABASE_URL`, `STEVEDORE_NODE`, `STEVEDORE_LEASE_SECS` are in
//! [`crate::pg::config`].

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
    /// Allow plain HTTP / unverified TLS.
    #[serde(default)]
    pub insecure: bool,
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
}

fn default_workers() -> usize {
    8
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            workers: default_workers(),
            limits: BTreeMap::new(),
        }
    }
}

/// `[plugins]`: loading and sandboxing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSection {
    /// Folder scanned for `*.wasm` components.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Folder for compiled-code cache entries (default `<data>/cache`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Guest CPU time per call, in milliseconds.
    #[serde(default)]
    pub cpu_budget_ms: Option<u64>,
    /// Linear-memory cap per plugin instance, in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Interfaces granted per category.
    #[serde(default)]
    pub grants: BTreeMap<String, Vec<String>>,
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
        }
    }
}

/// The configuration file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<String>,
    /// Data folder (store, sessions, generated admin hash).
    pub data_dir: Option<PathBuf>,
    /// Root of the paths that tasks read and write (`path` params).
    pub share_root: Option<PathBuf>,
    /// Docker endpoint, as `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// REST API limits.
    #[serde(default)]
    pub http: HttpSection,
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
    /// Scheduler.
    #[serde(default)]
    pub queue: QueueSection,
    /// Plugins.
    #[serde(default)]
    pub plugins: PluginsSection,
    /// User policies: `[policy.default]` for non-admins.
    #[serde(default)]
    pub policy: PolicySection,
    /// The shared PostgreSQL store, the node name and its lease ([`crate::pg::config`]).
    #[serde(default)]
    pub database: DatabaseSection,
}

/// The effective configuration: the file, then the environment, then defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Share root for `path` params.
    pub share_root: PathBuf,
    /// Plugins folder.
    pub plugins_dir: PathBuf,
    /// Plugin compiled-code cache folder.
    pub plugins_cache_dir: PathBuf,
    /// Docker endpoint (`DOCKER_HOST`), if set.
    pub docker_host: Option<String>,
    /// Password for a generated `admin` (from `STEVEDORE_ADMIN_PASSWORD`).
    pub admin_password: Option<Secret>,
    /// REST API limits.
    pub http: HttpSection,
    /// Users by name.
    pub users: BTreeMap<String, UserConfig>,
    /// Registries by name.
    pub registries: BTreeMap<String, RegistryConfig>,
    /// `dockerhub` / `qnap` mappings.
    pub repositories: RepositoriesConfig,
    /// The image and application repository.
    pub catalog: CatalogSection,
    /// The LXC runtime.
    pub lxc: LxcSection,
    /// Scheduler.
    pub queue: QueueSection,
    /// Plugin sandbox settings (budget, memory, grants).
    pub plugins: PluginsSection,
    /// User policies.
    pub policy: PolicySection,
    /// The store, node name and lease.
    pub database: DatabaseSection,
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
            None => FileConfig::default(),
        };
        Self::resolve(file, env)
    }

    /// Apply environment overrides and defaults to a parsed file.
    pub fn resolve(
        file: FileConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let listen_text = env("STEVEDORE_LISTEN")
            .or(file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = parse_listen(&listen_text)?;
        let data_dir = env("STEVEDORE_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let share_root = env("STEVEDORE_SHARE_ROOT")
            .map(PathBuf::from)
            .or(file.share_root.clone())
            .unwrap_or_else(|| data_dir.join("share"));
        let plugins_dir = env("STEVEDORE_PLUGINS_DIR")
            .map(PathBuf::from)
            .or(file.plugins.dir.clone())
            .unwrap_or_else(|| default_plugins_dir(&data_dir));
        let plugins_cache_dir = env("STEVEDORE_CACHE_DIR")
            .map(PathBuf::from)
            .or(file.plugins.cache_dir.clone())
            .unwrap_or_else(|| data_dir.join("cache"));
        let docker_host = env("DOCKER_HOST").or(file.docker_host.clone());
        let admin_password = env("STEVEDORE_ADMIN_PASSWORD").map(Secret);
        let mut queue = file.queue.clone();
        if let Some(w) = env("STEVEDORE_WORKERS") {
            queue.workers = w
                .parse()
                .with_context(|| format!("STEVEDORE_WORKERS: `{w}` is not a number"))?;
        }
        let mut catalog = file.catalog.clone();
        if let Some(url) = env("STEVEDORE_CATALOG") {
            catalog.url = Some(url);
        }
        let mut lxc = file.lxc.clone();
        if let Some(path) = env("STEVEDORE_LXC_PATH") {
            lxc.path = PathBuf::from(path);
        }
        if let Some(bridge) = env("STEVEDORE_LXC_BRIDGE") {
            lxc.bridge = bridge;
        }
        if let Some(subnet) = env("STEVEDORE_LXC_SUBNET") {
            lxc.subnet = subnet;
        }
        let config = Config {
            listen,
            data_dir,
            share_root,
            plugins_dir,
            plugins_cache_dir,
            docker_host,
            admin_password,
            http: file.http,
            users: file.users,
            registries: file.registries,
            repositories: file.repositories,
            catalog,
            lxc,
            queue,
            plugins: file.plugins,
            policy: file.policy,
            database: file.database.resolve(env)?,
        };
        config.check()?;
        Ok(config)
    }

    /// Checks that span keys: names that must exist, numbers that must be positive.
    fn check(&self) -> anyhow::Result<()> {
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
        if self.http.session_ttl_secs == 0 {
            anyhow::bail!("http.session_ttl_secs: must be at least 1");
        }
        for (name, user) in &self.users {
            if !valid_user_name(name) {
                anyhow::bail!(
                    "users.{name}: a user name is 1 to 64 letters, digits, `_`, `.` or `-`"
                );
            }
            if argon2::password_hash::PasswordHash::new(&user.password_hash).is_err() {
                anyhow::bail!(
                    "users.{name}.password_hash: not a PHC hash string like `$argon2id$v=19$...`"
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
        if self.plugins.cpu_budget_ms == Some(0) {
            anyhow::bail!("plugins.cpu_budget_ms: must be at least 1");
        }
        if self.plugins.memory_mb == Some(0) {
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
            dir: self.plugins_dir.clone(),
            cache_dir: self.plugins_cache_dir.clone(),
            cpu_budget: Duration::from_millis(
                self.plugins.cpu_budget_ms.unwrap_or(DEFAULT_CPU_BUDGET_MS),
            ),
            memory_limit: self.plugins.memory_mb.unwrap_or(DEFAULT_MEMORY_MB) * 1024 * 1024,
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
        }
    }

    /// The session store's file.
    pub fn sessions_path(&self) -> PathBuf {
        self.data_dir.join("sessions.db")
    }
}

/// Parse the TOML text of a configuration file.
pub fn parse_file(text: &str) -> anyhow::Result<FileConfig> {
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

/// `target/plugins` when run from the repository (it exists), else `<data>/plugins`.
fn default_plugins_dir(data_dir: &Path) -> PathBuf {
    let repo = PathBuf::from("target/plugins");
    if repo.is_dir() {
        repo
    } else {
        data_dir.join("plugins")
    }
}

/// A user name: 1 to 64 of `[A-Za-z0-9_.-]`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
        let c = Config::resolve(FileConfig::default(), env_of(&[])).unwrap();
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
        assert_eq!(c.plugins_dir, PathBuf::from("/p"));
        assert_eq!(c.admin_password.as_ref().unwrap().expose(), "pw");
        assert_eq!(c.queue.workers, 3);
        assert_eq!(c.docker_host.as_deref(), Some("tcp://127.0.0.1:2375"));
        let c = Config::resolve(
            FileConfig::default(),
            env_of(&[("STEVEDORE_SHARE_ROOT", "/s")]),
        )
        .unwrap();
        assert_eq!(c.share_root, PathBuf::from("/s"));
        let c = Config::resolve(
            FileConfig::default(),
            env_of(&[("STEVEDORE_LISTEN", "localhost:9")]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9);
        assert!(c.listen.ip().is_loopback());
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
        let e = Config::resolve(FileConfig::default(), env_of(&[("STEVEDORE_WORKERS", "x")]))
            .unwrap_err();
        assert!(e.to_string().contains("STEVEDORE_WORKERS"));
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
