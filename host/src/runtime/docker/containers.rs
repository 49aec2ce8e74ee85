//! The `containers` interface on the engine: create, run, list, read and
//! export containers, and import an export as an image.

use async_trait::async_trait;
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures::StreamExt;
use hyper::Method;

use super::raw::query;
use super::{archive, compose, engine, listing, load, network, progress, raw, DockerRuntime};
use crate::runtime::archives;
use crate::runtime::output::Output;
use crate::runtime::{
    CallContext, ChangeSettings, ContainerEntry, ContainerLogs, ContainerRef, ContainerSpec,
    ContainerSummary, Containers, CreateOnNetwork, CreateWith, DeleteContainer, Error,
    ExportContainer, ImageRef, Images, ImportImage, LabelQuery, LogStream, RemoveContainer,
    RtResult, RuntimeKind, StopContainer, TagImage, UsageQuery, Usages,
};
use crate::runtime::{ContainerHealth, Recreate, Replacement, Restore};

#[async_trait]
impl Containers for DockerRuntime {
    async fn container_recreate(&self, cx: &CallContext, req: Recreate) -> RtResult<Replacement> {
        self.recreate_on(cx, req).await
    }

    async fn container_restore(&self, _cx: &CallContext, req: Restore) -> RtResult<()> {
        self.restore(&req.replaced).await
    }

    async fn container_health(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerHealth> {
        self.health(c).await
    }

    async fn container_create(&self, _cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        let staged = self.pin_binds(&spec)?;
        let body = self.spec_to_body(&spec, &staged)?;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            platform: String::new(),
        };
        let create = async {
            let created = self
                .api
                .create_container(Some(options), body)
                .await
                .map_err(engine)?;
            Ok(created.id)
        };
        self.create_pinned(&staged, create).await
    }

    async fn container_create_with(&self, _cx: &CallContext, req: CreateWith) -> RtResult<String> {
        let CreateWith { spec, extra } = req;
        let staged = self.pin_binds(&spec)?;
        let create = async {
            let mut body = self.spec_to_body(&spec, &staged)?;
            compose::apply_extra(&mut body, &extra)?;
            compose::create_with(&self.api, spec.name.clone(), body, &extra).await
        };
        self.create_pinned(&staged, create).await
    }

    async fn container_create_on_network(
        &self,
        _cx: &CallContext,
        req: CreateOnNetwork,
    ) -> RtResult<String> {
        let (spec, choice) = (req.spec, req.network);
        let staged = self.pin_binds(&spec)?;
        let create = async {
            let mut body = self.spec_to_body(&spec, &staged)?;
            network::apply(&self.api, &mut body, &choice).await?;
            network::create(&self.raw, &spec.name, &body, choice.mac_address.as_deref()).await
        };
        self.create_pinned(&staged, create).await
    }

    async fn container_list_labelled(
        &self,
        _cx: &CallContext,
        req: LabelQuery,
    ) -> RtResult<Vec<ContainerSummary>> {
        compose::containers_labelled(&self.api, &req.key, &req.value).await
    }

    async fn container_start(&self, _cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        let container = &c.id;
        // The engine binds staging folders; re-pin them from the user's
        // folder now, so what it mounts is what the path names today
        // (a link there is refused).
        let sources = self.bind_sources(container).await?;
        self.pins.refresh(sources.iter().map(String::as_str))?;
        self.api
            .start_container(container, None)
            .await
            .map_err(engine)
    }

    async fn container_stop(&self, _cx: &CallContext, req: StopContainer) -> RtResult<()> {
        let options = StopContainerOptions {
            signal: None,
            t: Some(req.timeout_secs as i32),
        };
        self.api
            .stop_container(&req.container.id, Some(options))
            .await
            .map_err(engine)
    }

    async fn container_remove(&self, _cx: &CallContext, req: RemoveContainer) -> RtResult<()> {
        let container = &req.container.id;
        let options = RemoveContainerOptions {
            v: false,
            force: req.force,
            link: false,
        };
        let sources = self.bind_sources(container).await.unwrap_or_default();
        self.api
            .remove_container(container, Some(options))
            .await
            .map_err(engine)?;
        self.pins.release(sources.iter().map(String::as_str));
        Ok(())
    }

    async fn container_inspect(&self, _cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        let container = &c.id;
        let inspect = self
            .api
            .inspect_container(container, None)
            .await
            .map_err(engine)?;
        serde_json::to_string(&inspect).map_err(|e| Error::Other(e.to_string()))
    }

    async fn container_export(&self, cx: &CallContext, req: ExportContainer) -> RtResult<u64> {
        let (container, file) = (&req.container.id, &req.file);
        let path = &file.path;
        let output = Output::prepare(&self.share, path, cx.task_id, file.overwrite)?;
        let mut inspect = self
            .api
            .inspect_container(container, None)
            .await
            .map_err(engine)?;
        // The export records the user's folders, not their staging folders.
        self.unstage_binds(&mut inspect);
        let config = archive::config_from_inspect(&inspect, self.share.root());
        let entry = archives::tar_entry(
            archives::CONFIG_ENTRY,
            &serde_json::to_vec_pretty(&config).unwrap_or_default(),
        );
        cx.reporter
            .progress(-1, &format!("exporting {container} to {path}"));
        let response = self
            .raw
            .send(
                Method::GET,
                &format!("/containers/{}/export", query(container)),
                &[],
                raw::empty(),
            )
            .await?;
        let stream = response.bytes();
        let size = output.write(entry, stream, file.gzip).await?;
        output.commit()?;
        cx.reporter
            .progress(100, &format!("exported {container} to {path}"));
        Ok(size)
    }

    async fn archive_config(&self, _cx: &CallContext, path: String) -> RtResult<Option<String>> {
        let (file, _) = self.share.open_file(&path)?;
        let cap = self.settings.max_expanded_bytes;
        let kind = tokio::task::spawn_blocking(move || archive::inspect(file, cap))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        Ok(match kind {
            archive::Kind::Rootfs {
                config: Some(c), ..
            } => Some(c.to_string()),
            _ => None,
        })
    }

    async fn image_import(&self, cx: &CallContext, req: ImportImage) -> RtResult<String> {
        let ImportImage {
            kind,
            path,
            repository,
            tag,
        } = req;
        // One open file for the check and the upload: what was checked is what is sent.
        let (file, _) = self.share.open_file(&path)?;
        let probe = file
            .try_clone()
            .map_err(|e| Error::Other(format!("path `{path}`: {e}")))?;
        let cap = self.settings.max_expanded_bytes;
        let archive_kind = tokio::task::spawn_blocking(move || archive::inspect(probe, cap))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        let target = format!("{repository}:{tag}");
        cx.reporter
            .progress(-1, &format!("importing {path} as {target}"));
        match archive_kind {
            archive::Kind::Saved => {
                let response = self
                    .raw
                    .send(
                        Method::POST,
                        "/images/load?quiet=1",
                        &[("Content-Type", "application/x-tar")],
                        load::unnamed_body(file, self.settings.max_expanded_bytes)?,
                    )
                    .await?;
                let messages = response.json_lines::<serde_json::Value>();
                futures::pin_mut!(messages);
                let mut loaded = None;
                while let Some(m) = messages.next().await {
                    let m = m?;
                    if let Some(e) = m
                        .get("errorDetail")
                        .and_then(|d| d.get("message"))
                        .and_then(|s| s.as_str())
                    {
                        return Err(Error::Runtime(e.to_string()));
                    }
                    if let Some(s) = m.get("stream").and_then(|s| s.as_str()) {
                        if let Some(name) = s
                            .trim()
                            .strip_prefix("Loaded image: ")
                            .or_else(|| s.trim().strip_prefix("Loaded image ID: "))
                        {
                            loaded.get_or_insert_with(|| name.to_string());
                        }
                    }
                }
                let loaded = loaded.ok_or_else(|| {
                    Error::Runtime("the engine loaded no image from the archive".into())
                })?;
                let named = TagImage {
                    source: loaded,
                    repository,
                    tag,
                };
                self.image_tag(cx, named).await?;
            }
            archive::Kind::Rootfs { skip, .. } => {
                let path_q = format!(
                    "/images/create?fromSrc=-&repo={}&tag={}",
                    query(&repository),
                    query(&tag)
                );
                let response = self
                    .raw
                    .send(
                        Method::POST,
                        &path_q,
                        &[("Content-Type", "application/x-tar")],
                        Self::file_body(file, skip, self.settings.max_expanded_bytes)?,
                    )
                    .await?;
                progress::follow(&target, response, |p, d| cx.reporter.progress(p, d)).await?;
            }
        }
        let info = self.image_inspect(cx, ImageRef::new(kind, target)).await?;
        Ok(info.id)
    }

    async fn container_list(
        &self,
        _cx: &CallContext,
        _kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        listing::list(&self.api).await
    }

    async fn container_usage(&self, _cx: &CallContext, req: UsageQuery) -> RtResult<Usages> {
        Ok(listing::usage(&self.api, &self.live, req.containers).await)
    }

    async fn container_logs(&self, _cx: &CallContext, req: ContainerLogs) -> RtResult<String> {
        listing::logs(&self.api, &req.container.id, req.tail).await
    }

    async fn container_follow_logs(
        &self,
        _cx: &CallContext,
        req: ContainerLogs,
    ) -> RtResult<LogStream> {
        Ok(listing::follow_logs(&self.api, &req.container.id, req.tail))
    }

    async fn engine_version(&self, _cx: &CallContext, _kind: RuntimeKind) -> RtResult<String> {
        listing::version(&self.api).await
    }

    async fn container_settings(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<serde_json::Value> {
        self.settings(c).await
    }

    async fn container_change_settings(
        &self,
        cx: &CallContext,
        req: ChangeSettings,
    ) -> RtResult<()> {
        self.change_settings(cx, req).await
    }

    async fn container_delete(&self, _cx: &CallContext, req: DeleteContainer) -> RtResult<()> {
        let container = &req.container.id;
        let sources = self.bind_sources(container).await.unwrap_or_default();
        listing::delete(&self.api, container, req.remove_volumes).await?;
        self.pins.release(sources.iter().map(String::as_str));
        Ok(())
    }
}
