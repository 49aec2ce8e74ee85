//! Configuration: a TOML file (`STEVEDORE_CONFIG`) plus environment
//! overrides, assembled from each module's own section.
//!
//! Every section refuses unknown keys, so a typo is a start-up error that
//! names the key (and its line) instead of a setting silently ignored. The
//! top-level keys are read here:
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "/var/lib/stevedore"
//! share_root = "/share"
//! docker_host = "unix:///run/docker.sock"
//! docker_stall_secs = 120     # a pull, push, save, export or import with no byte moving this long fails
//! ```
//!
//! Each section is defined beside the code that uses it, with its keys, its
//! environment variables and its checks:
//! - `[http]`: [`crate::api::config`];
//! - `[users.NAME]`: [`crate::auth::config`];
//! - `[policy.default]`: [`crate::policy`];
//! - `[registries.NAME]`, `[repositories]`: [`crate::runtime::docker::config`];
//! - `[catalog]`, `[archives]`: [`crate::runtime::config`];
//! - `[lxc]`: [`crate::runtime::lxc::config`];
//! - `[queue]`: [`crate::queue::config`];
//! - `[proxy]`: [`crate::proxy::config`];
//! - `[plugins]`: [`crate::plugins::config`];
//! - `[database]`: [`crate::pg::config`].
//!
//! [`variables`] lists every environment variable (they win over the file)
//! with the key it overrides; the README's table is tested against it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::api::config::HttpSection;
use crate::auth::config::{check_users, AuthConfig, UserConfig, SESSIONS_FILE};
use crate::pg::config::DatabaseSection;
use crate::plugins::config::PluginsSection;
use crate::plugins::PluginConfig;
use crate::policy::{Policies, PolicySection};
use crate::proxy::config::ProxySection;
use crate::queue::config::QueueSection;
use crate::queue::QueueConfig;
use crate::runtime::config::{ArchivesSection, CatalogSection};
use crate::runtime::docker::config::{check_registries, RegistryConfig, RepositoriesConfig};
use crate::runtime::lxc::config::LxcSection;
use crate::secret::Secret;
use crate::setting::{apply_env, env_vars, listen_from_toml, parse_listen, parse_number, EnvVar};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data folder, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".stevedore";
/// The variable naming the configuration file.
pub const CONFIG_VAR: &str = "STEVEDORE_CONFIG";

/// The configuration: one struct, read from the file (every key optional,
/// unknown keys refused), then overridden by the environment, then
/// completed where a default depends on another setting ([`Config::resolve`]).
/// There is no second copy of the fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`).
    #[serde(deserialize_with = "listen_from_toml")]
    pub listen: SocketAddr,
    /// Data folder (store, sessions, generated admin hash, cache).
    pub data_dir: PathBuf,
    /// Root of the paths that tasks read and write (`path` params).
    /// Absent: `<data_dir>/share`.
    pub share_root: PathBuf,
    /// Docker endpoint, as `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// Seconds an engine call may go without a byte moving
    /// (`STEVEDORE_DOCKER_STALL_SECS`); absent: the runtime's default.
    pub docker_stall_secs: Option<u64>,
    /// Password for a generated `admin`: only from `STEVEDORE_ADMIN_PASSWORD`,
    /// never from the file.
    #[serde(skip)]
    pub admin_password: Option<Secret>,
    /// REST API limits.
    pub http: HttpSection,
    /// The applications' reverse proxy.
    pub proxy: ProxySection,
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
    /// Archive limits.
    pub archives: ArchivesSection,
    /// Scheduler.
    pub queue: QueueSection,
    /// Plugins: folder, cache, sandbox settings, grants.
    pub plugins: PluginsSection,
    /// User policies: `[policy.default]` for non-admins.
    pub policy: PolicySection,
    /// The shared PostgreSQL store, the node name and its lease ([`crate::pg::config`]).
    pub database: DatabaseSection,
    /// `[[webhooks]]`: an admin's webhooks, for every user's events.
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    /// `[webhooks_policy]`: the hosts webhooks may reach beyond the default.
    pub webhooks_policy: crate::webhooks::WebhooksPolicySection,
}

impl Default for Config {
    /// Every key absent: what an empty file means.
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("a socket address"),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            share_root: PathBuf::new(),
            docker_host: None,
            docker_stall_secs: None,
            admin_password: None,
            http: HttpSection::default(),
            proxy: ProxySection::default(),
            users: BTreeMap::new(),
            registries: BTreeMap::new(),
            repositories: RepositoriesConfig::default(),
            catalog: CatalogSection::default(),
            lxc: LxcSection::default(),
            archives: ArchivesSection::default(),
            queue: QueueSection::default(),
            plugins: PluginsSection::default(),
            policy: PolicySection::default(),
            database: DatabaseSection::default(),
            webhooks: Vec::new(),
            webhooks_policy: Default::default(),
        }
    }
}

/// The environment variables of the top-level keys.
pub const VARS: &[EnvVar<Config>] = env_vars! {
    "STEVEDORE_LISTEN", "listen" => |c, v| c.listen = parse_listen(v)?;
    "STEVEDORE_DATA_DIR", "data_dir" => |c, v| c.data_dir = PathBuf::from(v);
    "STEVEDORE_SHARE_ROOT", "share_root" => |c, v| c.share_root = PathBuf::from(v);
    "STEVEDORE_ADMIN_PASSWORD", "" => |c, v| c.admin_password = Some(Secret(v.to_string()));
    "DOCKER_HOST", "docker_host" => |c, v| c.docker_host = Some(v.to_string());
    "STEVEDORE_DOCKER_STALL_SECS", "docker_stall_secs" => |c, v| c.docker_stall_secs = Some(
        parse_number(v, "a positive number")
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{v}` is not a positive number"))?,
    );
};

/// One environment variable and the file key it overrides (empty: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// The variable.
    pub name: &'static str,
    /// The key, as error messages name it (`queue.workers`).
    pub key: &'static str,
}

/// Every environment variable the server reads, with the key it overrides:
/// the file's own name first, then each section's.
pub fn variables() -> Vec<Variable> {
    fn of<S>(vars: &[EnvVar<S>]) -> impl Iterator<Item = Variable> + '_ {
        vars.iter().map(|v| Variable {
            name: v.name,
            key: v.key,
        })
    }
    std::iter::once(Variable {
        name: CONFIG_VAR,
        key: "",
    })
    .chain(of(VARS))
    .chain(of(crate::plugins::config::VARS))
    .chain(of(crate::queue::config::VARS))
    .chain(of(crate::runtime::config::CATALOG_VARS))
    .chain(of(crate::runtime::lxc::config::VARS))
    .chain(of(crate::runtime::config::ARCHIVES_VARS))
    .chain(of(crate::proxy::config::VARS))
    .chain(of(crate::pg::config::VARS))
    .collect()
}

impl Config {
    /// Load from `STEVEDORE_CONFIG` (if set) and the process environment.
    pub fn load() -> anyhow::Result<Config> {
        Self::load_with(|k| std::env::var(k).ok())
    }

    /// Load with an explicit environment lookup (for tests).
    pub fn load_with(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let file = match env(CONFIG_VAR).filter(|s| !s.is_empty()) {
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
        config.apply_env(&env)?;
        config.fill_defaults(std::env::current_exe().ok().as_deref());
        config.check()?;
        Ok(config)
    }

    /// Environment overrides: each variable (set and not empty) replaces one
    /// setting.
    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        apply_env(VARS, self, env)?;
        apply_env(crate::plugins::config::VARS, &mut self.plugins, env)?;
        apply_env(crate::queue::config::VARS, &mut self.queue, env)?;
        apply_env(crate::runtime::config::CATALOG_VARS, &mut self.catalog, env)?;
        apply_env(crate::runtime::lxc::config::VARS, &mut self.lxc, env)?;
        apply_env(
            crate::runtime::config::ARCHIVES_VARS,
            &mut self.archives,
            env,
        )?;
        apply_env(crate::proxy::config::VARS, &mut self.proxy, env)?;
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        self.database = std::mem::take(&mut self.database).resolve(env)?;
        Ok(())
    }

    /// Defaults that depend on other settings (the data folder, where the
    /// binary `exe` is installed).
    fn fill_defaults(&mut self, exe: Option<&Path>) {
        if self.share_root.as_os_str().is_empty() {
            self.share_root = self.data_dir.join("share");
        }
        self.plugins.fill_defaults(exe, &self.data_dir);
    }

    /// Each section's checks, and those that span sections.
    fn check(&self) -> anyhow::Result<()> {
        if self.docker_stall_secs == Some(0) {
            anyhow::bail!("docker_stall_secs: must be at least 1");
        }
        self.proxy.check(self.listen)?;
        self.queue.check()?;
        self.http.check()?;
        self.archives.check()?;
        check_users(&self.users)?;
        check_registries(&self.registries, &self.repositories)?;
        // Bad policy keys are start-up errors naming the key.
        self.policies(self.users.iter().map(|(n, u)| (n.clone(), u.admin)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.lxc.check()?;
        self.plugins.check()
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

    /// What logins and sessions are built from.
    pub fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            data_dir: self.data_dir.clone(),
            users: self.users.clone(),
            admin_password: self.admin_password.clone(),
            session_ttl_secs: self.http.session_ttl_secs,
            session_max_secs: self.http.session_max_secs,
        }
    }

    /// The plugin host's settings.
    pub fn plugin_config(&self) -> PluginConfig {
        self.plugins.plugin_config()
    }

    /// The scheduler's settings; the per-user limits are filled from the
    /// user policies by the server (`limits.running_tasks`).
    pub fn queue_config(&self) -> QueueConfig {
        self.queue.queue_config(self.database.lease())
    }

    /// The session store's file.
    pub fn sessions_path(&self) -> PathBuf {
        self.data_dir.join(SESSIONS_FILE)
    }
}

/// Parse the TOML text of a configuration file.
pub fn parse_file(text: &str) -> anyhow::Result<Config> {
    // toml's error names the key and shows the line, e.g.
    // "unknown field `wokers`, expected `workers` or `limits`".
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::config::DEFAULT_MAX_BODY_BYTES;
    use crate::plugins::config::default_plugins_dir;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    /// Assert that `var=value` in the environment is refused, by name.
    fn env_refused(var: &'static str, value: &'static str) {
        let env = move |k: &str| (k == var).then(|| value.to_string());
        let e = Config::resolve(Config::default(), env).unwrap_err();
        assert!(e.to_string().contains(var), "{e}");
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(parse_file("").unwrap(), Config::default());
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
        env_refused("STEVEDORE_PROXY_LISTEN", "nowhere");
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
        env_refused("STEVEDORE_RETENTION_DAYS", "-1");
        let e = parse_file("[queue]\nretention_days = \"long\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention_days"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let user = format!("[users.a]\npassword_hash = \"{HASH}\"\nadmn = true\n");
        for (text, key) in [
            ("[queue]\nwokers = 3\n", "wokers"),
            ("lisen = \"x\"\n", "lisen"),
            (&user, "admn"),
            ("[plugins]\nmemory = 3\n", "memory"),
            ("[registries.x]\nurl = \"u\"\ntoken = \"t\"\n", "token"),
        ] {
            let e = parse_file(text).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
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

    /// The rows of the README's table of variables (the table under
    /// "## Configuration" whose first column is `variable`): (variable, key).
    fn readme_rows() -> Vec<(String, String)> {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .expect("the README has a Configuration section");
        let cell = |c: &str| c.trim().trim_matches('`').to_string();
        section
            .lines()
            .skip_while(|l| !l.starts_with("| variable |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
                let key = cell(cells.get(1).copied().unwrap_or(""));
                (cell(cells[0]), if key == "-" { String::new() } else { key })
            })
            .collect()
    }

    #[test]
    fn the_readme_table_lists_every_variable_with_its_key() {
        let table: Vec<(String, String)> = variables()
            .into_iter()
            .map(|v| (v.name.to_string(), v.key.to_string()))
            .collect();
        let readme = readme_rows();
        assert!(readme.len() >= table.len(), "{readme:?}");
        for row in &table {
            assert!(readme.contains(row), "README lacks the row {row:?}");
        }
        for row in &readme {
            assert!(
                table.contains(row),
                "README row {row:?} is not a variable the server reads"
            );
        }
        let mut names: Vec<_> = table.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), table.len(), "a variable is listed twice");
    }

    #[test]
    fn every_variable_overrides_its_key_and_a_bad_value_names_the_variable() {
        for var in variables() {
            if var.name == CONFIG_VAR {
                continue;
            }
            let bad = [(var.name, "not valid \u{0}")];
            let env = move |k: &str| {
                bad.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            };
            if let Err(e) = Config::resolve(Config::default(), env) {
                let e = format!("{e:#}");
                let key = var.key.rsplit('.').next().unwrap_or("");
                assert!(
                    e.contains(var.name) || (!key.is_empty() && e.contains(key)),
                    "{}: {e}",
                    var.name
                );
            }
        }
    }
}
