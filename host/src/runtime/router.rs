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
use super::{
    AppFolders, Backends, CallContext, ContainerEntry, ContainerExtra, ContainerRef, ContainerSpec,
    ContainerSummary, Containers, Credential, Credentials, Engine, Error, ImageInfo, Images,
    NetworkChoice, Networks, NoAppStore, PullRequest, RtResult, RuntimeKind, Source, Templates,
    Volumes,
};

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

#[async_trait]
impl Images for Runtimes {
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        self.docker.resolve_source(source)
    }
    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        self.of(req.runtime).image_pull(cx, req).await
    }
    async fn image_inspect(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        reference: String,
    ) -> RtResult<ImageInfo> {
        self.of(kind).image_inspect(cx, kind, reference).await
    }
    async fn image_list(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        self.of(kind).image_list(cx, kind).await
    }
    async fn image_remove(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        reference: String,
        force: bool,
    ) -> RtResult<Vec<String>> {
        self.of(kind).image_remove(cx, kind, reference, force).await
    }
    async fn image_tag(
        &self,
        cx: &CallContext,
        source: String,
        repository: String,
        tag: String,
    ) -> RtResult<()> {
        self.docker.image_tag(cx, source, repository, tag).await
    }
    async fn image_push(
        &self,
        cx: &CallContext,
        repository: String,
        tag: String,
        registry: String,
        credential: Option<Credential>,
    ) -> RtResult<()> {
        self.docker
            .image_push(cx, repository, tag, registry, credential)
            .await
    }
    async fn image_save(
        &self,
        cx: &CallContext,
        references: Vec<String>,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        self.docker
            .image_save(cx, references, path, gzip, overwrite)
            .await
    }
}

#[async_trait]
impl Containers for Runtimes {
    async fn container_create(&self, cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        self.of(spec.runtime).container_create(cx, spec).await
    }
    async fn container_start(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        self.of(c.kind).container_start(cx, c).await
    }
    async fn container_stop(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        timeout_secs: u32,
    ) -> RtResult<()> {
        self.of(c.kind).container_stop(cx, c, timeout_secs).await
    }
    async fn container_restart(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        timeout_secs: u32,
    ) -> RtResult<()> {
        self.of(c.kind).container_restart(cx, c, timeout_secs).await
    }
    async fn container_remove(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        force: bool,
    ) -> RtResult<()> {
        self.of(c.kind).container_remove(cx, c, force).await
    }
    async fn container_delete(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        remove_volumes: bool,
    ) -> RtResult<()> {
        self.of(c.kind)
            .container_delete(cx, c, remove_volumes)
            .await
    }
    async fn container_list(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        self.of(kind).container_list(cx, kind).await
    }
    async fn container_entry(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerEntry> {
        self.of(c.kind).container_entry(cx, c).await
    }
    async fn container_usage(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        containers: Vec<String>,
    ) -> RtResult<std::collections::HashMap<String, super::Usage>> {
        self.of(kind).container_usage(cx, kind, containers).await
    }
    async fn container_logs(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        tail: u32,
    ) -> RtResult<String> {
        self.of(c.kind).container_logs(cx, c, tail).await
    }
    async fn engine_version(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<String> {
        self.of(kind).engine_version(cx, kind).await
    }
    async fn container_inspect(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        self.of(c.kind).container_inspect(cx, c).await
    }
    async fn container_export(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        self.of(c.kind)
            .container_export(cx, c, path, gzip, overwrite)
            .await
    }
    async fn archive_config(&self, cx: &CallContext, path: String) -> RtResult<Option<String>> {
        match self.docker.archive_config(cx, path.clone()).await {
            Ok(answer) => Ok(answer),
            // No engine, or an archive only LXC reads (xz): LXC reads the same format.
            Err(docker) => self.lxc.archive_config(cx, path).await.map_err(|_| docker),
        }
    }
    async fn image_import(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        path: String,
        repository: String,
        tag: String,
    ) -> RtResult<String> {
        self.of(kind)
            .image_import(cx, kind, path, repository, tag)
            .await
    }
    /// Mount sources are resolved here, once, for every backend: an
    /// application's relative paths inside its folder, host paths under the
    /// share root unless the repository is trusted, both pinned. The backend
    /// then gets only volumes, staging folders and trusted host paths.
    async fn container_create_with(
        &self,
        cx: &CallContext,
        spec: ContainerSpec,
        mut extra: ContainerExtra,
    ) -> RtResult<String> {
        let apps = self.apps()?;
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
        let created = self
            .of(spec.runtime)
            .container_create_with(cx, spec, extra)
            .await;
        if created.is_err() {
            apps.release_mounts(&resolved);
        }
        created
    }
    async fn container_create_on_network(
        &self,
        cx: &CallContext,
        spec: ContainerSpec,
        network: NetworkChoice,
    ) -> RtResult<String> {
        self.of(spec.runtime)
            .container_create_on_network(cx, spec, network)
            .await
    }
    async fn container_list_labelled(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        key: String,
        value: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        self.of(kind)
            .container_list_labelled(cx, kind, key, value)
            .await
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
