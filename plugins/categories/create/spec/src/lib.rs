//! The params of the `create` category: the body of Container Station's
//! `POST container`, decoded, checked field by field and mapped to a
//! [`ContainerSpec`]. The `container_import` category uses the same shape
//! (request fields over the settings an export archive recorded).
//!
//! Everything here but [`create_and_start`] is pure (no host calls), so
//! native unit tests cover it.
//!
//! Decisions where Container Station leaves room:
//! - `type` defaults to `docker`, `tag` to `latest`, `repository` to `dockerhub`.
//! - `entrypoint` and `command` take a list of strings, or a string that is
//!   split the way a POSIX shell splits words (quotes and backslashes, no
//!   expansion), as docker-py's `split_command` does. `"sh -c 'echo a b'"` is
//!   `["sh", "-c", "echo a b"]`. An empty string or list keeps the image's default.
//! - `environment` takes `["K=V", ...]` or an object `{"K": "V"}`; `links`
//!   takes `{"container": "alias"}` or `["container:alias", ...]`.
//! - `network.port` entries are `[host, container]` or `[host, container,
//!   "tcp"|"udp"]` (numbers or numeric strings); host port `0` lets the engine
//!   pick one.
//! - `resource.device` entries are `["allow", "video4linux_(81)", "rw"]`: the
//!   number in parentheses is the device's major number (`(81:3)` gives a
//!   minor too) and the rule is for a character device, `c 81:* rw`. A raw
//!   device cgroup rule string (`"c 81:* rw"`) is accepted as well, so that an
//!   export can record rules as the engine reports them.
//! - `resource.limit.memory` is a size (`"768m"`, `"1g"`, or bytes as a
//!   number), at least 64m. Empty strings, `null` and absent fields mean "unset".
//! - `volume.host` keys are paths under the share root (`/Public` is the
//!   share's `Public` folder); they reach the host without the leading `/`.
//! - `volume.new` is a list of paths (or an object keyed by path, as the
//!   engine's inspect shows volumes); a path that a `volume.host` folder is
//!   bound to, or that is listed twice, gets no volume of its own. Two host
//!   folders bound to one path are refused.
//! - Docker-only fields (`privileged`, `entrypoint`, `command`, `user`,
//!   `working_dir`, `environment`, `links`, `volume.container`,
//!   `volume.new`) are refused for `lxc` when they ask for something, not
//!   silently dropped. `network.dns` and `network.expose_port` are taken for
//!   both: LXC writes the servers to the container's `/etc/resolv.conf`, and
//!   every port of an LXC container is reachable on its bridge anyway.
//! - `network.mode` is `nat` (the engine's default bridge, the default) or
//!   `bridge`: the container is on the host's network through a host
//!   interface, as a macvlan network on it that the host makes once per
//!   interface. The interface is `network.interface`, or
//!   `network.bridge.interface.bridge` as Container Station's own example
//!   sends it (both given must agree); an interface alone implies `bridge`.
//!   `network.bridge.mode` `dhcp` (the default) lets the engine assign the
//!   address on that network; `static` is refused, as is a
//!   `bridge.interface.name` other than `eth0` (the engine names the
//!   container's interface). Whether the interface exists is checked on
//!   the host when the task runs.
//! - `network.mac_addr` sets the MAC address of the container's interface
//!   (a unicast address; written lowercase with `:`).
//! - `network.join`: `true`/`false` as Container Station documents it
//!   ("join the existing interface bridge": the interface's network is
//!   always joined when it exists); a container name shares that
//!   container's network namespace, as Docker's `--network container:`.
//!   Joining excludes the settings the joined network decides:
//!   `network.mode` `bridge`, `interface`, `mac_addr`, `hostname`, `port`,
//!   `dns`, `expose_port` and `links`.
//! - These network settings are for Docker; `host` mode is refused.
//! - `labels` (`{"key": "value"}`) is an extension beyond Container Station.
//! - Unknown top-level fields are ignored (Container Station's clients send
//!   more than it documents); `resource.limit` and `volume.host` entries
//!   refuse unknown fields, which are typos there.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use stevedore_sdk::check;
use stevedore_sdk::containers::{
    BindMount, ContainerSpec, NetworkChoice, NetworkMode, PortBinding,
};
use stevedore_sdk::images::Source;
use stevedore_sdk::{containers, task, Error, RuntimeKind};

/// The smallest memory limit Container Station allows.
pub const MIN_MEMORY: u64 = 64 << 20;

pub use stevedore_sdk::contract::create::{
    Bridge, BridgeInterface, CreateParams, Download, HostBind, Limit, Network, Resource, Volume,
};

/// Whether a `volume.host` entry asks for a read-only mount (`false` when
/// neither `ro` nor `rw` is given); `field` names the entry for the error
/// when `ro` and `rw` disagree.
pub fn read_only(bind: &HostBind, field: &str) -> Result<bool, Error> {
    match (bind.ro, bind.rw) {
        (Some(ro), Some(rw)) if ro == rw => Err(Error::invalid(
            &format!("{field}.rw"),
            format!("rw: {rw} conflicts with ro: {ro}"),
        )),
        (Some(ro), _) => Ok(ro),
        (None, Some(rw)) => Ok(!rw),
        (None, None) => Ok(false),
    }
}

/// What `create` does, once the params are checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Image repository.
    pub image: String,
    /// Image tag.
    pub tag: String,
    /// Where to pull the image from when it is missing.
    pub source: Source,
    /// The container to create.
    pub spec: ContainerSpec,
    /// Its network, when it is not the engine's default bridge or has a
    /// MAC address: then `containers::create-on-network` creates it.
    pub network: Option<NetworkChoice>,
}

impl Plan {
    /// `image:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.image, self.tag)
    }

    /// The reference the runtime names the image by once pulled from
    /// `source`, whose registry is `registry` (as `images::resolve`
    /// answers): a Docker image from the `qnap` or a `private` registry is
    /// `<registry>/<image>:<tag>`, as the engine pulled it, so the
    /// container is made from the registry's image and never from a local
    /// image that merely shares its short name. Docker Hub images (the
    /// host names a mirror's pull as asked) and LXC images are `image:tag`.
    pub fn source_reference(&self, registry: &str) -> String {
        let from_registry = !matches!(self.source, Source::Dockerhub)
            && self.spec.runtime == RuntimeKind::Docker
            && !registry.is_empty();
        if from_registry {
            format!("{registry}/{}", self.reference())
        } else {
            self.reference()
        }
    }
}

/// A string that is set: `None` for absent, empty or blank.
fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

fn lxc_refuses(kind: RuntimeKind, field: &str, asks: bool) -> Result<(), Error> {
    if kind == RuntimeKind::Lxc && asks {
        Err(Error::invalid(
            field,
            "only docker containers take this field",
        ))
    } else {
        Ok(())
    }
}

/// Split `line` into words as a POSIX shell does, without expansions:
/// whitespace separates words, `'...'` is literal, `"..."` honours `\"`,
/// `\\`, `\$` and `` \` ``, and a backslash outside quotes escapes the next
/// character.
pub fn split_words(field: &str, line: &str) -> Result<Vec<String>, Error> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(Error::invalid(field, "has an unclosed ' quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(Error::invalid(field, "has an unclosed \" quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(Error::invalid(field, "has an unclosed \" quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(Error::invalid(field, "ends with a lone backslash")),
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

/// `entrypoint` / `command`: a string split into words, or a list of
/// strings; `None` (the image's default) when absent or empty.
pub fn words(field: &str, value: &Option<Value>) -> Result<Option<Vec<String>>, Error> {
    let words = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => split_words(field, s)?,
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Error::invalid(&format!("{field}[{i}]"), "must be a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(Error::invalid(
                field,
                "must be a string or a list of strings",
            ))
        }
    };
    if words.iter().any(|w| w.contains('\0')) {
        return Err(Error::invalid(field, "must not contain NUL"));
    }
    Ok(if words.is_empty() { None } else { Some(words) })
}

fn env_key_ok(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `environment` as `K=V` strings.
pub fn environment(value: &Option<Value>) -> Result<Vec<String>, Error> {
    const FIELD: &str = "environment";
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let field = format!("{FIELD}[{i}]");
                match v {
                    Value::String(s) => match s.split_once('=') {
                        Some((k, v)) if env_key_ok(k) && !v.contains('\0') => Ok(s.clone()),
                        _ => Err(Error::invalid(&field, "must be \"KEY=value\"")),
                    },
                    _ => Err(Error::invalid(&field, "must be a string \"KEY=value\"")),
                }
            })
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let field = format!("{FIELD}.{k}");
                if !env_key_ok(k) || k.contains('=') {
                    return Err(Error::invalid(&field, "is not a valid variable name"));
                }
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(Error::invalid(
                            &field,
                            "must be a string, number or boolean",
                        ))
                    }
                };
                if value.contains('\0') {
                    return Err(Error::invalid(&field, "must not contain NUL"));
                }
                Ok(format!("{k}={value}"))
            })
            .collect(),
        Some(_) => Err(Error::invalid(
            FIELD,
            "must be a list of \"KEY=value\" strings or an object",
        )),
    }
}

/// `links` as `(container, alias)` pairs; an empty alias is the container's name.
pub fn links(value: &Option<Value>) -> Result<Vec<(String, String)>, Error> {
    const FIELD: &str = "links";
    let pair = |field: &str, name: &str, alias: &str| -> Result<(String, String), Error> {
        check::name(field, name)?;
        let alias = if alias.is_empty() { name } else { alias };
        check::name(field, alias).map_err(|_| {
            Error::invalid(field, "alias must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$")
        })?;
        Ok((name.to_string(), alias.to_string()))
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, alias)| {
                let field = format!("{FIELD}.{name}");
                match alias {
                    Value::String(a) => pair(&field, name, a),
                    Value::Null => pair(&field, name, ""),
                    _ => Err(Error::invalid(&field, "must be the alias, a string")),
                }
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let field = format!("{FIELD}[{i}]");
                match v {
                    Value::String(s) => {
                        let (name, alias) = s.split_once(':').unwrap_or((s, ""));
                        pair(&field, name, alias)
                    }
                    _ => Err(Error::invalid(&field, "must be \"container:alias\"")),
                }
            })
            .collect(),
        Some(_) => Err(Error::invalid(
            FIELD,
            "must be an object {\"container\": \"alias\"}",
        )),
    }
}

/// `network.port` as port bindings.
pub fn ports(items: &[Value]) -> Result<Vec<PortBinding>, Error> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("network.port[{i}]");
        let parts = match item {
            Value::Array(parts) if (2..=3).contains(&parts.len()) => parts,
            _ => {
                return Err(Error::invalid(
                    &field,
                    "must be [host port, container port, \"tcp\" or \"udp\"]",
                ))
            }
        };
        let host_port = check::port(&format!("{field}[0]"), &parts[0], true)?;
        let container_port = check::port(&format!("{field}[1]"), &parts[1], false)?;
        let protocol = match parts.get(2) {
            None | Some(Value::Null) => "tcp".to_string(),
            Some(Value::String(p)) if matches!(p.to_ascii_lowercase().as_str(), "tcp" | "udp") => {
                p.to_ascii_lowercase()
            }
            Some(_) => {
                return Err(Error::invalid(
                    &format!("{field}[2]"),
                    "must be \"tcp\" or \"udp\"",
                ))
            }
        };
        if host_port != 0 && !seen.insert((host_port, protocol.clone())) {
            return Err(Error::invalid(
                &format!("{field}[0]"),
                format!("host port {host_port}/{protocol} is published twice"),
            ));
        }
        out.push(PortBinding {
            host_port,
            container_port,
            protocol,
        });
    }
    Ok(out)
}

fn device_number(part: &str) -> bool {
    part == "*"
        || (!part.is_empty() && part.len() <= 10 && part.bytes().all(|b| b.is_ascii_digit()))
}

fn permissions(field: &str, value: &str) -> Result<String, Error> {
    let mut seen = BTreeSet::new();
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| matches!(c, 'r' | 'w' | 'm') && seen.insert(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            field,
            "must be letters from \"rwm\", each at most once",
        ))
    }
}

/// One `resource.device` entry as a device cgroup rule.
pub fn device_rule(field: &str, item: &Value) -> Result<String, Error> {
    const SHAPE: &str = "must be [\"allow\", \"name_(major)\", \"rw\"]";
    match item {
        Value::String(rule) => {
            // A raw rule: `c 81:* rw`.
            let parts: Vec<&str> = rule.split_whitespace().collect();
            let numbers_ok = |n: &str| {
                n == "*"
                    || n.split_once(':')
                        .is_some_and(|(maj, min)| device_number(maj) && device_number(min))
            };
            match parts.as_slice() {
                [kind, numbers, perms]
                    if matches!(*kind, "a" | "b" | "c") && numbers_ok(numbers) =>
                {
                    permissions(field, perms)?;
                    Ok(parts.join(" "))
                }
                _ => Err(Error::invalid(
                    field,
                    "must be a device cgroup rule such as \"c 81:* rw\" or [\"allow\", \"name_(major)\", \"rw\"]",
                )),
            }
        }
        Value::Array(parts) if (2..=3).contains(&parts.len()) => {
            let text = |i: usize| match parts.get(i) {
                Some(Value::String(s)) => Ok(s.as_str()),
                _ => Err(Error::invalid(&format!("{field}[{i}]"), "must be a string")),
            };
            if text(0)? != "allow" {
                return Err(Error::invalid(&format!("{field}[0]"), "must be \"allow\""));
            }
            let device = text(1)?;
            let numbers = match (device.rfind('('), device.strip_suffix(')')) {
                (Some(open), Some(_)) => &device[open + 1..device.len() - 1],
                _ => device,
            };
            let (major, minor) = numbers.split_once(':').unwrap_or((numbers, "*"));
            if major == "*" || !device_number(major) || !device_number(minor) {
                return Err(Error::invalid(
                    &format!("{field}[1]"),
                    "must name a device with its major number, as \"video4linux_(81)\"",
                ));
            }
            let perms = if parts.len() == 3 { text(2)? } else { "rwm" };
            let perms = permissions(&format!("{field}[2]"), perms)?;
            Ok(format!("c {major}:{minor} {perms}"))
        }
        _ => Err(Error::invalid(field, SHAPE)),
    }
}

fn integer_in(
    field: &str,
    value: &Value,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Error> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n <= u64::from(*range.end()) && n >= u64::from(*range.start()) => Ok(n as u32),
        _ => Err(Error::invalid(
            field,
            format!("must be an integer {}..={}", range.start(), range.end()),
        )),
    }
}

/// A present limit: not absent, null or an empty string.
fn limit_value(value: &Option<Value>) -> Option<&Value> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(v) => Some(v),
    }
}

/// `resource.limit.memory` in bytes.
pub fn memory(value: &Value) -> Result<u64, Error> {
    const FIELD: &str = "resource.limit.memory";
    let bytes = match value {
        Value::String(s) => check::memory(FIELD, s)?,
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| Error::invalid(FIELD, "must be a size such as \"768m\""))?,
        _ => return Err(Error::invalid(FIELD, "must be a size such as \"768m\"")),
    };
    if bytes < MIN_MEMORY {
        return Err(Error::invalid(FIELD, "must be at least 64m"));
    }
    Ok(bytes)
}

/// Check every field and map the params to what `create` does.
pub fn plan(p: &CreateParams) -> Result<Plan, Error> {
    let runtime = check::runtime("type", p.kind.as_deref().unwrap_or("docker"))?;
    let docker_only = |field: &str, asks: bool| lxc_refuses(runtime, field, asks);

    let name = set(&p.name).ok_or_else(|| Error::invalid("name", "is required"))?;
    check::name("name", name)?;
    let image = set(&p.image).ok_or_else(|| Error::invalid("image", "is required"))?;
    check::repository("image", image)?;
    let tag = set(&p.tag).unwrap_or("latest");
    check::tag("tag", tag)?;
    let source = check::source(
        "repository",
        set(&p.repository),
        "registry_name",
        p.registry_name.as_deref(),
    )?;

    docker_only("privileged", p.privileged == Some(true))?;
    let entrypoint = words("entrypoint", &p.entrypoint)?;
    docker_only("entrypoint", entrypoint.is_some())?;
    let command = words("command", &p.command)?;
    docker_only("command", command.is_some())?;
    let user = set(&p.user).map(str::trim);
    if let Some(user) = user {
        if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "user",
                "must be a user name or uid[:gid] without spaces",
            ));
        }
    }
    docker_only("user", user.is_some())?;
    let working_dir = set(&p.working_dir);
    if let Some(dir) = working_dir {
        check::container_path("working_dir", dir)?;
    }
    docker_only("working_dir", working_dir.is_some())?;
    let environment = environment(&p.environment)?;
    docker_only("environment", !environment.is_empty())?;
    let links = links(&p.links)?;
    docker_only("links", !links.is_empty())?;
    let mut labels = Vec::new();
    for (k, v) in p.labels.iter().flatten() {
        if k.trim().is_empty() || k.contains('\0') || v.contains('\0') {
            return Err(Error::invalid(
                &format!("labels.{k}"),
                "must be a non-empty key with a text value",
            ));
        }
        labels.push((k.clone(), v.clone()));
    }

    let net = p.network.clone().unwrap_or_default().0;
    let mut dns = Vec::new();
    for (i, ip) in net.dns.iter().flatten().enumerate() {
        check::ip(&format!("network.dns[{i}]"), ip.trim())?;
        dns.push(ip.trim().to_string());
    }
    let mut expose_ports = Vec::new();
    for (i, port) in net.expose_port.iter().flatten().enumerate() {
        expose_ports.push(check::port(
            &format!("network.expose_port[{i}]"),
            port,
            false,
        )?);
    }
    let hostname = set(&net.hostname);
    if let Some(h) = hostname {
        check::hostname("network.hostname", h)?;
    }
    let ports = ports(net.port.as_deref().unwrap_or_default())?;
    let network = network_choice(&net)?;
    let asks_network = network.is_some();
    docker_only("network", asks_network)?;
    if matches!(
        network,
        Some(NetworkChoice {
            mode: NetworkMode::Join(_),
            ..
        })
    ) {
        let decided = [
            ("network.hostname", hostname.is_some()),
            ("network.port", !ports.is_empty()),
            ("network.dns", !dns.is_empty()),
            ("network.expose_port", !expose_ports.is_empty()),
            ("links", !links.is_empty()),
        ];
        if let Some((field, _)) = decided.iter().find(|(_, set)| *set) {
            return Err(Error::invalid(
                field,
                "cannot be set with network.join: the joined container's network decides it",
            ));
        }
    }

    let res = p.resource.clone().unwrap_or_default().0;
    let limit = res.limit.clone().unwrap_or_default().0;
    let cpu_shares = limit_value(&limit.cpuweight)
        .map(|v| integer_in("resource.limit.cpuweight", v, 2..=1024))
        .transpose()?;
    let cpu_time_ms = limit_value(&limit.cputime)
        .map(|v| integer_in("resource.limit.cputime", v, 10..=999))
        .transpose()?;
    let memory_bytes = limit_value(&limit.memory).map(memory).transpose()?;
    let device_rules = res
        .device
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, d)| device_rule(&format!("resource.device[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;

    let vol = p.volume.clone().unwrap_or_default().0;
    let mut mounted = BTreeSet::new();
    let mut binds = Vec::new();
    for (host_path, bind) in vol.host.iter().flatten() {
        let bind = &bind.0;
        let field = format!("volume.host[{host_path:?}]");
        check::share_folder(&field, host_path)?;
        let bind_field = format!("{field}.bind");
        let container_path =
            set(&bind.bind).ok_or_else(|| Error::invalid(&bind_field, "is required"))?;
        check::container_path(&bind_field, container_path)?;
        if !mounted.insert(container_path.trim_end_matches('/').to_string()) {
            return Err(Error::invalid(
                &bind_field,
                format!("{container_path} is mounted twice"),
            ));
        }
        binds.push(BindMount {
            host_path: host_path.trim_start_matches('/').to_string(),
            container_path: container_path.to_string(),
            read_only: read_only(bind, &field)?,
        });
    }
    let mut volumes_from = Vec::new();
    for (i, c) in vol.container.iter().flatten().enumerate() {
        let field = format!("volume.container[{i}]");
        let name = c
            .strip_suffix(":ro")
            .or_else(|| c.strip_suffix(":rw"))
            .unwrap_or(c);
        check::name(&field, name)?;
        volumes_from.push(c.clone());
    }
    docker_only("volume.container", !volumes_from.is_empty())?;
    // (field, path); the path is None when the entry is not a string.
    let new_paths: Vec<(String, Option<&str>)> = match &vol.new {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("volume.new[{i}]"), v.as_str()))
            .collect(),
        Some(Value::Object(map)) => map
            .keys()
            .map(|k| (format!("volume.new.{k}"), Some(k.as_str())))
            .collect(),
        Some(_) => {
            return Err(Error::invalid(
                "volume.new",
                "must be a list of paths inside the container",
            ))
        }
    };
    let mut new_volumes = Vec::new();
    for (field, path) in new_paths {
        let path =
            path.ok_or_else(|| Error::invalid(&field, "must be a path inside the container"))?;
        check::container_path(&field, path)?;
        // A path a host folder is bound to needs no volume of its own (an
        // image's VOLUME that a bind covers is recorded this way), and a
        // path listed twice is one volume.
        if mounted.insert(path.trim_end_matches('/').to_string()) {
            new_volumes.push(path.to_string());
        }
    }
    docker_only("volume.new", !new_volumes.is_empty())?;

    let spec = ContainerSpec {
        runtime,
        name: name.to_string(),
        image: format!("{image}:{tag}"),
        privileged: p.privileged.unwrap_or(false),
        entrypoint,
        command,
        user: user.map(str::to_string),
        working_dir: working_dir.map(str::to_string),
        environment,
        links,
        dns,
        expose_ports,
        hostname: hostname.map(str::to_string),
        ports,
        cpu_shares,
        cpu_time_ms,
        memory_bytes,
        device_rules,
        binds,
        volumes_from,
        new_volumes,
        autostart: p.autostart.unwrap_or(false),
        labels,
    };
    Ok(Plan {
        image: image.to_string(),
        tag: tag.to_string(),
        source,
        spec,
        network,
    })
}

/// A host interface name as the kernel and the engine's network names
/// take it: 1 to 15 letters, digits, `_`, `.` or `-`, not `.` or `..`.
pub fn interface_name(field: &str, value: &str) -> Result<String, Error> {
    let ok = (1..=15).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && value != "."
        && value != "..";
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            field,
            "must be a host interface name (1 to 15 letters, digits, `_`, `.` or `-`)",
        ))
    }
}

/// A MAC address, `02:42:AC:11:00:02` or with `-`, as a lowercase
/// unicast address with `:`.
pub fn mac_address(field: &str, value: &str) -> Result<String, Error> {
    let parts: Vec<&str> = value.split([':', '-']).collect();
    let octets: Option<Vec<u8>> = (parts.len() == 6)
        .then(|| {
            parts
                .iter()
                .map(|p| {
                    (p.len() == 2)
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    let Some(octets) = octets else {
        return Err(Error::invalid(
            field,
            "must be a MAC address such as \"02:42:ac:11:00:02\"",
        ));
    };
    if octets[0] & 1 == 1 {
        return Err(Error::invalid(
            field,
            "must be a unicast address (the first octet even)",
        ));
    }
    Ok(octets
        .iter()
        .map(|o| format!("{o:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The network settings as a [`NetworkChoice`]; `None` for the engine's
/// default bridge without a MAC address (a plain `containers::create`).
pub fn network_choice(net: &Network) -> Result<Option<NetworkChoice>, Error> {
    let mode = set(&net.mode);
    match mode {
        None | Some("nat") | Some("bridge") => {}
        Some(_) => {
            return Err(Error::invalid(
                "network.mode",
                "must be \"nat\" (the engine's default network) or \"bridge\" (a host interface)",
            ))
        }
    }
    let bridge = net.bridge.clone().unwrap_or_default().0;
    match set(&bridge.mode) {
        None | Some("dhcp") => {}
        Some("static") => return Err(Error::invalid(
            "network.bridge.mode",
            "only \"dhcp\" is supported: the engine assigns the address on the interface's network",
        )),
        Some(_) => return Err(Error::invalid("network.bridge.mode", "must be \"dhcp\"")),
    }
    let bridge_if = bridge.interface.clone().unwrap_or_default().0;
    if let Some(name) = set(&bridge_if.name) {
        if name != "eth0" {
            return Err(Error::invalid(
                "network.bridge.interface.name",
                "must be \"eth0\": the engine names the container's interface",
            ));
        }
    }
    let interface = set(&net.interface)
        .map(|i| interface_name("network.interface", i.trim()))
        .transpose()?;
    let bridged = set(&bridge_if.bridge)
        .map(|i| interface_name("network.bridge.interface.bridge", i.trim()))
        .transpose()?;
    let interface = match (interface, bridged) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid(
                "network.bridge.interface.bridge",
                format!("`{b}` differs from network.interface `{a}`"),
            ))
        }
        (a, b) => a.or(b),
    };
    let join = match &net.join {
        None | Some(Value::Null) | Some(Value::Bool(_)) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => {
            check::name("network.join", s.trim())?;
            Some(s.trim().to_string())
        }
        Some(_) => {
            return Err(Error::invalid(
                "network.join",
                "must be true, false or the name of a container whose network to share",
            ))
        }
    };
    let mac = set(&net.mac_addr)
        .map(|m| mac_address("network.mac_addr", m.trim()))
        .transpose()?;
    let mode = match (mode, interface, join) {
        (_, Some(_), Some(_)) | (Some("bridge"), None, Some(_)) => {
            return Err(Error::invalid(
                "network.join",
                "cannot be a container with network.mode \"bridge\" or network.interface",
            ))
        }
        (Some("nat"), Some(_), None) => {
            return Err(Error::invalid(
                "network.interface",
                "needs network.mode \"bridge\" (\"nat\" is the engine's default network)",
            ))
        }
        (Some("bridge"), None, None) => {
            return Err(Error::invalid(
                "network.interface",
                "is required with network.mode \"bridge\"",
            ))
        }
        (_, Some(i), None) => NetworkMode::HostInterface(i),
        (_, None, Some(c)) => {
            if mac.is_some() {
                return Err(Error::invalid(
                    "network.mac_addr",
                    "cannot be set with network.join: the joined container's network decides it",
                ));
            }
            NetworkMode::Join(c)
        }
        (_, None, None) => NetworkMode::Nat,
    };
    if matches!(mode, NetworkMode::Nat) && mac.is_none() {
        return Ok(None);
    }
    Ok(Some(NetworkChoice {
        mode,
        mac_address: mac,
    }))
}

/// A params body as it arrives: a JSON object (an array or a scalar is
/// refused as `params: invalid type: ..., expected a map`). Categories take
/// this as their `Params` and [`decode`] it, so that a body is never read as
/// a struct from a positional array.
pub type Body = Map<String, Value>;

/// Decode a [`Body`] into [`CreateParams`], naming the field on type errors
/// (`network.dns[0]: invalid type: integer ...`).
pub fn decode(body: &Body) -> Result<CreateParams, Error> {
    stevedore_sdk::decode(&Value::Object(body.clone()).to_string())
}

/// Create the container of `plan` and start it, reporting progress (90%,
/// 95%, 100%); returns the final detail. This one calls the host.
pub fn create_and_start(plan: &Plan) -> Result<String, Error> {
    let name = &plan.spec.name;
    task::check_cancelled()?;
    task::progress(90, &format!("creating container {name}"));
    let id = match &plan.network {
        None => containers::create(&plan.spec)?,
        Some(network) => containers::create_on_network(&plan.spec, network)?,
    };
    task::info(&format!("created container {name} ({id})"));
    task::check_cancelled()?;
    task::progress(95, &format!("starting container {name}"));
    containers::start(plan.spec.runtime, &id).map_err(|e| match e {
        Error::Runtime(m) => Error::Runtime(format!(
            "container {name} was created but did not start: {m}"
        )),
        other => other,
    })?;
    task::progress(100, &format!("container {name} started"));
    Ok(format!(
        "created and started container {name} from {}",
        plan.spec.image
    ))
}

/// Lay `over` onto `base`: objects merge key by key (recursively); any
/// other value in `over` (arrays included) replaces the one in `base`.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Drop the given top-level keys from an object.
pub fn without(mut map: Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    for k in keys {
        map.remove(*k);
    }
    map
}

#[cfg(test)]
mod tests;
