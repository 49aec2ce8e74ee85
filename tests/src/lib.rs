//! End-to-end harness: starts the real `stevedore serve` binary on a free
//! loopback port with its own temporary data folder and plugins folder, waits
//! until it answers, logs in, kills it with SIGKILL and restarts it on the
//! same data folder.
//!
//! The binary is `target/release/stevedore` (or `$STEVEDORE_BIN`); the plugins
//! come from `target/plugins` and `target/test-plugins`, which
//! `cargo xtask test` builds before running the tests.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod bench;
pub mod catalog;
pub mod engine;
pub mod hostile_tar;
pub mod shape;

/// The admin password every harness server is started with.
pub const ADMIN_PASSWORD: &str = "admin-e2e-pw";

/// The variable naming the file where tests append the counts they report
/// (`cargo xtask test` sets it and prints the file after the run, since the
/// test harness hides what a passing test printed). The host crate's tests
/// report through this crate too.
pub const REPORT_ENV: &str = "STEVEDORE_TEST_REPORT";

/// Print `line` and append it to the report file, if one is named (one
/// `O_APPEND` write per line: tests running at once do not interleave).
pub fn report(line: &str) {
    use std::io::Write as _;
    println!("{line}");
    let Some(path) = std::env::var_os(REPORT_ENV) else {
        return;
    };
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        eprintln!("cannot append to {}: {e}", path.to_string_lossy());
    }
}

/// `format!` the arguments and [`report`] the line.
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {
        $crate::report(&format!($($arg)*))
    };
}

/// The workspace root (this crate's parent folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The server binary under test: `$STEVEDORE_BIN`, else `target/release/stevedore`,
/// brought up to date once per test process with `cargo build --release -p stevedore`
/// (`cargo test` itself does not build another package's binary; cargo's lock is
/// free while tests run).
pub fn binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("STEVEDORE_BIN") {
            return PathBuf::from(bin);
        }
        let bin = target_dir().join("release").join("stevedore");
        if std::env::var_os("STEVEDORE_E2E_NO_BUILD").is_none() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "stevedore",
                "--bin",
                "stevedore",
            ])
            .current_dir(workspace_root());
            // Variables cargo set for this test would change the fingerprints.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().into_owned();
                if (k.starts_with("CARGO_")
                    && !k.starts_with("CARGO_HOME")
                    && !k.starts_with("CARGO_TARGET_DIR"))
                    || k == "OUT_DIR"
                {
                    cmd.env_remove(&k);
                }
            }
            let status = cmd.status().expect("running cargo build");
            assert!(
                status.success(),
                "cargo build --release -p stevedore failed"
            );
        }
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build --release -p stevedore` first",
            bin.display()
        );
        bin
    })
    .clone()
}

/// The `.wasm` file of a plugin from `target/test-plugins` or `target/plugins`, if built.
pub fn plugin_file(name: &str) -> Option<PathBuf> {
    ["test-plugins", "plugins"]
        .iter()
        .map(|d| target_dir().join(d).join(format!("{name}.wasm")))
        .find(|p| p.is_file())
}

/// Every built plugin of `target/plugins` (the real categories), by file stem.
pub fn real_plugins() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(target_dir().join("plugins"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    if p.extension()? != "wasm" {
                        return None;
                    }
                    Some(p.file_stem()?.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plugins copied into the server's plugins folder: file stems of built
    /// plugins, or paths of `.wasm` files.
    pub plugins: Vec<String>,
    /// Extra configuration file text (TOML), if any.
    pub config: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Whether to set `STEVEDORE_ADMIN_PASSWORD` to [`ADMIN_PASSWORD`].
    pub admin_password: bool,
    /// `DOCKER_HOST` for the server; `None`: a socket that does not exist.
    pub docker_host: Option<String>,
    /// Files written into the data folder before the first start (e.g. the
    /// `secret.key` that every node of a shared database must have).
    pub data_files: Vec<(String, Vec<u8>)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            plugins: vec!["noop".into()],
            config: None,
            env: vec![("RUST_LOG".into(), "info".into())],
            admin_password: true,
            docker_host: None,
            data_files: Vec::new(),
        }
    }
}

impl Options {
    /// Default options with these plugins.
    pub fn with_plugins(plugins: &[&str]) -> Self {
        Options {
            plugins: plugins.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
    /// Add an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Use the engine at `$DOCKER_HOST` (the one `cargo xtask test` starts), if set.
    pub fn test_engine(mut self) -> Self {
        self.docker_host = std::env::var("DOCKER_HOST").ok();
        self
    }
    /// The LXC runtime with containers under `path`, on the test catalog,
    /// bridge and subnet `cargo xtask test` sets up.
    pub fn test_lxc(self, path: &Path) -> Self {
        self.env("STEVEDORE_CATALOG", &env("STEVEDORE_TEST_CATALOG"))
            .env("STEVEDORE_LXC_PATH", &path.display().to_string())
            .env("STEVEDORE_LXC_BRIDGE", &env("STEVEDORE_TEST_LXC_BRIDGE"))
            .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET"))
    }
    /// Set the configuration file text.
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.into());
        self
    }
}

/// A running `stevedore serve`.
pub struct Server {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    /// The temporary folder holding `data/`, `plugins/`, the config and the log.
    pub root: tempfile::TempDir,
    options: Options,
    log_path: PathBuf,
    starts: u32,
}

impl Server {
    /// Start a server and wait until it answers (30 s deadline).
    pub async fn start(options: Options) -> Server {
        let root = tempfile::Builder::new()
            .prefix("stevedore-e2e-")
            .tempdir()
            .expect("temp dir");
        let plugins = root.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in &options.plugins {
            // A path is copied as it is (a kept component, e.g. of an older
            // WIT version); a bare name is looked up among the built plugins.
            if name.ends_with(".wasm") {
                let src = Path::new(name);
                assert!(src.exists(), "{name} exists");
                std::fs::copy(src, plugins.join(src.file_name().unwrap())).unwrap();
                continue;
            }
            let src = plugin_file(name).unwrap_or_else(|| {
                panic!("plugin `{name}` is not built: run `cargo xtask test` (builds target/test-plugins)")
            });
            std::fs::copy(&src, plugins.join(format!("{name}.wasm"))).unwrap();
        }
        if let Some(text) = &options.config {
            std::fs::write(root.path().join("stevedore.toml"), text).unwrap();
        }
        if !options.data_files.is_empty() {
            let data = root.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            for (name, bytes) in &options.data_files {
                std::fs::write(data.join(name), bytes).unwrap();
            }
        }
        let mut server = Server {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path: root.path().join("server.log"),
            root,
            options,
            starts: 0,
        };
        server.spawn().await;
        server
    }

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Start the process; retried on a new port if the chosen one was taken
    /// meanwhile (another test may bind it between `free_port` and the start).
    async fn spawn(&mut self) {
        for attempt in 1..=3 {
            let log_len = std::fs::metadata(&self.log_path)
                .map(|m| m.len())
                .unwrap_or(0);
            self.spawn_once();
            match self.ready(Duration::from_secs(60), log_len as usize).await {
                Ok(()) => return,
                Err(why) => {
                    let log = self.logs();
                    let tail = log.get(log_len as usize..).unwrap_or("");
                    if attempt < 3 && tail.contains("in use") {
                        self.kill9();
                        continue;
                    }
                    panic!("{why}; log:\n{log}");
                }
            }
        }
    }

    fn spawn_once(&mut self) {
        self.starts += 1;
        self.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .current_dir(self.root.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("STEVEDORE_LISTEN", self.addr.to_string())
            .env("STEVEDORE_DATA_DIR", self.data_dir())
            .env("STEVEDORE_PLUGINS_DIR", self.root.path().join("plugins"))
            // Compiled plugins are keyed by content: every test server shares
            // one cache, so only the first start of a run compiles.
            .env(
                "STEVEDORE_CACHE_DIR",
                target_dir().join("e2e-compiled-plugins"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        if self.options.admin_password {
            cmd.env("STEVEDORE_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        // No engine unless asked for: a socket that does not exist, so that
        // a machine's own Docker is never touched by these tests.
        let docker = self.options.docker_host.clone().unwrap_or_else(|| {
            format!(
                "unix://{}",
                self.root.path().join("no-engine.sock").display()
            )
        });
        cmd.env("DOCKER_HOST", docker);
        if self.options.config.is_some() {
            cmd.env("STEVEDORE_CONFIG", self.root.path().join("stevedore.toml"));
        }
        // LXC containers of a test server live in its own folder, on the
        // test bridge, never in the machine's /var/lib/lxc.
        cmd.env("STEVEDORE_LXC_PATH", self.root.path().join("lxc"));
        for (var, test_var) in [
            ("STEVEDORE_LXC_BRIDGE", "STEVEDORE_TEST_LXC_BRIDGE"),
            ("STEVEDORE_LXC_SUBNET", "STEVEDORE_TEST_LXC_SUBNET"),
        ] {
            if let Some(v) = std::env::var_os(test_var) {
                cmd.env(var, v);
            }
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("starting stevedore serve"));
    }

    /// Poll until the server answers HTTP, or panic with its log after `deadline`.
    pub async fn wait_ready(&mut self, deadline: Duration) {
        if let Err(why) = self.ready(deadline, 0).await {
            panic!("{why}; log:\n{}", self.logs());
        }
    }

    /// Ready when this process logged that it listens on `self.addr` (so the
    /// port is ours, not another test's server) and answers `GET /metrics`.
    async fn ready(&mut self, deadline: Duration, log_from: usize) -> Result<(), String> {
        let until = Instant::now() + deadline;
        let http = reqwest::Client::new();
        let listening = format!("listening on http://{}", self.addr);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "stevedore serve exited with {status} before answering"
                ));
            }
            let log = self.logs();
            if log.get(log_from..).unwrap_or("").contains(&listening) {
                if let Ok(r) = http
                    .get(format!("{}/metrics", self.base()))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                {
                    if r.status().is_success() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > until {
                return Err(format!(
                    "stevedore serve did not answer within {deadline:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/containerstation/api/v1` (or `/api/v1` when `short`).
    pub fn api(&self, short: bool) -> String {
        if short {
            format!("{}/api/v1", self.base())
        } else {
            format!("{}/containerstation/api/v1", self.base())
        }
    }

    /// Everything the server printed so far (all starts).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kill with SIGKILL (no graceful shutdown) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop with SIGTERM and wait for the exit (10 s, then SIGKILL).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > until {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same data folder (after [`kill9`](Self::kill9) or [`stop`](Self::stop)).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// A client for this server, not logged in.
    pub fn client(&self) -> Client {
        Client::new(self.api(false))
    }

    /// A client logged in as `admin`.
    pub async fn admin(&self) -> Client {
        let c = self.client();
        let r = c.login("admin", ADMIN_PASSWORD).await;
        assert_eq!(r.status, 200, "admin login: {}", r.body);
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        unmount_beneath(self.root.path());
    }
}

/// Detach every mount beneath `folder` (a killed server's pinned bind
/// sources under its data folder and LXC path), so that its temporary
/// folder can be removed and no mount outlives the test. Nothing outside
/// `folder` is touched. Returns how many were detached.
pub fn unmount_beneath(folder: &Path) -> usize {
    let folder = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    let mut points = mounts_beneath(&folder);
    // Shallowest first: detaching one detaches those beneath it.
    points.sort_by_key(|p| p.components().count());
    let mut detached = 0;
    for point in points {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(point.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) } == 0 {
            detached += 1;
        }
    }
    detached
}

/// The mount points strictly beneath `folder`, one per mount (a folder
/// with two mounts stacked on it is listed twice), read from
/// `/proc/self/mountinfo` (its `\040`-style escapes undone).
pub fn mounts_beneath(folder: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .filter(|p| p.starts_with(folder) && p != folder)
        .collect()
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_octal(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// An answer: status and JSON body (or `Value::String` of a non-JSON body).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
    /// The `Content-Type`.
    pub content_type: String,
    /// The `Set-Cookie` header, if any.
    pub set_cookie: Option<String>,
}

impl Answer {
    /// Assert the JSON error shape with `status` (and `reason`, if given).
    pub fn assert_error(&self, status: u16, reason: Option<&str>) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert!(
            self.content_type.starts_with("application/json"),
            "{self:?}"
        );
        assert_eq!(self.body["error"]["code"], status, "{:?}", self.body);
        assert!(self.body["error"]["message"].is_string(), "{:?}", self.body);
        if let Some(r) = reason {
            assert_eq!(self.body["error"]["reason"], r, "{:?}", self.body);
        }
    }
}

/// A 400 JSON error whose message starts with the name of `field` (the
/// API names the field it refuses: `name: must match ...`).
pub fn assert_names(a: &Answer, field: &str) {
    a.assert_error(400, None);
    let m = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(m.starts_with(field), "`{m}` should start with `{field}`");
}

/// An HTTP client with its own cookie jar.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The API base, e.g. `http://127.0.0.1:PORT/containerstation/api/v1`.
    pub api: String,
}

impl Client {
    /// A client with an empty cookie jar.
    pub fn new(api: String) -> Client {
        Client {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .timeout(Duration::from_secs(60))
                // The server closes a connection idle for its header read
                // timeout (10 s); reusing one it is closing races that close.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            api,
        }
    }

    /// The same cookie jar, pointed at another API base (e.g. after a restart on a new port).
    pub fn with_api(&self, api: String) -> Client {
        Client {
            http: self.http.clone(),
            api,
        }
    }

    /// The underlying reqwest client (shares the cookie jar).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn answer(r: reqwest::Response) -> Answer {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let set_cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            content_type,
            set_cookie,
        }
    }

    /// A request to `{api}/{path}` with an optional raw body sent as
    /// `application/x-www-form-urlencoded` (what `curl -d` does).
    /// `POST container`: an LXC container `name` from the test catalog's
    /// busybox image (the server runs with [`Options::test_lxc`]).
    pub async fn create_lxc_busybox(&self, name: &str) -> Answer {
        let body = serde_json::json!({"type": "lxc", "repository": "qnap", "name": name,
            "image": "busybox", "tag": "latest"});
        self.send(reqwest::Method::POST, "container", Some(&body.to_string()))
            .await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Answer {
        let mut req = self.http.request(method, format!("{}/{}", self.api, path));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b.to_string());
        }
        Self::answer(req.send().await.expect("request")).await
    }

    /// `POST login` with form fields.
    pub async fn login(&self, user: &str, password: &str) -> Answer {
        let r = self
            .http
            .post(format!("{}/login", self.api))
            .form(&[("username", user), ("password", password)])
            .send()
            .await
            .expect("login request");
        Self::answer(r).await
    }

    /// `POST background/{category}` with `params` (JSON text, sent as curl -d would).
    pub async fn submit(&self, category: &str, params: &str) -> Answer {
        self.send(
            reqwest::Method::POST,
            &format!("background/{category}"),
            Some(params),
        )
        .await
    }

    /// Submit and return the new task's id, panicking on an error.
    pub async fn submit_ok(&self, category: &str, params: &str) -> i64 {
        let a = self.submit(category, params).await;
        assert_eq!(a.status, 200, "submit {category}: {:?}", a.body);
        assert_eq!(a.body["state"], "waiting", "{:?}", a.body);
        a.body["id"].as_i64().expect("task id")
    }

    /// `GET background/` (with `?category=`), as a list of tasks.
    pub async fn list(&self, category: Option<&str>) -> Vec<Value> {
        let path = match category {
            Some(c) => format!("background/?category={c}"),
            None => "background/".to_string(),
        };
        let a = self.send(reqwest::Method::GET, &path, None).await;
        assert_eq!(a.status, 200, "list: {:?}", a.body);
        a.body.as_array().expect("a JSON array").clone()
    }

    /// One task from the list, if visible.
    pub async fn task(&self, id: i64) -> Option<Value> {
        self.list(None).await.into_iter().find(|t| t["id"] == id)
    }

    /// `DELETE background/{target}` (`target` empty: `DELETE background/`).
    pub async fn delete(&self, target: &str) -> Answer {
        self.send(
            reqwest::Method::DELETE,
            &format!("background/{target}"),
            None,
        )
        .await
    }

    /// Poll until task `id` is in `state` (30 s deadline); returns it.
    pub async fn wait_state(&self, id: i64, state: &str) -> Value {
        self.wait_until(id, Duration::from_secs(30), |t| t["state"] == state)
            .await
            .unwrap_or_else(|last| panic!("task {id} never reached {state}; last seen: {last:?}"))
    }

    /// Poll until `pred` holds for task `id`, or give the last view after `deadline`.
    pub async fn wait_until(
        &self,
        id: i64,
        deadline: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, Option<Value>> {
        let until = Instant::now() + deadline;
        let mut last = None;
        loop {
            if let Some(t) = self.task(id).await {
                if pred(&t) {
                    return Ok(t);
                }
                last = Some(t);
            }
            if Instant::now() > until {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Run the `docker` CLI (against `$DOCKER_HOST`, the test engine); returns
/// its trimmed stdout, panics with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a `docker` CLI command succeeds (its output is dropped).
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A name no other test (of this or another test process) uses: `what-PID-N`.
pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// An argon2id PHC hash of `password`, for `[users.NAME] password_hash`.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("hashing")
        .to_string()
}

/// Reads Server-Sent Events from a response: `(event, data)` pairs, as they arrive.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    /// Wrap a `text/event-stream` response.
    pub fn new(resp: reqwest::Response) -> Self {
        SseReader {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (`event:` name, `data:` text), or `None` at the end of the stream.
    /// Comments (keep-alives) are skipped.
    pub async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some((event, data.join("\n")));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

/// The Python of the test tools' venv (`target/pytools`, built by
/// `cargo xtask pytools`, which `cargo xtask test` runs): Playwright,
/// schemathesis, openapi-spec-validator. Panics, saying how to build it,
/// when it is missing: these tests are never skipped.
pub fn pytools_python() -> PathBuf {
    let python = target_dir().join("pytools/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask pytools` (or `cargo xtask test`)",
        python.display()
    );
    python
}

/// Run a Python tool of the venv with a deadline; returns whether it
/// succeeded and what it printed (stdout and stderr). Its output is echoed,
/// so a failing test shows it.
pub async fn run_python(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(pytools_python());
    cmd.args(args)
        .envs(env.iter().copied())
        .env("PYTHONUNBUFFERED", "1")
        .kill_on_drop(true)
        .stdin(Stdio::null());
    let out = tokio::time::timeout(deadline, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("python {args:?} ran past {deadline:?}"))
        .expect("start python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    (out.status.success(), text)
}

/// A new, empty database on the test PostgreSQL (`STEVEDORE_TEST_DATABASE_URL`,
/// started by the test services), named after `prefix`; returns its URL.
pub fn fresh_database(prefix: &str) -> String {
    let base = std::env::var("STEVEDORE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("STEVEDORE_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`")
    });
    let name = unique(prefix).replace('-', "_");
    let out = Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "creating {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server, _) = base.rsplit_once('/').expect("postgres://.../db");
    format!("{server}/{name}")
}

/// `len` incompressible bytes from xorshift64 seeded with `seed` (the same
/// bytes for the same seed; xorshift needs a non-zero one: 0 becomes 1).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | u64::from(seed == 0);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Push an image of busybox plus `mib` MiB of incompressible noise to the
/// open test registry as `<registry>/stevedore/<unique prefix>:<tag>` for
/// each of `tags`; returns the repository (`stevedore/...`). The noise is
/// seeded by the unique name, so no two images share their layer: a pull
/// never finds it already on the engine.
pub fn push_noise_image(prefix: &str, mib: usize, tags: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let repo = format!("stevedore/{}", unique(prefix));
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for link in ["sh", "cat", "sleep", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(link)).unwrap();
    }
    // FNV-1a of the name, so no two images share the layer.
    let seed = repo.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    std::fs::write(root.join("blob"), noise(mib << 20, seed | 1)).unwrap();
    let tar = dir.path().join("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar")
        .success();
    assert!(ok, "tar");
    let registry = std::env::var("STEVEDORE_TEST_REGISTRY")
        .expect("STEVEDORE_TEST_REGISTRY: run the tests with `cargo xtask test`");
    for tag in tags {
        let name = format!("{registry}/{repo}:{tag}");
        docker(&["import", tar.to_str().unwrap(), &name]);
        docker(&["push", &name]);
        docker(&["rmi", &name]);
    }
    repo
}

/// Copy the folder `from` into `to`, recursively (fixture catalogs).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A variable `cargo xtask test` sets; panics naming it when it is not set.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// The configuration naming the two test registries: `local` (open) and
/// `secure` (htpasswd).
pub fn registries_config() -> String {
    format!(
        "[registries.local]\nurl = \"http://{}\"\n\n[registries.secure]\nurl = \"{}\"\n",
        env("STEVEDORE_TEST_REGISTRY"),
        env("STEVEDORE_TEST_AUTH_REGISTRY")
    )
}

/// Stop and destroy LXC container `name` under `path`, ignoring failures
/// (a test's clean-up).
pub fn lxc_destroy(path: &Path, name: &str) {
    for args in [&["lxc-stop", "-k"][..], &["lxc-destroy"][..]] {
        let _ = Command::new(args[0])
            .arg("-P")
            .arg(path)
            .args(["-n", name])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Stop and destroy every LXC container under `path`, ignoring failures.
pub fn lxc_destroy_all(path: &Path) {
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        lxc_destroy(path, &entry.file_name().to_string_lossy());
    }
}

/// `lxc-<verb> -P <path> -n <name> args...`, its stdout trimmed (panics on failure).
pub fn lxc(path: &Path, verb: &str, name: &str, args: &[&str]) -> String {
    let out = Command::new(format!("lxc-{verb}"))
        .arg("-P")
        .arg(path)
        .args(["-n", name])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the lxc tools (apt-get install lxc)");
    assert!(
        out.status.success(),
        "lxc-{verb} {name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll `f` until it answers, or panic with `what` after `deadline`.
pub async fn eventually<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually`] for a check that awaits (an API call).
pub async fn eventually_async<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes the named Docker containers (and their anonymous volumes) when
/// dropped, also when a test fails.
pub struct Containers(pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A test's own LXC path, whose containers are destroyed when dropped.
pub struct LxcPath(pub tempfile::TempDir);

impl LxcPath {
    /// A new, empty one.
    pub fn new() -> LxcPath {
        LxcPath(
            tempfile::Builder::new()
                .prefix("stevedore-lxc-")
                .tempdir()
                .expect("a temporary LXC path"),
        )
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Default for LxcPath {
    fn default() -> LxcPath {
        LxcPath::new()
    }
}

impl Drop for LxcPath {
    fn drop(&mut self) {
        lxc_destroy_all(self.0.path());
    }
}

/// What 127.0.0.1:`port` answers to a line, if anything (2 s) to `GET /`.
pub fn ask(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// What 127.0.0.1:`port` answers to `GET /`, when it is a `200 OK`.
pub fn http_get(port: u16) -> Option<String> {
    ask(port).filter(|body| body.contains("200 OK"))
}
