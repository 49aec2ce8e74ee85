//! Container export archives: the engine's export of the container's files
//! (a tar), preceded by one extra entry, [`CONFIG_ENTRY`], holding the
//! container's configuration so that an import can recreate it.
//!
//! The entry is JSON: `{"version": 1, "format": "stevedore-container/1", "name", "image",
//! "create": {<create params, as `POST background/create` takes them>},
//! "inspect": {<the engine's inspect data>}}`.

use std::io::Read;
use std::path::Path;

use bollard::models::ContainerInspectResponse;
use serde_json::{json, Map, Value};

use crate::runtime::Error;

/// Name of the configuration entry, first in the archive.
pub const CONFIG_ENTRY: &str = ".stevedore/container.json";
/// Value of the entry's `format` field.
pub const FORMAT: &str = "stevedore-container/1";
const BLOCK: usize = 512;

/// A tar header + padded data for one regular file.
pub fn tar_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; BLOCK];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    header[136..147].copy_from_slice(format!("{now:011o}").as_bytes());
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out
}

/// Name and size of the tar header in `block`, or `None` at the end marker.
pub fn parse_header(block: &[u8]) -> Option<(String, u64)> {
    if block.len() < BLOCK || block.iter().all(|b| *b == 0) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| {
        let raw = &block[range];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).into_owned()
    };
    let mut name = field(0..100);
    if &block[257..262] == b"ustar" {
        let prefix = field(345..500);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    let size =
        u64::from_str_radix(field(124..136).trim().trim_matches(char::from(0)), 8).unwrap_or(0);
    Some((name, size))
}

/// Open an archive for reading, through gzip when it is compressed.
pub fn open(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = std::fs::File::open(path)?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// What an archive holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A `docker save` archive (`manifest.json` or `index.json` at the root).
    Saved,
    /// A root filesystem, possibly with our configuration entry first.
    Rootfs {
        /// The configuration entry's JSON, if present.
        config: Option<Value>,
        /// Bytes of the configuration entry (header + padded data) to skip.
        skip: u64,
    },
}

/// Look through an archive's headers.
pub fn inspect(path: &Path) -> Result<Kind, Error> {
    let io = |e: std::io::Error| Error::InvalidParams(format!("path: cannot read archive: {e}"));
    let mut reader = open(path).map_err(io)?;
    let mut block = [0u8; BLOCK];
    let mut first = true;
    let mut config = None;
    let mut skip = 0;
    loop {
        if let Err(e) = reader.read_exact(&mut block) {
            if first {
                return Err(Error::InvalidParams(format!(
                    "path: not a tar archive ({e})"
                )));
            }
            break;
        }
        let Some((name, size)) = parse_header(&block) else {
            break;
        };
        let name = name.trim_start_matches("./").to_string();
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if name == "manifest.json" || name == "index.json" {
            return Ok(Kind::Saved);
        }
        if first && name == CONFIG_ENTRY {
            let mut data = vec![0u8; padded as usize];
            reader.read_exact(&mut data).map_err(io)?;
            data.truncate(size as usize);
            config = Some(
                serde_json::from_slice(&data)
                    .map_err(|e| Error::InvalidParams(format!("path: bad {CONFIG_ENTRY}: {e}")))?,
            );
            skip = BLOCK as u64 + padded;
        } else {
            std::io::copy(&mut (&mut reader).take(padded), &mut std::io::sink()).map_err(io)?;
        }
        first = false;
    }
    Ok(Kind::Rootfs { config, skip })
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
    let mut create = Map::new();
    create.insert("type".into(), json!("docker"));
    create.insert("name".into(), json!(name));
    create.insert("image".into(), json!(repo));
    create.insert("tag".into(), json!(tag));
    if let Some(ep) = config.entrypoint.filter(|v| !v.is_empty()) {
        create.insert("entrypoint".into(), json!(ep));
    }
    if let Some(cmd) = config.cmd.filter(|v| !v.is_empty()) {
        create.insert("command".into(), json!(cmd));
    }
    if let Some(user) = config.user.filter(|v| !v.is_empty()) {
        create.insert("user".into(), json!(user));
    }
    if let Some(wd) = config.working_dir.filter(|v| !v.is_empty()) {
        create.insert("working_dir".into(), json!(wd));
    }
    if let Some(env) = config.env {
        create.insert("environment".into(), json!(env));
    }
    create.insert("privileged".into(), json!(host.privileged.unwrap_or(false)));
    let autostart = host
        .restart_policy
        .and_then(|p| p.name)
        .is_some_and(|n| n.to_string() == "always" || n.to_string() == "unless-stopped");
    create.insert("autostart".into(), json!(autostart));
    let mut network = Map::new();
    let published: std::collections::BTreeSet<String> = host
        .port_bindings
        .clone()
        .unwrap_or_default()
        .into_keys()
        .collect();
    let expose: Vec<u16> = config
        .exposed_ports
        .clone()
        .unwrap_or_default()
        .iter()
        .filter(|p| !published.contains(*p))
        .filter_map(|p| p.split('/').next()?.parse().ok())
        .collect();
    if !expose.is_empty() {
        network.insert("expose_port".into(), json!(expose));
    }
    // The engine names a container's host after its id unless told otherwise.
    let id = inspect.id.clone().unwrap_or_default();
    if let Some(h) = config
        .hostname
        .filter(|h| !h.is_empty() && !id.starts_with(h.as_str()))
    {
        network.insert("hostname".into(), json!(h));
    }
    if let Some(dns) = host.dns.filter(|d| !d.is_empty()) {
        network.insert("dns".into(), json!(dns));
    }
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
    if !ports.is_empty() {
        network.insert("port".into(), json!(ports));
    }
    if !network.is_empty() {
        create.insert("network".into(), Value::Object(network));
    }
    let mut limit = Map::new();
    if let Some(shares) = host.cpu_shares.filter(|s| *s > 0) {
        limit.insert("cpuweight".into(), json!(shares));
    }
    if let (Some(quota), Some(period)) = (
        host.cpu_quota.filter(|q| *q > 0),
        host.cpu_period.filter(|p| *p > 0),
    ) {
        limit.insert("cputime".into(), json!(quota * 1000 / period));
    }
    if let Some(memory) = host.memory.filter(|m| *m > 0) {
        limit.insert("memory".into(), json!(format!("{}m", memory >> 20)));
    }
    if !limit.is_empty() {
        create.insert("resource".into(), json!({"limit": limit}));
    }
    let mut binds = Map::new();
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
            binds.insert(
                format!("/{}", rel.display()),
                json!({"bind": dst, "ro": ro}),
            );
        }
    }
    if !binds.is_empty() {
        create.insert("volume".into(), json!({"host": binds}));
    }
    if let Some(labels) = config.labels.filter(|l| !l.is_empty()) {
        create.insert("labels".into(), json!(labels));
    }
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
        create.insert("links".into(), Value::Object(links));
    }
    if let Some(devices) = host.device_cgroup_rules.filter(|d| !d.is_empty()) {
        let resource = create.entry("resource").or_insert_with(|| json!({}));
        resource["device"] = json!(devices);
    }
    let mut volume = Map::new();
    if let Some(from) = host.volumes_from.filter(|v| !v.is_empty()) {
        volume.insert("container".into(), json!(from));
    }
    if let Some(new) = config.volumes.filter(|v| !v.is_empty()) {
        volume.insert("new".into(), json!(new));
    }
    if !volume.is_empty() {
        let entry = create.entry("volume").or_insert_with(|| json!({}));
        if let Value::Object(existing) = entry {
            existing.extend(volume);
        }
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

/// `repo:tag` → (`repo`, `tag`), with `latest` when no tag is given.
pub fn split_reference(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (reference.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips_through_the_header_parser() {
        let entry = tar_entry(CONFIG_ENTRY, b"{\"a\":1}");
        assert_eq!(entry.len(), 1024);
        assert_eq!(
            parse_header(&entry[..512]),
            Some((CONFIG_ENTRY.to_string(), 7))
        );
        assert_eq!(parse_header(&[0u8; 512]), None);
    }

    #[test]
    fn inspect_tells_saved_from_rootfs_and_finds_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut rootfs = tar_entry(CONFIG_ENTRY, br#"{"format":"stevedore-container/1"}"#);
        rootfs.extend(tar_entry("etc/hostname", b"x\n"));
        rootfs.extend([0u8; 1024]);
        std::fs::write(dir.path().join("c.tar"), &rootfs).unwrap();
        match inspect(&dir.path().join("c.tar")).unwrap() {
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
        assert_eq!(inspect(&dir.path().join("s.tgz")).unwrap(), Kind::Saved);
        std::fs::write(dir.path().join("junk"), b"").unwrap();
        assert!(matches!(
            inspect(&dir.path().join("junk")),
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
