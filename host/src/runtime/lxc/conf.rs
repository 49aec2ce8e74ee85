//! What a container is made of on disk: its LXC `config` (written from a
//! [`ContainerSpec`]) and our record beside it, `stevedore.json`
//! ([`Record`]: image, address, ports and the create-shaped settings that an
//! export carries).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stevedore_contract::{create as body, Object};

use super::idmap::IdMap;
use super::network::{Lease, Network, Port};
use crate::runtime::{ContainerSpec, Error};

/// Name of our record beside the LXC config.
pub const RECORD: &str = "stevedore.json";

/// Which cgroup hierarchy holds the controllers on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    /// Controllers mounted one per folder under `/sys/fs/cgroup` (v1, or "hybrid"): `lxc.cgroup.*`.
    V1,
    /// The unified hierarchy only: `lxc.cgroup2.*`.
    V2,
}

impl Cgroups {
    /// Look at `/sys/fs/cgroup`: a v1 `memory` controller folder means v1
    /// keys, a unified root (`cgroup.controllers`) without it means v2.
    pub fn detect() -> Cgroups {
        Self::detect_in(Path::new("/sys/fs/cgroup"))
    }

    /// [`Cgroups::detect`] on another root (for tests).
    pub fn detect_in(root: &Path) -> Cgroups {
        if root.join("memory/memory.limit_in_bytes").exists() {
            Cgroups::V1
        } else if root.join("cgroup.controllers").exists() {
            Cgroups::V2
        } else {
            Cgroups::V1
        }
    }
}

/// What we record about a container of ours.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// The image it came from, `name:tag`.
    pub image: String,
    /// That image's id.
    pub image_id: String,
    /// Its place on the bridge.
    pub lease: Option<Lease>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Creation time, epoch seconds.
    #[serde(default)]
    pub created: i64,
    /// The settings as `POST background/create` takes them (what an export records).
    #[serde(default)]
    pub create: Value,
}

impl Record {
    /// Read `<dir>/stevedore.json`; `None` for a container that is not ours.
    pub fn read(dir: &Path) -> Option<Record> {
        let text = std::fs::read(dir.join(RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Write it (temporary name, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let temp = dir.join(format!(".{RECORD}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(&temp, text)
            .and_then(|_| std::fs::rename(&temp, dir.join(RECORD)))
            .map_err(|e| Error::Runtime(format!("writing {}: {e}", dir.join(RECORD).display())))
    }
}

/// `cpu.weight` (v2, 1..=10000) for `cpu.shares` (v1, 2..=262144), as runc converts it.
pub fn shares_to_weight(shares: u32) -> u32 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// An fstab field: spaces, tabs, newlines and backslashes as octal escapes.
fn fstab_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The host folders of a config's `lxc.mount.entry` lines (unescaped).
pub fn mount_sources(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "lxc.mount.entry").then(|| value.split_whitespace().next())?
        })
        .map(crate::runtime::pins::unescape_octal)
        .collect()
}

/// A container path from the spec, checked: absolute, no `..`, no control characters.
fn container_path(field: &str, path: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::InvalidParams(format!("{field}: `{path}` {why}"));
    if !path.starts_with('/') {
        return Err(bad("must be an absolute path in the container"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad("must not contain `..`"));
    }
    if parts.is_empty() {
        return Err(bad("must not be the container's root"));
    }
    Ok(parts.join("/"))
}

/// The `lxc.mount.entry` value of `bind` (entry `field` of the spec),
/// mounted from its pinned staging folder `host`, as a create writes it.
pub(super) fn mount_entry(
    field: &str,
    bind: &crate::runtime::BindMount,
    host: &Path,
) -> Result<String, Error> {
    let inside = container_path(&format!("{field}.bind"), &bind.container_path)?;
    let options = if bind.read_only {
        "bind,create=dir,ro"
    } else {
        "bind,create=dir"
    };
    Ok(format!(
        "{} {} none {options} 0 0",
        fstab_escape(&host.to_string_lossy()),
        fstab_escape(&inside)
    ))
}

/// A device cgroup rule from the spec (`c 81:* rw`), checked.
pub(super) fn device_rule(rule: &str) -> Result<String, Error> {
    let bad = || {
        Error::InvalidParams(format!(
            "resource.device: `{rule}` is not a device rule like \"c 81:* rw\""
        ))
    };
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [kind, numbers, access] = parts[..] else {
        return Err(bad());
    };
    let number = |n: &str| n == "*" || (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let ok = matches!(kind, "a" | "b" | "c")
        && numbers
            .split_once(':')
            .is_some_and(|(a, b)| number(a) && number(b))
        && !access.is_empty()
        && access.bytes().all(|b| matches!(b, b'r' | b'w' | b'm'));
    if ok {
        Ok(format!("{kind} {numbers} {access}"))
    } else {
        Err(bad())
    }
}

/// Everything the config needs besides the spec.
pub struct Context<'a> {
    /// The container's folder (`<lxc path>/<name>`).
    pub dir: &'a Path,
    /// Cgroup keys to use.
    pub cgroups: Cgroups,
    /// The bridge.
    pub network: &'a Network,
    /// The container's address.
    pub lease: &'a Lease,
    /// The host folder of each of the spec's `binds`, in order: their
    /// pinned staging folders ([`crate::runtime::pins`]).
    pub binds: &'a [PathBuf],
    /// `lxc.signal.halt` for the image's init (busybox halts on SIGUSR1).
    pub halt_signal: Option<&'a str>,
    /// The ids of an unprivileged container; `None`: root inside is the host's root.
    pub idmap: Option<IdMap>,
}

/// The config key of the console log.
pub const CONSOLE_LOGFILE_KEY: &str = "lxc.console.logfile";
/// The console log's file name in the container's folder.
pub const CONSOLE_LOG: &str = "console.log";

/// The LXC config text for `spec`; bind sources are `cx.binds`.
pub fn config_text(spec: &ContainerSpec, cx: &Context<'_>) -> Result<String, Error> {
    let mut c = String::from("# Written by stevedore from the container's create settings.\n");
    // LXC's default profile applies where the kernel has AppArmor; never `unconfined`.
    if !Path::new("/sys/kernel/security/apparmor").exists() {
        c.push_str("# This kernel has no AppArmor: no profile applies.\n");
    }
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(c, "{k} = {v}");
    };
    if Path::new("/usr/share/lxc/config/common.conf").exists() {
        line("lxc.include", "/usr/share/lxc/config/common.conf");
    }
    line("lxc.arch", std::env::consts::ARCH);
    line(
        "lxc.rootfs.path",
        &format!("dir:{}", cx.dir.join("rootfs").display()),
    );
    let hostname = spec.hostname.as_deref().unwrap_or(spec.name.as_str());
    let host_ok = !hostname.is_empty()
        && hostname.len() <= 253
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !host_ok {
        return Err(Error::InvalidParams(format!(
            "network.hostname: `{}` is not a host name",
            hostname.escape_debug()
        )));
    }
    line("lxc.uts.name", hostname);
    if let Some(map) = cx.idmap {
        for ids in map.config_lines() {
            line("lxc.idmap", &ids);
        }
    }
    line("lxc.autodev", "1");
    // The console's output, for `GET container/lxc/{id}/logs`: in the
    // container's folder, outside its rootfs.
    line(
        CONSOLE_LOGFILE_KEY,
        &cx.dir.join(CONSOLE_LOG).display().to_string(),
    );
    if let Some(signal) = cx.halt_signal {
        line("lxc.signal.halt", signal);
    }
    line("lxc.net.0.type", "veth");
    line("lxc.net.0.link", &cx.network.bridge);
    line("lxc.net.0.flags", "up");
    line("lxc.net.0.name", "eth0");
    line("lxc.net.0.hwaddr", &cx.lease.mac);
    line("lxc.net.0.ipv4.address", &format!("{}/24", cx.lease.ip));
    line(
        "lxc.net.0.ipv4.gateway",
        &cx.network.subnet.gateway().to_string(),
    );
    line("lxc.start.auto", if spec.autostart { "1" } else { "0" });
    let (prefix, v2) = match cx.cgroups {
        Cgroups::V1 => ("lxc.cgroup", false),
        Cgroups::V2 => ("lxc.cgroup2", true),
    };
    if let Some(bytes) = spec.memory_bytes {
        let key = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        line(&format!("{prefix}.{key}"), &bytes.to_string());
    }
    if let Some(shares) = spec.cpu_shares {
        if v2 {
            line(
                &format!("{prefix}.cpu.weight"),
                &shares_to_weight(shares).to_string(),
            );
        } else {
            line(&format!("{prefix}.cpu.shares"), &shares.to_string());
        }
    }
    if let Some(ms) = spec.cpu_time_ms {
        let quota = u64::from(ms) * 100;
        if v2 {
            line(&format!("{prefix}.cpu.max"), &format!("{quota} 100000"));
        } else {
            line(&format!("{prefix}.cpu.cfs_period_us"), "100000");
            line(&format!("{prefix}.cpu.cfs_quota_us"), &quota.to_string());
        }
    }
    for rule in &spec.device_rules {
        line(&format!("{prefix}.devices.allow"), &device_rule(rule)?);
    }
    if cx.binds.len() != spec.binds.len() {
        return Err(Error::Other(
            "volume.host: not every bind source was pinned".into(),
        ));
    }
    for (i, (b, host)) in spec.binds.iter().zip(cx.binds).enumerate() {
        let field = format!("volume.host[{i}]");
        let inside = container_path(&format!("{field}.bind"), &b.container_path)?;
        let options = if b.read_only {
            "bind,create=dir,ro"
        } else {
            "bind,create=dir"
        };
        line(
            "lxc.mount.entry",
            &format!(
                "{} {} none {options} 0 0",
                fstab_escape(&host.to_string_lossy()),
                fstab_escape(&inside)
            ),
        );
    }
    Ok(c)
}

/// The published ports of `spec`; host port 0 takes a free one.
pub fn ports(spec: &ContainerSpec) -> Result<Vec<Port>, Error> {
    spec.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let udp = match p.protocol.as_str() {
                "" | "tcp" => false,
                "udp" => true,
                other => {
                    return Err(Error::InvalidParams(format!(
                        "network.port[{i}]: protocol `{other}` must be tcp or udp"
                    )))
                }
            };
            let host = match p.host_port {
                0 => std::net::TcpListener::bind("0.0.0.0:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .map_err(|e| Error::Runtime(format!("network.port[{i}]: no free port: {e}")))?,
                h => h,
            };
            Ok(Port {
                host,
                container: p.container_port,
                udp,
            })
        })
        .collect()
}

/// The create-shaped settings of `spec`, as `container_import` reads them back.
pub fn create_settings(spec: &ContainerSpec, ports: &[Port]) -> Value {
    let (image, tag) = crate::runtime::archives::split_reference(&spec.image);
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!([p.host, p.container, if p.udp { "udp" } else { "tcp" }]))
        .collect();
    let network = body::Network {
        hostname: spec.hostname.clone(),
        dns: Some(spec.dns.clone()).filter(|d| !d.is_empty()),
        expose_port: Some(spec.expose_ports.iter().map(|p| json!(p)).collect())
            .filter(|e: &Vec<Value>| !e.is_empty()),
        port: Some(ports).filter(|p| !p.is_empty()),
        ..Default::default()
    };
    let limit = body::Limit {
        cpuweight: spec.cpu_shares.map(|w| json!(w)),
        cputime: spec.cpu_time_ms.map(|ms| json!(ms)),
        memory: spec.memory_bytes.map(|m| json!(m)),
    };
    let resource = body::Resource {
        limit: Some(Object(limit)).filter(|l| l.0 != body::Limit::default()),
        device: Some(spec.device_rules.iter().map(|r| json!(r)).collect())
            .filter(|d: &Vec<Value>| !d.is_empty()),
    };
    let binds: BTreeMap<String, Object<body::HostBind>> = spec
        .binds
        .iter()
        .map(|b| {
            let entry = body::HostBind {
                bind: Some(b.container_path.clone()),
                ro: Some(b.read_only),
                rw: None,
            };
            (
                format!("/{}", b.host_path.trim_start_matches('/')),
                Object(entry),
            )
        })
        .collect();
    let create = body::CreateParams {
        kind: Some("lxc".into()),
        name: Some(spec.name.clone()),
        image: Some(image),
        tag: Some(tag),
        autostart: Some(spec.autostart),
        network: Some(Object(network)).filter(|n| n.0 != body::Network::default()),
        resource: Some(Object(resource)).filter(|r| r.0 != body::Resource::default()),
        volume: Some(binds).filter(|b| !b.is_empty()).map(|host| {
            Object(body::Volume {
                host: Some(host),
                ..Default::default()
            })
        }),
        labels: Some(spec.labels.iter().cloned().collect())
            .filter(|l: &BTreeMap<String, String>| !l.is_empty()),
        ..Default::default()
    };
    json!(create)
}

/// Write `nameserver` lines for `dns` to `rootfs/etc/resolv.conf` (a link
/// there is replaced; a `etc` that leads out of the rootfs is refused),
/// owned by the container's root under `idmap`.
pub fn write_resolv_conf(rootfs: &Path, dns: &[String], idmap: Option<IdMap>) -> Result<(), Error> {
    let mut text = String::new();
    for (i, server) in dns.iter().enumerate() {
        if server.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::InvalidParams(format!(
                "network.dns[{i}]: `{server}` is not an IP address"
            )));
        }
        let _ = writeln!(text, "nameserver {server}");
    }
    if text.is_empty() {
        return Ok(());
    }
    let fail = |e: std::io::Error| Error::Runtime(format!("writing /etc/resolv.conf: {e}"));
    let root = rootfs.canonicalize().map_err(fail)?;
    let etc = rootfs.join("etc");
    std::fs::create_dir_all(&etc).map_err(fail)?;
    let real = etc.canonicalize().map_err(fail)?;
    if !real.starts_with(&root) {
        return Err(Error::Runtime(
            "the image's /etc leads out of its root filesystem".into(),
        ));
    }
    let file = real.join("resolv.conf");
    if std::fs::symlink_metadata(&file).is_ok() {
        std::fs::remove_file(&file).map_err(fail)?;
    }
    std::fs::write(&file, text).map_err(fail)?;
    if let Some(map) = idmap {
        let (uid, gid) = map.shift(0, 0);
        std::os::unix::fs::lchown(&file, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok(())
}

/// The halt signal for the init in `rootfs`: busybox's init halts on SIGUSR1
/// (it ignores LXC's default SIGPWR, so a stop would wait for its timeout).
pub fn halt_signal(rootfs: &Path) -> Option<&'static str> {
    let init = rootfs.join("sbin/init");
    let target = std::fs::read_link(&init).ok()?;
    let name = target.file_name()?.to_string_lossy().into_owned();
    (name == "busybox").then_some("SIGUSR1")
}

/// The container's folder under the LXC path, for a checked name.
pub fn container_dir(lxc_path: &Path, name: &str) -> Result<PathBuf, Error> {
    let ok = name.len() >= 2
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(Error::InvalidParams(format!(
            "name: `{name}` must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{{1,63}}$"
        )));
    }
    Ok(lxc_path.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::lxc::network::Subnet;
    use crate::runtime::simulated::test_spec;
    use crate::runtime::{BindMount, RuntimeKind};

    pub(crate) fn spec(name: &str) -> ContainerSpec {
        test_spec(RuntimeKind::Lxc, name)
    }

    /// The bridge and the address the configuration tests give a container.
    fn bridge() -> (Network, Lease) {
        let network = Network::new("stvtest9", Subnet::parse("10.9.0.0/24").unwrap());
        let lease = Lease {
            mac: "02:53:00:00:00:01".into(),
            ip: "10.9.0.7".parse().unwrap(),
        };
        (network, lease)
    }

    /// A context on `network` and `lease` with no binds, the default halt
    /// signal and no id map.
    fn context<'a>(network: &'a Network, lease: &'a Lease) -> Context<'a> {
        Context {
            dir: Path::new("/x"),
            cgroups: Cgroups::V1,
            network,
            lease,
            binds: &[],
            halt_signal: None,
            idmap: None,
        }
    }

    #[test]
    fn config_has_limits_devices_binds_and_network() {
        let dir = tempfile::tempdir().unwrap();
        let staged = [PathBuf::from("/data/binds/0a/my data")];
        let (network, lease) = bridge();
        let mut s = spec("web");
        s.hostname = Some("CustomHostName".into());
        s.memory_bytes = Some(768 << 20);
        s.cpu_shares = Some(512);
        s.cpu_time_ms = Some(512);
        s.device_rules = vec!["c 81:* rw".into()];
        s.autostart = true;
        s.binds = vec![BindMount {
            host_path: "Public/my data".into(),
            container_path: "/srv/data".into(),
            read_only: true,
        }];
        let cx = Context {
            dir: Path::new("/var/lib/lxc/web"),
            binds: &staged,
            halt_signal: Some("SIGUSR1"),
            idmap: Some(IdMap {
                uid: 131_072,
                gid: 131_072,
            }),
            ..context(&network, &lease)
        };
        let text = config_text(&s, &cx).unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", rootfs.join("etc/resolv.conf")).unwrap();
        write_resolv_conf(&rootfs, &["10.0.0.2".into()], None).unwrap();
        assert_eq!(
            std::fs::read_to_string(rootfs.join("etc/resolv.conf")).unwrap(),
            "nameserver 10.0.0.2\n"
        );
        assert!(write_resolv_conf(&rootfs, &["x".into()], None).is_err());
        for want in [
            "lxc.uts.name = CustomHostName\n",
            "lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs\n",
            "lxc.cgroup.memory.limit_in_bytes = 805306368\n",
            "lxc.cgroup.cpu.shares = 512\n",
            "lxc.cgroup.cpu.cfs_quota_us = 51200\n",
            "lxc.cgroup.devices.allow = c 81:* rw\n",
            "lxc.start.auto = 1\n",
            "lxc.net.0.link = stvtest9\n",
            "lxc.net.0.ipv4.address = 10.9.0.7/24\n",
            "lxc.net.0.ipv4.gateway = 10.9.0.1\n",
            "lxc.signal.halt = SIGUSR1\n",
            "lxc.console.logfile = /var/lib/lxc/web/console.log\n",
            "lxc.idmap = u 0 131072 65536\n",
            "lxc.idmap = g 0 131072 65536\n",
            "srv/data none bind,create=dir,ro 0 0\n",
            "/data/binds/0a/my\\040data ",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(mount_sources(&text), ["/data/binds/0a/my data"]);
        assert!(!text.contains("unconfined"), "{text}");
        let v2 = config_text(
            &s,
            &Context {
                cgroups: Cgroups::V2,
                ..cx
            },
        )
        .unwrap();
        assert!(v2.contains("lxc.cgroup2.memory.max = 805306368\n"), "{v2}");
        assert!(v2.contains("lxc.cgroup2.cpu.max = 51200 100000\n"), "{v2}");
        assert!(v2.contains("lxc.cgroup2.cpu.weight = 20\n"), "{v2}");
    }

    #[test]
    fn bad_spec_values_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let staged = [PathBuf::from("/data/binds/0a/0")];
        let (network, lease) = bridge();
        let cx = context(&network, &lease);
        let mut s = spec("web");
        s.device_rules = vec!["c 81:* rw\nlxc.hook.pre-start = /bin/evil".into()];
        assert!(
            matches!(config_text(&s, &cx), Err(Error::InvalidParams(m)) if m.starts_with("resource.device"))
        );
        let cx = Context {
            binds: &staged,
            ..cx
        };
        let mut s = spec("web");
        s.binds = vec![BindMount {
            host_path: "a".into(),
            container_path: "/../../etc".into(),
            read_only: false,
        }];
        assert!(
            matches!(config_text(&s, &cx), Err(Error::InvalidParams(m)) if m.starts_with("volume.host[0].bind"))
        );
        let mut s = spec("web");
        s.hostname = Some("a\nlxc.hook.pre-start = /bin/evil".into());
        assert!(
            matches!(config_text(&s, &cx), Err(Error::InvalidParams(m)) if m.starts_with("network.hostname"))
        );
        assert!(container_dir(Path::new("/l"), "../x").is_err());
        assert_eq!(shares_to_weight(1024), 39);
        assert!(Cgroups::detect_in(dir.path()) == Cgroups::V1);
    }
}
