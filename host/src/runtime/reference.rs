//! Image references as the Docker engine reads them, so that the host
//! checks the registry the engine will contact, not the one a parameter
//! names.
//!
//! The grammar and the normalisation are those of Docker's
//! `distribution/reference` (`ParseNormalizedNamed`): the first component
//! is a registry domain when it contains `.` or `:` or is `localhost`,
//! else the domain is `docker.io`; a single-component name on Docker Hub
//! is under `library/`. A small parser rather than a crate: the crates
//! that carry this grammar (`oci-spec`, `oci-client`) bring a registry
//! client or a builder framework for one function, and the grammar is a
//! page long.

/// Docker Hub's domain, as normalised references spell it.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry domain (`docker.io`, `127.0.0.1:5000`, `localhost`).
    pub domain: String,
    /// Repository path within the registry (`library/busybox`).
    pub path: String,
    /// Tag, if written.
    pub tag: Option<String>,
    /// Digest (`sha256:...`), if written.
    pub digest: Option<String>,
}

impl Reference {
    /// Parse `text` by Docker's rules; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                check_digest(d)?;
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        // A tag follows the last `:` that comes after the last `/`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            check_tag(t)?;
        }
        if name.is_empty() {
            return Err("the image name is empty".into());
        }
        if name.len() > 255 {
            return Err("the image name is longer than 255 characters".into());
        }
        let (domain, path) = split_domain(name);
        check_domain(&domain)?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("repository name `{path}` must be lowercase"));
        }
        for component in path.split('/') {
            check_path_component(component)?;
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The repository with its domain: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The full normalised reference, `latest` when neither a tag nor a
    /// digest is written: one spelling per image name, whatever form the
    /// caller (or the engine's `RepoTags`) used.
    pub fn canonical(&self) -> String {
        let mut out = self.name();
        match (&self.tag, &self.digest) {
            (None, None) => out.push_str(":latest"),
            (Some(t), _) => {
                out.push(':');
                out.push_str(t);
            }
            _ => {}
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d);
        }
        out
    }
}

/// The registry domain of a registry address as configured or given
/// (`http://127.0.0.1:5000/`, `index.docker.io`, `""` for Docker Hub).
pub fn registry_domain(address: &str) -> String {
    let host = address.split("://").nth(1).unwrap_or(address);
    let host = host.trim_end_matches('/');
    match host {
        "" | "index.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// The reference the Docker backend pulls for `image` from `registry` (a
/// host, empty for Docker Hub itself): the image as given when there is no
/// registry, else under the registry, and under `library/` for an official
/// image on a Docker Hub mirror.
pub fn pull_source(dockerhub: bool, registry: &str, image: &str) -> String {
    if registry.is_empty() {
        image.to_string()
    } else if dockerhub && !image.contains('/') {
        format!("{registry}/library/{image}")
    } else {
        format!("{registry}/{image}")
    }
}

/// `name` split into its domain and path, normalised as Docker does.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (domain, path)
}

fn check_domain(domain: &str) -> Result<(), String> {
    let bad = || Err(format!("`{domain}` is not a registry host"));
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return bad();
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return if v6.parse::<std::net::Ipv6Addr>().is_ok() {
            Ok(())
        } else {
            bad()
        };
    }
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.split('.').all(ok_label) {
        Ok(())
    } else {
        bad()
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), String> {
    let bad = || Err(format!("`{c}` is not a valid repository name component"));
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn check_tag(t: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    {
        return Err(format!("`{t}` is not a valid tag"));
    }
    Ok(())
}

/// `algorithm:hex`, e.g. `sha256:` and 64 hex digits.
fn check_digest(d: &str) -> Result<(), String> {
    let ok = d.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(format!("`{d}` is not a valid digest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(s: &str) -> String {
        Reference::parse(s).unwrap().domain
    }

    #[test]
    fn the_domain_is_the_first_component_only_when_it_looks_like_a_host() {
        assert_eq!(domain("busybox"), "docker.io");
        assert_eq!(domain("library/busybox:1"), "docker.io");
        assert_eq!(domain("host/x"), "docker.io");
        assert_eq!(domain("127.0.0.1:5900/library/busybox"), "127.0.0.1:5900");
        assert_eq!(domain("localhost/x"), "localhost");
        assert_eq!(domain("registry.example/a/b:t"), "registry.example");
        assert_eq!(domain("index.docker.io/busybox"), "docker.io");
        assert_eq!(domain("[::1]:5000/x"), "[::1]:5000");
    }

    #[test]
    fn canonical_names_are_one_spelling() {
        let c = |s: &str| Reference::parse(s).unwrap().canonical();
        assert_eq!(c("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(c("busybox:latest"), c("docker.io/library/busybox"));
        assert_eq!(
            c("127.0.0.1:5000/a/b:1"),
            "127.0.0.1:5000/a/b:1".to_string()
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            c(&format!("busybox@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
    }

    #[test]
    fn what_docker_refuses_is_refused() {
        for bad in [
            "",
            "Busybox",
            "127.0.0.1:5000/127.0.0.1:5900/library/busybox",
            "a//b",
            "a/-b",
            "a:",
            "a:-x",
            "bad host:1/x",
            "a@sha256:zz",
            "x/y:t/z",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pull_sources_and_registry_addresses() {
        assert_eq!(pull_source(true, "", "busybox"), "busybox");
        assert_eq!(
            pull_source(true, "m:5000", "busybox"),
            "m:5000/library/busybox"
        );
        assert_eq!(pull_source(false, "m:5000", "busybox"), "m:5000/busybox");
        assert_eq!(registry_domain(""), "docker.io");
        assert_eq!(registry_domain("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }
}
