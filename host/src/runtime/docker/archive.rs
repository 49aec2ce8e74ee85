//! Container export archives: the engine's export of the container's files
//! (a tar), preceded by one extra entry, [`CONFIG_ENTRY`], holding the
//! container's configuration so that an import can recreate it.
//!
//! The entry is JSON: `{"version": 1, "format": "stevedore-container/1", "name", "image",
//! "create": {<create params, as `POST background/create` takes them: [`CreateParams`]>},
//! "inspect": {<the engine's inspect data>}}`.

use std::path::Path;

use std::collections::BTreeMap;

use bollard::models::ContainerInspectResponse;
use serde_json::{json, Map, Value};
use stevedore_contract::create::{CreateParams, HostBind, Limit, Network, Resource, Volume};
use stevedore_contract::Object;

use crate::runtime::archives::{self, split_reference, CONFIG_ENTRY, FORMAT};
use crate::runtime::Error;

/// What an archive holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A `docker save` archive (`manifest.json` or `index.json` at the root).
    Saved,
    /// A root filesystem, possibly with our configuration entry first.
    Rootfs {
        /// The configuration entry's JSON, if present.
        config: Option<Value>,
        /// Bytes of the decompressed stream before the next entry, to skip.
        skip: u64,
    },
}

/// Read the whole archive through the host's archive rules
/// ([`crate::runtime::archives`]) and say what it holds. Every refusal is
/// `invalid-params` on the field `path`.
pub fn inspect(file: std::fs::File, max_expanded: u64) -> Result<Kind, Error> {
    let summary = archives::scan(file, max_expanded, CONFIG_ENTRY)
        .map_err(|e| Error::InvalidParams(format!("path: {e}")))?;
    Ok(if summary.saved {
        Kind::Saved
    } else {
        Kind::Rootfs {
            config: summary.config,
            skip: summary.config_skip,
        }
    })
}

/// The configuration entry for a container, from its inspect data.
pub fn config_from_inspect(inspect: &ContainerInspectResponse, share_root: &Path) -> Value {
    let config = inspect.config.clone().unwrap_or_default();
    let host = inspect.host_config.clone().unwrap_or_default();
    let name = inspect
        .name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let image = config.image.clone().unwrap_or_default();
    let (repo, tag) = split_reference(&image);
    let autostart = host
        .restart_policy
        .and_then(|p| p.name)
        .is_some_and(|n| n.to_string() == "always" || n.to_string() == "unless-stopped");
    let mut create = CreateParams {
        kind: Some("docker".into()),
        name: Some(name.clone()),
        image: Some(repo),
        tag: Some(tag),
        entrypoint: config
            .entrypoint
            .filter(|v| !v.is_empty())
            .map(|v| json!(v)),
        command: config.cmd.filter(|v| !v.is_empty()).map(|v| json!(v)),
        user: config.user.filter(|v| !v.is_empty()),
        working_dir: config.working_dir.filter(|v| !v.is_empty()),
        environment: config.env.map(|v| json!(v)),
        privileged: Some(host.privileged.unwrap_or(false)),
        autostart: Some(autostart),
        ..Default::default()
    };
    let mut network = Network::default();
    let published: std::collections::BTreeSet<String> = host
        .port_bindings
        .clone()
        .unwrap_or_default()
        .into_keys()
        .collect();
    let expose: Vec<Value> = config
        .exposed_ports
        .clone()
        .unwrap_or_default()
        .iter()
        .filter(|p| !published.contains(*p))
        .filter_map(|p| p.split('/').next()?.parse::<u16>().ok())
        .map(|p| json!(p))
        .collect();
    network.expose_port = Some(expose).filter(|e| !e.is_empty());
    // The engine names a container's host after its id unless told otherwise.
    let id = inspect.id.clone().unwrap_or_default();
    network.hostname = config
        .hostname
        .filter(|h| !h.is_empty() && !id.starts_with(h.as_str()));
    network.dns = host.dns.filter(|d| !d.is_empty());
    let mut ports = Vec::new();
    for (key, bindings) in host.port_bindings.unwrap_or_default() {
        let (container_port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        for b in bindings.unwrap_or_default() {
            if let (Ok(c), Some(Ok(h))) = (
                container_port.parse::<u16>(),
                b.host_port.map(|p| p.parse::<u16>()),
            ) {
                ports.push(json!([h, c, proto]));
            }
        }
    }
    network.port = Some(ports).filter(|p| !p.is_empty());
    if network != Network::default() {
        create.network = Some(Object(network));
    }
    let mut limit = Limit::default();
    if let Some(shares) = host.cpu_shares.filter(|s| *s > 0) {
        limit.cpuweight = Some(json!(shares));
    }
    if let (Some(quota), Some(period)) = (
        host.cpu_quota.filter(|q| *q > 0),
        host.cpu_period.filter(|p| *p > 0),
    ) {
        limit.cputime = Some(json!(quota * 1000 / period));
    }
    if let Some(memory) = host.memory.filter(|m| *m > 0) {
        limit.memory = Some(json!(format!("{}m", memory >> 20)));
    }
    let mut resource = Resource::default();
    if limit != Limit::default() {
        resource.limit = Some(Object(limit));
    }
    resource.device = host
        .device_cgroup_rules
        .filter(|d| !d.is_empty())
        .map(|d| d.into_iter().map(Value::String).collect());
    if resource != Resource::default() {
        create.resource = Some(Object(resource));
    }
    let mut binds = BTreeMap::new();
    for bind in host.binds.unwrap_or_default() {
        let mut parts = bind.splitn(3, ':');
        let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
            continue;
        };
        let ro = parts
            .next()
            .is_some_and(|o| o.split(',').any(|x| x == "ro"));
        // Only share-root folders travel with the container, as share paths.
        if let Ok(rel) = Path::new(src).strip_prefix(share_root) {
            let entry = HostBind {
                bind: Some(dst.to_string()),
                ro: Some(ro),
                rw: None,
            };
            binds.insert(format!("/{}", rel.display()), Object(entry));
        }
    }
    let volume = Volume {
        host: Some(binds).filter(|b| !b.is_empty()),
        container: host.volumes_from.filter(|v| !v.is_empty()),
        new: config.volumes.filter(|v| !v.is_empty()).map(|v| json!(v)),
    };
    if volume != Volume::default() {
        create.volume = Some(Object(volume));
    }
    create.labels = config
        .labels
        .filter(|l| !l.is_empty())
        .map(|l| l.into_iter().collect());
    let links: Map<String, Value> = host
        .links
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            // The engine reports `/other:/this/alias`.
            let (target, alias) = l.split_once(':')?;
            Some((
                target.trim_start_matches('/').to_string(),
                json!(alias.rsplit('/').next().unwrap_or(alias)),
            ))
        })
        .collect();
    if !links.is_empty() {
        create.links = Some(Value::Object(links));
    }
    json!({
        "version": 1,
        "format": FORMAT,
        "name": name,
        "image": image,
        "create": create,
        "inspect": inspect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::archives::tar_entry;

    const CAP: u64 = archives::DEFAULT_MAX_EXPANDED_BYTES;

    fn open(path: &Path) -> std::fs::File {
        std::fs::File::open(path).unwrap()
    }

    #[test]
    fn entry_is_read_back_by_the_tar_crate() {
        let entry = tar_entry(CONFIG_ENTRY, b"{\"a\":1}");
        assert_eq!(entry.len(), 1024);
        let mut with_end = entry.clone();
        with_end.extend([0u8; 1024]);
        let mut ar = tar::Archive::new(&with_end[..]);
        let mut entries = ar.entries().unwrap();
        let mut first = entries.next().unwrap().unwrap();
        assert_eq!(first.path().unwrap(), Path::new(CONFIG_ENTRY));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut first, &mut text).unwrap();
        assert_eq!(text, "{\"a\":1}");
    }

    #[test]
    fn inspect_tells_saved_from_rootfs_and_finds_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut rootfs = tar_entry(CONFIG_ENTRY, br#"{"format":"stevedore-container/1"}"#);
        rootfs.extend(tar_entry("etc/hostname", b"x\n"));
        rootfs.extend([0u8; 1024]);
        std::fs::write(dir.path().join("c.tar"), &rootfs).unwrap();
        match inspect(open(&dir.path().join("c.tar")), CAP).unwrap() {
            Kind::Rootfs {
                config: Some(c),
                skip,
            } => {
                assert_eq!(c["format"], FORMAT);
                assert_eq!(skip, 1024);
            }
            other => panic!("{other:?}"),
        }
        let mut saved = tar_entry("abc/layer.tar", b"x");
        saved.extend(tar_entry("manifest.json", b"[]"));
        saved.extend([0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &saved).unwrap();
        std::fs::write(dir.path().join("s.tgz"), gz.finish().unwrap()).unwrap();
        assert_eq!(
            inspect(open(&dir.path().join("s.tgz")), CAP).unwrap(),
            Kind::Saved
        );
        std::fs::write(dir.path().join("junk"), b"").unwrap();
        assert!(matches!(
            inspect(open(&dir.path().join("junk")), CAP),
            Err(Error::InvalidParams(_))
        ));
    }

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(
            split_reference("busybox:1.36"),
            ("busybox".into(), "1.36".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/busybox"),
            ("127.0.0.1:5000/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/b:x"),
            ("127.0.0.1:5000/b".into(), "x".into())
        );
    }
}
