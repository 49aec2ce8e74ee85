//! The image checks of [`Guarded`]: the registry a pull or push contacts
//! is read from the final reference, as the engine reads it
//! ([`Reference`]), and checked against the policy; image names are
//! recorded per user ([`ImageOwners`]) so that a non-admin cannot point a
//! name someone else made or pulled at other content, nor use an image
//! another user made or pulled with their credentials.

use super::{denied, Guarded};
use crate::policy::Policy;
use crate::runtime::reference::{pull_source, registry_domain, Reference, DOCKER_HUB};
use crate::runtime::{
    CallContext, Error, ImageInfo, ImageRef, PullRequest, RtResult, RuntimeKind, Source,
};

/// What a Docker pull will name, once checked.
pub(super) struct PullTarget {
    /// The canonical references the pull sets (the pulled one, and the
    /// name as asked when a Docker Hub mirror stands in).
    pub names: Vec<String>,
    /// The registry host whose credentials the backend sends (`""`: Docker Hub).
    pub credential_host: String,
}

/// The registry host whose credentials go with a request to `domain`, as
/// the backend and the credential store spell it (`""` for Docker Hub).
pub fn credential_host(domain: &str) -> String {
    if domain == DOCKER_HUB {
        String::new()
    } else {
        domain.to_string()
    }
}

/// The key of an LXC image name in the records: LXC's store keeps
/// `name:tag` as written, in a namespace of its own.
fn lxc_name(reference: &str) -> String {
    format!("lxc:{reference}")
}

fn parse(field: &str, text: &str) -> RtResult<Reference> {
    Reference::parse(text).map_err(|e| Error::InvalidParams(format!("{field}: {e}")))
}

impl Guarded {
    /// The configured name of the registry at `domain` (`dockerhub` for
    /// Docker Hub; the domain itself when the configuration names none).
    pub(super) fn domain_name(&self, domain: &str) -> String {
        if domain == DOCKER_HUB {
            return "dockerhub".into();
        }
        self.registry_names
            .get(domain)
            .cloned()
            .unwrap_or_else(|| domain.to_string())
    }

    /// Check that the policy allows the registry a Docker `reference`
    /// names (the one a digest lookup contacts); LXC's pass.
    pub(super) fn check_registry_of(
        &self,
        policy: &Policy,
        kind: RuntimeKind,
        reference: &str,
    ) -> RtResult<()> {
        if kind != RuntimeKind::Docker {
            return Ok(());
        }
        let named = parse("image", reference)?;
        policy
            .allows_registry(&self.domain_name(&named.domain))
            .map_err(denied)
    }

    /// Check a pull against the registry the engine will contact. `None`
    /// for LXC, whose images come from the catalog the source names.
    pub(super) fn check_pull(
        &self,
        policy: &Policy,
        req: &PullRequest,
    ) -> RtResult<Option<PullTarget>> {
        if req.runtime != RuntimeKind::Docker {
            policy
                .allows_registry(&self.registry_name(&req.source))
                .map_err(denied)?;
            return Ok(None);
        }
        let registry = self.inner.images.resolve_source(&req.source)?;
        let dockerhub = matches!(req.source, Source::Dockerhub);
        let tag = if req.tag.is_empty() {
            "latest"
        } else {
            &req.tag
        };
        let asked = parse("image", &format!("{}:{tag}", req.image))?;
        let mut names = Vec::new();
        if dockerhub && !registry.is_empty() {
            // The mirror's image is named as asked too: that name must be
            // a Docker Hub one, not another registry's.
            if asked.domain != DOCKER_HUB {
                return Err(Error::InvalidParams(format!(
                    "image: `{}` names the registry {}; a Docker Hub pull goes to the configured mirror (use repository `private`)",
                    req.image, asked.domain
                )));
            }
            names.push(asked.canonical());
        }
        let from = pull_source(dockerhub, &registry, &req.image);
        let pulled = parse("image", &format!("{from}:{tag}"))?;
        let name = if pulled.domain == registry_domain(&registry) {
            self.registry_name(&req.source)
        } else {
            self.domain_name(&pulled.domain)
        };
        policy.allows_registry(&name).map_err(denied)?;
        names.push(pulled.canonical());
        Ok(Some(PullTarget {
            names,
            credential_host: credential_host(&pulled.domain),
        }))
    }

    /// Check a push: the registry contacted is the domain of `repository`;
    /// it must be the `registry` whose credentials are sent, and allowed.
    pub(super) fn check_push(
        &self,
        policy: &Policy,
        repository: &str,
        tag: &str,
        registry: &str,
    ) -> RtResult<()> {
        let pushed = parse("newImage", &format!("{repository}:{tag}"))?;
        let given = registry_domain(registry);
        if pushed.domain != given {
            return Err(Error::Denied(format!(
                "{repository} would be pushed to the registry {}, not to `{}`",
                pushed.domain,
                if registry.is_empty() {
                    "Docker Hub"
                } else {
                    registry
                }
            )));
        }
        policy
            .allows_registry(&self.domain_name(&pushed.domain))
            .map_err(denied)
    }

    /// Check that the user may give `repository:tag` of `kind` new content
    /// (import, load, tag): it does not exist, or the host recorded the
    /// user as its maker. Returns its canonical spelling.
    pub(super) async fn check_replace(
        &self,
        cx: &CallContext,
        policy: &Policy,
        kind: RuntimeKind,
        field: &str,
        reference: &str,
    ) -> RtResult<String> {
        let canonical = match kind {
            RuntimeKind::Docker => parse(field, reference)?.canonical(),
            RuntimeKind::Lxc => lxc_name(reference),
        };
        if Self::all_containers(policy) {
            return Ok(canonical);
        }
        let found = self
            .inner
            .images
            .image_inspect(cx, ImageRef::new(kind, reference))
            .await;
        match found {
            Err(Error::NotFound(_)) => Ok(canonical),
            Err(e) => Err(e),
            Ok(info) => match self.owners.current(&canonical, &info.id) {
                Some(r) if r.users.contains(&policy.user) => Ok(canonical),
                _ => Err(Error::Denied(format!(
                    "image {reference} exists and was not made by user {}; give another name",
                    policy.user
                ))),
            },
        }
    }

    /// Record that the user gave `canonical` (Docker) the content it now has.
    pub(super) async fn record_made(&self, cx: &CallContext, canonical: &str) {
        match self
            .inner
            .images
            .image_inspect(cx, ImageRef::new(RuntimeKind::Docker, canonical))
            .await
        {
            Ok(info) => self.owners.set_local(canonical, &info.id, &cx.user),
            Err(e) => tracing::warn!("recording the maker of {canonical}: {e:?}"),
        }
    }

    /// Refuse an image (by name or id) that another user made, or pulled
    /// with their credentials, unless another name makes it public. A
    /// missing image passes: the engine says it is missing.
    pub(super) async fn check_use(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
        reference: &str,
    ) -> RtResult<()> {
        if self.owners.is_empty() {
            return Ok(());
        }
        let Ok(info) = self
            .inner
            .images
            .image_inspect(cx, ImageRef::new(kind, reference))
            .await
        else {
            return Ok(());
        };
        if self.may_see(cx, kind, &info) {
            Ok(())
        } else {
            Err(Error::Denied(format!(
                "image {reference} was made or pulled with credentials by another user, not by user {}; pull it yourself",
                cx.user
            )))
        }
    }

    /// Whether the caller may see and use image `info` of `kind` under the
    /// image rules ([`crate::runtime::image_owners::ImageOwners::may_use`]
    /// on its canonical names).
    pub(super) fn may_see(&self, cx: &CallContext, kind: RuntimeKind, info: &ImageInfo) -> bool {
        if self.owners.is_empty() {
            return true;
        }
        let names: Vec<String> = info
            .tags
            .iter()
            .filter_map(|t| match kind {
                RuntimeKind::Docker => Reference::parse(t).ok().map(|r| r.canonical()),
                RuntimeKind::Lxc => Some(lxc_name(t)),
            })
            .collect();
        self.owners.may_use(&info.id, &names, &cx.user)
    }
}
