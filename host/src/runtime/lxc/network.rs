//! The network of LXC containers: a bridge the server creates (name and
//! `/24` subnet configurable), one address per container, and published
//! ports as nftables DNAT rules.
//!
//! - Addresses are handed out from the subnet (the bridge takes `.1`) and
//!   recorded as `mac,ip` files in a folder per bridge under
//!   `/run/stevedore/lxc-net/<bridge>/hosts/`, shared by every server on the
//!   host that uses the bridge (taken under a lock file). The container gets
//!   the address twice: statically (`lxc.net.0.ipv4.address`, so it is there
//!   before init runs) and from a `dnsmasq` on the bridge that serves exactly
//!   those reservations, because images whose init runs a DHCP client
//!   (busybox's `udhcpc`, Ubuntu's ifupdown) flush a static address first.
//! - `network.port` becomes DNAT rules in the `prerouting` and `output`
//!   chains of our own table `ip stevedore_<bridge>`, each with the
//!   container's MAC as comment so that they go with it; `postrouting`
//!   masquerades the bridge's traffic that leaves the host and connections
//!   from `127.0.0.1` (with `net.ipv4.conf.all.route_localnet=1`, which DNAT
//!   from loopback needs). Docker's engine sets the `FORWARD` policy to
//!   `DROP`, so the bridge gets `ACCEPT` rules in `FORWARD` when `iptables`
//!   is present.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rand::Rng;

use super::tools;
use crate::runtime::Error;

/// An IPv4 `/24` subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    base: [u8; 3],
}

impl Subnet {
    /// Parse `a.b.c.0/24`.
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a subnet like 10.213.0.0/24"))?;
        if len != "24" {
            return Err(format!("`{text}`: only /24 subnets are supported"));
        }
        let ip: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not a subnet like 10.213.0.0/24"))?;
        let [a, b, c, _] = ip.octets();
        Ok(Subnet { base: [a, b, c] })
    }

    /// Host `n` of the subnet.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.base[0], self.base[1], self.base[2], n)
    }

    /// The bridge's own address (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/24", self.host(0))
    }
}

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Port {
    /// Port on the host.
    pub host: u16,
    /// Port in the container.
    pub container: u16,
    /// `tcp` or `udp`.
    pub udp: bool,
}

/// A container's place on the bridge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// Its MAC address (`02:...`, locally administered).
    pub mac: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// The bridge of LXC containers.
#[derive(Debug, Clone)]
pub struct Network {
    /// Bridge name.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Subnet,
    state: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Runtime(format!("{what} {}: {e}", path.display()))
}

/// An exclusive lock on a file, released when dropped.
struct Locked(#[allow(dead_code)] std::fs::File);

impl Locked {
    async fn take(path: PathBuf) -> Result<Locked, Error> {
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| io("opening", &path, e))?;
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a file descriptor we own; it is released when the file closes.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc != 0 {
                return Err(io("locking", &path, std::io::Error::last_os_error()));
            }
            Ok(Locked(file))
        })
        .await
        .map_err(|e| Error::Other(e.to_string()))?
    }
}

impl Network {
    /// The network on `bridge` with `subnet`; state under `/run/stevedore/lxc-net/<bridge>`.
    pub fn new(bridge: &str, subnet: Subnet) -> Network {
        Network {
            bridge: bridge.to_string(),
            subnet,
            state: PathBuf::from("/run/stevedore/lxc-net").join(bridge),
        }
    }

    fn table(&self) -> String {
        format!("stevedore_{}", self.bridge.replace('-', "_"))
    }

    fn hosts_dir(&self) -> PathBuf {
        self.state.join("hosts")
    }

    async fn lock(&self) -> Result<Locked, Error> {
        std::fs::create_dir_all(self.hosts_dir()).map_err(|e| io("creating", &self.state, e))?;
        Locked::take(self.state.join("lock")).await
    }

    /// Create what is missing: the bridge, its dnsmasq, the nftables table, the forward rules.
    pub async fn ensure(&self) -> Result<(), Error> {
        let _lock = self.lock().await?;
        self.ensure_locked().await
    }

    async fn ensure_locked(&self) -> Result<(), Error> {
        let br = self.bridge.as_str();
        let gw = format!("{}/24", self.subnet.gateway());
        if tools::run("ip", ["link", "show", "dev", br]).await.is_err() {
            tools::run("ip", ["link", "add", br, "type", "bridge"]).await?;
        }
        let shown = tools::run("ip", ["-4", "addr", "show", "dev", br]).await?;
        if !shown.contains(&format!("inet {gw} ")) {
            tools::run("ip", ["addr", "add", gw.as_str(), "dev", br]).await?;
        }
        tools::run("ip", ["link", "set", br, "up"]).await?;
        self.ensure_dnsmasq().await?;
        self.ensure_nft().await?;
        if tools::which("iptables").is_some() {
            for dir in ["-i", "-o"] {
                let rule = ["FORWARD", dir, br, "-j", "ACCEPT"];
                if tools::run("iptables", ["-C"].iter().chain(&rule))
                    .await
                    .is_err()
                {
                    // Only traffic routed through the host needs it; the host itself reaches the bridge.
                    if let Err(e) = tools::run("iptables", ["-I"].iter().chain(&rule)).await {
                        tracing::warn!("LXC bridge {br}: no FORWARD rule: {e}");
                    }
                }
            }
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1");
        Ok(())
    }

    fn dnsmasq_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.state.join("dnsmasq.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "dnsmasq").then_some(pid)
    }

    /// Make dnsmasq re-read the reservations (it also watches the folder; this does not wait for that).
    fn reload_dnsmasq(&self) {
        if let Some(pid) = self.dnsmasq_pid() {
            // SAFETY: a plain signal to the bridge's dnsmasq; SIGHUP re-reads the host files.
            unsafe { libc::kill(pid, libc::SIGHUP) };
        }
    }

    async fn ensure_dnsmasq(&self) -> Result<(), Error> {
        if self.dnsmasq_pid().is_some() {
            return Ok(());
        }
        let s = &self.state;
        let args = [
            "--conf-file=/dev/null".to_string(),
            "--port=0".into(),
            format!("--interface={}", self.bridge),
            "--bind-interfaces".into(),
            "--except-interface=lo".into(),
            format!("--dhcp-range={},static,255.255.255.0", self.subnet.host(2)),
            format!("--dhcp-hostsdir={}", self.hosts_dir().display()),
            format!("--dhcp-leasefile={}", s.join("leases").display()),
            format!("--pid-file={}", s.join("dnsmasq.pid").display()),
            format!("--dhcp-option=option:router,{}", self.subnet.gateway()),
            "--dhcp-authoritative".into(),
        ];
        tools::run("dnsmasq", args).await?;
        Ok(())
    }

    async fn nft(&self, script: String) -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::Runtime(format!("nft: {e}")))?;
        let file = dir.path().join("rules.nft");
        std::fs::write(&file, script).map_err(|e| io("writing", &file, e))?;
        tools::run("nft", [OsArg(&file)]).await?;
        Ok(())
    }

    async fn ensure_nft(&self) -> Result<(), Error> {
        let table = self.table();
        if tools::run("nft", ["list", "table", "ip", &table])
            .await
            .is_ok()
        {
            return Ok(());
        }
        let br = &self.bridge;
        let subnet = self.subnet;
        self.nft(format!(
            "table ip {table} {{\n\
             \x20 chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             \x20 chain output {{ type nat hook output priority -100; policy accept; }}\n\
             \x20 chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade\n\
             \x20   ip saddr {subnet} oifname != \"{br}\" masquerade\n\
             \x20 }}\n\
             }}\n"
        ))
        .await
    }

    /// Reserve an address for the container whose folder is `owner`.
    pub async fn allocate(&self, owner: &Path) -> Result<Lease, Error> {
        let _lock = self.lock().await?;
        let dir = self.hosts_dir();
        let mut used = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| io("reading", &dir, e))?
            .flatten()
        {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let (mut holder, mut ip) = (None, None);
            for line in text.lines() {
                if let Some(p) = line.strip_prefix("# ") {
                    holder = Some(PathBuf::from(p));
                } else if let Some(addr) = line.split(',').nth(1) {
                    ip = addr.parse::<Ipv4Addr>().ok();
                }
            }
            // A reservation whose container is gone (a server killed mid-way) is freed.
            if holder
                .as_deref()
                .is_some_and(|h| !h.join("config").exists())
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 600)
            {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if let Some(ip) = ip {
                used.insert(ip);
            }
        }
        let ip = (2..=254u8)
            .map(|n| self.subnet.host(n))
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| {
                Error::Runtime(format!(
                    "no free address left on {} ({})",
                    self.bridge, self.subnet
                ))
            })?;
        let bytes: [u8; 4] = rand::thread_rng().gen();
        let mac = format!(
            "02:53:{:02x}:{:02x}:{:02x}:{:02x}",
            bytes[0], bytes[1], bytes[2], bytes[3]
        );
        let file = dir.join(mac.replace(':', ""));
        std::fs::write(&file, format!("# {}\n{mac},{ip}\n", owner.display()))
            .map_err(|e| io("writing", &file, e))?;
        self.reload_dnsmasq();
        Ok(Lease { mac, ip })
    }

    /// Publish `ports` of the container at `lease` (bridge and rules created when missing).
    pub async fn publish(&self, lease: &Lease, ports: &[Port]) -> Result<(), Error> {
        let _lock = self.lock().await?;
        self.ensure_locked().await?;
        if ports.is_empty() {
            return Ok(());
        }
        let table = self.table();
        let published = tools::run("nft", ["list", "chain", "ip", &table, "prerouting"]).await?;
        for (i, p) in ports.iter().enumerate() {
            let proto = if p.udp { "udp" } else { "tcp" };
            if published.contains(&format!("{proto} dport {} ", p.host)) {
                return Err(Error::Conflict(format!(
                    "network.port[{i}]: host port {} ({proto}) is already published by another container",
                    p.host
                )));
            }
        }
        let mut script = String::new();
        for p in ports {
            let proto = if p.udp { "udp" } else { "tcp" };
            for chain in ["prerouting", "output"] {
                script.push_str(&format!(
                    "add rule ip {table} {chain} fib daddr type local {proto} dport {} dnat to {}:{} comment \"{}\"\n",
                    p.host, lease.ip, p.container, lease.mac
                ));
            }
        }
        self.nft(script).await
    }

    /// Drop the container's rules and address.
    pub async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let _lock = self.lock().await?;
        let _ = std::fs::remove_file(self.hosts_dir().join(lease.mac.replace(':', "")));
        self.reload_dnsmasq();
        let table = self.table();
        let Ok(listing) = tools::run("nft", ["-j", "-a", "list", "table", "ip", &table]).await
        else {
            return Ok(());
        };
        let json: serde_json::Value = serde_json::from_str(&listing).unwrap_or_default();
        let mut script = String::new();
        for item in json["nftables"].as_array().into_iter().flatten() {
            let rule = &item["rule"];
            if rule["comment"].as_str() == Some(lease.mac.as_str()) {
                if let (Some(chain), Some(handle)) =
                    (rule["chain"].as_str(), rule["handle"].as_u64())
                {
                    script.push_str(&format!("delete rule ip {table} {chain} handle {handle}\n"));
                }
            }
        }
        if !script.is_empty() {
            self.nft(script).await?;
        }
        Ok(())
    }
}

/// A path as a tool argument.
struct OsArg<'a>(&'a Path);

impl AsRef<std::ffi::OsStr> for OsArg<'_> {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse() {
        let s = Subnet::parse("10.213.0.0/24").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(s.to_string(), "10.213.0.0/24");
        assert!(Subnet::parse("10.213.0.0/16").is_err());
        assert!(Subnet::parse("nope").is_err());
    }
}
