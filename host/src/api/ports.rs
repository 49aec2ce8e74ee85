//! `GET system/port/{protocol}/{port}`: whether a host port is taken, so a
//! client can pick a free one before it publishes it (go-containerstation's
//! `NetworkPort`, Container Station's create wizard).
//!
//! A port is used when a host socket holds it (this server's own listeners,
//! Docker's `docker-proxy`, any other service: binding it on every IPv4
//! address fails), or when a container the caller may see publishes it (an
//! LXC container's DNAT rule holds no socket).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use super::containers::context;
use super::extract::Api;
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::runtime::RuntimeKind;

/// The answer, as recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortUse {
    /// Whether the port is taken.
    pub used: bool,
}

/// A protocol segment: `tcp` or `udp`.
fn udp(protocol: &str) -> Result<bool, AppError> {
    match protocol {
        "tcp" => Ok(false),
        "udp" => Ok(true),
        _ => Err(AppError::bad_request(
            "invalid_params",
            "protocol: must be \"tcp\" or \"udp\"",
        )),
    }
}

fn port_number(port: &str) -> Result<u16, AppError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(AppError::bad_request(
            "invalid_params",
            "port: must be a number from 1 to 65535",
        )),
    }
}

/// Whether a host socket holds `port`.
fn held_on_host(port: u16, udp: bool) -> bool {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    if udp {
        std::net::UdpSocket::bind(addr).is_err()
    } else {
        std::net::TcpListener::bind(addr).is_err()
    }
}

/// `GET system/port/{protocol}/{port}`.
#[utoipa::path(get, path = "/system/port/{protocol}/{port}", tag = "system",
    summary = "Whether a host port is in use",
    params(("protocol" = String, Path, description = "`tcp` or `udp`"),
           ("port" = u16, Path, description = "1 to 65535")),
    responses(
        (status = 200, description = "Whether it is used", body = PortUse),
        (status = 400, description = "A path segment is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn port(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((protocol, port))): Api<Path<(String, String)>>,
) -> Result<Json<PortUse>, AppError> {
    let udp = udp(&protocol)?;
    let port = port_number(&port)?;
    let probe = tokio::task::spawn_blocking(move || held_on_host(port, udp));
    if probe.await.unwrap_or(true) {
        return Ok(Json(PortUse { used: true }));
    }
    if !udp {
        let cx = context(&user);
        for kind in [RuntimeKind::Docker, RuntimeKind::Lxc] {
            let Ok(entries) = state.runtime.containers.container_list(&cx, kind).await else {
                continue;
            };
            if entries.iter().any(|e| e.tcp_port.contains(&port)) {
                return Ok(Json(PortUse { used: true }));
            }
        }
    }
    Ok(Json(PortUse { used: false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_checked_and_name_their_field() {
        assert!(!udp("tcp").unwrap());
        assert!(udp("udp").unwrap());
        let e = udp("sctp").unwrap_err();
        assert!(e.body()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("protocol:"));
        for bad in ["0", "65536", "-1", "http", ""] {
            let e = port_number(bad).unwrap_err();
            assert!(e.body()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("port:"));
        }
        assert_eq!(port_number("8080").unwrap(), 8080);
    }

    #[test]
    fn a_held_port_is_used_and_a_released_one_is_not() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(held_on_host(port, false));
        drop(held);
        assert!(!held_on_host(port, false));
        let held = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(held_on_host(port, true));
    }
}
