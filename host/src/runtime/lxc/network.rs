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
//!   An address still leased by dnsmasq (to a container that is gone) is
//!   not handed out again until the lease expires (5 minutes).
//! - `network.port` becomes DNAT rules in the `prerouting` and `output`
//!   chains of our own table `ip stevedore_<bridge>`, each with the
//!   container's MAC as comment so that they go with it; `postrouting`
//!   masquerades the bridge's traffic that leaves the host and connections
//!   from `127.0.0.1`. DNAT from loopback needs `route_localnet` on the
//!   interface the packets leave by and come back on, which is the bridge:
//!   `net.ipv4.conf.<bridge>.route_localnet=1`, never `all`. That setting
//!   would also let a container address the host's `127.0.0.1` services
//!   directly, so the `guard` chain (hook `prerouting`, priority `raw`,
//!   before any NAT) drops packets that arrive on the bridge for
//!   `127.0.0.0/8`; replies to DNATed connections still carry the bridge
//!   address there and pass.
//! - Published host ports must be free on the host ([`check_free`]: a host
//!   service keeps its port).
//! - Docker's engine sets the `FORWARD` policy to `DROP`, so the bridge gets
//!   `ACCEPT` rules in `FORWARD` when `iptables` is present: appended after
//!   Docker's jumps (`DOCKER-USER`, `DOCKER-FORWARD`, the isolation
//!   chains), so that Docker's isolation decides first about traffic to its
//!   containers. (An accept in a table of our own would not do: a packet
//!   must pass every base chain of the hook, and `FORWARD`'s policy drops.)

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
        self.ensure_forward().await;
        let sysctl = format!("/proc/sys/net/ipv4/conf/{br}/route_localnet");
        std::fs::write(&sysctl, "1").map_err(|e| io("writing", Path::new(&sysctl), e))?;
        Ok(())
    }

    /// The bridge's `FORWARD` accepts, after Docker's jumps: added when
    /// missing, moved to the end when found ahead of one of Docker's.
    async fn ensure_forward(&self) {
        if tools::which("iptables").is_none() {
            return;
        }
        let br = self.bridge.as_str();
        let Ok(listing) = tools::run("iptables", ["-S", "FORWARD"]).await else {
            return;
        };
        let lines: Vec<&str> = listing.lines().collect();
        let last_docker = lines.iter().rposition(|l| l.contains(" -j DOCKER"));
        for dir in ["-i", "-o"] {
            let spec = format!("-A FORWARD {dir} {br} -j ACCEPT");
            let at: Vec<usize> = (0..lines.len()).filter(|i| lines[*i] == spec).collect();
            let placed = !at.is_empty() && at.iter().all(|i| last_docker.is_none_or(|d| *i > d));
            if placed {
                continue;
            }
            let rule = ["FORWARD", dir, br, "-j", "ACCEPT"];
            for _ in &at {
                let _ = tools::run("iptables", ["-D"].iter().chain(&rule)).await;
            }
            // Only traffic routed through the host needs it; the host itself reaches the bridge.
            if let Err(e) = tools::run("iptables", ["-A"].iter().chain(&rule)).await {
                tracing::warn!("LXC bridge {br}: no FORWARD rule: {e}");
            }
        }
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
            // Short leases: an address comes free soon after its container goes.
            format!(
                "--dhcp-range={},static,255.255.255.0,5m",
                self.subnet.host(2)
            ),
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
        tools::run("nft", [std::ffi::OsStr::new("-f"), file.as_os_str()]).await?;
        Ok(())
    }

    async fn ensure_nft(&self) -> Result<(), Error> {
        let table = self.table();
        let br = &self.bridge;
        if tools::run("nft", ["list", "table", "ip", &table])
            .await
            .is_err()
        {
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
            .await?;
        }
        if tools::run("nft", ["list", "chain", "ip", &table, "guard"])
            .await
            .is_err()
        {
            self.nft(format!(
                "table ip {table} {{\n\
                 \x20 chain guard {{ type filter hook prerouting priority raw; policy accept;\n\
                 \x20   iifname \"{br}\" ip daddr 127.0.0.0/8 drop\n\
                 \x20 }}\n\
                 }}\n"
            ))
            .await?;
        }
        Ok(())
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
        // dnsmasq keeps a lease after its container is gone and will not
        // hand that address to another MAC until it expires.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let leases = std::fs::read_to_string(self.state.join("leases")).unwrap_or_default();
        for line in leases.lines() {
            let mut f = line.split_whitespace();
            if let (Some(expiry), Some(_mac), Some(ip)) = (f.next(), f.next(), f.next()) {
                let live = expiry.parse::<u64>().ok().is_none_or(|e| e == 0 || e > now);
                if let (true, Ok(ip)) = (live, ip.parse::<Ipv4Addr>()) {
                    used.insert(ip);
                }
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
        // Rules of containers whose reservation is gone (a server killed, a
        // container destroyed by hand) are stale: drop them, then check.
        let rules = self.rules().await?;
        let stale: Vec<&Rule> = rules
            .iter()
            .filter(|r| !self.hosts_dir().join(r.owner.replace(':', "")).exists())
            .collect();
        self.delete(&stale).await?;
        for (i, p) in ports.iter().enumerate() {
            let proto = if p.udp { "udp" } else { "tcp" };
            let taken = rules.iter().any(|r| {
                r.owner != lease.mac
                    && !stale
                        .iter()
                        .any(|s| s.handle == r.handle && s.chain == r.chain)
                    && r.dport.as_ref() == Some(&(proto.to_string(), p.host))
            });
            if taken {
                return Err(Error::Conflict(format!(
                    "network.port[{i}]: host port {} ({proto}) is already published by another container",
                    p.host
                )));
            }
        }
        check_free(ports)?;
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

    /// Drop the container's published ports, keeping its address (a
    /// change of its ports publishes the new ones next).
    pub async fn unpublish(&self, lease: &Lease) -> Result<(), Error> {
        let _lock = self.lock().await?;
        let rules = self.rules().await?;
        let mine: Vec<&Rule> = rules.iter().filter(|r| r.owner == lease.mac).collect();
        self.delete(&mine).await
    }

    /// Drop the container's rules and address.
    pub async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let _lock = self.lock().await?;
        let _ = std::fs::remove_file(self.hosts_dir().join(lease.mac.replace(':', "")));
        self.reload_dnsmasq();
        let rules = self.rules().await?;
        let mine: Vec<&Rule> = rules.iter().filter(|r| r.owner == lease.mac).collect();
        self.delete(&mine).await
    }

    /// Our DNAT rules, with the MAC of the container each is for.
    async fn rules(&self) -> Result<Vec<Rule>, Error> {
        let table = self.table();
        let Ok(listing) = tools::run("nft", ["-j", "-a", "list", "table", "ip", &table]).await
        else {
            return Ok(Vec::new());
        };
        let json: serde_json::Value = serde_json::from_str(&listing).unwrap_or_default();
        let mut out = Vec::new();
        for item in json["nftables"].as_array().into_iter().flatten() {
            let rule = &item["rule"];
            let (Some(chain), Some(handle), Some(owner)) = (
                rule["chain"].as_str(),
                rule["handle"].as_u64(),
                rule["comment"].as_str(),
            ) else {
                continue;
            };
            let dport = rule["expr"].as_array().into_iter().flatten().find_map(|e| {
                let m = e.get("match")?;
                let payload = &m["left"]["payload"];
                (payload["field"] == "dport").then_some(())?;
                Some((
                    payload["protocol"].as_str()?.to_string(),
                    m["right"].as_u64()? as u16,
                ))
            });
            out.push(Rule {
                chain: chain.to_string(),
                handle,
                owner: owner.to_string(),
                dport,
            });
        }
        Ok(out)
    }

    async fn delete(&self, rules: &[&Rule]) -> Result<(), Error> {
        let table = self.table();
        let script: String = rules
            .iter()
            .map(|r| format!("delete rule ip {table} {} handle {}\n", r.chain, r.handle))
            .collect();
        if script.is_empty() {
            return Ok(());
        }
        self.nft(script).await
    }
}

/// Whether a host socket holds `port`: binding it on every IPv4 address
/// fails while anything listens on it, on any address (the DNAT rules
/// catch every local address, so any listener would lose its traffic).
fn in_use(port: &Port) -> bool {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port.host));
    if port.udp {
        std::net::UdpSocket::bind(addr).is_err()
    } else {
        std::net::TcpListener::bind(addr).is_err()
    }
}

/// Refuse host ports that a host service holds: publishing one would take
/// its connections over.
pub fn check_free(ports: &[Port]) -> Result<(), Error> {
    for (i, p) in ports.iter().enumerate() {
        if in_use(p) {
            let proto = if p.udp { "udp" } else { "tcp" };
            return Err(Error::Conflict(format!(
                "network.port[{i}]: host port {} ({proto}) is in use on the host",
                p.host
            )));
        }
    }
    Ok(())
}

/// One DNAT rule of ours.
#[derive(Debug, Clone)]
struct Rule {
    chain: String,
    handle: u64,
    /// The comment: the MAC of the container it is for.
    owner: String,
    /// `(protocol, host port)`.
    dport: Option<(String, u16)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_held_on_the_host_are_refused() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let tcp = Port {
            host: port,
            container: 80,
            udp: false,
        };
        let e = check_free(&[tcp]).unwrap_err();
        assert!(
            matches!(&e, Error::Conflict(m) if m.starts_with("network.port[0]: host port")),
            "{e:?}"
        );
        drop(held);
        assert!(check_free(&[tcp]).is_ok());
    }

    #[test]
    fn subnets_parse() {
        let s = Subnet::parse("10.213.0.0/24").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(s.to_string(), "10.213.0.0/24");
        assert!(Subnet::parse("10.213.0.0/16").is_err());
        assert!(Subnet::parse("nope").is_err());
    }
}
