//! [`PluginHost`]: loads every component in the plugins folder, checks it
//! against the world and its grants, and runs `validate` and `run` calls in
//! fresh sandboxed instances.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::accepted::{self, Accepted};
use super::bindings::stevedore::plugin::{
    app_store, containers, credentials, images, networks, repository, task, types, volumes,
};
use super::bindings::{interface_name, Description, WitError};
use super::cache::load_component;
use super::engine::{new_engine, start_ticker};
use super::fair::{InstanceGate, PoolUsage};
use super::grants::{Granter, CAPABILITIES};
use super::state::{BudgetExceeded, CancelledTrap, Created, MemoryExceeded, PluginState};
use super::versions::{upgrade_imports, Shape, VersionedPre, WorldVersion};
use super::PluginConfig;
use crate::queue::{
    self, CategoryDoc, CategoryInfo, Executor, Outcome, ResultCode, TaskContext, ValidationError,
};
use crate::runtime::{Backends, DeleteContainer};

/// A plugin that passed every load-time check.
pub struct LoadedPlugin {
    /// The file it came from.
    pub file: PathBuf,
    /// What `describe` answered.
    pub description: Description,
    /// The component's imports, by full name, as in the file.
    pub imports: Vec<String>,
    /// The version of the `category` world it was built against.
    pub version: WorldVersion,
    /// Its `validate` reads nothing but the params, so an acceptance can be
    /// remembered ([`accepted::validate_is_pure`]).
    pub pure_validate: bool,
    /// Its category name, shared by every store of it (no copy per call).
    name: Arc<str>,
    pre: VersionedPre,
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned a typed error.
    #[error("{}", .0.message())]
    Plugin(WitError),
    /// The sandbox stopped the plugin (budget, memory) or it trapped;
    /// the message names the plugin.
    #[error("{message}")]
    Sandbox {
        /// What happened, naming the plugin.
        message: String,
        /// Budget or memory limit (as opposed to a trap).
        limit: bool,
    },
    /// The task was cancelled while the plugin ran.
    #[error("cancelled")]
    Cancelled,
}

/// Loads category plugins and runs them in sandboxes.
pub struct PluginHost {
    engine: Engine,
    runtime: Backends,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    cpu_budget: Duration,
    memory_limit: u64,
    accepted: Accepted,
    validate_instances: AtomicU64,
    gate: InstanceGate,
}

impl PluginHost {
    /// Load every `*.wasm` in `config.dir`. Any plugin that fails a check
    /// (not a component of the world, an ungranted import, a category
    /// claimed twice) is a start-up error naming the file and the reason.
    pub async fn load(
        config: &PluginConfig,
        runtime: impl Into<Backends>,
    ) -> anyhow::Result<PluginHost> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&config.dir)
            .with_context(|| format!("plugins folder {}", config.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        let granter = Granter::new(&config.grants).map_err(anyhow::Error::msg)?;
        let mut host = PluginHost::empty(config, runtime)?;
        let mut errors = Vec::new();
        for file in files {
            if let Err(e) = host.add_file(config, &granter, &file).await {
                errors.push(format!("{e:#}"));
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("\n"));
        }
        release_compiler_memory();
        Ok(host)
    }

    /// A host with no plugins yet (see [`PluginHost::add_file`]).
    pub fn empty(
        config: &PluginConfig,
        runtime: impl Into<Backends>,
    ) -> anyhow::Result<PluginHost> {
        let runtime = runtime.into();
        let engine = new_engine(config.memory_limit)?;
        start_ticker(&engine);
        Ok(PluginHost {
            engine,
            runtime,
            plugins: BTreeMap::new(),
            cpu_budget: config.cpu_budget,
            memory_limit: config.memory_limit,
            accepted: Accepted::default(),
            validate_instances: AtomicU64::new(0),
            gate: InstanceGate::default(),
        })
    }

    /// Load one component file and register its category.
    pub async fn add_file(
        &mut self,
        config: &PluginConfig,
        granter: &Granter,
        file: &Path,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let shown = file.display().to_string();
        let mut bytes = std::fs::read(file).with_context(|| format!("plugin {shown}"))?;
        let shape = Shape::read(&bytes)
            .map_err(|e| anyhow::anyhow!("plugin {shown}: not a loadable component: {e:#}"))?;
        let Some(version) = shape.version() else {
            anyhow::bail!(
                "plugin {shown}: does not export `{}`; build it against the `category` world of wit/",
                WorldVersion::Current.executor_export()
            );
        };
        if version != WorldVersion::Current {
            bytes = upgrade_imports(&bytes, version)
                .map_err(|e| anyhow::anyhow!("plugin {shown}: not a loadable component: {e:#}"))?;
        }
        let component = load_component(&self.engine, &config.cache_dir, &bytes)
            .map_err(|e| anyhow::anyhow!("plugin {shown}: not a loadable component: {e:#}"))?;
        let imports = shape.imports;
        // Describe with everything linked: capability calls are refused
        // outside a task run anyway. Then check imports against what the
        // plugin declares and the operator allows its category, and link
        // only that.
        let everything: BTreeSet<String> = CAPABILITIES.iter().map(|s| s.to_string()).collect();
        let pre = self
            .pre(&component, version, &everything)
            .map_err(|e| anyhow::anyhow!("plugin {shown}: {e:#}"))?;
        let description = self
            .describe(&pre, &shown)
            .await
            .map_err(|e| anyhow::anyhow!("plugin {shown}: describe failed: {e}"))?;
        let name = description.name.clone();
        if let Some(existing) = self.plugins.get(&name) {
            anyhow::bail!(
                "plugins {} and {shown} both claim category `{name}`; remove one",
                existing.file.display()
            );
        }
        let granted = granter
            .grant(&name, &description.capabilities, &imports)
            .map_err(|e| anyhow::anyhow!("plugin {shown} (category `{name}`): {e}"))?;
        let pre = self
            .pre(&component, version, &granted)
            .map_err(|e| anyhow::anyhow!("plugin {shown}: {e:#}"))?;
        let plugin = Arc::new(LoadedPlugin {
            file: file.to_path_buf(),
            description,
            pure_validate: accepted::validate_is_pure(&imports),
            imports,
            version,
            name: Arc::from(name.as_str()),
            pre,
        });
        tracing::info!(category = %name, file = %shown, "plugin loaded");
        self.plugins.insert(name, plugin.clone());
        Ok(plugin)
    }

    fn pre(
        &self,
        component: &Component,
        version: WorldVersion,
        granted: &BTreeSet<String>,
    ) -> anyhow::Result<VersionedPre> {
        let mut linker: Linker<PluginState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        types::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        if granted.contains("task") {
            task::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        if granted.contains("images") {
            images::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        if granted.contains("containers") {
            containers::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        if granted.contains("credentials") {
            credentials::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        if granted.contains("networks") {
            networks::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        if granted.contains("volumes") {
            volumes::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        if granted.contains("repository") {
            repository::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        if granted.contains("app-store") {
            app_store::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
        }
        let pre = linker.instantiate_pre(component)?;
        VersionedPre::new(version, pre)
    }

    fn store(&self, plugin: Arc<str>, task: Option<TaskContext>) -> Store<PluginState> {
        let state = PluginState::new(
            plugin,
            task,
            self.runtime.clone(),
            self.cpu_budget,
            self.memory_limit,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            if s.task.as_ref().is_some_and(|t| t.cancel.is_cancelled()) {
                return Err(wasmtime::Error::new(CancelledTrap));
            }
            if s.budget.used() > s.budget.limit {
                return Err(wasmtime::Error::new(BudgetExceeded {
                    budget: s.budget.limit,
                }));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    async fn describe(&self, pre: &VersionedPre, shown: &str) -> Result<Description, CallError> {
        let mut store = self.store(shown.into(), None);
        let result = pre.describe(&mut store).await;
        result.map_err(|e| sandbox_error(shown, e))
    }

    /// Create a fresh sandbox instance of `category` and drop it, calling
    /// nothing: what every call pays before the plugin's code runs (the
    /// plugins bench measures it).
    pub async fn instantiate_only(&self, category: &str) -> Result<(), CallError> {
        let plugin = self.plugins.get(category).ok_or_else(|| {
            CallError::Plugin(WitError::NotFound(format!("category `{category}`")))
        })?;
        let _permit = self.gate.acquire("").await;
        let mut store = self.store(plugin.name.clone(), None);
        plugin
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| sandbox_error(category, e))
    }

    /// How the sandbox instance pool is used now.
    pub fn pool_usage(&self) -> PoolUsage {
        self.gate.usage()
    }

    /// How many instances ran `validate` so far (remembered acceptances
    /// need none).
    pub fn validate_instances(&self) -> u64 {
        self.validate_instances.load(Ordering::Relaxed)
    }

    /// The loaded plugins, by category.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    /// One plugin by category.
    pub fn plugin(&self, category: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(category)
    }

    /// Call `validate(params)` of `category` in a fresh instance, unless the
    /// plugin's `validate` is pure and already accepted these params.
    pub async fn call_validate(&self, category: &str, params: &str) -> Result<(), CallError> {
        self.validate_as("", category, params).await.map(|_| ())
    }

    /// [`PluginHost::call_validate`] for params `user` submits; answers the
    /// JSON Pointers of the values the plugin marked secret. An acceptance
    /// is remembered only when nothing was marked, so a remembered one
    /// needs no marks.
    pub async fn validate_as(
        &self,
        user: &str,
        category: &str,
        params: &str,
    ) -> Result<Vec<String>, CallError> {
        let plugin = self.plugins.get(category).ok_or_else(|| {
            CallError::Plugin(WitError::NotFound(format!("category `{category}`")))
        })?;
        let key = plugin
            .pure_validate
            .then(|| accepted::key(category, params));
        if key.is_some_and(|k| self.accepted.contains(&k)) {
            return Ok(Vec::new());
        }
        // Declared before the store: given back after the instance is.
        let _permit = self.gate.acquire(user).await;
        self.validate_instances.fetch_add(1, Ordering::Relaxed);
        let mut store = self.store(plugin.name.clone(), None);
        let started = std::time::Instant::now();
        let result = plugin.pre.validate(&mut store, params).await;
        crate::metrics::plugin_call_timed(
            category,
            "validate",
            matches!(result, Ok(Ok(()))),
            started.elapsed().as_secs_f64(),
        );
        match result {
            Ok(Ok(())) => {
                let marks = std::mem::take(&mut store.data_mut().secret_marks);
                if let Some(k) = key.filter(|_| marks.is_empty()) {
                    self.accepted.insert(k);
                }
                Ok(marks)
            }
            Ok(Err(e)) => Err(CallError::Plugin(e)),
            Err(e) => Err(sandbox_error(category, e)),
        }
    }

    /// Call `run()` of the task's category in a fresh instance.
    pub async fn call_run(&self, ctx: TaskContext) -> Result<Option<String>, CallError> {
        let category = ctx.category.clone();
        let plugin = self.plugins.get(&category).ok_or_else(|| {
            CallError::Plugin(WitError::NotFound(format!("category `{category}`")))
        })?;
        let cancel = ctx.cancel.clone();
        let cleanup = crate::runtime::CallContext {
            task_id: ctx.id,
            user: ctx.user.clone(),
            cancel: tokio_util::sync::CancellationToken::new(),
            reporter: ctx.reporter.clone(),
        };
        // Declared before the store: given back after the instance is.
        let _permit = tokio::select! {
            permit = self.gate.acquire(&ctx.user) => permit,
            _ = cancel.cancelled() => return Err(CallError::Cancelled),
        };
        let mut store = self.store(plugin.name.clone(), Some(ctx));
        let started = std::time::Instant::now();
        let result = plugin.pre.run(&mut store).await;
        crate::metrics::plugin_call_timed(
            &category,
            "run",
            matches!(result, Ok(Ok(_))),
            started.elapsed().as_secs_f64(),
        );
        if cancel.is_cancelled() {
            let created = std::mem::take(&mut store.data_mut().created);
            undo(&self.runtime, &cleanup, created).await;
        }
        match result {
            Ok(Ok(detail)) => Ok(detail),
            Ok(Err(WitError::Cancelled)) => Err(CallError::Cancelled),
            Ok(Err(e)) if cancel.is_cancelled() => {
                tracing::debug!("plugin returned {e:?} after cancellation");
                Err(CallError::Cancelled)
            }
            Ok(Err(e)) => Err(CallError::Plugin(e)),
            Err(e) => Err(sandbox_error(&category, e)),
        }
    }
}

/// Remove, newest first, what a cancelled run created: a cancelled guest is
/// stopped at its next host call or epoch tick and cannot clean up itself.
/// Failures are logged; the task ends as cancelled either way.
async fn undo(runtime: &Backends, cx: &crate::runtime::CallContext, created: Vec<Created>) {
    for item in created.into_iter().rev() {
        let result = match &item {
            Created::Container(c) => {
                let req = DeleteContainer {
                    container: c.clone(),
                    remove_volumes: true,
                };
                runtime.containers.container_delete(cx, req).await
            }
            Created::Network(name) => runtime.networks.network_remove(cx, name.clone()).await,
            Created::Volume(name) => runtime.volumes.volume_remove(cx, name.clone()).await,
            Created::AppFolder(name) => crate::apps::remove_folder(runtime, cx, name.clone()).await,
        };
        match result {
            Ok(()) => tracing::info!(task = cx.task_id, ?item, "removed after cancellation"),
            Err(e) => {
                tracing::warn!(task = cx.task_id, ?item, error = %e.message(), "could not remove after cancellation")
            }
        }
    }
}

/// Give back to the system what compiling left in the allocator's free
/// lists (tens of MiB at a cold start), so a long-running server stays small.
fn release_compiler_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Turn a trap into an error that names the plugin and says what happened.
fn sandbox_error(plugin: &str, e: wasmtime::Error) -> CallError {
    if e.downcast_ref::<CancelledTrap>().is_some() {
        return CallError::Cancelled;
    }
    if let Some(b) = e.downcast_ref::<BudgetExceeded>() {
        return CallError::Sandbox {
            message: format!("plugin `{plugin}` {b}"),
            limit: true,
        };
    }
    if let Some(m) = e.downcast_ref::<MemoryExceeded>() {
        return CallError::Sandbox {
            message: format!("plugin `{plugin}` {m}"),
            limit: true,
        };
    }
    let reason = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    };
    CallError::Sandbox {
        message: format!("plugin `{plugin}` trapped: {reason}"),
        limit: false,
    }
}

#[async_trait]
impl Executor for PluginHost {
    fn categories(&self) -> Vec<CategoryInfo> {
        self.plugins
            .values()
            .map(|p| info(&p.description))
            .collect()
    }

    fn category(&self, name: &str) -> Option<CategoryInfo> {
        self.plugins.get(name).map(|p| info(&p.description))
    }

    fn category_docs(&self) -> Vec<CategoryDoc> {
        self.plugins
            .values()
            .map(|p| CategoryDoc {
                name: p.description.name.clone(),
                summary: p.description.summary.clone(),
                deletable: p.description.deletable,
                params_schema: p.description.params_schema.clone(),
            })
            .collect()
    }

    async fn validate(&self, category: &str, params: &str) -> Result<(), ValidationError> {
        self.validate_for("", category, params).await.map(|_| ())
    }

    async fn validate_for(
        &self,
        user: &str,
        category: &str,
        params: &str,
    ) -> Result<Vec<String>, ValidationError> {
        match self.validate_as(user, category, params).await {
            Ok(marks) => Ok(marks),
            Err(CallError::Plugin(WitError::InvalidParams(m))) => Err(ValidationError::Invalid(m)),
            Err(CallError::Plugin(e)) => Err(ValidationError::Invalid(e.message())),
            Err(e) => Err(ValidationError::Plugin(e.to_string())),
        }
    }

    /// Every runtime call awaits the claim first (`runtime_call`); the
    /// rest of a run (WASI without files or sockets, logs, progress, the
    /// repository's reads) changes nothing outside it.
    fn holds_effects_until_durable(&self) -> bool {
        true
    }

    async fn run(&self, ctx: TaskContext) -> Outcome {
        match self.call_run(ctx).await {
            Ok(detail) => Outcome::Completed(detail),
            Err(CallError::Cancelled) => Outcome::Failed {
                code: ResultCode::Cancelled,
                message: "cancelled".into(),
            },
            Err(CallError::Plugin(WitError::InvalidParams(m))) => Outcome::Failed {
                code: ResultCode::InvalidParams,
                message: m,
            },
            Err(CallError::Plugin(e)) => Outcome::Failed {
                code: ResultCode::PluginError,
                message: e.message(),
            },
            Err(CallError::Sandbox {
                message,
                limit: true,
            }) => Outcome::Failed {
                code: ResultCode::LimitExceeded,
                message,
            },
            Err(CallError::Sandbox {
                message,
                limit: false,
            }) => Outcome::Failed {
                code: ResultCode::PluginError,
                message,
            },
        }
    }
}

fn info(d: &Description) -> CategoryInfo {
    CategoryInfo {
        name: d.name.clone(),
        deletable: d.deletable,
        secret_fields: d.secret_fields.clone(),
    }
}

/// The short capability names among `imports` (`task`, `images`, ...).
pub fn capability_imports(imports: &[String]) -> Vec<String> {
    imports
        .iter()
        .filter_map(|i| {
            let unversioned = i.split('@').next().unwrap_or(i);
            CAPABILITIES
                .iter()
                .find(|c| interface_name(c).starts_with(&format!("{unversioned}@")))
                .map(|c| c.to_string())
        })
        .collect()
}

#[allow(dead_code)]
fn _assert_executor(h: PluginHost) -> Arc<dyn queue::Executor> {
    Arc::new(h)
}
