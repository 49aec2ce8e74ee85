//! Where an application's requests go: the host port its record names,
//! as one of its own running containers publishes it.
//!
//! The record's `port` is the application's HTTP port on the host (the
//! template's wizard binds it to a service's published port), which is
//! where Container Station's web server sent `virtual_path`. The proxy
//! connects to that published port, not to a container's address on its
//! engine network: a published port is reachable wherever the engine runs
//! (rootless, behind a VM, or a remote `DOCKER_HOST`), while a bridge
//! address is reachable only from the engine's own host and network
//! namespace. It forwards only when a running container of the
//! application (its Compose project, created by the application's owner)
//! publishes that port, so a record can never point the proxy at another
//! service of the host, and a stopped application is "down", not
//! something else listening on a freed port.

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::apps::virtual_paths::Route;
use crate::policy::{APP_OWNER_FILE, OWNER_LABEL};
use crate::runtime::apps::AppStore;
use crate::runtime::docker::listing::COMPOSE_PROJECT_LABEL;
use crate::runtime::{AppFolders, Backends, CallContext, ContainerRef, LabelQuery, RuntimeKind};

/// Host calls of the proxy report nothing: they are lookups.
struct Quiet;

impl crate::queue::Reporter for Quiet {
    fn progress(&self, _percent: i32, _detail: &str) {}
    fn log(&self, _level: crate::queue::LogLevel, _message: &str) {}
}

/// The `host:port` the engine publishes container port bindings on, for
/// a binding to every address (`0.0.0.0`, `::`, or none): the engine's
/// host from `DOCKER_HOST` when it is a TCP endpoint, else the loopback.
pub fn engine_host(docker_host: Option<&str>) -> String {
    let remote = docker_host
        .and_then(|h| {
            ["tcp://", "http://", "https://"]
                .iter()
                .find_map(|scheme| h.strip_prefix(scheme))
        })
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .map(|authority| match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        })
        .filter(|h| !h.is_empty());
    remote.unwrap_or("127.0.0.1").to_string()
}

/// The `host:port` to connect to for host port `port` of the container
/// whose `docker inspect` JSON is `inspect`, if it publishes that port
/// (TCP) now. `unspecified` is where a binding to every address is
/// reached ([`engine_host`]).
pub fn published(inspect: &Value, port: u16, unspecified: &str) -> Option<String> {
    let ports = inspect.pointer("/NetworkSettings/Ports")?.as_object()?;
    let wanted = port.to_string();
    ports
        .iter()
        .filter(|(spec, _)| spec.ends_with("/tcp"))
        .filter_map(|(_, bindings)| bindings.as_array())
        .flatten()
        .find(|b| b.get("HostPort").and_then(Value::as_str) == Some(wanted.as_str()))
        .map(|b| {
            let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or("");
            match ip {
                "" | "0.0.0.0" => format!("{unspecified}:{port}"),
                "::" => {
                    if unspecified == "127.0.0.1" {
                        format!("[::1]:{port}")
                    } else {
                        format!("{unspecified}:{port}")
                    }
                }
                v6 if v6.contains(':') => format!("[{v6}]:{port}"),
                v4 => format!("{v4}:{port}"),
            }
        })
}

/// Why an application cannot be reached now (the 502's message).
pub type Down = String;

/// Looks applications' containers up through the policy guard, as their
/// owner: the proxy reaches only what the application's owner may.
pub struct Upstreams {
    /// The guarded runtime (the one the API and the plugins reach).
    pub runtime: Backends,
    /// The application store, for the owner of an application.
    pub apps: Arc<AppStore>,
    /// Where bindings to every address are reached ([`engine_host`]).
    pub unspecified: String,
}

impl Upstreams {
    /// The `host:port` of `route`'s application, or why it is down.
    pub async fn resolve(&self, route: &Route) -> Result<String, Down> {
        let app = &route.app;
        let port = route
            .port
            .ok_or_else(|| format!("application {app} has no HTTP port (`port`)"))?;
        let quiet = CallContext {
            task_id: 0,
            user: String::new(),
            cancel: CancellationToken::new(),
            reporter: Arc::new(Quiet),
        };
        let owner = self
            .apps
            .app_read_file(
                &quiet,
                crate::runtime::AppFile::new(app.clone(), APP_OWNER_FILE),
            )
            .await
            .map(|o| o.trim().to_string())
            .map_err(|_| format!("application {app} has no recorded owner"))?;
        let cx = CallContext {
            user: owner.clone(),
            ..quiet
        };
        let containers = self
            .runtime
            .containers
            .container_list_labelled(
                &cx,
                LabelQuery::docker(COMPOSE_PROJECT_LABEL, route.project.clone()),
            )
            .await
            .map_err(|e| format!("application {app}: the engine did not answer: {e}"))?;
        let mut running = 0;
        for c in containers {
            let owned = c
                .labels
                .iter()
                .any(|(k, v)| k == OWNER_LABEL && *v == owner);
            if !owned || !c.running {
                continue;
            }
            running += 1;
            let Ok(text) = self
                .runtime
                .containers
                .container_inspect(&cx, &ContainerRef::new(RuntimeKind::Docker, c.id.clone()))
                .await
            else {
                continue;
            };
            let Ok(inspect) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if let Some(at) = published(&inspect, port, &self.unspecified) {
                return Ok(at);
            }
        }
        Err(if running == 0 {
            format!("application {app} is not running")
        } else {
            format!("no running container of application {app} publishes port {port}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_host_is_the_loopback_unless_the_engine_is_remote() {
        assert_eq!(engine_host(None), "127.0.0.1");
        assert_eq!(engine_host(Some("unix:///run/docker.sock")), "127.0.0.1");
        assert_eq!(engine_host(Some("tcp://10.0.0.5:2376")), "10.0.0.5");
        assert_eq!(engine_host(Some("tcp://[fd00::5]:2376")), "[fd00::5]");
        assert_eq!(engine_host(Some("https://docker.lan")), "docker.lan");
    }

    #[test]
    fn only_a_published_tcp_port_of_the_container_is_an_upstream() {
        let inspect = serde_json::json!({"NetworkSettings": {"Ports": {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"},
                       {"HostIp": "::", "HostPort": "18080"}],
            "81/tcp": [{"HostIp": "127.0.0.2", "HostPort": "18081"}],
            "82/tcp": [{"HostIp": "fd00::1", "HostPort": "18082"}],
            "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "18053"}],
            "90/tcp": null
        }}});
        let at = |p| published(&inspect, p, "127.0.0.1");
        assert_eq!(at(18080).as_deref(), Some("127.0.0.1:18080"));
        assert_eq!(at(18081).as_deref(), Some("127.0.0.2:18081"));
        assert_eq!(at(18082).as_deref(), Some("[fd00::1]:18082"));
        assert_eq!(at(18053), None, "UDP is not HTTP");
        assert_eq!(at(80), None, "a container port is not a host port");
        assert_eq!(
            published(&inspect, 18080, "10.0.0.5").as_deref(),
            Some("10.0.0.5:18080")
        );
        let stopped = serde_json::json!({"NetworkSettings": {"Ports": {}}});
        assert_eq!(published(&stopped, 18080, "127.0.0.1"), None);
    }
}
