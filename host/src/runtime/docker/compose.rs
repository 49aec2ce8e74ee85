//! What applications need of the engine beyond Container Station's `create`:
//! containers with several networks, typed mounts and a restart policy, and
//! containers found by label. Their networks and named volumes are
//! [`super::networks`]' and [`super::volumes`]'.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, Mount as DockerMount, MountType, NetworkConnectRequest,
    NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions};
use bollard::Docker;

use super::engine;
use crate::runtime::{ContainerExtra, ContainerSummary, Error, MountSource, RtResult};

/// The engine's filter for label `key` = `value`; an empty key: no filter.
pub(super) fn label_filter(key: &str, value: &str) -> HashMap<String, Vec<String>> {
    if key.is_empty() {
        return HashMap::new();
    }
    HashMap::from([("label".to_string(), vec![format!("{key}={value}")])])
}

/// Labels as the interfaces list them: `(key, value)`, sorted.
pub(super) fn sorted(labels: Option<HashMap<String, String>>) -> Vec<(String, String)> {
    let mut l: Vec<_> = labels.unwrap_or_default().into_iter().collect();
    l.sort();
    l
}

/// Every container whose label `key` is `value`.
pub async fn containers_labelled(
    api: &Docker,
    key: &str,
    value: &str,
) -> RtResult<Vec<ContainerSummary>> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(label_filter(key, value)),
        ..Default::default()
    };
    let listed = api.list_containers(Some(options)).await.map_err(engine)?;
    Ok(listed
        .into_iter()
        .map(|c| ContainerSummary {
            id: c.id.unwrap_or_default(),
            name: c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            image: c.image.unwrap_or_default(),
            running: c.state.is_some_and(|s| {
                matches!(
                    s,
                    bollard::models::ContainerSummaryStateEnum::RUNNING
                        | bollard::models::ContainerSummaryStateEnum::RESTARTING
                        | bollard::models::ContainerSummaryStateEnum::PAUSED
                )
            }),
            labels: sorted(c.labels),
        })
        .collect())
}

fn restart_policy(name: &str) -> RtResult<RestartPolicyNameEnum> {
    Ok(match name {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => {
            return Err(Error::InvalidParams(format!(
                "restart: unknown policy `{other}` (no, always, unless-stopped, on-failure)"
            )))
        }
    })
}

fn endpoint(attachment: &crate::runtime::NetworkAttachment) -> EndpointSettings {
    EndpointSettings {
        aliases: Some(attachment.aliases.clone()).filter(|a| !a.is_empty()),
        links: Some(
            attachment
                .links
                .iter()
                .map(|(c, a)| format!("{c}:{a}"))
                .collect::<Vec<_>>(),
        )
        .filter(|l| !l.is_empty()),
        ..Default::default()
    }
}

/// Add `extra` to a create body built from a spec: typed mounts (sources
/// already resolved by the router to volumes and checked host paths), the
/// first network as the container's network mode with its aliases and
/// links, and the restart policy.
pub fn apply_extra(body: &mut ContainerCreateBody, extra: &ContainerExtra) -> RtResult<()> {
    let host = body.host_config.get_or_insert_with(Default::default);
    let mut mounts = Vec::new();
    for m in &extra.mounts {
        let (typ, source) = match &m.source {
            MountSource::Volume(v) => (MountType::VOLUME, v.clone()),
            MountSource::HostPath(p) => (MountType::BIND, p.clone()),
            MountSource::AppPath(p) => {
                return Err(Error::Denied(format!(
                    "volumes: `{p}`: relative paths are resolved by the server's router"
                )))
            }
        };
        mounts.push(DockerMount {
            target: Some(m.target.clone()),
            source: Some(source),
            typ: Some(typ),
            read_only: Some(m.read_only),
            ..Default::default()
        });
    }
    if !mounts.is_empty() {
        host.mounts = Some(mounts);
    }
    if let Some(policy) = &extra.restart_policy {
        host.restart_policy = Some(RestartPolicy {
            name: Some(restart_policy(policy)?),
            maximum_retry_count: None,
        });
    }
    if let Some(first) = extra.networks.first() {
        host.network_mode = Some(first.network.clone());
        body.networking_config = Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(first.network.clone(), endpoint(first))])),
        });
    }
    Ok(())
}

/// Create the container, then connect it to its other networks (API 1.41
/// takes one network at create time).
pub async fn create_with(
    api: &Docker,
    name: String,
    body: ContainerCreateBody,
    extra: &ContainerExtra,
) -> RtResult<String> {
    let options = CreateContainerOptions {
        name: Some(name),
        platform: String::new(),
    };
    let id = api
        .create_container(Some(options), body)
        .await
        .map_err(engine)?
        .id;
    for attachment in extra.networks.iter().skip(1) {
        let request = NetworkConnectRequest {
            container: id.clone(),
            endpoint_config: Some(endpoint(attachment)),
        };
        if let Err(e) = api.connect_network(&attachment.network, request).await {
            let _ = super::listing::delete(api, &id, true).await;
            return Err(engine(e));
        }
    }
    Ok(id)
}
