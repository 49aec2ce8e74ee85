//! The `images` interface on the engine: pull, inspect, list, remove, tag,
//! push and save.

use async_trait::async_trait;
use bollard::query_parameters::{
    CommitContainerOptions, ListImagesOptions, RemoveImageOptions, TagImageOptions,
};
use futures::TryStreamExt;
use hyper::Method;

use super::raw::query;
use super::shared_pull::PullKey;
use super::{auth, engine, progress, raw, DockerRuntime};
use crate::runtime::output::Output;
use crate::runtime::reference;
use crate::runtime::traits::images::{CommitImage, SearchRegistry};
use crate::runtime::{
    CallContext, Error, ImageInfo, ImageRef, Images, PullRequest, PushImage, RemoveImage, RtResult,
    RuntimeKind, SaveImages, Source, TagImage,
};

#[async_trait]
impl Images for DockerRuntime {
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        match source {
            Source::Dockerhub => Ok(self
                .settings
                .dockerhub
                .as_deref()
                .map(|r| self.registry(r).host())
                .unwrap_or_default()),
            Source::Qnap => match &self.settings.qnap {
                Some(r) => Ok(self.registry(r).host()),
                None => Err(Error::InvalidParams(
                    "repository: no `qnap` registry is configured".into(),
                )),
            },
            Source::Private(name) => match self
                .settings
                .registries
                .get(name)
                .cloned()
                .or_else(|| self.added.get(name))
            {
                Some(r) => Ok(r.host()),
                None => {
                    let mut known: Vec<String> = self.settings.registries.keys().cloned().collect();
                    known.extend(self.added.names());
                    Err(Error::InvalidParams(format!(
                        "registry_name: unknown registry `{name}` (configured: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )))
                }
            },
        }
    }

    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        let registry = self.resolve_source(&req.source)?;
        // A Docker Hub mirror keeps official images under `library/`.
        let from = reference::pull_source(
            matches!(req.source, Source::Dockerhub),
            &registry,
            &req.image,
        );
        let tag = if req.tag.is_empty() {
            "latest".to_string()
        } else {
            req.tag.clone()
        };
        // Credentials go to the registry the engine contacts: the domain of
        // the reference it pulls, whatever the source said.
        let contacted = reference::Reference::parse(&format!("{from}:{tag}"))
            .map_err(|e| Error::InvalidParams(format!("image: {e}")))?;
        let host = if contacted.domain == reference::DOCKER_HUB {
            String::new()
        } else {
            contacted.domain
        };
        let credential = self.credential_for(cx, &host, req.credential).await;
        let header = auth::registry_auth(credential.as_ref(), &host);
        let what = format!("{from}:{tag}");
        cx.reporter.progress(0, &format!("pulling {what}"));
        let path = format!(
            "/images/create?fromImage={}&tag={}",
            query(&from),
            query(&tag)
        );
        // Tasks pulling the same image with the same credentials at the
        // same time share one engine pull.
        let key = PullKey::new(&from, &tag, &header);
        let raw = self.raw.clone();
        let driver_what = what.clone();
        self.pulls
            .pull(key, cx, move |progress| async move {
                let auth = [("X-Registry-Auth", header.as_str())];
                let response = raw.send(Method::POST, &path, &auth, raw::empty()).await?;
                progress::follow(&driver_what, response, |p, d| progress.report(p, d)).await
            })
            .await?;
        // A mirror or private registry prefix is an implementation detail of
        // Docker Hub pulls: name the image as the user asked for it too.
        if matches!(req.source, Source::Dockerhub) && !registry.is_empty() {
            let asked = TagImage {
                source: what.clone(),
                repository: req.image.clone(),
                tag: tag.clone(),
            };
            self.image_tag(cx, asked).await?;
        }
        let info = self
            .image_inspect(cx, ImageRef::new(RuntimeKind::Docker, &what))
            .await?;
        cx.reporter.progress(100, &format!("pulled {what}"));
        Ok(info)
    }

    async fn image_inspect(&self, _cx: &CallContext, image: ImageRef) -> RtResult<ImageInfo> {
        let inspect = self
            .api
            .inspect_image(&image.reference)
            .await
            .map_err(engine)?;
        Ok(Self::image_info(inspect))
    }

    async fn image_list(&self, _cx: &CallContext, _kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        let list = self
            .api
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(engine)?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i.repo_tags,
                size: i.size.max(0) as u64,
                created: i.created,
            })
            .collect())
    }

    async fn image_repo_digests(
        &self,
        _cx: &CallContext,
        image: ImageRef,
    ) -> RtResult<Vec<String>> {
        let inspect = self
            .api
            .inspect_image(&image.reference)
            .await
            .map_err(engine)?;
        Ok(inspect.repo_digests.unwrap_or_default())
    }

    /// The engine's distribution API (`GET /distribution/{name}/json`),
    /// with the credentials a pull of `reference` would send.
    async fn image_remote_digest(&self, cx: &CallContext, image: ImageRef) -> RtResult<String> {
        let named = reference::Reference::parse(&image.reference)
            .map_err(|e| Error::InvalidParams(format!("image: {e}")))?;
        let host = if named.domain == reference::DOCKER_HUB {
            String::new()
        } else {
            named.domain.clone()
        };
        let credential = self.credential_for(cx, &host, None).await;
        let header = auth::registry_auth(credential.as_ref(), &host);
        // The reference's characters are all URL-safe once parsed; the
        // engine reads the name with its slashes from the path.
        let path = format!("/distribution/{}/json", image.reference);
        let response = self
            .raw
            .send(
                Method::GET,
                &path,
                &[("X-Registry-Auth", &header)],
                raw::empty(),
            )
            .await?;
        let body: Vec<u8> = response
            .bytes()
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await?;
        let answer: bollard::models::DistributionInspect = serde_json::from_slice(&body)
            .map_err(|e| Error::Runtime(format!("the engine's distribution answer: {e}")))?;
        answer.descriptor.digest.ok_or_else(|| {
            Error::Runtime(format!(
                "the registry gave no digest for {}",
                image.reference
            ))
        })
    }

    async fn image_remove(&self, _cx: &CallContext, req: RemoveImage) -> RtResult<Vec<String>> {
        let options = RemoveImageOptions {
            force: req.force,
            noprune: false,
            platforms: None,
        };
        let removed = self
            .api
            .remove_image(&req.image.reference, Some(options), None)
            .await
            .map_err(engine)?;
        Ok(removed
            .into_iter()
            .flat_map(|r| r.untagged.into_iter().chain(r.deleted))
            .collect())
    }

    async fn image_tag(&self, _cx: &CallContext, req: TagImage) -> RtResult<()> {
        let options = TagImageOptions {
            repo: Some(req.repository),
            tag: Some(req.tag),
        };
        self.api
            .tag_image(&req.source, Some(options))
            .await
            .map_err(engine)
    }

    async fn image_push(&self, cx: &CallContext, req: PushImage) -> RtResult<()> {
        let PushImage {
            repository,
            tag,
            registry,
            credential,
        } = req;
        let credential = self.credential_for(cx, &registry, credential).await;
        let header = auth::registry_auth(credential.as_ref(), &registry);
        let what = format!("{repository}:{tag}");
        cx.reporter.progress(0, &format!("pushing {what}"));
        let path = format!("/images/{}/push?tag={}", repository, query(&tag));
        self.with_registry_auth(cx, &what, &path, &header).await?;
        cx.reporter.progress(100, &format!("pushed {what}"));
        Ok(())
    }

    async fn image_save(&self, cx: &CallContext, req: SaveImages) -> RtResult<u64> {
        let SaveImages { references, file } = req;
        let path = &file.path;
        let output = Output::prepare(&self.share, path, cx.task_id, file.overwrite)?;
        // Fail early with a clear message rather than a truncated tar.
        for r in &references {
            self.api.inspect_image(r).await.map_err(engine)?;
        }
        cx.reporter
            .progress(-1, &format!("saving {} to {path}", references.join(", ")));
        let names: Vec<String> = references
            .iter()
            .map(|r| format!("names={}", query(r)))
            .collect();
        let response = self
            .raw
            .send(
                Method::GET,
                &format!("/images/get?{}", names.join("&")),
                &[],
                raw::empty(),
            )
            .await?;
        let stream = response.bytes();
        let size = output.write(Vec::new(), stream, file.gzip).await?;
        output.commit()?;
        cx.reporter
            .progress(100, &format!("saved {} to {path}", references.join(", ")));
        Ok(size)
    }

    // The synchronous image routes' calls.

    fn search_registries(&self) -> Vec<SearchRegistry> {
        self.settings
            .registries
            .iter()
            .map(|(name, r)| SearchRegistry {
                name: name.clone(),
                url: r.url.clone(),
                login: r
                    .username
                    .clone()
                    .zip(r.password.clone().map(crate::secret::Secret)),
            })
            .collect()
    }

    async fn image_inspect_json(&self, _cx: &CallContext, image: ImageRef) -> RtResult<String> {
        let inspect = self
            .api
            .inspect_image(&image.reference)
            .await
            .map_err(engine)?;
        serde_json::to_string(&inspect).map_err(|e| Error::Other(e.to_string()))
    }

    async fn image_commit(&self, _cx: &CallContext, req: CommitImage) -> RtResult<String> {
        let options = CommitContainerOptions {
            container: Some(req.container.id),
            repo: Some(req.repository),
            tag: Some(req.tag),
            comment: Some(req.message),
            author: Some(req.author),
            pause: true,
            ..Default::default()
        };
        let done = self
            .api
            .commit_container(options, bollard::models::ContainerConfig::default())
            .await
            .map_err(engine)?;
        Ok(done.id)
    }
}
