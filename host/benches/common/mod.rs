//! What the HTTP benchmarks share: the no-op executor and a server started
//! in this process on a loopback port.
#![allow(dead_code, reason = "each bench uses a part of it")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stevedore::api::AppState;
use stevedore::config::Config;
use stevedore::plugins::PluginHost;
use stevedore::queue::testkit::NoopExecutor;
use stevedore::queue::{Executor, Queue};
use stevedore::runtime::Backends;
use stevedore::server::Stores;
use stevedore::store::TaskStore;

/// The admin password of every benchmark server.
pub const PASSWORD: &str = "bench-pw";

/// A `usize` from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether this is a smoke run (`STEVEDORE_BENCH_SMOKE=1`, as `cargo xtask
/// bench --smoke` sets): one short round, to show that the bench completes
/// and prints sane figures, not to measure.
pub fn smoke() -> bool {
    std::env::var_os("STEVEDORE_BENCH_SMOKE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `default`, or `smoke` in a smoke run; `BENCH_<name>` overrides both.
pub fn size(name: &str, default: usize, smoke_size: usize) -> usize {
    env_usize(name, if smoke() { smoke_size } else { default })
}

/// Whether every task is to be submitted with one body (`--same-body`, or
/// `BENCH_SAME_BODY=1`): the category's `validate` is then answered from
/// memory after the first. By default each task gets a body of its own.
pub fn same_body() -> bool {
    std::env::args().any(|a| a == "--same-body") || std::env::var_os("BENCH_SAME_BODY").is_some()
}

/// The body of the `n`th no-op submit: a different one per task, or one
/// for all with [`same_body`].
pub fn noop_body(n: usize) -> String {
    if same_body() {
        r#"{"count": 1}"#.to_string()
    } else {
        format!(r#"{{"count": {}}}"#, n % 4_000_000_000)
    }
}

/// How the bench's bodies vary, for its header line.
pub fn body_label() -> &'static str {
    if same_body() {
        "one body for every task (--same-body: validation remembered)"
    } else {
        "a different body per task (validated each time)"
    }
}

/// What the SQLite store does for durability, as benches label it.
pub const SQLITE_LABEL: &str =
    "SQLite (WAL, synchronous=NORMAL, its own fsync of the WAL before every answer)";

/// The filesystem type of `path` (`stat -f`), e.g. `ext2/ext3`, `tmpfs`.
pub fn filesystem_type(path: &Path) -> String {
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// A fresh folder for a bench's data, on the disk the build is on
/// (`target/bench-data`, or `BENCH_DATA_DIR`), not `/tmp`, which is a tmpfs
/// on Debian 13 and most containers (where an fsync costs nothing). Prints
/// its filesystem type; refuses a tmpfs unless `BENCH_ALLOW_TMPFS=1`.
pub fn data_dir(bench: &str) -> anyhow::Result<tempfile::TempDir> {
    let base = std::env::var_os("BENCH_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{bench}-"))
        .tempdir_in(&base)?;
    let fs = filesystem_type(dir.path());
    println!("{bench}: data in {} ({fs})", dir.path().display());
    if (fs == "tmpfs" || fs == "ramfs") && std::env::var_os("BENCH_ALLOW_TMPFS").is_none() {
        anyhow::bail!(
            "{} is on a {fs}, where an fsync costs nothing: set BENCH_DATA_DIR to a folder on a              disk, or BENCH_ALLOW_TMPFS=1 to measure anyway",
            dir.path().display()
        );
    }
    Ok(dir)
}

/// How many tasks the store holds as `completed` (read back, not assumed
/// from events): what throughput figures count.
pub async fn completed(queue: &Queue) -> anyhow::Result<u64> {
    Ok(queue
        .counts()
        .await?
        .iter()
        .filter(|c| c.state == stevedore::queue::TaskState::Completed)
        .map(|c| c.count)
        .sum())
}

/// The `noop` wasm plugin from `target/test-plugins` when built (unless
/// `BENCH_RUST_NOOP` is set), else the queue's Rust `NoopExecutor`; with a
/// name to report.
pub async fn executor(plugins_dir: &Path, config: &Config) -> (Arc<dyn Executor>, String) {
    let noop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins/noop.wasm");
    if noop.is_file() && std::env::var_os("BENCH_RUST_NOOP").is_none() {
        std::fs::copy(&noop, plugins_dir.join("noop.wasm")).expect("copying noop.wasm");
        match PluginHost::load(
            &config.plugin_config(),
            Backends::unavailable("benchmark: no engine"),
        )
        .await
        {
            Ok(host) => {
                return (
                    Arc::new(host),
                    "the `noop` wasm plugin (PluginHost)".to_string(),
                )
            }
            Err(e) => {
                eprintln!("loading the noop plugin failed ({e:#}); using the Rust NoopExecutor")
            }
        }
    } else {
        eprintln!("target/test-plugins/noop.wasm not built (cargo xtask build-plugins); using the Rust NoopExecutor");
    }
    (
        Arc::new(NoopExecutor),
        "Rust NoopExecutor (in-process)".to_string(),
    )
}

/// A server running in this process.
pub struct Server {
    /// `http://127.0.0.1:PORT/api/v1`.
    pub api: String,
    /// Its queue (events, shutdown).
    pub queue: Arc<Queue>,
    /// The router's state.
    pub state: AppState,
    /// Its data folder.
    pub data: PathBuf,
    /// What runs the tasks.
    pub executor: String,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A server's configuration and open stores, before it starts (to fill the
/// store first).
pub struct Prepared {
    config: Config,
    stores: Stores,
    plugins: PathBuf,
    data: PathBuf,
}

/// Configure a server with its data and plugins in `dir`, `workers`
/// workers, and these settings (`STEVEDORE_*` name, value) on top; open its
/// stores.
pub async fn prepare(
    dir: &Path,
    workers: usize,
    settings: &[(&str, String)],
) -> anyhow::Result<Prepared> {
    let data = dir.join("data");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::create_dir_all(&data)?;
    let mut env: Vec<(String, String)> = vec![
        ("STEVEDORE_DATA_DIR".into(), data.to_string_lossy().into()),
        (
            "STEVEDORE_PLUGINS_DIR".into(),
            plugins.to_string_lossy().into(),
        ),
        ("STEVEDORE_ADMIN_PASSWORD".into(), PASSWORD.into()),
        ("STEVEDORE_WORKERS".into(), workers.to_string()),
        ("STEVEDORE_LISTEN".into(), "127.0.0.1:0".into()),
    ];
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let config = Config::resolve(Config::default(), |k| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    })?;
    let stores = stevedore::server::open_stores(&config).await?;
    Ok(Prepared {
        config,
        stores,
        plugins,
        data,
    })
}

impl Prepared {
    /// The configuration, to change sections the environment does not set.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The task store, to fill before the server starts.
    pub fn tasks(&self) -> &Arc<dyn TaskStore> {
        &self.stores.tasks
    }

    /// Load the no-op executor, start the queue and serve the API on a
    /// loopback port.
    pub async fn serve(self) -> anyhow::Result<Server> {
        let Prepared {
            config,
            stores,
            plugins,
            data,
        } = self;
        let (exec, exec_name) = executor(&plugins, &config).await;
        let started = stevedore::server::start_with(
            &config,
            stores.auth,
            stores.tasks,
            exec,
            Backends::unavailable("the benchmark needs no engine"),
            Arc::new(stevedore::policy::Policies::open()),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = stevedore::api::app(started.state.clone());
        let stop = started.state.shutdown.clone();
        let serve = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        });
        Ok(Server {
            api: format!("http://{addr}/api/v1"),
            queue: started.queue,
            state: started.state,
            data,
            executor: exec_name,
            serve,
        })
    }
}

impl Server {
    /// [`prepare`], then [`Prepared::serve`].
    pub async fn start(
        dir: &Path,
        workers: usize,
        settings: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        prepare(dir, workers, settings).await?.serve().await
    }

    /// A client logged in as the admin (the cookie works on every node of
    /// a shared database).
    pub async fn login(&self, connections: usize) -> anyhow::Result<reqwest::Client> {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .pool_max_idle_per_host(connections)
            .build()?;
        let r = client
            .post(format!("{}/login", self.api))
            .form(&[("username", "admin"), ("password", PASSWORD)])
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "login failed: {}", r.status());
        Ok(client)
    }

    /// Stop serving and stop the queue.
    pub async fn stop(self) {
        self.state.shutdown.cancel();
        let _ = self.serve.await;
        self.queue.shutdown().await;
    }
}

/// Run `bench` on a tokio runtime of two threads, as the server has on
/// this machine.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    bench: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench)
}
