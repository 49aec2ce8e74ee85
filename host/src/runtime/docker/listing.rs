//! Docker containers as Container Station's `GET container` lists them.

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;

use super::engine;
use crate::runtime::{ContainerEntry, ContainerState, RtResult};

/// The label Docker Compose puts the project name in.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// Every container of the engine, running or not, as entries.
pub async fn list(api: &Docker) -> RtResult<Vec<ContainerEntry>> {
    let options = ListContainersOptions {
        all: true,
        ..Default::default()
    };
    let summaries = api.list_containers(Some(options)).await.map_err(engine)?;
    Ok(summaries.into_iter().map(entry_of).collect())
}

/// One summary as an entry.
fn entry_of(c: bollard::models::ContainerSummary) -> ContainerEntry {
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
    let labels: std::collections::BTreeMap<String, String> =
        c.labels.unwrap_or_default().into_iter().collect();
    let project = labels
        .get(COMPOSE_PROJECT_LABEL)
        .cloned()
        .unwrap_or_default();
    let ipaddress = c
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|nets| {
            let mut ips: Vec<(String, String)> = nets
                .into_iter()
                .filter_map(|(net, e)| e.ip_address.filter(|ip| !ip.is_empty()).map(|ip| (net, ip)))
                .collect();
            ips.sort();
            ips.into_iter().next().map(|(_, ip)| ip)
        });
    ContainerEntry {
        id: c.id.unwrap_or_default(),
        name,
        image: image_name(c.image.as_deref().unwrap_or_default()),
        image_id: c.image_id.unwrap_or_default(),
        state,
        kind: "docker",
        tcp_port,
        project,
        cpu: None,
        memory: None,
        ipaddress,
        labels,
    }
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
