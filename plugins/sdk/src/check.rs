//! Validation rules shared by categories. Each returns
//! `Error::InvalidParams("field: reason")`, so the user sees which field is wrong.

use crate::images::Source;
use crate::{Error, RuntimeKind};

/// Container Station's name rule: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$`.
pub fn name(field: &str, value: &str) -> Result<(), Error> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && (2..=64).contains(&value.len()) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$",
        ))
    }
}

/// Docker's volume name rule, `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`, at most 255 bytes.
pub fn volume(field: &str, value: &str) -> Result<(), Error> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && (2..=255).contains(&value.len()) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be a volume name matching ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$ (at most 255 characters)",
        ))
    }
}

/// A non-empty value.
pub fn non_empty(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// A file path relative to the share root, as the API takes it
/// (`"test/c.tgz"`): not absolute, no `..`, no NUL. The host checks again,
/// following links.
pub fn share_path(field: &str, value: &str) -> Result<(), Error> {
    if value.starts_with('/') {
        return Err(Error::invalid(
            field,
            "must be relative to the share root, e.g. \"test/c.tgz\"",
        ));
    }
    share_folder(field, value)
}

/// A host folder for a volume: under the share root, where a leading `/`
/// names the share root itself (`"/web"` is `<share>/web`), as Container
/// Station shows host paths; no `..`, no NUL, at most [`MAX_PATH_BYTES`]
/// with no name over [`MAX_NAME_BYTES`].
pub fn share_folder(field: &str, value: &str) -> Result<(), Error> {
    let rel = value.trim_start_matches('/');
    if rel.split('/').all(|part| part.is_empty() || part == ".") {
        return Err(Error::invalid(
            field,
            "must name a file under the share root",
        ));
    }
    if value.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL"));
    }
    if rel.split('/').any(|part| part == "..") {
        return Err(Error::invalid(field, "must not contain `..`"));
    }
    if value.len() > MAX_PATH_BYTES {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_PATH_BYTES} bytes long"),
        ));
    }
    if rel.split('/').any(|part| part.len() > MAX_NAME_BYTES) {
        return Err(Error::invalid(
            field,
            format!("must not hold a name longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Longest share path accepted, in bytes (as the host's limit).
pub const MAX_PATH_BYTES: usize = 4000;
/// Longest single name in a share path, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// An image reference part (repository or tag) without spaces or control characters.
pub fn image_part(field: &str, value: &str) -> Result<(), Error> {
    non_empty(field, value)?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(field, "must not contain spaces"));
    }
    Ok(())
}

/// `"768m"`, `"1g"`, `"65536k"` or plain bytes → bytes.
pub fn memory(field: &str, value: &str) -> Result<u64, Error> {
    let v = value.trim().to_ascii_lowercase();
    let (digits, mult) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 1u64 << 10),
        Some('m') => (&v[..v.len() - 1], 1 << 20),
        Some('g') => (&v[..v.len() - 1], 1 << 30),
        _ => (&v[..], 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| Error::invalid(field, "must be a size such as \"768m\""))
}

/// The runtime a `type` field names: `docker` or `lxc`.
pub fn runtime(field: &str, value: &str) -> Result<RuntimeKind, Error> {
    match value {
        "docker" => Ok(RuntimeKind::Docker),
        "lxc" => Ok(RuntimeKind::Lxc),
        _ => Err(Error::invalid(field, "must be \"docker\" or \"lxc\"")),
    }
}

/// A `type` field of a Docker-only category: absent or `docker`.
pub fn docker_only(field: &str, value: Option<&str>) -> Result<RuntimeKind, Error> {
    match value {
        None | Some("docker") => Ok(RuntimeKind::Docker),
        Some(_) => Err(Error::invalid(field, "must be \"docker\"")),
    }
}

/// Where an image comes from: `repository` is `dockerhub` (the default when
/// absent), `qnap` or `private`; `private` needs `registry_name`, whose
/// field is named `registry_field` in the message.
pub fn source(
    field: &str,
    repository: Option<&str>,
    registry_field: &str,
    registry_name: Option<&str>,
) -> Result<Source, Error> {
    match repository {
        None | Some("dockerhub") => Ok(Source::Dockerhub),
        Some("qnap") => Ok(Source::Qnap),
        Some("private") => match registry_name.map(str::trim) {
            Some(name) if !name.is_empty() => {
                if name.chars().any(|c| c.is_control()) {
                    return Err(Error::invalid(
                        registry_field,
                        "must not contain control characters",
                    ));
                }
                Ok(Source::Private(name.to_string()))
            }
            _ => Err(Error::invalid(
                registry_field,
                "is required when repository is \"private\"",
            )),
        },
        Some(_) => Err(Error::invalid(
            field,
            "must be \"dockerhub\", \"qnap\" or \"private\"",
        )),
    }
}

fn is_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
}

/// A registry address: `host` or `host:port` (no scheme, no path).
pub fn registry(field: &str, value: &str) -> Result<(), Error> {
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (value, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be a registry address such as \"registry.example.com:5000\"",
        ))
    }
}

/// An image repository as Docker names it: lowercase path components
/// (`[a-z0-9]` runs joined by `.`, `_` or `-`) separated by `/`, optionally
/// after a registry address (`127.0.0.1:5000/busybox`). No tag or digest.
pub fn repository(field: &str, value: &str) -> Result<(), Error> {
    non_empty(field, value)?;
    let bad = || {
        Error::invalid(
            field,
            "must be a repository such as \"busybox\" or \"library/ubuntu\" \
             (lowercase letters, digits and . _ - between them, parts separated by /)",
        )
    };
    if value.len() > 255 {
        return Err(bad());
    }
    let mut parts: Vec<&str> = value.split('/').collect();
    let first = parts[0];
    if parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost") {
        registry(field, first).map_err(|_| bad())?;
        parts.remove(0);
    }
    if parts.iter().all(|p| is_path_component(p)) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A tag: `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`.
pub fn tag(field: &str, value: &str) -> Result<(), Error> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && value.len() <= 128 {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
        ))
    }
}

/// An absolute path inside a container: starts with `/`, no `..`, no NUL.
pub fn container_path(field: &str, value: &str) -> Result<(), Error> {
    if !value.starts_with('/') {
        return Err(Error::invalid(
            field,
            "must be an absolute path inside the container",
        ));
    }
    if value.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL"));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(Error::invalid(field, "must not contain `..`"));
    }
    Ok(())
}

/// An IPv4 or IPv6 address.
pub fn ip(field: &str, value: &str) -> Result<(), Error> {
    value
        .parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| Error::invalid(field, "must be an IP address"))
}

/// A host name (RFC 1123): dot-separated labels of letters, digits and `-`,
/// each 1..=63 long and not starting or ending with `-`; 253 at most.
pub fn hostname(field: &str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be a host name (letters, digits and -, dot-separated)",
        ))
    }
}

/// A port number 1..=65535 given as a JSON integer or a numeric string;
/// `0` too when `allow_zero` (the engine then picks a free port).
pub fn port(field: &str, value: &serde_json::Value, allow_zero: bool) -> Result<u16, Error> {
    let n = match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n <= 65535 && (allow_zero || n > 0) => Ok(n as u16),
        _ if allow_zero => Err(Error::invalid(field, "must be a port number 0..=65535")),
        _ => Err(Error::invalid(field, "must be a port number 1..=65535")),
    }
}

/// Params that must arrive as a JSON object: `T` decoded from a map only, so
/// that a struct is never filled positionally from an array. An array or a
/// scalar gives `params: invalid type: sequence, expected a JSON object`;
/// errors inside keep naming their field.
pub use stevedore_contract::Object;

/// A secret text (a password): its `Debug` is masked, and a value of the
/// wrong type is refused without echoing it (serde's own message would).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("\"******\"")
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "password", "writeOnly": true})
    }
    fn inline_schema() -> bool {
        true
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Secret(s)),
            _ => Err(serde::de::Error::custom("invalid type: expected a string")),
        }
    }
}

/// What a volume backup (`volume_export`, `volume_import`) reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupSource {
    /// A Docker named volume.
    Volume(String),
    /// A folder of an LXC container.
    Lxc {
        /// The container.
        container: String,
        /// The folder, an absolute path inside it.
        subtree: String,
    },
}

impl BackupSource {
    /// As the task's messages name it.
    pub fn shown(&self) -> String {
        match self {
            BackupSource::Volume(v) => format!("volume {v}"),
            BackupSource::Lxc { container, subtree } => {
                format!("{subtree} of LXC container {container}")
            }
        }
    }
}

/// The backup source the fields `type`, `volume`, `container` and
/// `subtree` name: a Docker volume (`type` absent or `docker`), or a folder
/// of an LXC container. Every refusal names its field.
pub fn backup_source(
    kind: Option<&str>,
    volume: Option<&str>,
    container: Option<&str>,
    subtree: Option<&str>,
) -> Result<BackupSource, Error> {
    match runtime("type", kind.unwrap_or("docker"))? {
        RuntimeKind::Docker => {
            for (field, value) in [("container", container), ("subtree", subtree)] {
                if value.is_some() {
                    return Err(Error::invalid(field, "is for `type: lxc` only"));
                }
            }
            let volume = volume.ok_or_else(|| Error::invalid("volume", "is required"))?;
            self::volume("volume", volume)?;
            Ok(BackupSource::Volume(volume.to_string()))
        }
        RuntimeKind::Lxc => {
            if volume.is_some() {
                return Err(Error::invalid(
                    "volume",
                    "is for `type: docker` only (an LXC backup names `container` and `subtree`)",
                ));
            }
            let container = container.ok_or_else(|| Error::invalid("container", "is required"))?;
            name("container", container)?;
            let subtree = subtree.ok_or_else(|| Error::invalid("subtree", "is required"))?;
            container_path("subtree", subtree)?;
            Ok(BackupSource::Lxc {
                container: container.to_string(),
                subtree: subtree.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<(), Error>) -> String {
        crate::expect_invalid("a check", r)
    }

    #[test]
    fn names_follow_container_station() {
        assert!(name("name", "web-1.a_b").is_ok());
        assert!(name("name", "ab").is_ok());
        assert_eq!(
            msg(name("name", "a")),
            "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"
        );
        assert!(name("name", "-ab").is_err());
        assert!(name("name", "a b").is_err());
        assert!(name("name", &"a".repeat(65)).is_err());
        assert!(name("name", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn share_paths_stay_relative() {
        assert!(share_path("path", "test/c.tgz").is_ok());
        assert_eq!(
            msg(share_path("path", "/etc/passwd")),
            "path: must be relative to the share root, e.g. \"test/c.tgz\""
        );
        assert!(share_folder("volume.host", "/web").is_ok());
        assert!(share_folder("volume.host", "/web/../..").is_err());
        assert_eq!(
            msg(share_path("path", "../etc/passwd")),
            "path: must not contain `..`"
        );
        assert!(share_path("path", "a/../../b").is_err());
        assert!(share_path("path", "/").is_err());
        assert!(share_folder("path", "/").is_err());
        assert!(share_path("path", "").is_err());
        assert!(share_path("path", "./.").is_err());
        assert!(share_path("path", "a\0b").is_err());
        assert!(share_path("path", &"a".repeat(256)).is_err());
        assert!(share_path("path", &"a".repeat(255)).is_ok());
        assert!(share_path("path", &"a/".repeat(2001)).is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("m", "768m").unwrap(), 768 << 20);
        assert_eq!(memory("m", "1G").unwrap(), 1 << 30);
        assert_eq!(memory("m", "4096").unwrap(), 4096);
        assert!(memory("m", "lots").is_err());
        assert!(memory("m", "99999999999999999999g").is_err());
    }

    #[test]
    fn runtimes_and_sources() {
        assert!(matches!(runtime("type", "lxc"), Ok(RuntimeKind::Lxc)));
        assert_eq!(
            msg(runtime("type", "rkt").map(|_| ())),
            "type: must be \"docker\" or \"lxc\""
        );
        assert!(matches!(docker_only("type", None), Ok(RuntimeKind::Docker)));
        assert_eq!(
            msg(docker_only("type", Some("lxc")).map(|_| ())),
            "type: must be \"docker\""
        );
        assert!(matches!(
            source("repository", None, "registry_name", None),
            Ok(Source::Dockerhub)
        ));
        assert!(matches!(
            source("repository", Some("qnap"), "registry_name", None),
            Ok(Source::Qnap)
        ));
        assert!(matches!(
            source("repository", Some("private"), "registry_name", Some("corp")),
            Ok(Source::Private(n)) if n == "corp"
        ));
        assert_eq!(
            msg(source("repository", Some("private"), "registry_name", Some(" ")).map(|_| ())),
            "registry_name: is required when repository is \"private\""
        );
        assert_eq!(
            msg(source("repository", Some("gcr"), "registry_name", None).map(|_| ())),
            "repository: must be \"dockerhub\", \"qnap\" or \"private\""
        );
    }

    #[test]
    fn repositories_and_tags() {
        for good in [
            "busybox",
            "library/ubuntu",
            "ab_c-d/e.f",
            "127.0.0.1:5000/busybox",
            "localhost/x",
            "reg.io/a/b",
        ] {
            assert!(repository("image", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Busybox",
            "busybox:latest",
            "-x",
            "a//b",
            "a b",
            "x/",
            "reg.io:port/x",
        ] {
            assert!(
                msg(repository("image", bad)).starts_with("image: must"),
                "{bad}"
            );
        }
        assert!(tag("tag", "latest").is_ok());
        assert!(tag("tag", "1.2_rc-3").is_ok());
        assert_eq!(
            msg(tag("tag", ".x")),
            "tag: must match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
        );
        assert!(tag("tag", "").is_err());
        assert!(tag("tag", "a:b").is_err());
        assert!(tag("tag", &"a".repeat(129)).is_err());
    }

    #[test]
    fn registries() {
        assert!(registry("registry", "127.0.0.1:5001").is_ok());
        assert!(registry("registry", "registry.example.com").is_ok());
        for bad in ["", "https://x", "x:0", "x:99999", "x/y", "-x"] {
            assert!(registry("registry", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_paths_ips_hostnames() {
        assert!(container_path("bind", "/data").is_ok());
        assert_eq!(
            msg(container_path("bind", "data")),
            "bind: must be an absolute path inside the container"
        );
        assert_eq!(
            msg(container_path("bind", "/a/../etc")),
            "bind: must not contain `..`"
        );
        assert!(ip("dns", "8.8.8.8").is_ok());
        assert!(ip("dns", "::1").is_ok());
        assert_eq!(msg(ip("dns", "8.8.8")), "dns: must be an IP address");
        assert!(hostname("hostname", "CustomHostName").is_ok());
        assert!(hostname("hostname", "a.b-c").is_ok());
        for bad in ["", "-a", "a_b", "a..b", &"a".repeat(64)] {
            assert!(hostname("hostname", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        use serde_json::json;
        assert_eq!(port("p", &json!(80), false).unwrap(), 80);
        assert_eq!(port("p", &json!("8080"), false).unwrap(), 8080);
        assert_eq!(port("p", &json!(0), true).unwrap(), 0);
        assert_eq!(
            msg(port("p", &json!(0), false).map(|_| ())),
            "p: must be a port number 1..=65535"
        );
        assert_eq!(
            msg(port("p", &json!(70000), true).map(|_| ())),
            "p: must be a port number 0..=65535"
        );
        assert!(port("p", &json!(-1), false).is_err());
        assert!(port("p", &json!("http"), false).is_err());
        assert!(port("p", &json!(null), false).is_err());
    }

    #[test]
    fn objects_only_and_secrets_stay_secret() {
        #[derive(Debug, serde::Deserialize)]
        struct P {
            #[allow(dead_code)]
            a: Option<u8>,
            #[serde(default)]
            password: Option<Secret>,
        }
        let m = |json: &str| match crate::decode::<Object<P>>(json) {
            Err(Error::InvalidParams(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            m("[1]"),
            "params: invalid type: sequence, expected a JSON object"
        );
        assert!(m(r#"{"a": "x"}"#).starts_with("a: invalid type: string"));
        let p = crate::decode::<Object<P>>(r#"{"a": 1, "password": "hunter2"}"#)
            .unwrap()
            .0;
        assert_eq!(p.password, Some(Secret("hunter2".into())));
        assert!(!format!("{p:?}").contains("hunter2"));
        let err = m(r#"{"password": 123456789}"#);
        assert_eq!(err, "password: invalid type: expected a string");
    }
}
