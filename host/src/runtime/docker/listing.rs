//! Docker containers as Container Station's `GET container` lists them.

use std::collections::{BTreeMap, HashMap, HashSet};

use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, LogsOptions, RemoveContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;

use super::engine;
use super::live_stats::LiveStats;
use crate::runtime::log_lines::whole_lines;
use crate::runtime::usage::Counters;
use crate::runtime::{ContainerEntry, ContainerState, Error, LogStream, RtResult, Usage};

/// The label Docker Compose puts the project name in.
pub use stevedore_contract::labels::COMPOSE_PROJECT as COMPOSE_PROJECT_LABEL;
/// The label Docker Compose puts the project's folder in.
pub use stevedore_contract::labels::COMPOSE_WORKING_DIR as COMPOSE_WORKING_DIR_LABEL;

/// The most log text one `logs` call gathers (the tail's last bytes are kept).
pub const MAX_LOG_BYTES: usize = 4 << 20;

/// Every container of the engine, running or not, as entries.
pub async fn list(api: &Docker) -> RtResult<Vec<ContainerEntry>> {
    let options = ListContainersOptions {
        all: true,
        ..Default::default()
    };
    let (summaries, networks) = tokio::join!(
        api.list_containers(Some(options)),
        api.list_networks(None::<ListNetworksOptions>)
    );
    let summaries = summaries.map_err(engine)?;
    // Networks on the host's LAN give the external address; a failed
    // listing only leaves `externalIP` empty.
    let lan: HashSet<String> = networks
        .unwrap_or_default()
        .into_iter()
        .filter(|n| matches!(n.driver.as_deref(), Some("macvlan" | "ipvlan")))
        .filter_map(|n| n.name)
        .collect();
    Ok(summaries.into_iter().map(|c| entry_of(c, &lan)).collect())
}

/// One summary as an entry; `lan` names the networks on the host's LAN.
fn entry_of(c: bollard::models::ContainerSummary, lan: &HashSet<String>) -> ContainerEntry {
    use bollard::models::ContainerSummaryStateEnum as S;
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let state = match c.state {
        Some(S::RUNNING) | Some(S::PAUSED) | Some(S::RESTARTING) => ContainerState::Running,
        _ => ContainerState::Stopped,
    };
    let mut tcp_port: Vec<u16> = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.typ
                .as_ref()
                .is_none_or(|t| t.to_string().eq_ignore_ascii_case("tcp"))
        })
        .filter_map(|p| p.public_port)
        .collect();
    tcp_port.sort_unstable();
    tcp_port.dedup();
    let labels: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let (project, project_path) = (
        label(COMPOSE_PROJECT_LABEL),
        label(COMPOSE_WORKING_DIR_LABEL),
    );
    // Addresses in network-name order, as `docker inspect` lists them.
    let mut ips: Vec<(String, String)> = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, e)| e.ip_address.filter(|ip| !ip.is_empty()).map(|ip| (net, ip)))
        .collect();
    ips.sort();
    let external_ip = ips
        .iter()
        .find(|(net, _)| lan.contains(net))
        .map(|(_, ip)| ip.clone())
        .unwrap_or_default();
    // `""` for the engine's default bridge, as recorded; else the mode
    // (`host`, `none`, `container:<id>`) or the network's name.
    let network_mode = match c.host_config.and_then(|h| h.network_mode) {
        Some(m) if m != "default" && m != "bridge" => m,
        _ => String::new(),
    };
    let running = state == ContainerState::Running;
    ContainerEntry {
        id: c.id.unwrap_or_default(),
        name,
        image: image_name(c.image.as_deref().unwrap_or_default()),
        image_id: Some(c.image_id.unwrap_or_default()),
        state,
        kind: "docker",
        tcp_port,
        project: Some(project),
        project_path: Some(project_path),
        network_mode: Some(network_mode),
        external_ip: Some(external_ip),
        cpu: None,
        memory: None,
        rx: None,
        tx: None,
        ipaddress: running.then(|| ips.into_iter().map(|(_, ip)| ip).collect()),
        labels,
    }
}

/// The usage of each of `ids` (running containers), from their live
/// samples (see [`super::live_stats`]). A container with no sample in
/// time is left out.
pub async fn usage(api: &Docker, live: &LiveStats, ids: Vec<String>) -> HashMap<String, Usage> {
    live.usage(api, ids, counters).await
}

/// The counters of one stats answer. Memory is what `docker stats` shows:
/// the usage less the inactive page cache.
fn counters(stats: &bollard::models::ContainerStatsResponse) -> Counters {
    let cpu_ns = stats
        .cpu_stats
        .as_ref()
        .and_then(|c| c.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let memory = stats
        .memory_stats
        .as_ref()
        .map(|m| {
            let usage = m.usage.unwrap_or(0);
            let inactive = m
                .stats
                .as_ref()
                .and_then(|s| {
                    s.get("inactive_file")
                        .or_else(|| s.get("total_inactive_file"))
                        .copied()
                })
                .unwrap_or(0);
            usage.saturating_sub(inactive)
        })
        .unwrap_or(0);
    let (rx, tx) = stats
        .networks
        .as_ref()
        .map(|nets| {
            nets.values().fold((0u64, 0u64), |(rx, tx), n| {
                (
                    rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                    tx.saturating_add(n.tx_bytes.unwrap_or(0)),
                )
            })
        })
        .unwrap_or((0, 0));
    Counters {
        cpu_ns,
        memory,
        rx,
        tx,
    }
}

/// The last `tail` lines a container wrote to stdout and stderr, as the
/// engine interleaved them; at most [`MAX_LOG_BYTES`] (the newest kept).
pub async fn logs(api: &Docker, container: &str, tail: u32) -> RtResult<String> {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: tail.to_string(),
        ..Default::default()
    };
    let mut stream = api.logs(container, Some(options));
    let mut out: Vec<u8> = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.map_err(engine)?;
        out.extend_from_slice(item.as_ref());
        if out.len() > 2 * MAX_LOG_BYTES {
            out.drain(..out.len() - MAX_LOG_BYTES);
        }
    }
    if out.len() > MAX_LOG_BYTES {
        out.drain(..out.len() - MAX_LOG_BYTES);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The last `tail` lines of a container's stdout and stderr, then what it
/// writes, until the engine ends the stream (the container stopped or was
/// removed; at once for a stopped one). The engine's frames are read as the
/// answer is read, so a slow reader slows the engine's connection, not
/// memory.
pub fn follow_logs(api: &Docker, container: &str, tail: u32) -> LogStream {
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        tail: tail.to_string(),
        ..Default::default()
    };
    let frames = api
        .logs(container, Some(options))
        .map(|frame| frame.map_err(engine));
    whole_lines(frames)
}

/// The engine's version (`docker version`'s server version).
pub async fn version(api: &Docker) -> RtResult<String> {
    let v = api.version().await.map_err(engine)?;
    v.version
        .ok_or_else(|| Error::Runtime("the engine did not say its version".into()))
}

/// `repository:tag` as Container Station shows it: a reference without a
/// tag gets `latest`; an id or a digest reference is kept as it is.
pub fn image_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.is_empty() || image.starts_with("sha256:") || image.contains('@') || last.contains(':')
    {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Stop (if it runs) and remove a container, with its anonymous volumes
/// when `remove_volumes`.
pub async fn delete(api: &Docker, container: &str, remove_volumes: bool) -> RtResult<()> {
    use bollard::query_parameters::StopContainerOptions;
    let stop = StopContainerOptions {
        signal: None,
        t: Some(crate::runtime::STOP_TIMEOUT_SECS as i32),
    };
    // A stopped container answers 304, which is fine; a vanished one is
    // reported by the removal below.
    if let Err(e) = api.stop_container(container, Some(stop)).await {
        tracing::debug!(container, error = %e, "stop before removal");
    }
    let options = RemoveContainerOptions {
        v: remove_volumes,
        force: true,
        link: false,
    };
    api.remove_container(container, Some(options))
        .await
        .map_err(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_get_a_tag() {
        assert_eq!(image_name("busybox"), "busybox:latest");
        assert_eq!(image_name("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            image_name("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(
            image_name("127.0.0.1:5000/busybox:x"),
            "127.0.0.1:5000/busybox:x"
        );
        assert_eq!(image_name("sha256:abc"), "sha256:abc");
        assert_eq!(image_name("a@sha256:abc"), "a@sha256:abc");
    }
}
