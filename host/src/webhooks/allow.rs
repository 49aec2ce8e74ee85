//! Which addresses a webhook may reach (no SSRF into the host): by default
//! none that is loopback, link-local (the cloud metadata service
//! `169.254.169.254` among them), private, shared (CGNAT), unspecified,
//! multicast or reserved; IPv4 written as IPv6 (`::ffff:127.0.0.1`) is
//! judged as the IPv4 address it is. `[webhooks_policy] allow_hosts` lets
//! some through.
//!
//! The check is on the *resolved* address, at connect time, and pinned:
//! the sender's client resolves through [`PinnedResolver`], which resolves
//! once, keeps the allowed addresses only, and hands those to the
//! connector, so a DNS answer that changes between the check and the
//! connection cannot get through. A URL whose host is an address literal
//! is checked by [`AllowPolicy::check_url`] before it is sent.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use super::config::WebhooksPolicySection;

/// What `[webhooks_policy]` allows beyond the public internet.
#[derive(Debug, Clone, Default)]
pub struct AllowPolicy {
    nets: Vec<IpNet>,
    names: BTreeSet<String>,
}

/// Why an address is refused by default, if it is.
pub fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4),
            None => refused_v6(v6),
        },
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_link_local() {
        "link-local (cloud metadata)"
    } else if ip.is_private() {
        "private"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (carrier-grade NAT)"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "multicast or reserved"
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        "reserved (IETF)"
    } else {
        return None;
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if (first & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (first & 0xfe00) == 0xfc00 {
        "private (unique local; cloud metadata)"
    } else if ip.is_multicast() {
        "multicast"
    } else if first == 0 {
        // IPv4-compatible and other reserved forms of `::/16`.
        match ip.to_ipv4() {
            Some(v4) => return refused_v4(v4).or(Some("reserved")),
            None => "reserved",
        }
    } else if first == 0x64 && ip.segments()[1] == 0xff9b {
        // NAT64: the IPv4 address it carries decides.
        let s = ip.segments();
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return refused_v4(v4);
    } else {
        return None;
    })
}

impl AllowPolicy {
    /// The policy of `[webhooks_policy]`; the error names the entry.
    pub fn parse(section: &WebhooksPolicySection) -> Result<AllowPolicy, String> {
        let mut policy = AllowPolicy::default();
        for entry in &section.allow_hosts {
            let e = entry.trim();
            if let Ok(net) = e.parse::<IpNet>() {
                policy.nets.push(net);
            } else if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if !e.is_empty()
                && e.len() <= 253
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                policy.names.insert(e.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "webhooks_policy.allow_hosts: `{entry}` is not an address, a network or a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether `host` (a name) is allowed whatever it resolves to.
    pub fn allows_name(&self, host: &str) -> bool {
        self.names
            .contains(host.trim_end_matches('.').to_ascii_lowercase().as_str())
    }

    /// `Ok` when a webhook may reach `ip`, else why not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match refused_kind(ip) {
            Some(kind) => Err(format!(
                "{ip} is a {kind} address, which webhooks may not reach ([webhooks_policy] allow_hosts does not list it)"
            )),
            None => Ok(()),
        }
    }

    /// The addresses of `host` a webhook may reach: resolved once; an
    /// error when it does not resolve or every address is refused.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unreachable> {
        let host = host.trim_matches(['[', ']']);
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_ip(ip).map_err(Unreachable::refused)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let unresolved = |e: String| Unreachable {
            message: format!("host {host} does not resolve{e}"),
            refused: false,
        };
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| unresolved(format!(": {e}")))?
            .collect();
        if found.is_empty() {
            return Err(unresolved(String::new()));
        }
        if self.allows_name(host) {
            return Ok(found);
        }
        let mut why = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match self.check_ip(a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    why.get_or_insert(e);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), why) {
            (true, Some(why)) => Err(Unreachable::refused(format!(
                "host {host} resolves to {why}"
            ))),
            _ => Ok(allowed),
        }
    }

    /// Check a webhook URL: `http` or `https`, a host, no user or
    /// password in it, and a host that resolves to an allowed address.
    /// The error is the sentence after `url: `.
    pub async fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = parse_url(url)?;
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port_or_known_default().unwrap_or(80);
        self.resolve(host, port).await.map_err(|e| e.message)?;
        Ok(parsed)
    }
}

/// Why a host cannot be reached: it does not resolve, or the allowlist
/// refuses every address it has (`refused`: a delivery fails at once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unreachable {
    /// The sentence.
    pub message: String,
    /// The allowlist refused it.
    pub refused: bool,
}

impl Unreachable {
    fn refused(message: String) -> Unreachable {
        Unreachable {
            message,
            refused: true,
        }
    }
}

/// Longest webhook URL, in bytes.
pub const MAX_URL: usize = 2048;

/// The shape of a webhook URL (no resolution); the error is the sentence after `url: `.
pub fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > MAX_URL {
        return Err(format!("longer than {MAX_URL} bytes"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold a user name or password (sign with `secret`)".into());
    }
    Ok(parsed)
}

/// The sender client's resolver: resolves once and keeps only the
/// addresses [`AllowPolicy`] allows, which the connector then uses.
#[derive(Debug, Clone)]
pub struct PinnedResolver(pub Arc<AllowPolicy>);

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = policy
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> AllowPolicy {
        AllowPolicy::parse(&WebhooksPolicySection {
            allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_refuses_internal_addresses() {
        let p = policy(&[]);
        for refused in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(p.check_ip(ip(refused)).is_err(), "{refused} got through");
        }
        for allowed in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(p.check_ip(ip(allowed)).is_ok(), "{allowed} was refused");
        }
    }

    #[test]
    fn allow_hosts_lets_listed_addresses_and_networks_through() {
        let p = policy(&["127.0.0.1", "10.1.0.0/16", "::1", "Hooks.Internal"]);
        assert!(p.check_ip(ip("127.0.0.1")).is_ok());
        assert!(p.check_ip(ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check_ip(ip("127.0.0.2")).is_err());
        assert!(p.check_ip(ip("10.1.200.3")).is_ok());
        assert!(p.check_ip(ip("10.2.0.1")).is_err());
        assert!(p.check_ip(ip("::1")).is_ok());
        assert!(p.allows_name("hooks.internal"));
        assert!(p.allows_name("HOOKS.internal."));
        assert!(!p.allows_name("other.internal"));
        let e = p.check_ip(ip("169.254.169.254")).unwrap_err();
        assert!(e.contains("link-local"), "{e}");
    }

    #[test]
    fn bad_entries_and_urls_are_named() {
        let e = AllowPolicy::parse(&WebhooksPolicySection {
            allow_hosts: vec!["not a host!".into()],
        })
        .unwrap_err();
        assert!(e.contains("allow_hosts"), "{e}");
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://user:pw@x/").is_err());
        assert!(parse_url("nonsense").is_err());
        assert!(parse_url("https://hooks.example.com/x").is_ok());
    }

    #[tokio::test]
    async fn resolved_names_are_checked() {
        let p = policy(&[]);
        let e = p.check_url("http://localhost:9/").await.unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let e = p
            .check_url("http://[::ffff:127.0.0.1]:9/")
            .await
            .unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let allowed = policy(&["127.0.0.1", "::1"]);
        assert!(allowed.check_url("http://127.0.0.1:9/").await.is_ok());
    }
}
