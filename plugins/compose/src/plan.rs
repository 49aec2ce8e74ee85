//! From a normalised compose document to what the host creates: networks,
//! named volumes, and one container per service (spec, extras, Compose
//! labels, config hash), in dependency order.

use std::collections::{BTreeMap, BTreeSet};

use docker_compose_types::{
    Command, Compose, DependsOnOptions, Entrypoint, Environment, Labels, MapOrEmpty, Networks,
    Ports, PublishedPort, Service, Volumes,
};
use serde_norway::Value;
use sha2::{Digest, Sha256};
use stevedore_sdk::containers::{
    ContainerExtra, ContainerSpec, Mount, MountSource, NetworkAttachment, PortBinding,
};
use stevedore_sdk::contract::{files, labels};
use stevedore_sdk::RuntimeKind;

/// The Compose file semantics followed (docker-compose 1.29), written to
/// `com.docker.compose.version` so that `docker-compose` itself recognises
/// the containers.
pub const COMPOSE_VERSION: &str = "1.29.2";
/// Label: the config hash.
pub use stevedore_sdk::contract::labels::COMPOSE_CONFIG_HASH as CONFIG_HASH;
/// Label: the project.
pub use stevedore_sdk::contract::labels::COMPOSE_PROJECT as PROJECT;
/// Label: the service.
pub use stevedore_sdk::contract::labels::COMPOSE_SERVICE as SERVICE;

/// A network or volume of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Name in the compose file.
    pub key: String,
    /// Name on the engine.
    pub name: String,
    /// Declared `external`: used, never created or removed.
    pub external: bool,
}

/// One service's container.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// Service name.
    pub service: String,
    /// The container spec (name `<project>_<service>_1`, labels included).
    pub spec: ContainerSpec,
    /// Networks, mounts, restart policy.
    pub extra: ContainerExtra,
    /// `com.docker.compose.config-hash`.
    pub hash: String,
}

/// Everything an install creates.
#[derive(Debug, Clone)]
pub struct Project {
    /// Compose project name.
    pub name: String,
    /// Networks, `default` first when used.
    pub networks: Vec<Resource>,
    /// Named volumes.
    pub volumes: Vec<Resource>,
    /// Services in start order (dependencies first).
    pub services: Vec<ServicePlan>,
}

/// Where the project's files are, for the labels.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Application name (the folder `app-path` mounts are relative to).
    pub app: String,
    /// The application folder as the host sees it.
    pub folder: String,
    /// `autostart`: `unless-stopped` unless the template sets `restart`.
    pub autostart: bool,
}

/// Compose's project name for an application name: lower case, only
/// `[-_a-z0-9]` kept (what docker-compose 1.29 does).
pub fn project_name(app: &str) -> String {
    app.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect()
}

/// Split a command line as a POSIX shell would for plain words and quotes.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unclosed quote in `{line}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch) => word.push(ch),
                            None => return Err(format!("unclosed quote in `{line}`")),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unclosed quote in `{line}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    word.push(ch);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Parse a normalised document with `docker-compose-types`.
pub fn parse(doc: &Value) -> Result<Compose, String> {
    serde_norway::from_value(doc.clone()).map_err(|e| format!("docker-compose.yml: {e}"))
}

/// The services of a document, by name.
pub fn services(compose: &Compose) -> Result<BTreeMap<String, Service>, String> {
    compose
        .services
        .0
        .iter()
        .map(|(name, s)| {
            s.clone()
                .map(|s| (name.clone(), s))
                .ok_or_else(|| format!("services.{name}: is empty"))
        })
        .collect()
}

/// `sha256` of the service's configuration as JSON: what decides whether an
/// upgrade recreates the service's container.
pub fn config_hash(service: &Service) -> String {
    let json = serde_json::to_string(service).unwrap_or_default();
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn dependencies(service: &Service) -> Vec<String> {
    let mut deps: Vec<String> = match &service.depends_on {
        DependsOnOptions::Simple(list) => list.clone(),
        DependsOnOptions::Conditional(map) => map.keys().cloned().collect(),
    };
    for link in &service.links {
        deps.push(link.split(':').next().unwrap_or(link).to_string());
    }
    deps
}

/// Services in start order: each after what it `depends_on` and `links` to;
/// ties keep the file's order. A cycle or an unknown service is an error.
pub fn start_order(compose: &Compose) -> Result<Vec<String>, String> {
    let all: Vec<String> = compose.services.0.keys().cloned().collect();
    let services = services(compose)?;
    let mut done: Vec<String> = Vec::new();
    let mut placed = BTreeSet::new();
    while done.len() < all.len() {
        let next = all.iter().find(|name| {
            !placed.contains(*name)
                && dependencies(&services[*name])
                    .iter()
                    .all(|d| placed.contains(d))
        });
        match next {
            Some(name) => {
                placed.insert(name.clone());
                done.push(name.clone());
            }
            None => {
                for name in &all {
                    for dep in dependencies(&services[name]) {
                        if !services.contains_key(&dep) {
                            return Err(format!(
                                "services.{name}: depends on unknown service `{dep}`"
                            ));
                        }
                    }
                }
                let left: Vec<&str> = all
                    .iter()
                    .filter(|n| !placed.contains(*n))
                    .map(String::as_str)
                    .collect();
                return Err(format!(
                    "services {} depend on each other in a cycle",
                    left.join(", ")
                ));
            }
        }
    }
    Ok(done)
}

fn ports(field: &str, ports: &Ports) -> Result<(Vec<PortBinding>, Vec<u16>), String> {
    let mut bound = Vec::new();
    let mut exposed = Vec::new();
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("{field}: `{s}` is not a port (ranges are not supported)"))
    };
    match ports {
        Ports::Short(list) => {
            for entry in list {
                let (spec, protocol) = match entry.split_once('/') {
                    Some((s, p)) => (s, p.to_string()),
                    None => (entry.as_str(), "tcp".to_string()),
                };
                let parts: Vec<&str> = spec.split(':').collect();
                match parts.as_slice() {
                    [c] => exposed.push(port(c)?),
                    [h, c] | [_, h, c] => bound.push(PortBinding {
                        host_port: port(h)?,
                        container_port: port(c)?,
                        protocol,
                    }),
                    _ => return Err(format!("{field}: cannot read `{entry}`")),
                }
            }
        }
        Ports::Long(list) => {
            for p in list {
                let protocol = p.protocol.clone().unwrap_or_else(|| "tcp".into());
                match &p.published {
                    Some(PublishedPort::Single(h)) => bound.push(PortBinding {
                        host_port: *h,
                        container_port: p.target,
                        protocol,
                    }),
                    Some(PublishedPort::Range(r)) => bound.push(PortBinding {
                        host_port: port(r)?,
                        container_port: p.target,
                        protocol,
                    }),
                    None => exposed.push(p.target),
                }
            }
        }
    }
    Ok((bound, exposed))
}

fn environment(env: &Environment) -> Vec<String> {
    match env {
        Environment::List(list) => list.iter().filter(|e| e.contains('=')).cloned().collect(),
        Environment::KvPair(map) => map
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
    }
}

fn source_of(source: &str, project: &str, volumes: &[Resource]) -> MountSource {
    if source.starts_with('/') {
        MountSource::HostPath(source.to_string())
    } else if source.starts_with('.') || source.contains('/') {
        MountSource::AppPath(source.to_string())
    } else {
        let name = volumes
            .iter()
            .find(|v| v.key == source)
            .map(|v| v.name.clone())
            .unwrap_or_else(|| format!("{project}_{source}"));
        MountSource::Volume(name)
    }
}

fn mounts(
    field: &str,
    list: &[Volumes],
    project: &str,
    volumes: &[Resource],
) -> Result<(Vec<Mount>, Vec<String>), String> {
    let mut mounts = Vec::new();
    let mut anonymous = Vec::new();
    for v in list {
        match v {
            Volumes::Simple(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [target] => anonymous.push(target.to_string()),
                    [source, target] | [source, target, _] => mounts.push(Mount {
                        source: source_of(source, project, volumes),
                        target: target.to_string(),
                        read_only: parts
                            .get(2)
                            .is_some_and(|m| m.split(',').any(|o| o == "ro")),
                    }),
                    _ => return Err(format!("{field}: cannot read `{s}`")),
                }
            }
            Volumes::Advanced(a) => match (a._type.as_str(), &a.source) {
                ("volume", None) => anonymous.push(a.target.clone()),
                ("volume", Some(src)) | ("bind", Some(src)) => mounts.push(Mount {
                    source: if a._type == "bind" && !src.starts_with('/') {
                        MountSource::AppPath(src.clone())
                    } else {
                        source_of(src, project, volumes)
                    },
                    target: a.target.clone(),
                    read_only: a.read_only,
                }),
                (other, _) => {
                    return Err(format!(
                        "{field}: mount type `{other}` is not supported (volume, bind)"
                    ))
                }
            },
        }
    }
    Ok((mounts, anonymous))
}

fn memory(field: &str, text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{field}: cannot read `{text}`"))?;
    let factor = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("{field}: cannot read `{text}`")),
    };
    Ok(n * factor)
}

/// Plan a project from a normalised document.
pub fn plan(doc: &Value, cx: &Context) -> Result<Project, String> {
    let compose = parse(doc)?;
    let project = project_name(&cx.app);
    let services = services(&compose)?;
    let order = start_order(&compose)?;

    let mut volumes = Vec::new();
    for (key, v) in &compose.volumes.0 {
        let (external, name) = match v {
            MapOrEmpty::Map(v) => (
                v.external.is_some(),
                v.name.clone().unwrap_or_else(|| format!("{project}_{key}")),
            ),
            MapOrEmpty::Empty => (false, format!("{project}_{key}")),
        };
        volumes.push(Resource {
            key: key.clone(),
            name,
            external,
        });
    }
    let mut networks: Vec<Resource> = Vec::new();
    let mut uses_default = false;
    for name in &order {
        if services[name].networks.is_empty() {
            uses_default = true;
        }
    }
    if uses_default {
        networks.push(Resource {
            key: "default".into(),
            name: format!("{project}_default"),
            external: false,
        });
    }
    for (key, n) in &compose.networks.0 {
        let (external, name) = match n {
            MapOrEmpty::Map(n) => {
                let external = n.external.is_some();
                let name = n.name.clone().unwrap_or_else(|| {
                    if external {
                        key.clone()
                    } else {
                        format!("{project}_{key}")
                    }
                });
                (external, name)
            }
            MapOrEmpty::Empty => (false, format!("{project}_{key}")),
        };
        if key == "default" {
            networks.retain(|r| r.key != "default");
        }
        networks.push(Resource {
            key: key.clone(),
            name,
            external,
        });
    }

    let container_of = |service: &str| format!("{project}_{service}_1");
    let mut planned = Vec::new();
    for name in &order {
        let s = &services[name];
        let field = |f: &str| format!("services.{name}.{f}");
        let image = s.image.clone().ok_or_else(|| {
            format!("services.{name}: needs an `image` (`build` is not supported)")
        })?;
        if let Some(mode) = &s.network_mode {
            return Err(format!(
                "{}: `{mode}` is not supported",
                field("network_mode")
            ));
        }
        let (bound, mut exposed) = ports(&field("ports"), &s.ports)?;
        for e in &s.expose {
            let p = e.split('/').next().unwrap_or(e);
            exposed.push(
                p.parse()
                    .map_err(|_| format!("{}: `{e}` is not a port", field("expose")))?,
            );
        }
        let (mounts, new_volumes) = mounts(&field("volumes"), &s.volumes, &project, &volumes)?;
        for m in &mounts {
            if let MountSource::Volume(v) = &m.source {
                if !volumes.iter().any(|r| &r.name == v) {
                    volumes.push(Resource {
                        key: v.trim_start_matches(&format!("{project}_")).to_string(),
                        name: v.clone(),
                        external: false,
                    });
                }
            }
        }
        let command = match &s.command {
            Some(Command::Simple(line)) => {
                Some(split_words(line).map_err(|e| format!("{}: {e}", field("command")))?)
            }
            Some(Command::Args(args)) => Some(args.clone()),
            None => None,
        };
        let entrypoint = match &s.entrypoint {
            Some(Entrypoint::Simple(line)) => {
                Some(split_words(line).map_err(|e| format!("{}: {e}", field("entrypoint")))?)
            }
            Some(Entrypoint::List(args)) => Some(args.clone()),
            None => None,
        };
        // Links: the alias resolves to the linked container on the first network.
        let links: Vec<(String, String)> = s
            .links
            .iter()
            .map(|l| {
                let (svc, alias) = l.split_once(':').unwrap_or((l, l));
                (container_of(svc), alias.to_string())
            })
            .collect();
        let service_networks: Vec<(String, Vec<String>)> = match &s.networks {
            Networks::Simple(list) if list.is_empty() => vec![("default".into(), vec![])],
            Networks::Simple(list) => list.iter().map(|n| (n.clone(), vec![])).collect(),
            Networks::Advanced(adv) => adv
                .0
                .iter()
                .map(|(n, settings)| {
                    let aliases = match settings {
                        MapOrEmpty::Map(m) => m.aliases.clone(),
                        MapOrEmpty::Empty => vec![],
                    };
                    (n.clone(), aliases)
                })
                .collect(),
        };
        let mut attachments = Vec::new();
        for (i, (key, extra_aliases)) in service_networks.iter().enumerate() {
            let network = networks
                .iter()
                .find(|r| &r.key == key)
                .ok_or_else(|| format!("{}: network `{key}` is not declared", field("networks")))?;
            let mut aliases = vec![name.clone()];
            aliases.extend(extra_aliases.iter().cloned());
            attachments.push(NetworkAttachment {
                network: network.name.clone(),
                aliases,
                links: if i == 0 { links.clone() } else { vec![] },
            });
        }
        let hash = config_hash(s);
        let mut labels: Vec<(String, String)> = match &s.labels {
            Labels::List(list) => list
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            Labels::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        labels.extend([
            (PROJECT.to_string(), project.clone()),
            (SERVICE.to_string(), name.clone()),
            (
                labels::COMPOSE_CONTAINER_NUMBER.to_string(),
                "1".to_string(),
            ),
            (labels::COMPOSE_ONEOFF.to_string(), "False".to_string()),
            (CONFIG_HASH.to_string(), hash.clone()),
            (
                labels::COMPOSE_VERSION.to_string(),
                COMPOSE_VERSION.to_string(),
            ),
            (labels::COMPOSE_WORKING_DIR.to_string(), cx.folder.clone()),
            (
                labels::COMPOSE_CONFIG_FILES.to_string(),
                format!("{}/{}", cx.folder, files::APP_COMPOSE),
            ),
        ]);
        let restart_policy = match &s.restart {
            Some(r) => Some(r.split(':').next().unwrap_or(r).to_string()),
            None if cx.autostart => Some("unless-stopped".to_string()),
            None => None,
        };
        let spec = ContainerSpec {
            runtime: RuntimeKind::Docker,
            name: s
                .container_name
                .clone()
                .unwrap_or_else(|| container_of(name)),
            image,
            privileged: s.privileged,
            entrypoint,
            command,
            user: s.user.clone(),
            working_dir: s.working_dir.clone(),
            environment: environment(&s.environment),
            links: vec![],
            dns: s.dns.clone(),
            expose_ports: exposed,
            hostname: s.hostname.clone(),
            ports: bound,
            cpu_shares: None,
            cpu_time_ms: None,
            memory_bytes: s
                .mem_limit
                .as_deref()
                .map(|m| memory(&field("mem_limit"), m))
                .transpose()?,
            device_rules: vec![],
            binds: vec![],
            volumes_from: vec![],
            new_volumes,
            autostart: cx.autostart,
            labels,
        };
        planned.push(ServicePlan {
            service: name.clone(),
            spec,
            extra: ContainerExtra {
                app: cx.app.clone(),
                networks: attachments,
                mounts,
                restart_policy,
            },
            hash,
        });
    }
    Ok(Project {
        name: project,
        networks,
        volumes,
        services: planned,
    })
}

/// Labels of the project's network `key`.
pub fn network_labels(project: &str, key: &str) -> Vec<(String, String)> {
    vec![
        (PROJECT.into(), project.into()),
        (labels::COMPOSE_NETWORK.into(), key.into()),
        (labels::COMPOSE_VERSION.into(), COMPOSE_VERSION.into()),
    ]
}

/// Labels of the project's volume `key`.
pub fn volume_labels(project: &str, key: &str) -> Vec<(String, String)> {
    vec![
        (PROJECT.into(), project.into()),
        (labels::COMPOSE_VOLUME.into(), key.into()),
        (labels::COMPOSE_VERSION.into(), COMPOSE_VERSION.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::normalise;

    fn doc(text: &str) -> Value {
        normalise(serde_norway::from_str(text).unwrap()).unwrap()
    }

    fn cx() -> Context {
        Context {
            app: "My.App".into(),
            folder: "/data/apps/My.App".into(),
            autostart: true,
        }
    }

    #[test]
    fn v1_links_become_order_aliases_and_network() {
        let p = plan(
            &doc("web:\n  image: busybox\n  command: httpd -f -p 80 -h '/srv x'\n  links: [\"db:database\"]\n  ports: [\"8080:80\"]\n  environment: [A=1]\ndb:\n  image: busybox\n  restart: always\n"),
            &cx(),
        )
        .unwrap();
        assert_eq!(p.name, "myapp");
        let names: Vec<&str> = p.services.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(names, ["myapp_db_1", "myapp_web_1"]);
        assert_eq!(p.networks[0].name, "myapp_default");
        let web = &p.services[1];
        assert_eq!(
            web.spec.command.as_deref().unwrap(),
            ["httpd", "-f", "-p", "80", "-h", "/srv x"]
        );
        assert_eq!(web.extra.networks[0].aliases, ["web"]);
        assert_eq!(
            web.extra.networks[0].links,
            [("myapp_db_1".to_string(), "database".to_string())]
        );
        assert_eq!(web.spec.ports[0].host_port, 8080);
        assert_eq!(web.extra.restart_policy.as_deref(), Some("unless-stopped"));
        assert_eq!(
            p.services[0].extra.restart_policy.as_deref(),
            Some("always")
        );
        let label = |k: &str| {
            web.spec
                .labels
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(label(PROJECT), Some("myapp"));
        assert_eq!(label(SERVICE), Some("web"));
        assert_eq!(label("com.docker.compose.oneoff"), Some("False"));
        assert_eq!(label(CONFIG_HASH), Some(web.hash.as_str()));
    }

    #[test]
    fn v3_volumes_depends_on_and_hashes() {
        let text = "version: \"3\"\nservices:\n  web:\n    image: a:1\n    depends_on: [store]\n    volumes: [\"data:/data\", \"./conf:/conf:ro\", \"/share/x:/x\", \"/anon\"]\n  store:\n    image: b:1\nvolumes:\n  data: {}\n";
        let p = plan(&doc(text), &cx()).unwrap();
        assert_eq!(p.services[0].service, "store");
        assert_eq!(p.volumes[0].name, "myapp_data");
        let web = &p.services[1];
        assert!(matches!(&web.extra.mounts[0].source, MountSource::Volume(v) if v == "myapp_data"));
        assert!(matches!(&web.extra.mounts[1].source, MountSource::AppPath(p) if p == "./conf"));
        assert!(web.extra.mounts[1].read_only);
        assert!(matches!(&web.extra.mounts[2].source, MountSource::HostPath(p) if p == "/share/x"));
        assert_eq!(web.spec.new_volumes, ["/anon"]);
        let changed = plan(&doc(&text.replace("a:1", "a:2")), &cx()).unwrap();
        assert_ne!(changed.services[1].hash, web.hash);
        assert_eq!(changed.services[0].hash, p.services[0].hash);
    }

    #[test]
    fn bad_documents_are_named() {
        let cycle = "a:\n  image: x\n  links: [b]\nb:\n  image: x\n  links: [a]\n";
        assert!(plan(&doc(cycle), &cx()).unwrap_err().contains("cycle"));
        let unknown = "a:\n  image: x\n  depends_on: [zz]\n";
        assert!(plan(&doc(unknown), &cx())
            .unwrap_err()
            .contains("unknown service `zz`"));
        let build = "a:\n  build: .\n";
        assert!(plan(&doc(build), &cx()).unwrap_err().contains("services.a"));
    }
}
