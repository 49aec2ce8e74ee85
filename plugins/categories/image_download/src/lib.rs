//! `image_download`: pull `image:tag` from `repository` (`dockerhub`, `qnap`,
//! or `private` with `registry_name`) into the `docker` or `lxc` runtime.
//! The host reports the pull's progress to the task; a running download may
//! be deleted (the host cancels the pull).
//!
//! Defaults: `type` docker, `repository` dockerhub, `tag` latest. `download`
//! ({description, location, icon}) is catalog metadata and only checked for
//! its shape. Unknown fields are ignored (Container Station's clients send
//! more, e.g. `fingerprint`).

use serde::Deserialize;
use stevedore_sdk::check::{self, Object};
use stevedore_sdk::images::{self, PullRequest, Source};
use stevedore_sdk::{task, Category, Error, RuntimeKind};

/// The params.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
pub struct Params {
    /// `docker` (default) or `lxc`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `dockerhub` (default), `qnap` or `private`.
    #[serde(default)]
    pub repository: Option<String>,
    /// Image repository, e.g. `busybox`.
    #[serde(default)]
    pub image: Option<String>,
    /// Tag; `latest` when absent.
    #[serde(default)]
    pub tag: Option<String>,
    /// The configured registry for `repository: private`.
    #[serde(default)]
    pub registry_name: Option<String>,
    /// Catalog metadata (informational).
    #[serde(default)]
    pub download: Option<Object<Download>>,
}

/// Catalog metadata of the image.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
pub struct Download {
    /// Description of the image.
    #[serde(default)]
    pub description: Option<String>,
    /// URL of the image's page.
    #[serde(default)]
    pub location: Option<String>,
    /// Icon URL.
    #[serde(default)]
    pub icon: Option<String>,
}

/// Check every field and build the pull request.
pub fn pull_request(p: &Params) -> Result<PullRequest, Error> {
    let runtime: RuntimeKind = check::runtime("type", p.kind.as_deref().unwrap_or("docker"))?;
    let image = p
        .image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| Error::invalid("image", "is required"))?;
    check::repository("image", image)?;
    let tag = p
        .tag
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("latest");
    check::tag("tag", tag)?;
    let repository = p.repository.as_deref().filter(|r| !r.is_empty());
    let source = check::source(
        "repository",
        repository,
        "registry_name",
        p.registry_name.as_deref(),
    )?;
    Ok(PullRequest {
        runtime,
        image: image.to_string(),
        tag: tag.to_string(),
        source,
        credential: None,
    })
}

/// An image id as `docker images` shows it: 12 hex digits, no `sha256:`.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

/// The category.
pub struct ImageDownload;

impl Category for ImageDownload {
    const NAME: &'static str = "image_download";
    const SUMMARY: &'static str =
        "Pull an image from Docker Hub, the qnap registry or a configured private registry";
    const DELETABLE: bool = true;
    const CAPABILITIES: &'static [&'static str] = &["images"];
    type Params = Object<Params>;

    fn validate(p: &Object<Params>) -> Result<(), Error> {
        let request = pull_request(&p.0)?;
        // An unknown registry name is a 400 now, not a failed task later.
        // `qnap` is not asked (the seed's LXC bodies use it and must
        // validate); a missing `qnap` registry fails the pull instead.
        match &request.source {
            Source::Private(_) => images::resolve(&request.source).map(|_| ()),
            Source::Dockerhub | Source::Qnap => Ok(()),
        }
    }

    fn run(p: Object<Params>) -> Result<Option<String>, Error> {
        let request = pull_request(&p.0)?;
        let reference = format!("{}:{}", request.image, request.tag);
        task::progress(0, &format!("pulling {reference}"));
        let info = images::pull(&request)?;
        task::progress(100, &format!("pulled {reference}"));
        Ok(Some(format!("pulled {reference} ({})", short_id(&info.id))))
    }
}

stevedore_sdk::category!(ImageDownload);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<PullRequest, Error> {
        pull_request(&stevedore_sdk::decode::<Object<Params>>(json)?.0)
    }

    fn message(json: &str) -> String {
        stevedore_sdk::expect_invalid(json, check(json))
    }

    #[test]
    fn accepts_the_seed_body() {
        let r = check(
            r#"{"type": "docker", "repository": "dockerhub", "image": "busybox", "tag": "latest"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.runtime, r.image.as_str(), r.tag.as_str()),
            (RuntimeKind::Docker, "busybox", "latest")
        );
        assert!(matches!(r.source, Source::Dockerhub));
        assert!(r.credential.is_none());
    }

    #[test]
    fn defaults_and_sources() {
        let r = check(r#"{"image": "library/ubuntu"}"#).unwrap();
        assert_eq!((r.runtime, r.tag.as_str()), (RuntimeKind::Docker, "latest"));
        assert!(matches!(r.source, Source::Dockerhub));
        let r = check(
            r#"{"type": "lxc", "repository": "qnap", "image": "ubuntu-trusty", "tag": "latest"}"#,
        )
        .unwrap();
        assert_eq!(r.runtime, RuntimeKind::Lxc);
        assert!(matches!(r.source, Source::Qnap));
        let r = check(r#"{"repository": "private", "registry_name": "corp", "image": "tools/jq", "tag": "1.6"}"#).unwrap();
        assert!(matches!(r.source, Source::Private(ref n) if n == "corp"));
        // Extra fields and the download metadata pass.
        check(r#"{"image": "busybox", "fingerprint": "x", "download": {"description": "d", "location": "l", "icon": "i", "extra": 1}}"#)
            .unwrap();
    }

    #[test]
    fn names_the_field_in_errors() {
        assert_eq!(
            message("[]"),
            "params: invalid type: sequence, expected a JSON object"
        );
        assert_eq!(message("{}"), "image: is required");
        assert_eq!(message(r#"{"image": ""}"#), "image: is required");
        assert_eq!(
            message(r#"{"type": "rkt", "image": "x1"}"#),
            "type: must be \"docker\" or \"lxc\""
        );
        assert!(message(r#"{"image": "Busy Box"}"#).starts_with("image: must be a repository"));
        assert!(message(r#"{"image": "busybox", "tag": "a b"}"#).starts_with("tag: must match"));
        assert!(
            message(r#"{"image": "busybox", "tag": 1}"#).starts_with("tag: invalid type: integer")
        );
        assert_eq!(
            message(r#"{"image": "busybox", "repository": "gcr"}"#),
            "repository: must be \"dockerhub\", \"qnap\" or \"private\""
        );
        assert_eq!(
            message(r#"{"image": "busybox", "repository": "private"}"#),
            "registry_name: is required when repository is \"private\""
        );
        assert!(message(r#"{"image": "busybox", "download": []}"#)
            .starts_with("download: invalid type"));
        assert!(message(r#"{"image": "busybox", "download": {"icon": 5}}"#)
            .starts_with("download.icon: invalid type"));
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<ImageDownload>();
        assert_eq!(d.name, "image_download");
        assert!(d.deletable);
        assert_eq!(d.capabilities, ["task", "images"]);
    }
}
