//! `stevedore serve`: load the configuration, open the stores, load the
//! plugins, start the queue and serve the API until SIGINT/SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Services};
use crate::auth::Auth;
use crate::config::Config;
use crate::pg::Database;
use crate::policy::Policies;
use crate::queue::{Executor, PgStore, Queue, SqliteStore, TaskStore};
use crate::runtime::guard::Guarded;
use crate::runtime::Backends;

/// Serve until interrupted (SIGINT or SIGTERM).
pub async fn run() -> anyhow::Result<()> {
    init_tracing();
    let config = Config::load()?;
    let signal = async {
        shutdown_signal().await;
        // A second signal while shutting down (tasks given their grace) exits at once.
        tokio::spawn(async {
            shutdown_signal().await;
            eprintln!("stevedore: second signal, exiting now");
            std::process::exit(130);
        });
    };
    serve(config, signal).await
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr.and(crate::log_tail::TailWriter))
        .try_init();
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The backends that plugins' host calls and the container routes reach:
/// Docker and LXC routed by [`crate::runtime::router::Runtimes`], Docker's
/// networks, volumes and credentials, the application store's templates and folders.
///
/// Docker is the engine at `DOCKER_HOST` (connected lazily, so the server
/// starts without one and a task needing it ends as `error` saying the
/// engine is unreachable). LXC runs no tool until a call needs one, so a
/// host without `lxc` starts too. Build it once and share the `Arc`.
pub fn make_runtime(config: &Config) -> anyhow::Result<Backends> {
    make_runtime_with(
        config,
        None,
        &configured_catalog(config),
        &Default::default(),
    )
}

/// The repository `[catalog] url` names (none when unset or unusable).
pub fn configured_catalog(config: &Config) -> crate::runtime::catalog::CatalogSwitch {
    use crate::runtime::catalog::{Catalog, CatalogSwitch};
    match config.catalog.url.as_deref().map(Catalog::new).transpose() {
        Ok(c) => CatalogSwitch::new(c),
        Err(e) => {
            tracing::warn!("catalog: {e}; application templates are unavailable");
            CatalogSwitch::default()
        }
    }
}

/// [`make_runtime`] with remembered registry credentials kept in
/// `credentials` (the shared database's) instead of the data folder, and
/// the repository of templates and LXC images read from `catalog` at each
/// lookup, and the registries added through the API (`added`) usable by name.
pub fn make_runtime_with(
    config: &Config,
    credentials: Option<crate::runtime::docker::credentials::CredentialStore>,
    catalog: &crate::runtime::catalog::CatalogSwitch,
    added: &crate::runtime::docker::AddedRegistries,
) -> anyhow::Result<Backends> {
    Ok(make_runtime_parts(config, credentials, catalog, added)?.0)
}

/// [`make_runtime_with`], and the Docker runtime when there is one (for
/// the start-up recovery).
fn make_runtime_parts(
    config: &Config,
    credentials: Option<crate::runtime::docker::credentials::CredentialStore>,
    catalog: &crate::runtime::catalog::CatalogSwitch,
    added: &crate::runtime::docker::AddedRegistries,
) -> anyhow::Result<(Backends, Option<Arc<crate::runtime::docker::DockerRuntime>>)> {
    use crate::runtime::router::Runtimes;
    let (lxc, apps) = (make_lxc(config, catalog), make_apps(config, catalog));
    Ok(match make_docker(config, credentials, added) {
        Ok(docker) => (Runtimes::backends(docker.clone(), lxc, apps), Some(docker)),
        Err(none) => (Runtimes::backends(none, lxc, apps), None),
    })
}

/// Longest wait for the start-up recovery of interrupted recreates.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Finish or roll back the recreates a crash interrupted
/// ([`crate::runtime::docker::recovery`]), before the queue runs anything.
/// An engine that does not answer only delays it to the next start.
async fn recover_recreates(docker: &crate::runtime::docker::DockerRuntime, tasks: &dyn TaskStore) {
    match tokio::time::timeout(RECOVERY_DEADLINE, docker.recover_recreates(tasks)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(containers = n, "recovered interrupted recreates"),
        Ok(Err(e)) => tracing::warn!(
            "recovering interrupted recreates: {}; tried again at the next start",
            e.message()
        ),
        Err(_) => tracing::warn!(
            "recovering interrupted recreates: the engine did not answer within {RECOVERY_DEADLINE:?}; tried again at the next start"
        ),
    }
}

fn make_apps(
    config: &Config,
    catalog: &crate::runtime::catalog::CatalogSwitch,
) -> Option<Arc<crate::runtime::apps::AppStore>> {
    use crate::runtime::apps::AppStore;
    match AppStore::new(
        &config.data_dir,
        None,
        &config.share_root,
        config.catalog.trusted,
    ) {
        Ok(store) => Some(Arc::new(store.with_catalog(catalog.clone()))),
        Err(e) => {
            tracing::warn!("application store in {}: {e}", config.data_dir.display());
            None
        }
    }
}

/// The Docker backend, or why there is none.
fn make_docker(
    config: &Config,
    credentials: Option<crate::runtime::docker::credentials::CredentialStore>,
    added: &crate::runtime::docker::AddedRegistries,
) -> Result<Arc<crate::runtime::docker::DockerRuntime>, Arc<crate::runtime::Unavailable>> {
    use crate::runtime::docker::{DockerRuntime, DockerSettings, Registry};
    let registries = config
        .registries
        .iter()
        .map(|(name, r)| {
            let registry = Registry {
                url: r.url.clone(),
                username: r.username.clone(),
                password: r.password.as_ref().map(|p| p.expose().to_string()),
            };
            (name.clone(), registry)
        })
        .collect();
    let settings = DockerSettings {
        host: config.docker_host.clone(),
        registries,
        dockerhub: config.repositories.dockerhub.clone(),
        qnap: config.repositories.qnap.clone(),
        share_root: config.share_root.clone(),
        data_dir: config.data_dir.clone(),
        stall: config.docker_stall_secs.map(std::time::Duration::from_secs),
        max_expanded_bytes: config.archives.max_expanded_bytes,
    };
    match DockerRuntime::new(settings) {
        Ok(docker) => {
            let docker = docker
                .with_added_registries(added.clone())
                .with_node(&config.database.node_name());
            Ok(Arc::new(match credentials {
                Some(c) => docker.with_credentials(c),
                None => docker,
            }))
        }
        Err(e) => {
            // Serve anyway: categories that need no engine still work, and
            // the others end as `error` saying why.
            tracing::warn!(
                "no container engine: {e:#}; image and container calls will fail \
                 (set DOCKER_HOST to an engine's socket)"
            );
            Err(Arc::new(crate::runtime::Unavailable {
                reason: format!("{e:#}"),
            }))
        }
    }
}

fn make_lxc(
    config: &Config,
    catalog: &crate::runtime::catalog::CatalogSwitch,
) -> Arc<dyn crate::runtime::Engine> {
    use crate::runtime::lxc::{network::Subnet, LxcRuntime, LxcSettings};
    let made = Subnet::parse(&config.lxc.subnet)
        .map_err(|e| anyhow::anyhow!("lxc.subnet: {e}"))
        .and_then(|subnet| {
            LxcRuntime::new(LxcSettings {
                path: config.lxc.path.clone(),
                bridge: config.lxc.bridge.clone(),
                subnet,
                catalog: config.catalog.url.clone(),
                data_dir: config.data_dir.clone(),
                share_root: config.share_root.clone(),
                max_expanded_bytes: config.archives.max_expanded_bytes,
            })
        });
    match made {
        Ok(lxc) => Arc::new(lxc.with_catalog(catalog.clone())),
        Err(e) => {
            tracing::warn!("no LXC runtime: {e:#}; LXC calls will fail");
            Arc::new(crate::runtime::Unavailable {
                reason: format!("LXC: {e:#}"),
            })
        }
    }
}

/// Load the plugins of `config.plugins.dir` as the queue's executor.
async fn load_executor(config: &Config, runtime: Backends) -> anyhow::Result<Arc<dyn Executor>> {
    std::fs::create_dir_all(&config.plugins.dir)
        .with_context(|| format!("creating plugins folder {}", config.plugins.dir.display()))?;
    let host = crate::plugins::PluginHost::load(&config.plugin_config(), runtime)
        .await
        .with_context(|| format!("loading plugins from {}", config.plugins.dir.display()))?;
    Ok(Arc::new(host))
}

/// Everything `serve` starts, before it listens (also used by benchmarks).
pub struct Started {
    /// The router's state.
    pub state: AppState,
    /// The queue (shut it down at the end).
    pub queue: Arc<Queue>,
}

/// Open the stores, load the plugins and start the queue.
pub async fn start(config: &Config) -> anyhow::Result<Started> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
    std::fs::create_dir_all(&config.share_root)
        .with_context(|| format!("creating share root {}", config.share_root.display()))?;
    let Stores {
        auth,
        tasks: store,
        database,
        audit,
    } = open_stores(config).await?;
    let credentials = match &database {
        Some(db) => {
            let key = config.data_dir.join(crate::store::secret::KEY_FILE);
            let secrets = db.shared_secrets(&key).await?;
            Some(crate::runtime::docker::credentials::CredentialStore::new(
                db.credentials(secrets),
            ))
        }
        None => None,
    };
    let policies = Arc::new(
        config
            .policies(auth.users())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let catalog = configured_catalog(config);
    let registries = registry_services(config, database.as_ref(), catalog.clone()).await?;
    let (backends, docker) = make_runtime_parts(config, credentials, &catalog, &registries.added)?;
    if let Some(docker) = &docker {
        recover_recreates(docker, store.as_ref()).await;
    }
    let runtime = guarded(config, backends, policies.clone());
    let executor = load_executor(config, runtime.clone()).await?;
    let names: Vec<String> = executor.categories().into_iter().map(|c| c.name).collect();
    tracing::info!(categories = %names.join(","), dir = %config.plugins.dir.display(), "plugins loaded");
    let api = ApiStores { audit, registries };
    let started = start_with_stores(config, auth, store, executor, runtime, policies, api).await?;
    if database.is_some() {
        spawn_repo_refresh(&started.state);
    }
    Ok(started)
}

/// The API's registries and preferences: in the shared database when there
/// is one, else in the data folder; the stored repository applied to `catalog`.
async fn registry_services(
    config: &Config,
    database: Option<&Arc<Database>>,
    catalog: crate::runtime::catalog::CatalogSwitch,
) -> anyhow::Result<api::registries::RegistryServices> {
    let store: Arc<dyn crate::store::Registries> = match database {
        Some(db) => {
            let key = config.data_dir.join(crate::store::secret::KEY_FILE);
            db.registries(db.shared_secrets(&key).await?)
        }
        None => Arc::new(crate::store::sqlite::SqliteRegistries::open_in(
            &config.data_dir,
        )?),
    };
    let configured = config
        .registries
        .iter()
        .map(|(name, r)| api::registries::ConfiguredRegistry {
            name: name.clone(),
            url: r.url.clone(),
            username: r.username.clone(),
        })
        .collect();
    let services = api::registries::RegistryServices::new(
        store,
        configured,
        config.repositories.dockerhub.clone(),
        catalog,
        config.catalog.url.clone(),
        Default::default(),
    );
    services.apply_repo().await?;
    services.sync_runtime().await?;
    Ok(services)
}

/// Read the stored repository and registries again every
/// [`api::preferences::REPO_REFRESH`]: another node of the shared database
/// may have changed them.
fn spawn_repo_refresh(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(api::preferences::REPO_REFRESH);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = state.shutdown.cancelled() => break,
            }
            if let Err(e) = state.registries.apply_repo().await {
                tracing::warn!("reading the stored application repository: {e:#}");
            }
            if let Err(e) = state.registries.sync_runtime().await {
                tracing::warn!("reading the stored registries: {e:#}");
            }
        }
    });
}

/// The stores of users, sessions and tasks.
pub struct Stores {
    /// Users and sessions.
    pub auth: Arc<Auth>,
    /// Tasks.
    pub tasks: Arc<dyn TaskStore>,
    /// The shared database, when there is one.
    pub database: Option<Arc<Database>>,
    /// The audit log: the data folder's, or the shared database's.
    pub audit: Arc<dyn crate::store::AuditLog>,
}

/// Open the stores: in the data folder (SQLite), or, with `[database] url`,
/// in the PostgreSQL database shared with other nodes, as node
/// `[database] node` (default the host name).
pub async fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
    match config.database.url() {
        None => Ok(Stores {
            auth: Arc::new(Auth::open(&config.auth_config(), None).await?),
            tasks: SqliteStore::open_in(&config.data_dir)?,
            database: None,
            audit: crate::store::audit_in_folder(&config.data_dir)?,
        }),
        Some(url) => {
            let node = config.database.node_name();
            let db = Database::connect(url, &node)
                .await
                .context("opening the shared database")?;
            let key = config.data_dir.join(crate::store::secret::KEY_FILE);
            let secrets = db.shared_secrets(&key).await?;
            let tasks = PgStore::open(db.clone(), secrets).await?;
            tracing::info!(node = %node, "tasks, sessions and credentials in the shared database");
            Ok(Stores {
                auth: Arc::new(Auth::open(&config.auth_config(), Some(db.clone())).await?),
                tasks,
                audit: db.audit(),
                database: Some(db),
            })
        }
    }
}

/// `runtime` behind the user policies: what plugins and container routes reach.
pub fn guarded(config: &Config, runtime: Backends, policies: Arc<Policies>) -> Backends {
    let registry_names = config
        .registries
        .iter()
        .map(|(name, r)| {
            let host = r.url.split("://").nth(1).unwrap_or(&r.url);
            (host.trim_end_matches('/').to_string(), name.clone())
        })
        .collect();
    Guarded::new(runtime, policies, config.share_root.clone(), registry_names)
        .with_image_owners(crate::runtime::image_owners::ImageOwners::open(
            &config.data_dir,
        ))
        .reserving_ports(
            std::iter::once(config.listen.port()).chain(config.proxy.listen.map(|a| a.port())),
        )
        .backends()
}

/// Start the queue over explicit parts, the audit log and the API's
/// registries and preferences in the data folder.
pub async fn start_with(
    config: &Config,
    auth: Arc<Auth>,
    store: Arc<dyn TaskStore>,
    executor: Arc<dyn Executor>,
    runtime: Backends,
    policies: Arc<Policies>,
) -> anyhow::Result<Started> {
    let api = ApiStores {
        audit: crate::store::audit_in_folder(&config.data_dir)?,
        registries: registry_services(config, None, configured_catalog(config)).await?,
    };
    start_with_stores(config, auth, store, executor, runtime, policies, api).await
}

/// What the API keeps beside the tasks.
pub struct ApiStores {
    /// The audit log of state-changing calls.
    pub audit: Arc<dyn crate::store::AuditLog>,
    /// The API's registries and preferences, and the repository in use.
    pub registries: api::registries::RegistryServices,
}

/// [`start_with`], with the API's stores given.
pub async fn start_with_stores(
    config: &Config,
    auth: Arc<Auth>,
    store: Arc<dyn TaskStore>,
    executor: Arc<dyn Executor>,
    runtime: Backends,
    policies: Arc<Policies>,
    api: ApiStores,
) -> anyhow::Result<Started> {
    let mut queue_config = config.queue_config();
    let retention = queue_config.retention;
    queue_config.per_user = policies.running_caps().into_iter().collect();
    let webhooks = Arc::new(
        crate::webhooks::Webhooks::new(&config.webhooks, &config.webhooks_policy)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?,
    );
    // Before the queue starts: its first write ends the runs a crash
    // interrupted, with their deliveries.
    if let Some(w) = store.webhooks() {
        w.configure(webhooks.configured_hooks());
    }
    let queue = Queue::start(store, executor, queue_config).await?;
    spawn_observers(&auth);
    let shutdown = CancellationToken::new();
    // Task events become deliveries; the sender sends them, until shutdown.
    tokio::spawn(crate::webhooks::record::run(
        queue.clone(),
        webhooks.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::webhooks::send::run(
        queue.clone(),
        webhooks.clone(),
        shutdown.clone(),
    ));
    let state = AppState::new(Services {
        queue: queue.clone(),
        runtime,
        policies,
        auth,
        max_body_bytes: config.http.max_body_bytes,
        body_timeout: Duration::from_secs(config.http.body_read_timeout_secs),
        streams: api::streams::Streams::new(config.http.streams_per_user),
        submitting: api::waiting::Submitting::default(),
        secure_cookies: config.http.secure_cookies,
        events: api::events::Events::start(
            &queue,
            api::audit::Recorder::start(api.audit, retention),
        ),
        shutdown,
        share: crate::runtime::storage::ShareRoot::new(&config.share_root)
            .with_context(|| format!("opening share root {}", config.share_root.display()))?,
        config_text: api::report::config_text(&format!("{config:#?}")),
        data_dir: config.data_dir.clone(),
        registries: api.registries,
        proxy_port: config.proxy.listen.map(|a| a.port()).filter(|p| *p != 0),
        schedule_wake: Default::default(),
        webhooks,
    });
    Ok(Started { state, queue })
}

/// Purge expired sessions hourly.
fn spawn_observers(auth: &Arc<Auth>) {
    let auth = Arc::downgrade(auth);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match auth.upgrade() {
                Some(a) => a.purge_expired().await,
                None => break,
            }
        }
    });
}

/// Serve `config` until `shutdown` resolves, then stop the queue.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = start(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(data_dir = %config.data_dir.display(), "stevedore listening on http://{addr}");
    let stop = started.state.shutdown.clone();
    let router = api::app(started.state.clone());
    let graceful = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        }
    };
    tokio::spawn(graceful);
    // Fires the schedules until `stop`.
    let scheduler = tokio::spawn(crate::schedule::run(started.state.clone()));
    let header_timeout = Duration::from_secs(config.http.header_read_timeout_secs);
    let proxy = start_proxy(&config, &started.state, stop.clone()).await?;
    serve_http(listener, router, header_timeout, stop).await;
    if let Some(proxy) = proxy {
        let _ = proxy.await;
    }
    let _ = scheduler.await;
    started.queue.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Start the applications' reverse proxy ([`crate::proxy`]) on
/// `[proxy] listen`, if set, until `stop` is cancelled.
async fn start_proxy(
    config: &Config,
    state: &AppState,
    stop: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = config.proxy.listen else {
        return Ok(None);
    };
    // Its own view of the application store: it only reads records.
    let apps = crate::runtime::apps::AppStore::new(
        &config.data_dir,
        None,
        &config.share_root,
        config.catalog.trusted,
    )
    .with_context(|| format!("application store in {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("proxy: listening on {addr}"))?;
    tracing::info!("proxy listening on http://{}", listener.local_addr()?);
    let proxy = Arc::new(crate::proxy::Proxy::new(
        state.runtime.clone(),
        Arc::new(apps),
        config.docker_host.as_deref(),
        config.http.max_body_bytes,
        stop.clone(),
    ));
    let header_timeout = Duration::from_secs(config.http.header_read_timeout_secs);
    Ok(Some(tokio::spawn(crate::proxy::serve(
        listener,
        proxy,
        header_timeout,
        stop,
    ))))
}

/// Serve `router` on every connection `listener` accepts until `stop` is
/// cancelled, then let each connection end the request it is answering
/// and wait for them all.
///
/// A client must send a request's headers within `header_timeout` or its
/// connection is closed (the body has its own limit: `api::envelope`), so
/// connections that never finish a request do not pile up. Each request
/// carries the client's address (`ConnectInfo`), for the login limiter.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    use axum::extract::connect_info::ConnectInfo;
    use hyper_util::service::TowerToHyperService;

    api::listen::serve(listener, header_timeout, stop, "", |remote| {
        TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                request
            },
        ))
    })
    .await
}

/// Keep the resident set small on a long-running server: large transient
/// buffers (argon2's 19 MiB per password check, the compiler's arenas at a
/// cold start) are mapped and returned to the system when freed, instead of
/// staying in glibc's heap, and threads share two arenas instead of one each.
///
/// glibc's allocator, tuned, rather than mimalloc as the global allocator:
/// measured, mimalloc spends 9% less CPU per no-op task in `wrk_throughput`
/// but holds 105-130 MiB after a cold start and a few logins instead of 70
/// (it keeps freed compiler arenas and argon2 buffers for reuse), and
/// returning them at once costs a quarter more CPU per task. SQLite alone
/// runs on mimalloc (`store::sqlite::alloc`).
///
/// Call it first thing in `main`, before any other thread exists (the
/// binary and the benches that stand for it do).
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; the caller runs it
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
