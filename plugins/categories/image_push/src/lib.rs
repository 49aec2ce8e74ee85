//! `image_push`: give `image:tag` the name `newImage:newTag` in `registry`
//! and push it there.
//!
//! - `registry`: a registry address (`127.0.0.1:5000`); absent, empty,
//!   `"Docker Hub"`, `dockerhub` or `docker.io` mean Docker Hub. A scheme
//!   (`https://`) and a trailing `/` are dropped.
//! - `newImage` / `newTag` default to `image` / `tag`; `tag` to `latest`.
//! - The pushed repository is `registry/newImage` (not prefixed twice when
//!   `newImage` already starts with the registry). On Docker Hub a
//!   `newImage` without a namespace goes under the user's: `mybusybox`
//!   pushed by `qcsuser` is `qcsuser/mybusybox`.
//! - The image is tagged (`images::tag`) only when that name differs from
//!   `image:tag`; `images::push` gets the full, registry-prefixed repository.
//! - Credentials: `username` + `password` when given (and remembered for the
//!   user with `credentials::remember` after a successful push when
//!   `rememberme`), else what `credentials::lookup(registry)` finds. Docker
//!   Hub refuses anonymous pushes, so there it is an error up front when
//!   neither exists; other registries decide for themselves.
//! - The password never appears in a message, a log line or `Debug` output;
//!   `password` is a secret field (masked in the task list).
//!
//! The body is known exactly, so unknown fields are refused. A running push
//! may be deleted (the host cancels it).

use serde::Deserialize;
use stevedore_sdk::check::{self, Object, Secret};
use stevedore_sdk::{credentials, images, task, Category, Credential, Error, Level};

/// The params.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `docker` only.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Image repository to push.
    #[serde(default)]
    pub image: Option<String>,
    /// Its tag; `latest` when absent.
    #[serde(default)]
    pub tag: Option<String>,
    /// Repository name in the registry; `image` when absent.
    #[serde(default, rename = "newImage")]
    pub new_image: Option<String>,
    /// Tag in the registry; `tag` when absent.
    #[serde(default, rename = "newTag")]
    pub new_tag: Option<String>,
    /// Registry address; Docker Hub when absent.
    #[serde(default)]
    pub registry: Option<String>,
    /// Registry user.
    #[serde(default)]
    pub username: Option<String>,
    /// Registry password (secret).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Remember the credentials for later pushes.
    #[serde(default)]
    pub rememberme: Option<bool>,
}

/// What to push, once checked. Its `Debug` masks the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// `image:tag`, the local image.
    pub source: String,
    /// `newImage` as given.
    pub new_image: String,
    /// `newTag`.
    pub new_tag: String,
    /// Registry address; empty for Docker Hub.
    pub registry: String,
    /// Given user name.
    pub username: Option<String>,
    /// Given password.
    pub password: Option<Secret>,
    /// Remember the given credentials.
    pub remember: bool,
}

impl Push {
    /// The given credentials, if any.
    pub fn given_credential(&self) -> Option<Credential> {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(Credential {
                registry: self.registry.clone(),
                username: u.clone(),
                password: p.0.clone(),
            }),
            _ => None,
        }
    }

    /// The registry as users call it.
    pub fn registry_label(&self) -> &str {
        if self.registry.is_empty() {
            "Docker Hub"
        } else {
            &self.registry
        }
    }
}

/// `registry` as an address; empty for Docker Hub.
pub fn normalize_registry(value: Option<&str>) -> String {
    let v = value.unwrap_or("").trim();
    let v = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .unwrap_or(v)
        .trim_end_matches('/');
    match v.to_ascii_lowercase().as_str() {
        ""
        | "docker hub"
        | "dockerhub"
        | "docker.io"
        | "index.docker.io"
        | "registry-1.docker.io" => String::new(),
        _ => v.to_string(),
    }
}

/// The repository pushed: `registry/newImage`, or on Docker Hub
/// `username/newImage` when `newImage` has no namespace.
pub fn target_repository(registry: &str, new_image: &str, username: Option<&str>) -> String {
    if registry.is_empty() {
        match username {
            Some(user) if !new_image.contains('/') && !user.is_empty() => {
                format!("{}/{new_image}", user.to_ascii_lowercase())
            }
            _ => new_image.to_string(),
        }
    } else if new_image.starts_with(&format!("{registry}/")) {
        new_image.to_string()
    } else {
        format!("{registry}/{new_image}")
    }
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Check every field.
pub fn push(p: &Params) -> Result<Push, Error> {
    check::docker_only("type", p.kind.as_deref())?;
    let image = set(&p.image).ok_or_else(|| Error::invalid("image", "is required"))?;
    check::repository("image", image)?;
    let tag = set(&p.tag).unwrap_or("latest");
    check::tag("tag", tag)?;
    let new_image = set(&p.new_image).unwrap_or(image);
    check::repository("newImage", new_image)?;
    let new_tag = set(&p.new_tag).unwrap_or(tag);
    check::tag("newTag", new_tag)?;
    let registry = normalize_registry(p.registry.as_deref());
    if !registry.is_empty() {
        check::registry("registry", &registry)?;
    }
    let username = set(&p.username);
    if let Some(u) = username {
        if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid("username", "must not contain spaces"));
        }
    }
    let password = p.password.clone().filter(|s| !s.0.is_empty());
    match (username, &password) {
        (Some(_), None) => return Err(Error::invalid("password", "is required with username")),
        (None, Some(_)) => return Err(Error::invalid("username", "is required with password")),
        _ => {}
    }
    Ok(Push {
        source: format!("{image}:{tag}"),
        new_image: new_image.to_string(),
        new_tag: new_tag.to_string(),
        registry,
        username: username.map(str::to_string),
        password,
        remember: p.rememberme.unwrap_or(false),
    })
}

/// The category.
pub struct ImagePush;

impl Category for ImagePush {
    const NAME: &'static str = "image_push";
    const SUMMARY: &'static str =
        "Tag an image for a registry and push it, with given or remembered credentials";
    const DELETABLE: bool = true;
    const CAPABILITIES: &'static [&'static str] = &["images", "credentials"];
    const SECRET_FIELDS: &'static [&'static str] = &["password"];
    type Params = Object<Params>;

    fn validate(p: &Object<Params>) -> Result<(), Error> {
        push(&p.0).map(|_| ())
    }

    fn run(p: Object<Params>) -> Result<Option<String>, Error> {
        let push = push(&p.0)?;
        let given = push.given_credential();
        let credential = match &given {
            Some(c) => Some(c.clone()),
            None => credentials::lookup(&push.registry),
        };
        if push.registry.is_empty() && credential.is_none() {
            return Err(Error::invalid(
                "username",
                "pushing to Docker Hub needs a username and password; none were given or remembered",
            ));
        }
        let repository = target_repository(
            &push.registry,
            &push.new_image,
            credential.as_ref().map(|c| c.username.as_str()),
        );
        let target = format!("{repository}:{}", push.new_tag);
        if target != push.source {
            task::progress(0, &format!("tagging {} as {target}", push.source));
            images::tag(&push.source, &repository, &push.new_tag)?;
        }
        task::check_cancelled()?;
        task::progress(0, &format!("pushing {target} to {}", push.registry_label()));
        images::push(
            &repository,
            &push.new_tag,
            &push.registry,
            credential.as_ref(),
        )?;
        if push.remember {
            if let Some(c) = &given {
                // The push worked, so the credentials are good; failing to
                // keep them does not undo it.
                if credentials::remember(c).is_err() {
                    task::log(
                        Level::Warn,
                        &format!(
                            "could not remember the credentials for {}",
                            push.registry_label()
                        ),
                    );
                } else {
                    task::info(&format!(
                        "remembered the credentials of {} for {}",
                        c.username,
                        push.registry_label()
                    ));
                }
            }
        }
        task::progress(100, &format!("pushed {target}"));
        Ok(Some(format!(
            "pushed {target} to {}",
            push.registry_label()
        )))
    }
}

stevedore_sdk::category!(ImagePush);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Push, Error> {
        push(&stevedore_sdk::decode::<Object<Params>>(json)?.0)
    }

    fn message(json: &str) -> String {
        stevedore_sdk::expect_invalid(json, check(json))
    }

    const SEED: &str = r#"{"type": "docker", "image": "busybox", "tag": "latest", "newImage": "mybusybox",
        "newTag": "test", "registry": "Docker Hub", "username": "qcsuser", "password": "qcspassword", "rememberme": true}"#;

    #[test]
    fn accepts_the_seed_body() {
        let p = check(SEED).unwrap();
        assert_eq!(p.source, "busybox:latest");
        assert_eq!(
            (p.new_image.as_str(), p.new_tag.as_str()),
            ("mybusybox", "test")
        );
        assert_eq!(p.registry, "");
        assert!(p.remember);
        let c = p.given_credential().unwrap();
        assert_eq!(
            (
                c.registry.as_str(),
                c.username.as_str(),
                c.password.as_str()
            ),
            ("", "qcsuser", "qcspassword")
        );
        assert_eq!(
            target_repository(&p.registry, &p.new_image, Some("qcsuser")),
            "qcsuser/mybusybox"
        );
    }

    #[test]
    fn the_password_never_shows() {
        let p = check(SEED).unwrap();
        assert!(!format!("{p:?}").contains("qcspassword"));
        let raw = stevedore_sdk::decode::<Object<Params>>(SEED).unwrap();
        assert!(!format!("{raw:?}").contains("qcspassword"));
        let m = message(r#"{"image": "busybox", "username": "u", "password": 987654321}"#);
        assert_eq!(m, "password: invalid type: expected a string");
    }

    #[test]
    fn defaults_and_registries() {
        let p = check(r#"{"image": "busybox", "registry": "127.0.0.1:5001"}"#).unwrap();
        assert_eq!(
            (p.source.as_str(), p.new_image.as_str(), p.new_tag.as_str()),
            ("busybox:latest", "busybox", "latest")
        );
        assert_eq!(p.registry, "127.0.0.1:5001");
        assert!(p.given_credential().is_none() && !p.remember);
        assert_eq!(
            target_repository(&p.registry, &p.new_image, None),
            "127.0.0.1:5001/busybox"
        );
        assert_eq!(
            target_repository("127.0.0.1:5001", "127.0.0.1:5001/busybox", None),
            "127.0.0.1:5001/busybox"
        );
        assert_eq!(target_repository("", "org/app", Some("me")), "org/app");
        assert_eq!(target_repository("", "app", None), "app");
        for hub in [
            None,
            Some(""),
            Some("Docker Hub"),
            Some("docker.io"),
            Some("https://index.docker.io/"),
        ] {
            assert_eq!(normalize_registry(hub), "", "{hub:?}");
        }
        assert_eq!(
            normalize_registry(Some("https://reg.example.com:5000/")),
            "reg.example.com:5000"
        );
        // Empty username and password are "not given".
        let p = check(r#"{"image": "busybox", "username": "", "password": ""}"#).unwrap();
        assert!(p.given_credential().is_none());
    }

    #[test]
    fn names_the_field_in_errors() {
        assert_eq!(
            message("[]"),
            "params: invalid type: sequence, expected a JSON object"
        );
        assert_eq!(message("{}"), "image: is required");
        assert_eq!(
            message(r#"{"type": "lxc", "image": "busybox"}"#),
            "type: must be \"docker\""
        );
        assert!(message(r#"{"image": "Busybox"}"#).starts_with("image: must be a repository"));
        assert!(message(r#"{"image": "busybox", "tag": "a:b"}"#).starts_with("tag: must match"));
        assert!(message(r#"{"image": "busybox", "newImage": "My Box"}"#)
            .starts_with("newImage: must be a repository"));
        assert!(
            message(r#"{"image": "busybox", "newTag": "+1"}"#).starts_with("newTag: must match")
        );
        assert!(
            message(r#"{"image": "busybox", "registry": "reg.example.com/path"}"#)
                .starts_with("registry: must be a registry address")
        );
        assert_eq!(
            message(r#"{"image": "busybox", "username": "u"}"#),
            "password: is required with username"
        );
        assert_eq!(
            message(r#"{"image": "busybox", "password": "p"}"#),
            "username: is required with password"
        );
        assert_eq!(
            message(r#"{"image": "busybox", "username": "a b", "password": "p"}"#),
            "username: must not contain spaces"
        );
        assert!(message(r#"{"image": "busybox", "rememberme": "yes"}"#)
            .starts_with("rememberme: invalid type"));
        assert!(message(r#"{"image": "busybox", "new_image": "x"}"#)
            .starts_with("new_image: unknown field"));
    }

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<ImagePush>();
        assert_eq!(d.name, "image_push");
        assert!(d.deletable);
        assert_eq!(d.capabilities, ["task", "images", "credentials"]);
        assert_eq!(d.secret_fields, ["password"]);
    }
}
