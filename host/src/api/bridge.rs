//! `GET system/bridge`: the host's network adapters a container may be
//! bridged to, as Container Station's recorded answer lists them:
//! `{"data": [{bridge, display, gateway, ip, name, netmask}], "default": N}`.
//!
//! An adapter is an interface with an IPv4 address that is a device (it has
//! `/sys/class/net/<name>/device`) or carries the default route; the
//! engines' own bridges and veths are not adapters. `bridge` is the bridge
//! the adapter is enslaved to (`null`: none), `gateway` the default
//! route's gateway through it (`""`: none), and `default` the 1-based
//! position of the adapter that carries the default route (0: none).

use std::net::Ipv4Addr;

use axum::http::Method;
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;

/// One adapter, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Adapter {
    /// The bridge it is enslaved to, if any.
    pub bridge: Option<String>,
    /// `Adapter N`.
    pub display: String,
    /// The default gateway through it (`""`: none).
    pub gateway: String,
    /// Its IPv4 address.
    pub ip: String,
    /// The interface name.
    pub name: String,
    /// Its netmask, dotted.
    pub netmask: String,
}

/// The answer, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bridges {
    /// The adapters.
    pub data: Vec<Adapter>,
    /// The 1-based position of the adapter with the default route (0: none).
    pub default: usize,
}

/// The default routes of `/proc/net/route`: interface and gateway.
fn default_routes(route: &str) -> Vec<(String, Ipv4Addr)> {
    route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let gw = u32::from_str_radix(f[2], 16).ok()?;
            // The file holds the address in the host's byte order.
            Some((
                f[0].to_string(),
                Ipv4Addr::from(u32::from_be(gw.to_be()).swap_bytes()),
            ))
        })
        .collect()
}

/// Every interface's IPv4 address and netmask, in the kernel's order.
fn ipv4_interfaces() -> Vec<(String, Ipv4Addr, Ipv4Addr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*at };
        at = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: a non-null sockaddr of the list.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: AF_INET addresses are sockaddr_in.
        let (addr, mask) = unsafe {
            (
                *(ifa.ifa_addr as *const libc::sockaddr_in),
                *(ifa.ifa_netmask as *const libc::sockaddr_in),
            )
        };
        // SAFETY: the name is a NUL-terminated string of the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push((
            name,
            Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            Ipv4Addr::from(u32::from_be(mask.sin_addr.s_addr)),
        ));
    }
    // SAFETY: the list getifaddrs gave, freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The bridge `name` is enslaved to.
fn master(name: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/class/net/{name}/master")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// The adapters, from the interfaces and default routes given.
fn adapters(
    interfaces: Vec<(String, Ipv4Addr, Ipv4Addr)>,
    defaults: &[(String, Ipv4Addr)],
    is_device: impl Fn(&str) -> bool,
    master: impl Fn(&str) -> Option<String>,
) -> Bridges {
    let mut data: Vec<Adapter> = Vec::new();
    for (name, ip, mask) in interfaces {
        let gateway = defaults.iter().find(|(i, _)| *i == name).map(|(_, g)| *g);
        if name == "lo" || !(is_device(&name) || gateway.is_some()) {
            continue;
        }
        if data.iter().any(|a| a.name == name) {
            continue;
        }
        data.push(Adapter {
            bridge: master(&name),
            display: format!("Adapter {}", data.len() + 1),
            gateway: gateway.map(|g| g.to_string()).unwrap_or_default(),
            ip: ip.to_string(),
            name,
            netmask: mask.to_string(),
        });
    }
    let default = data
        .iter()
        .position(|a| !a.gateway.is_empty())
        .map_or(0, |i| i + 1);
    Bridges { data, default }
}

/// `GET system/bridge`.
#[utoipa::path(get, path = "/system/bridge", tag = "system",
    summary = "The host's network adapters",
    responses(
        (status = 200, description = "The adapters, and which carries the default route", body = Bridges),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn bridge(_user: CurrentUser) -> Json<Bridges> {
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    Json(adapters(
        ipv4_interfaces(),
        &default_routes(&route),
        |name| std::path::Path::new(&format!("/sys/class/net/{name}/device")).exists(),
        master,
    ))
}

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    vec![entry(
        Method::GET,
        "/system/bridge",
        Access::Session,
        bridge,
    )]
}

#[derive(OpenApi)]
#[openapi(paths(bridge), components(schemas(Bridges, Adapter)))]
struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_are_devices_or_carry_the_default_route() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth1\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                     br0\t00D51EAC\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        let defaults = default_routes(route);
        assert_eq!(
            defaults,
            [("eth1".to_string(), Ipv4Addr::new(192, 0, 2, 1))]
        );
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let b = adapters(
            vec![
                ("lo".into(), ip("127.0.0.1"), ip("255.0.0.0")),
                ("eth0".into(), ip("10.0.0.2"), ip("255.255.255.0")),
                ("docker0".into(), ip("172.17.0.1"), ip("255.255.0.0")),
                ("eth1".into(), ip("192.0.2.5"), ip("255.255.254.0")),
            ],
            &defaults,
            |n| n.starts_with("eth"),
            |n| (n == "eth0").then(|| "br0".to_string()),
        );
        let names: Vec<&str> = b.data.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(b.default, 2);
        assert_eq!(b.data[1].display, "Adapter 2");
        assert_eq!(b.data[1].gateway, "192.0.2.1");
        assert_eq!(b.data[1].netmask, "255.255.254.0");
        assert_eq!(b.data[0].bridge.as_deref(), Some("br0"));
        assert_eq!(b.data[0].gateway, "");
    }
}
