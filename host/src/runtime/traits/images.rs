//! The `images` interface: pull, inspect, list, remove, tag, push and save images.

use async_trait::async_trait;

use super::Backend;
use crate::runtime::{
    CallContext, Credential, Error, ImageInfo, PullRequest, RtResult, RuntimeKind, Source,
};

calls! {
    "images":
    RESOLVE = "resolve", PULL = "pull", INSPECT = "inspect", LIST = "list", REMOVE = "remove",
    TAG = "tag", PUSH = "push", SAVE_TO_PATH = "save-to-path",
}

/// A backend for the `images` interface. Tagging, pushing and saving are
/// Docker's; their defaults refuse.
#[async_trait]
#[allow(unused_variables)]
pub trait Images: Backend {
    /// The registry a source maps to (empty: Docker Hub). Configuration
    /// only: no engine call, so it is allowed in `validate`.
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        match source {
            Source::Dockerhub => Ok(String::new()),
            Source::Qnap => Err(Error::InvalidParams(
                "repository: no `qnap` registry is configured".into(),
            )),
            Source::Private(name) => Err(Error::InvalidParams(format!(
                "registry_name: unknown registry `{name}`"
            ))),
        }
    }
    /// Pull an image, reporting progress.
    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        Err(self.unsupported(PULL))
    }
    /// Inspect an image.
    async fn image_inspect(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        reference: String,
    ) -> RtResult<ImageInfo> {
        Err(self.unsupported(INSPECT))
    }
    /// List images.
    async fn image_list(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        Err(self.unsupported(LIST))
    }
    /// Remove an image; returns what was removed.
    async fn image_remove(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        reference: String,
        force: bool,
    ) -> RtResult<Vec<String>> {
        Err(self.unsupported(REMOVE))
    }
    /// Tag an image.
    async fn image_tag(
        &self,
        cx: &CallContext,
        source: String,
        repository: String,
        tag: String,
    ) -> RtResult<()> {
        Err(self.unsupported(TAG))
    }
    /// Push an image, reporting progress.
    async fn image_push(
        &self,
        cx: &CallContext,
        repository: String,
        tag: String,
        registry: String,
        credential: Option<Credential>,
    ) -> RtResult<()> {
        Err(self.unsupported(PUSH))
    }
    /// Save images to a file under the share root.
    async fn image_save(
        &self,
        cx: &CallContext,
        references: Vec<String>,
        path: String,
        gzip: bool,
        overwrite: bool,
    ) -> RtResult<u64> {
        Err(self.unsupported(SAVE_TO_PATH))
    }
}
