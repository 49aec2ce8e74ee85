//! `image_check`: for the images of a container, of an application, or of
//! every container the user owns, compare the digest the registry serves
//! for the image's `repository:tag` now with the local image's registry
//! digests, without pulling.
//!
//! Body: `{"container": name|id}`, `{"app": name}` or `{}` (everything the
//! user owns); Docker only. The final `detail_state` sums up; the task log
//! has one JSON line per image (see [`ImageReport`]); each image with an
//! update is announced with `images.announce-update` (the host's
//! `update_available` event, to the owner only). A registry that cannot be
//! asked for one image makes that image's report say why; the others still
//! report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stevedore_sdk::contract::labels;
use stevedore_sdk::{check, containers, images, task, Category, Error, Level, RuntimeKind};

/// The params.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// One container (name or id).
    #[serde(default)]
    pub container: Option<String>,
    /// The containers of one installed application.
    #[serde(default)]
    pub app: Option<String>,
}

/// What one image's check found: one JSON line in the task log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReport {
    /// The image, `repository:tag`, as its containers name it.
    pub image: String,
    /// The containers using it.
    pub containers: Vec<String>,
    /// Whether the registry serves another version under the same tag.
    pub update_available: bool,
    /// The digest the registry serves now, when it could be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_digest: Option<String>,
    /// Why the image could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether `remote` (`sha256:...`) is none of the local `repo_digests`
/// (`name@sha256:...`).
pub fn differs(repo_digests: &[String], remote: &str) -> bool {
    !repo_digests
        .iter()
        .any(|d| d.rsplit_once('@').map(|(_, digest)| digest) == Some(remote))
}

/// The text of an error, without its WIT case.
fn text(e: &Error) -> String {
    match e {
        Error::InvalidParams(m)
        | Error::NotFound(m)
        | Error::Conflict(m)
        | Error::Denied(m)
        | Error::Runtime(m)
        | Error::Other(m) => m.clone(),
        Error::Cancelled => "cancelled".into(),
    }
}

/// Check one image used by `users`.
fn check_image(image: &str, users: Vec<String>) -> ImageReport {
    let runtime = RuntimeKind::Docker;
    let mut report = ImageReport {
        image: image.to_string(),
        containers: users,
        update_available: false,
        remote_digest: None,
        error: None,
    };
    let local = match images::repo_digests(runtime, image) {
        Ok(d) if d.is_empty() => {
            report.error =
                Some("the local image has no registry digest (built or imported here)".into());
            return report;
        }
        Ok(d) => d,
        Err(e) => {
            report.error = Some(format!("reading the local image: {}", text(&e)));
            return report;
        }
    };
    match images::remote_digest(runtime, image) {
        Ok(remote) => {
            report.update_available = differs(&local, &remote);
            report.remote_digest = Some(remote);
        }
        Err(e) => report.error = Some(format!("asking the registry: {}", text(&e))),
    }
    report
}

/// The images to check, each with the containers using it.
fn targets(p: &Params) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let runtime = RuntimeKind::Docker;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(c) = &p.container {
        let inspect: serde_json::Value = serde_json::from_str(&containers::inspect(runtime, c)?)
            .map_err(|e| Error::Other(format!("the container's inspect data: {e}")))?;
        let image = inspect["Config"]["Image"].as_str().unwrap_or_default();
        out.entry(image.to_string()).or_default().push(c.clone());
        return Ok(out);
    }
    let (key, value) = match &p.app {
        Some(app) => (labels::COMPOSE_PROJECT, app.clone()),
        None => (labels::OWNER, task::user()),
    };
    let found = containers::list_labelled(runtime, key, &value)?;
    if found.is_empty() {
        if let Some(app) = &p.app {
            return Err(Error::NotFound(format!(
                "application {app} has no containers"
            )));
        }
    }
    for c in found {
        out.entry(c.image).or_default().push(c.name);
    }
    Ok(out)
}

/// The category.
pub struct ImageCheck;

impl Category for ImageCheck {
    const NAME: &'static str = "image_check";
    const SUMMARY: &'static str =
        "Tell which images in use have a newer version under the same tag in their registry";
    const DELETABLE: bool = true;
    const CAPABILITIES: &'static [&'static str] = &["images", "containers"];
    type Params = Params;

    fn validate(p: &Params) -> Result<(), Error> {
        if p.container.is_some() && p.app.is_some() {
            return Err(Error::invalid("app", "give `container` or `app`, not both"));
        }
        if let Some(c) = &p.container {
            check::non_empty("container", c)?;
            if c.len() > 128
                || !c
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(Error::invalid(
                    "container",
                    "must be a container name or id (letters, digits, _ . -)",
                ));
            }
        }
        if let Some(app) = &p.app {
            check::name("app", app)?;
        }
        Ok(())
    }

    fn run(p: Params) -> Result<Option<String>, Error> {
        let targets = targets(&p)?;
        let total = targets.len().max(1);
        let mut updates = Vec::new();
        let mut failed = 0;
        let mut checked = 0;
        for (i, (image, users)) in targets.into_iter().enumerate() {
            task::check_cancelled()?;
            task::progress((i * 100 / total) as i8, &format!("checking {image}"));
            let report = if image.is_empty() || image.starts_with("sha256:") {
                ImageReport {
                    image: image.clone(),
                    containers: users,
                    update_available: false,
                    remote_digest: None,
                    error: Some("the containers run an image id, not a tag".into()),
                }
            } else {
                check_image(&image, users)
            };
            checked += 1;
            if report.error.is_some() {
                failed += 1;
            }
            if report.update_available {
                if let Some(remote) = &report.remote_digest {
                    images::announce_update(&report.image, &report.containers, remote)?;
                }
                updates.push(format!(
                    "{} ({})",
                    report.image,
                    report.containers.join(", ")
                ));
            }
            let line = serde_json::to_string(&report).map_err(|e| Error::Other(e.to_string()))?;
            task::log(Level::Info, &line);
        }
        task::progress(100, "checked");
        let mut detail = format!(
            "{checked} image{} checked: ",
            if checked == 1 { "" } else { "s" }
        );
        if updates.is_empty() {
            detail.push_str("no update available");
        } else {
            detail.push_str(&format!("update available for {}", updates.join("; ")));
        }
        if failed > 0 {
            detail.push_str(&format!("; {failed} could not be checked (see the log)"));
        }
        Ok(Some(detail))
    }
}

stevedore_sdk::category!(ImageCheck);

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(json: &str) -> Result<(), Error> {
        stevedore_sdk::__validate::<ImageCheck>(json)
    }

    #[test]
    fn accepts_a_container_an_app_or_nothing() {
        validate("{}").unwrap();
        validate(r#"{"container":"web"}"#).unwrap();
        validate(r#"{"app":"blog"}"#).unwrap();
    }

    #[test]
    fn names_the_field_in_errors() {
        let m = |j: &str| stevedore_sdk::expect_invalid(j, validate(j));
        assert!(m(r#"{"container":"web","app":"blog"}"#).starts_with("app:"));
        assert!(m(r#"{"container":"a/b"}"#).starts_with("container:"));
        assert!(m(r#"{"app":""}"#).starts_with("app:"));
        assert!(m(r#"{"image":"x"}"#).contains("unknown field"));
    }

    #[test]
    fn an_update_is_a_remote_digest_no_local_one_names() {
        let local = vec!["127.0.0.1:5000/app@sha256:aa".to_string()];
        assert!(!differs(&local, "sha256:aa"));
        assert!(differs(&local, "sha256:bb"));
    }
}
