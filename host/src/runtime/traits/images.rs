//! The `images` interface: pull, inspect, list, remove, tag, push and save images.

use async_trait::async_trait;

use super::Backend;
use crate::runtime::{
    CallContext, Credential, Error, ImageInfo, PullRequest, RtResult, RuntimeKind, Source,
};

calls! {
    "images":
    RESOLVE = "resolve", PULL = "pull", INSPECT = "inspect", LIST = "list", REMOVE = "remove",
    TAG = "tag", PUSH = "push", SAVE_TO_PATH = "save-to-path", REPO_DIGESTS = "repo-digests",
    REMOTE_DIGEST = "remote-digest", ANNOUNCE_UPDATE = "announce-update",
}

// The calls of the synchronous image routes (no WIT counterpart).
calls! {
    "images":
    INSPECT_JSON = "inspect-json", COMMIT = "commit",
}

/// An image as a call names it: the runtime it lives in (what the router
/// routes on) and its reference (what the backend reads).
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// The runtime the image belongs to.
    pub kind: RuntimeKind,
    /// Its reference (`name:tag`) or id.
    pub reference: String,
}

impl ImageRef {
    /// The image `reference` of runtime `kind`.
    pub fn new(kind: RuntimeKind, reference: impl Into<String>) -> ImageRef {
        ImageRef {
            kind,
            reference: reference.into(),
        }
    }
}

/// `images.remove`: an image, and whether to remove it even while in use.
#[derive(Debug, Clone)]
pub struct RemoveImage {
    /// The image to remove.
    pub image: ImageRef,
    /// Remove it even while in use.
    pub force: bool,
}

/// `images.tag` (Docker's): name the image `source` `repository:tag` too.
#[derive(Debug, Clone)]
pub struct TagImage {
    /// The image tagged: a reference or an id.
    pub source: String,
    /// The new name's repository.
    pub repository: String,
    /// The new name's tag.
    pub tag: String,
}

/// `images.push` (Docker's): send `repository:tag` to `registry`.
#[derive(Debug, Clone)]
pub struct PushImage {
    /// The repository pushed.
    pub repository: String,
    /// The tag pushed.
    pub tag: String,
    /// The registry whose credentials the push uses (empty: Docker Hub).
    pub registry: String,
    /// The credentials to use; none: the ones remembered for `registry`.
    pub credential: Option<Credential>,
}

/// The file a save or an export writes, under the share root.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    /// Its path under the share root.
    pub path: String,
    /// Compress it with gzip.
    pub gzip: bool,
    /// Replace a file already there (otherwise such a file is an error).
    pub overwrite: bool,
}

/// `images.save-to-path` (Docker's): the images `references`, in one archive.
#[derive(Debug, Clone)]
pub struct SaveImages {
    /// The images saved.
    pub references: Vec<String>,
    /// Where the archive goes.
    pub file: ArchiveFile,
}

/// A configured registry the image search may ask (its catalog and tags).
/// `Debug` shows no password ([`crate::secret::Secret`]).
#[derive(Debug, Clone)]
pub struct SearchRegistry {
    /// Its name in the configuration.
    pub name: String,
    /// Its address as configured (`http://host:port`, `host:port`).
    pub url: String,
    /// The login the configuration gives it, if any: `(user, password)`.
    pub login: Option<(String, crate::secret::Secret)>,
}

/// `images.commit` (Docker's): a container's file system as a new image.
#[derive(Debug, Clone)]
pub struct CommitImage {
    /// The container committed.
    pub container: super::ContainerRef,
    /// The new image's repository.
    pub repository: String,
    /// The new image's tag.
    pub tag: String,
    /// Its author.
    pub author: String,
    /// Its commit message.
    pub message: String,
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
    async fn image_inspect(&self, cx: &CallContext, image: ImageRef) -> RtResult<ImageInfo> {
        Err(self.unsupported(INSPECT))
    }
    /// List images.
    async fn image_list(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        Err(self.unsupported(LIST))
    }
    /// Remove an image; returns what was removed.
    async fn image_remove(&self, cx: &CallContext, req: RemoveImage) -> RtResult<Vec<String>> {
        Err(self.unsupported(REMOVE))
    }
    /// Tag an image.
    async fn image_tag(&self, cx: &CallContext, req: TagImage) -> RtResult<()> {
        Err(self.unsupported(TAG))
    }
    /// Push an image, reporting progress.
    async fn image_push(&self, cx: &CallContext, req: PushImage) -> RtResult<()> {
        Err(self.unsupported(PUSH))
    }
    /// Save images to a file under the share root.
    async fn image_save(&self, cx: &CallContext, req: SaveImages) -> RtResult<u64> {
        Err(self.unsupported(SAVE_TO_PATH))
    }
    /// The registry digests of a local image (`name@sha256:...`).
    async fn image_repo_digests(&self, cx: &CallContext, image: ImageRef) -> RtResult<Vec<String>> {
        Err(self.unsupported(REPO_DIGESTS))
    }
    /// The digest the registry serves for a reference now, without pulling.
    async fn image_remote_digest(&self, cx: &CallContext, image: ImageRef) -> RtResult<String> {
        Err(self.unsupported(REMOTE_DIGEST))
    }

    // The synchronous image routes' calls.

    /// The configured registries an image search may ask. Configuration
    /// only: no engine call.
    fn search_registries(&self) -> Vec<SearchRegistry> {
        Vec::new()
    }
    /// The runtime's own inspect JSON of an image.
    async fn image_inspect_json(&self, cx: &CallContext, image: ImageRef) -> RtResult<String> {
        Err(self.unsupported(INSPECT_JSON))
    }
    /// Commit a container as a new image; returns the new image's id.
    async fn image_commit(&self, cx: &CallContext, req: CommitImage) -> RtResult<String> {
        Err(self.unsupported(COMMIT))
    }
}
