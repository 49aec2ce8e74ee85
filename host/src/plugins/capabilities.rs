//! The WIT capability interfaces, implemented for [`PluginState`] by
//! delegating to the [`Backends`], one small trait per interface. Host calls are timed (and not
//! charged to the plugin's CPU budget), stop when the task is cancelled, and
//! are refused outside a task run (in `describe` and `validate`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::stevedore::plugin::{
    app_store, containers, credentials, images, networks, repository, task, types, volumes,
};
use super::bindings::{
    ContainerExtra, ContainerHealth, ContainerSpec, ContainerSummary, Credential, ImageInfo, Level,
    NetworkChoice, NetworkInfo, PullRequest, Replacement, RuntimeKind, Source, Template,
    VolumeInfo, WitError,
};
use super::state::{CancelledTrap, Created, PluginState};
use crate::queue::store::Durable;
use crate::queue::{Finding, LogLevel};
use crate::runtime::traits::{
    app_folders, containers as container_calls, credentials as credential_calls,
    images as image_calls, networks as network_calls, volumes as volume_calls,
};
use crate::runtime::{
    AppFile, ArchiveFile, Backends, CallContext, ContainerLogs, ContainerRef, CreateOnNetwork,
    CreateWith, Error, ExportContainer, ExportSubtree, ExportVolume, ImageRef, ImportImage,
    ImportSubtree, ImportVolume, InstallTemplate, Label, LabelQuery, Labelled, PushImage, Recreate,
    RemoveContainer, RemoveImage, Restore, RtResult, SaveImages, StopContainer, TagImage,
};

type HostResult<T> = wasmtime::Result<Result<T, WitError>>;

/// `host_call!(self, NAME, backend.call(request))`: the guest's call `NAME`,
/// run as `rt.backend.call(&cx, request)` through [`PluginState::runtime_call`].
macro_rules! host_call {
    ($state:expr, $what:expr, $backend:ident.$call:ident($req:expr)) => {
        $state
            .runtime_call(
                $what,
                |rt, cx| async move { rt.$backend.$call(&cx, $req).await },
            )
            .await
    };
}

/// A runtime answer as the guest receives it (an unsupported call as `other`).
fn wit<T>(result: RtResult<T>) -> HostResult<T> {
    Ok(result.map_err(WitError::from))
}

impl PluginState {
    fn call_context(&self, what: &str) -> Result<(Backends, CallContext, Durable), WitError> {
        let task = self.task.as_ref().ok_or_else(|| {
            WitError::Denied(format!("{what} may only be called while a task runs"))
        })?;
        let cx = CallContext {
            task_id: task.id,
            user: task.user.clone(),
            cancel: task.cancel.clone(),
            // What the engine reports for the call goes to the task's log too.
            reporter: Arc::new(crate::queue::Relayed(task.reporter.clone())),
        };
        Ok((self.runtime.clone(), cx, task.durable.clone()))
    }

    /// Run one runtime call for the guest, once the task's claim is durable
    /// (no effect of a run whose claim could still be lost): time it outside
    /// the CPU budget, stop it when the task is cancelled (dropping the future
    /// closes the engine connection, which cancels the engine's work), and
    /// trap the guest after a cancellation so it cannot carry on.
    async fn runtime_call<T, F, Fut>(&mut self, what: &'static str, call: F) -> HostResult<T>
    where
        F: FnOnce(Backends, CallContext) -> Fut,
        Fut: Future<Output = RtResult<T>> + Send,
    {
        let (runtime, cx, durable) = match self.call_context(what) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let started = Instant::now();
        if let Err(e) = durable.wait().await {
            // The run is forgotten and its task runs again: stop here.
            return Err(wasmtime::Error::msg(format!(
                "the task's claim was not stored ({e}); the run stops before {what}"
            )));
        }
        let cancel = cx.cancel.clone();
        let result = tokio::select! {
            r = call(runtime, cx) => r,
            _ = cancel.cancelled() => Err(Error::Cancelled),
        };
        self.budget.credit(started);
        crate::metrics::plugin_call(&self.plugin, what, result.is_ok());
        if cancel.is_cancelled() {
            return Err(wasmtime::Error::new(CancelledTrap));
        }
        wit(result)
    }
}

impl types::Host for PluginState {}

impl task::Host for PluginState {
    async fn id(&mut self) -> wasmtime::Result<u64> {
        Ok(self.task.as_ref().map_or(0, |t| t.id as u64))
    }

    async fn user(&mut self) -> wasmtime::Result<String> {
        Ok(self
            .task
            .as_ref()
            .map(|t| t.user.clone())
            .unwrap_or_default())
    }

    async fn params(&mut self) -> wasmtime::Result<String> {
        Ok(self
            .task
            .as_ref()
            .map(|t| t.params.clone())
            .unwrap_or_default())
    }

    async fn progress(&mut self, percent: i8, detail: String) -> wasmtime::Result<()> {
        if let Some(t) = &self.task {
            let percent = if percent < 0 {
                -1
            } else {
                i32::from(percent).min(100)
            };
            t.reporter.progress(percent, &detail);
        }
        Ok(())
    }

    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        match &self.task {
            Some(t) => t.reporter.log(level, &message),
            None => tracing::info!(plugin = %self.plugin, "{message}"),
        }
        Ok(())
    }

    async fn sleep(&mut self, millis: u32) -> wasmtime::Result<bool> {
        let Some(cancel) = self.task.as_ref().map(|t| t.cancel.clone()) else {
            return Ok(false);
        };
        let started = Instant::now();
        let cancelled = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(u64::from(millis))) => false,
            _ = cancel.cancelled() => true,
        };
        self.budget.credit(started);
        Ok(cancelled)
    }

    async fn cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(self.task.as_ref().is_some_and(|t| t.cancel.is_cancelled()))
    }

    async fn mark_secret(&mut self, pointer: String) -> wasmtime::Result<()> {
        self.record_secret_mark(pointer);
        Ok(())
    }
}

impl images::Host for PluginState {
    async fn resolve(&mut self, source: Source) -> HostResult<String> {
        wit(self.runtime.images.resolve_source(&source))
    }

    async fn pull(&mut self, request: PullRequest) -> HostResult<ImageInfo> {
        host_call!(self, image_calls::PULL, images.image_pull(request))
    }

    async fn inspect(&mut self, runtime: RuntimeKind, reference: String) -> HostResult<ImageInfo> {
        let image = ImageRef::new(runtime, reference);
        host_call!(self, image_calls::INSPECT, images.image_inspect(image))
    }

    async fn list(&mut self, runtime: RuntimeKind) -> HostResult<Vec<ImageInfo>> {
        host_call!(self, image_calls::LIST, images.image_list(runtime))
    }

    async fn remove(
        &mut self,
        runtime: RuntimeKind,
        reference: String,
        force: bool,
    ) -> HostResult<Vec<String>> {
        let image = ImageRef::new(runtime, reference);
        let req = RemoveImage { image, force };
        host_call!(self, image_calls::REMOVE, images.image_remove(req))
    }

    async fn tag(&mut self, source: String, repository: String, tag: String) -> HostResult<()> {
        let req = TagImage {
            source,
            repository,
            tag,
        };
        host_call!(self, image_calls::TAG, images.image_tag(req))
    }

    async fn push(
        &mut self,
        repository: String,
        tag: String,
        registry: String,
        credential: Option<Credential>,
    ) -> HostResult<()> {
        let req = PushImage {
            repository,
            tag,
            registry,
            credential,
        };
        host_call!(self, image_calls::PUSH, images.image_push(req))
    }

    async fn save_to_path(
        &mut self,
        references: Vec<String>,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> HostResult<u64> {
        let file = ArchiveFile {
            path,
            gzip,
            overwrite,
        };
        let req = SaveImages { references, file };
        host_call!(self, image_calls::SAVE_TO_PATH, images.image_save(req))
    }

    async fn repo_digests(
        &mut self,
        runtime: RuntimeKind,
        reference: String,
    ) -> HostResult<Vec<String>> {
        let image = ImageRef::new(runtime, reference);
        host_call!(
            self,
            image_calls::REPO_DIGESTS,
            images.image_repo_digests(image)
        )
    }

    /// Checked against the local image's registry digests (as the caller
    /// may read them) before the task's owner hears of it.
    async fn announce_update(
        &mut self,
        image: String,
        containers: Vec<String>,
        remote_digest: String,
    ) -> HostResult<()> {
        let what = image_calls::ANNOUNCE_UPDATE;
        let local = ImageRef::new(RuntimeKind::Docker, image.clone());
        let digests = host_call!(self, what, images.image_repo_digests(local))?;
        let digests = match digests {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let named = digests
            .iter()
            .any(|d| d.rsplit_once('@').map(|(_, d)| d) == Some(remote_digest.as_str()));
        if named {
            return Ok(Err(WitError::Conflict(format!(
                "{image} is already the version the registry serves ({remote_digest})"
            ))));
        }
        if let Some(task) = &self.task {
            task.reporter.announce(&Finding::UpdateAvailable {
                image,
                containers,
                remote_digest,
            });
        }
        Ok(Ok(()))
    }

    async fn remote_digest(
        &mut self,
        runtime: RuntimeKind,
        reference: String,
    ) -> HostResult<String> {
        let image = ImageRef::new(runtime, reference);
        host_call!(
            self,
            image_calls::REMOTE_DIGEST,
            images.image_remote_digest(image)
        )
    }
}

impl containers::Host for PluginState {
    async fn create(&mut self, spec: ContainerSpec) -> HostResult<String> {
        let kind = spec.runtime;
        let id = host_call!(
            self,
            container_calls::CREATE,
            containers.container_create(spec)
        )?;
        Ok(self.remember_container(kind, id))
    }

    async fn create_with(
        &mut self,
        spec: ContainerSpec,
        extra: ContainerExtra,
    ) -> HostResult<String> {
        let kind = spec.runtime;
        let req = CreateWith { spec, extra };
        let id = host_call!(
            self,
            container_calls::CREATE_WITH,
            containers.container_create_with(req)
        )?;
        Ok(self.remember_container(kind, id))
    }

    async fn create_on_network(
        &mut self,
        spec: ContainerSpec,
        network: NetworkChoice,
    ) -> HostResult<String> {
        let kind = spec.runtime;
        let req = CreateOnNetwork { spec, network };
        let id = host_call!(
            self,
            container_calls::CREATE_ON_NETWORK,
            containers.container_create_on_network(req)
        )?;
        Ok(self.remember_container(kind, id))
    }

    async fn list_labelled(
        &mut self,
        runtime: RuntimeKind,
        key: String,
        value: String,
    ) -> HostResult<Vec<ContainerSummary>> {
        let req = LabelQuery {
            kind: runtime,
            key,
            value,
        };
        host_call!(
            self,
            container_calls::LIST_LABELLED,
            containers.container_list_labelled(req)
        )
    }

    /// Not remembered for removal on cancellation: removing the new
    /// container alone would leave the previous one aside; the plugin
    /// keeps or restores it itself.
    async fn recreate(
        &mut self,
        runtime: RuntimeKind,
        container: String,
        image: String,
    ) -> HostResult<Replacement> {
        let req = Recreate {
            container: ContainerRef::new(runtime, container),
            image,
            pinned: None,
        };
        host_call!(
            self,
            container_calls::RECREATE,
            containers.container_recreate(req)
        )
    }

    async fn restore(&mut self, runtime: RuntimeKind, replaced: Replacement) -> HostResult<()> {
        let req = Restore {
            kind: runtime,
            replaced,
        };
        host_call!(
            self,
            container_calls::RESTORE,
            containers.container_restore(req)
        )
    }

    async fn health(
        &mut self,
        runtime: RuntimeKind,
        container: String,
    ) -> HostResult<ContainerHealth> {
        let c = ContainerRef::new(runtime, container);
        host_call!(
            self,
            container_calls::HEALTH,
            containers.container_health(&c)
        )
    }

    async fn start(&mut self, runtime: RuntimeKind, container: String) -> HostResult<()> {
        let c = ContainerRef::new(runtime, container);
        host_call!(self, container_calls::START, containers.container_start(&c))
    }

    async fn stop(
        &mut self,
        runtime: RuntimeKind,
        container: String,
        timeout_secs: u32,
    ) -> HostResult<()> {
        let req = StopContainer::new(ContainerRef::new(runtime, container), timeout_secs);
        host_call!(self, container_calls::STOP, containers.container_stop(req))
    }

    async fn remove(
        &mut self,
        runtime: RuntimeKind,
        container: String,
        force: bool,
    ) -> HostResult<()> {
        let container = ContainerRef::new(runtime, container);
        let req = RemoveContainer { container, force };
        host_call!(
            self,
            container_calls::REMOVE,
            containers.container_remove(req)
        )
    }

    async fn inspect(&mut self, runtime: RuntimeKind, container: String) -> HostResult<String> {
        let c = ContainerRef::new(runtime, container);
        host_call!(
            self,
            container_calls::INSPECT,
            containers.container_inspect(&c)
        )
    }

    async fn logs(
        &mut self,
        runtime: RuntimeKind,
        container: String,
        tail: u32,
    ) -> HostResult<String> {
        let container = ContainerRef::new(runtime, container);
        host_call!(
            self,
            container_calls::LOGS,
            containers.container_logs(ContainerLogs { container, tail })
        )
    }

    async fn export_to_path(
        &mut self,
        runtime: RuntimeKind,
        container: String,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> HostResult<u64> {
        let container = ContainerRef::new(runtime, container);
        let file = ArchiveFile {
            path,
            gzip,
            overwrite,
        };
        let req = ExportContainer { container, file };
        host_call!(
            self,
            container_calls::EXPORT_TO_PATH,
            containers.container_export(req)
        )
    }

    async fn read_archive_config(&mut self, path: String) -> HostResult<Option<String>> {
        host_call!(
            self,
            container_calls::READ_ARCHIVE_CONFIG,
            containers.archive_config(path)
        )
    }

    async fn import_image_from_path(
        &mut self,
        runtime: RuntimeKind,
        path: String,
        repository: String,
        tag: String,
    ) -> HostResult<String> {
        let req = ImportImage {
            kind: runtime,
            path,
            repository,
            tag,
        };
        host_call!(
            self,
            container_calls::IMPORT_IMAGE_FROM_PATH,
            containers.image_import(req)
        )
    }
}

impl credentials::Host for PluginState {
    async fn lookup(&mut self, registry: String) -> wasmtime::Result<Option<Credential>> {
        Ok(self
            .runtime_call(credential_calls::LOOKUP, |rt, cx| async move {
                Ok(rt.credentials.credential_lookup(&cx, registry).await)
            })
            .await?
            .ok()
            .flatten())
    }

    async fn remember(&mut self, credential: Credential) -> HostResult<()> {
        self.runtime_call(credential_calls::REMEMBER, |rt, cx| async move {
            rt.credentials.credential_remember(&cx, credential).await
        })
        .await
    }
}

impl PluginState {
    /// Note the container of `kind` a successful create call made.
    fn remember_container(
        &mut self,
        kind: RuntimeKind,
        id: Result<String, WitError>,
    ) -> Result<String, WitError> {
        self.remember(id, |id| {
            Created::Container(ContainerRef::new(kind, id.clone()))
        })
    }

    /// Note what a successful call created, for [`PluginState::created`].
    fn remember<T>(
        &mut self,
        result: Result<T, WitError>,
        what: impl FnOnce(&T) -> Created,
    ) -> Result<T, WitError> {
        if let Ok(v) = &result {
            self.created.push(what(v));
        }
        result
    }
}

/// The glue of `networks` and `volumes`, two interfaces of one shape:
/// create (noted for [`PluginState::created`]), remove, and list by label,
/// each on its own backend, under its own call names; then the calls one
/// of them has beyond that shape (`{ ... }`).
macro_rules! labelled_host {
    ($interface:ident($calls:ident, $created:ident):
     $create:ident -> $id:ty, $remove:ident, $list:ident -> $info:ty { $($extra:tt)* }) => {
        impl $interface::Host for PluginState {
            $($extra)*

            async fn create(
                &mut self,
                name: String,
                labels: Vec<(String, String)>,
            ) -> HostResult<$id> {
                let created = Created::$created(name.clone());
                let req = Labelled { name, labels };
                let done = self
                    .runtime_call($calls::CREATE, |rt, cx| async move {
                        rt.$interface.$create(&cx, req).await
                    })
                    .await?;
                Ok(self.remember(done, |_| created))
            }

            async fn remove(&mut self, name: String) -> HostResult<()> {
                self.runtime_call($calls::REMOVE, |rt, cx| async move {
                    rt.$interface.$remove(&cx, name).await
                })
                .await
            }

            async fn list(&mut self, key: String, value: String) -> HostResult<Vec<$info>> {
                let label = Label { key, value };
                self.runtime_call($calls::LIST, |rt, cx| async move {
                    rt.$interface.$list(&cx, label).await
                })
                .await
            }
        }
    };
}

labelled_host!(networks(network_calls, Network):
    network_create -> String, network_remove, network_list -> NetworkInfo {});
labelled_host!(volumes(volume_calls, Volume):
    volume_create -> (), volume_remove, volume_list -> VolumeInfo {
    async fn export_to_path(
        &mut self,
        volume: String,
        path: String,
        gzip: bool,
        overwrite: bool,
        live: bool,
    ) -> HostResult<u64> {
        let file = ArchiveFile { path, gzip, overwrite };
        let req = ExportVolume { volume, file, live };
        host_call!(self, volume_calls::EXPORT_TO_PATH, volumes.volume_export(req))
    }

    async fn import_from_path(
        &mut self,
        volume: String,
        path: String,
        overwrite: bool,
    ) -> HostResult<u64> {
        let labels = Vec::new();
        let req = ImportVolume { volume, path, overwrite, labels };
        host_call!(self, volume_calls::IMPORT_FROM_PATH, volumes.volume_import(req))
    }

    // A folder of an LXC container: the container is what the policy
    // checks, so these go to the containers backend (routed by kind).
    async fn export_subtree_to_path(
        &mut self,
        container: String,
        subtree: String,
        path: String,
        gzip: bool,
        overwrite: bool,
        live: bool,
    ) -> HostResult<u64> {
        let container = ContainerRef::new(RuntimeKind::Lxc, &container);
        let file = ArchiveFile { path, gzip, overwrite };
        let req = ExportSubtree { container, subtree, file, live };
        host_call!(
            self,
            volume_calls::EXPORT_SUBTREE_TO_PATH,
            containers.container_subtree_export(req)
        )
    }

    async fn import_subtree_from_path(
        &mut self,
        container: String,
        subtree: String,
        path: String,
        overwrite: bool,
    ) -> HostResult<u64> {
        let container = ContainerRef::new(RuntimeKind::Lxc, &container);
        let req = ImportSubtree { container, subtree, path, overwrite };
        host_call!(
            self,
            volume_calls::IMPORT_SUBTREE_FROM_PATH,
            containers.container_subtree_import(req)
        )
    }
});

// The repository and the store's lookups are configuration reads, like
// `images.resolve`: allowed in `validate`, so they go to the runtime
// directly rather than through `runtime_call` (which needs a task).
impl repository::Host for PluginState {
    async fn list(&mut self) -> HostResult<Vec<Template>> {
        wit(self.runtime.templates.template_list().await)
    }

    async fn get(&mut self, name: String) -> HostResult<Template> {
        wit(self.runtime.templates.template_get(name).await)
    }

    async fn read_file(&mut self, name: String, path: String) -> HostResult<String> {
        wit(self.runtime.templates.template_read(name, path).await)
    }
}

impl app_store::Host for PluginState {
    async fn record(&mut self, name: String) -> HostResult<Option<String>> {
        wit(self.runtime.apps.app_record(name).await)
    }

    async fn records(&mut self) -> HostResult<Vec<(String, String)>> {
        wit(self.runtime.apps.app_records().await)
    }

    async fn folder(&mut self, name: String) -> HostResult<String> {
        wit(self.runtime.apps.app_folder(name).await)
    }

    async fn install_template(
        &mut self,
        name: String,
        template: String,
        replace: bool,
    ) -> HostResult<()> {
        let created = (!replace).then(|| Created::AppFolder(name.clone()));
        let req = InstallTemplate {
            app: name,
            template,
            replace,
        };
        let done = self
            .runtime_call(app_folders::INSTALL_TEMPLATE, |rt, cx| async move {
                rt.apps.app_install_template(&cx, req).await
            })
            .await?;
        if let (Ok(()), Some(created)) = (&done, created) {
            self.created.push(created);
        }
        Ok(done)
    }

    async fn read_file(&mut self, name: String, path: String) -> HostResult<String> {
        self.runtime_call(app_folders::READ_FILE, |rt, cx| async move {
            rt.apps.app_read_file(&cx, AppFile::new(name, path)).await
        })
        .await
    }

    async fn write_file(&mut self, name: String, path: String, content: String) -> HostResult<()> {
        self.runtime_call(app_folders::WRITE_FILE, |rt, cx| async move {
            let file = AppFile::new(name, path);
            rt.apps.app_write_file(&cx, file, content).await
        })
        .await
    }

    async fn remove(&mut self, name: String) -> HostResult<()> {
        self.runtime_call(app_folders::REMOVE, |rt, cx| async move {
            rt.apps.app_remove(&cx, name).await
        })
        .await
    }
}
