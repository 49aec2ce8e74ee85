//! Routing on [`RuntimeKind`] once, above the backends: [`Runtimes`] holds
//! one [`Engine`] per kind and forwards each `images` and `containers` call
//! to the one its kind names, so that no backend has to refuse the other's
//! kind itself. The other interfaces carry no kind: [`Runtimes::backends`]
//! hands them to their one backend directly.
//!
//! Image calls that carry no kind are Docker's (`tag`, `push`, `save`).
//! [`Containers::archive_config`] reads a file under the share root that
//! either backend may have written, so it asks Docker first and LXC when
//! Docker cannot answer (no engine configured, or an xz archive).

use std::sync::Arc;

use async_trait::async_trait;

use super::apps::AppStore;
use super::traits::images::{CommitImage, SearchRegistry};
use super::{
    AppFolders, Backends, CallContext, ChangeSettings, ContainerEntry, ContainerLogs, ContainerRef,
    ContainerSpec, ContainerSummary, Containers, CreateOnNetwork, CreateWith, Credentials,
    DeleteContainer, Engine, Error, ExportContainer, ExportSubtree, ImageInfo, ImageRef, Images,
    ImportImage, ImportSubtree, LabelQuery, LogStream, Networks, NoAppStore, PullRequest,
    PushImage, RemoveContainer, RemoveImage, RtResult, RuntimeKind, SaveImages, Source,
    StopContainer, TagImage, Templates, UsageQuery, Usages, Volumes,
};
use super::{ContainerHealth, Recreate, Replacement, Restore};

/// The images and containers of Docker and LXC behind one [`Images`] and
/// one [`Containers`].
pub struct Runtimes {
    /// The Docker backend (or [`super::Unavailable`] saying why there is none).
    pub docker: Arc<dyn Engine>,
    /// The LXC backend (or [`super::Unavailable`] saying why there is none).
    pub lxc: Arc<dyn Engine>,
    /// Application folders, where `containers.create-with` resolves mounts
    /// (none: that call fails saying so).
    pub apps: Option<Arc<AppStore>>,
}

impl Runtimes {
    /// The backends the plugin host and the container routes share: images
    /// and containers routed by kind, Docker's networks, volumes and
    /// credentials, and the application store's templates and folders.
    pub fn backends<D>(
        docker: Arc<D>,
        lxc: Arc<dyn Engine>,
        apps: Option<Arc<AppStore>>,
    ) -> Backends
    where
        D: Engine + Networks + Volumes + Credentials + 'static,
    {
        let routed = Arc::new(Runtimes {
            docker: docker.clone(),
            lxc,
            apps: apps.clone(),
        });
        let (templates, folders): (Arc<dyn Templates>, Arc<dyn AppFolders>) = match apps {
            Some(a) => (a.clone(), a),
            None => (Arc::new(NoAppStore), Arc::new(NoAppStore)),
        };
        Backends {
            images: routed.clone(),
            containers: routed,
            networks: docker.clone(),
            volumes: docker.clone(),
            templates,
            apps: folders,
            credentials: docker,
        }
    }

    /// The backend for `kind`.
    pub fn of(&self, kind: RuntimeKind) -> &dyn Engine {
        match kind {
            RuntimeKind::Docker => self.docker.as_ref(),
            RuntimeKind::Lxc => self.lxc.as_ref(),
        }
    }

    /// The application store, or why there is none.
    fn apps(&self) -> RtResult<&AppStore> {
        self.apps
            .as_deref()
            .ok_or_else(|| Error::Unsupported("this server has no application store".into()))
    }
}

impl super::Backend for Runtimes {}

/// An impl of an interface for [`Runtimes`]. Each line of the list is a
/// call the router only forwards: `call(arg: Type) -> Output => backend;`
/// hands `arg` on to `self.<backend>`, where `of(kind)` is the backend of
/// that kind and `docker` Docker's. The calls that do more follow the list
/// as ordinary methods.
macro_rules! routed {
    (impl $interface:ident {
        $($call:ident($arg:ident: $ty:ty) -> $out:ty => $to:ident $(($($kind:tt)+))?;)*
    } $($methods:tt)*) => {
        #[async_trait]
        impl $interface for Runtimes {
            $(async fn $call(&self, cx: &CallContext, $arg: $ty) -> RtResult<$out> {
                self.$to $(($($kind)+))?.$call(cx, $arg).await
            })*
            $($methods)*
        }
    };
}

routed! {
    impl Images {
        image_pull(req: PullRequest) -> ImageInfo => of(req.runtime);
        image_inspect(image: ImageRef) -> ImageInfo => of(image.kind);
        image_list(kind: RuntimeKind) -> Vec<ImageInfo> => of(kind);
        image_remove(req: RemoveImage) -> Vec<String> => of(req.image.kind);
        image_tag(req: TagImage) -> () => docker;
        image_push(req: PushImage) -> () => docker;
        image_save(req: SaveImages) -> u64 => docker;
        image_repo_digests(image: ImageRef) -> Vec<String> => of(image.kind);
        image_remote_digest(image: ImageRef) -> String => of(image.kind);
        // The synchronous image routes' calls.
        image_inspect_json(image: ImageRef) -> String => of(image.kind);
        image_commit(req: CommitImage) -> String => docker;
    }
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        self.docker.resolve_source(source)
    }
    fn search_registries(&self) -> Vec<SearchRegistry> {
        self.docker.search_registries()
    }
}

routed! {
    impl Containers {
        container_create(spec: ContainerSpec) -> String => of(spec.runtime);
        container_create_on_network(req: CreateOnNetwork) -> String => of(req.spec.runtime);
        container_start(c: &ContainerRef) -> () => of(c.kind);
        container_stop(req: StopContainer) -> () => of(req.container.kind);
        container_restart(req: StopContainer) -> () => of(req.container.kind);
        container_remove(req: RemoveContainer) -> () => of(req.container.kind);
        container_delete(req: DeleteContainer) -> () => of(req.container.kind);
        container_list(kind: RuntimeKind) -> Vec<ContainerEntry> => of(kind);
        container_list_labelled(req: LabelQuery) -> Vec<ContainerSummary> => of(req.kind);
        container_entry(c: &ContainerRef) -> ContainerEntry => of(c.kind);
        container_usage(req: UsageQuery) -> Usages => of(req.kind);
        container_logs(req: ContainerLogs) -> String => of(req.container.kind);
        container_follow_logs(req: ContainerLogs) -> LogStream => of(req.container.kind);
        container_inspect(c: &ContainerRef) -> String => of(c.kind);
        container_export(req: ExportContainer) -> u64 => of(req.container.kind);
        container_subtree_export(req: ExportSubtree) -> u64 => of(req.container.kind);
        container_subtree_import(req: ImportSubtree) -> u64 => of(req.container.kind);
        image_import(req: ImportImage) -> String => of(req.kind);
        engine_version(kind: RuntimeKind) -> String => of(kind);
        container_settings(c: &ContainerRef) -> serde_json::Value => of(c.kind);
        container_change_settings(req: ChangeSettings) -> () => of(req.container.kind);
        container_recreate(req: Recreate) -> Replacement => of(req.container.kind);
        container_restore(req: Restore) -> () => of(req.kind);
        container_health(c: &ContainerRef) -> ContainerHealth => of(c.kind);
    }
    async fn archive_config(&self, cx: &CallContext, path: String) -> RtResult<Option<String>> {
        match self.docker.archive_config(cx, path.clone()).await {
            Ok(answer) => Ok(answer),
            // No engine, or an archive only LXC reads (xz): LXC reads the same format.
            Err(docker) => self.lxc.archive_config(cx, path).await.map_err(|_| docker),
        }
    }
    /// Mount sources are resolved here, once, for every backend: an
    /// application's relative paths inside its folder, host paths under the
    /// share root unless the repository is trusted, both pinned. The backend
    /// then gets only volumes, staging folders and trusted host paths.
    async fn container_create_with(
        &self,
        cx: &CallContext,
        mut req: CreateWith,
    ) -> RtResult<String> {
        let apps = self.apps()?;
        let extra = &mut req.extra;
        let mut resolved = Vec::new();
        for mount in &mut extra.mounts {
            let source =
                std::mem::replace(&mut mount.source, super::MountSource::Volume(String::new()));
            match apps.resolve_mount(&extra.app, source) {
                Ok(s) => mount.source = s,
                Err(e) => {
                    apps.release_mounts(&resolved);
                    return Err(e);
                }
            }
            resolved.push(mount.clone());
        }
        let created = self.of(req.spec.runtime).container_create_with(cx, req).await;
        if created.is_err() {
            apps.release_mounts(&resolved);
        }
        created
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Error, Unavailable};

    struct Named(&'static str);

    impl crate::runtime::Backend for Named {}
    impl Images for Named {}

    #[async_trait]
    impl Containers for Named {
        async fn container_start(&self, _cx: &CallContext, _c: &ContainerRef) -> RtResult<()> {
            Err(Error::Other(self.0.into()))
        }
        async fn archive_config(
            &self,
            _cx: &CallContext,
            _path: String,
        ) -> RtResult<Option<String>> {
            Ok(Some(self.0.into()))
        }
    }

    struct Quiet;
    impl crate::queue::Reporter for Quiet {
        fn progress(&self, _percent: i32, _detail: &str) {}
        fn log(&self, _level: crate::queue::LogLevel, _message: &str) {}
    }

    fn cx() -> CallContext {
        CallContext {
            task_id: 0,
            user: "t".into(),
            cancel: Default::default(),
            reporter: Arc::new(Quiet),
        }
    }

    #[tokio::test]
    async fn each_kind_goes_to_its_backend() {
        let r = Runtimes {
            docker: Arc::new(Named("docker")),
            lxc: Arc::new(Named("lxc")),
            apps: None,
        };
        for (kind, want) in [(RuntimeKind::Docker, "docker"), (RuntimeKind::Lxc, "lxc")] {
            match r
                .container_start(&cx(), &ContainerRef::new(kind, "c"))
                .await
            {
                Err(Error::Other(m)) => assert_eq!(m, want),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn archive_config_falls_back_to_lxc_without_an_engine() {
        let r = Runtimes {
            docker: Arc::new(Unavailable {
                reason: "none".into(),
            }),
            lxc: Arc::new(Named("lxc")),
            apps: None,
        };
        assert_eq!(
            r.archive_config(&cx(), "a.tar".into()).await.unwrap(),
            Some("lxc".into())
        );
    }
}
