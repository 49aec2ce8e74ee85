//! `container_update`: move a Docker container to a new image, safely.
//!
//! 1. pull the new image (`image`, default: the container's own
//!    `repository:tag` again), progress relayed by the host;
//! 2. recreate the container with the same settings on it (the host's
//!    `containers.recreate`: name, ports, volumes, environment, limits,
//!    networks, labels; the previous container renamed aside and stopped);
//! 3. wait for its health check to say `healthy` (at most
//!    `health_timeout_secs`), or, without one, for it to keep running
//!    `stable_secs`;
//! 4. on failure put the previous container back (name, start; its image
//!    is still there) and end in error saying why; on success remove the
//!    previous container.
//!
//! Body: `{"container", "image"?, "health_timeout_secs"?: 60, "stable_secs"?: 10}`.
//! Not deletable while running: a half update is finished or rolled back
//! by the plugin itself.

use serde::Deserialize;
use stevedore_sdk::health::{Failed, Gate};
use stevedore_sdk::images::{self, PullRequest, Source};
use stevedore_sdk::{check, containers, task, Category, Error, RuntimeKind};

/// Longest wait for a health check, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// The params.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The container (name or id); Docker only.
    pub container: String,
    /// The new image, `repository:tag`; default: the container's own
    /// `repository:tag`, pulled again.
    #[serde(default)]
    pub image: Option<String>,
    /// Most seconds to wait for the new container's health check to pass
    /// (default 60, at most 3600).
    #[serde(default)]
    pub health_timeout_secs: Option<u64>,
    /// Seconds a container without a health check must keep running
    /// (default 10, at most 3600).
    #[serde(default)]
    pub stable_secs: Option<u64>,
}

/// `repository:tag` split; the tag defaults to `latest`. A digest is refused:
/// an update follows a tag.
pub fn split_reference(field: &str, reference: &str) -> Result<(String, String), Error> {
    if reference.contains('@') {
        return Err(Error::invalid(
            field,
            "must be repository:tag (an update follows a tag, not a digest)",
        ));
    }
    let (repository, tag) = match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    };
    check::repository(field, repository)?;
    check::tag(field, tag)?;
    Ok((repository.to_string(), tag.to_string()))
}

fn seconds(field: &str, value: Option<u64>, default: u64) -> Result<u64, Error> {
    match value.unwrap_or(default) {
        0 => Err(Error::invalid(field, "must be at least 1")),
        s if s > MAX_TIMEOUT_SECS => Err(Error::invalid(
            field,
            format!("must be at most {MAX_TIMEOUT_SECS}"),
        )),
        s => Ok(s),
    }
}

impl Params {
    fn gate(&self) -> Result<Gate, Error> {
        Ok(Gate {
            timeout_ms: seconds("health_timeout_secs", self.health_timeout_secs, 60)? * 1000,
            stable_ms: seconds("stable_secs", self.stable_secs, 10)? * 1000,
            poll_ms: 500,
        })
    }
}

/// The `Config.Image` of a container's inspect JSON.
fn current_image(inspect: &str) -> Result<String, Error> {
    let v: serde_json::Value = serde_json::from_str(inspect)
        .map_err(|e| Error::Other(format!("the container's inspect data: {e}")))?;
    Ok(v["Config"]["Image"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The category.
pub struct ContainerUpdate;

impl Category for ContainerUpdate {
    const NAME: &'static str = "container_update";
    const SUMMARY: &'static str = "Move a container to a new image; roll back unless it is healthy";
    const CAPABILITIES: &'static [&'static str] = &["images", "containers"];
    type Params = Params;

    fn validate(p: &Params) -> Result<(), Error> {
        check::non_empty("container", &p.container)?;
        if p.container.len() > 128
            || !p
                .container
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(Error::invalid(
                "container",
                "must be a container name or id (letters, digits, _ . -)",
            ));
        }
        if let Some(image) = &p.image {
            split_reference("image", image)?;
        }
        p.gate().map(|_| ())
    }

    fn run(p: Params) -> Result<Option<String>, Error> {
        let runtime = RuntimeKind::Docker;
        let gate = p.gate()?;
        let reference = match &p.image {
            Some(image) => image.clone(),
            None => {
                let image = current_image(&containers::inspect(runtime, &p.container)?)?;
                if image.is_empty() || image.starts_with("sha256:") {
                    return Err(Error::invalid(
                        "image",
                        format!("the container runs the image id `{image}`, not a tag: give the new `image`"),
                    ));
                }
                image
            }
        };
        let (repository, tag) = split_reference("image", &reference)?;
        let reference = format!("{repository}:{tag}");
        task::progress(0, &format!("pulling {reference}"));
        let pulled = images::pull(&PullRequest {
            runtime,
            image: repository,
            tag,
            source: Source::Dockerhub,
            credential: None,
        })?;
        task::check_cancelled()?;
        task::progress(60, &format!("recreating {} on {reference}", p.container));
        let replaced = containers::recreate(runtime, &p.container, &reference)?;
        task::progress(70, &format!("waiting for {} to be healthy", p.container));
        match gate.wait(runtime, &replaced.id) {
            Ok(()) => {
                containers::remove(runtime, &replaced.previous, true)?;
                task::progress(100, "updated");
                let short: String = pulled
                    .id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect();
                Ok(Some(format!(
                    "{} runs {reference} ({short}); the previous container was removed",
                    p.container
                )))
            }
            Err(failed) => {
                let restored = containers::restore(runtime, &replaced);
                let why = match failed {
                    Failed::Unhealthy(why) => why,
                    Failed::Cancelled => "cancelled".to_string(),
                    Failed::Runtime(e) => format!("reading its health: {e:?}"),
                };
                match restored {
                    Ok(()) => Err(Error::Runtime(format!(
                        "{why}; the previous container is running again"
                    ))),
                    Err(e) => Err(Error::Runtime(format!(
                        "{why}; putting the previous container back failed too ({e:?}): it is `{}`",
                        replaced.aside_name
                    ))),
                }
            }
        }
    }
}

stevedore_sdk::category!(ContainerUpdate);

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(json: &str) -> Result<(), Error> {
        stevedore_sdk::__validate::<ContainerUpdate>(json)
    }

    fn message(json: &str) -> String {
        stevedore_sdk::expect_invalid(json, validate(json))
    }

    #[test]
    fn accepts_a_container_and_an_optional_image() {
        validate(r#"{"container":"web"}"#).unwrap();
        validate(r#"{"container":"web","image":"127.0.0.1:5000/app:v2","health_timeout_secs":5,"stable_secs":2}"#).unwrap();
    }

    #[test]
    fn names_the_field_in_errors() {
        assert!(message("{}").starts_with("params: missing field `container`"));
        assert!(message(r#"{"container":"a b"}"#).starts_with("container:"));
        assert!(message(r#"{"container":"web","image":"Up:1"}"#).starts_with("image:"));
        assert!(message(r#"{"container":"web","image":"a@sha256:00"}"#).starts_with("image:"));
        assert_eq!(
            message(r#"{"container":"web","stable_secs":0}"#),
            "stable_secs: must be at least 1"
        );
        assert!(message(r#"{"container":"web","health_timeout_secs":-1}"#)
            .starts_with("health_timeout_secs:"));
        assert!(message(r#"{"container":"web","x":1}"#).contains("unknown field"));
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        let s = |r| split_reference("image", r).unwrap();
        assert_eq!(s("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            s("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app".into(), "v2".into())
        );
        assert_eq!(
            s("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
    }
}
