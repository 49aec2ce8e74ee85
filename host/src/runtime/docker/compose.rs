//! What applications need of the engine beyond Container Station's `create`:
//! networks, named volumes, containers with several networks, typed mounts
//! and a restart policy, and containers found by label.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, Mount as DockerMount, MountType, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveVolumeOptions,
};
use bollard::Docker;

use super::engine;
use crate::runtime::{
    ContainerExtra, ContainerSummary, Error, MountSource, NetworkInfo, RtResult, VolumeInfo,
};

/// The engine's filter for label `key` = `value`; an empty key: no filter.
fn label_filter(key: &str, value: &str) -> HashMap<String, Vec<String>> {
    if key.is_empty() {
        return HashMap::new();
    }
    HashMap::from([("label".to_string(), vec![format!("{key}={value}")])])
}

fn sorted(labels: Option<HashMap<String, String>>) -> Vec<(String, String)> {
    let mut l: Vec<_> = labels.unwrap_or_default().into_iter().collect();
    l.sort();
    l
}

/// Create a bridge network with labels; returns its id.
pub async fn network_create(
    api: &Docker,
    name: String,
    labels: Vec<(String, String)>,
) -> RtResult<String> {
    let request = NetworkCreateRequest {
        name,
        driver: Some("bridge".into()),
        labels: Some(labels.into_iter().collect()),
        ..Default::default()
    };
    Ok(api.create_network(request).await.map_err(engine)?.id)
}

/// Remove a network.
pub async fn network_remove(api: &Docker, name: &str) -> RtResult<()> {
    api.remove_network(name).await.map_err(engine)
}

/// The networks whose label `key` is `value`.
pub async fn network_list(api: &Docker, key: &str, value: &str) -> RtResult<Vec<NetworkInfo>> {
    let options = ListNetworksOptions {
        filters: Some(label_filter(key, value)),
    };
    let networks = api.list_networks(Some(options)).await.map_err(engine)?;
    Ok(networks
        .into_iter()
        .map(|n| NetworkInfo {
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            labels: sorted(n.labels),
        })
        .collect())
}

/// Create a local volume with labels. The engine answers an existing name
/// with success; that is a conflict here, so a run never adopts (and later
/// removes) a volume it did not make.
pub async fn volume_create(
    api: &Docker,
    name: String,
    labels: Vec<(String, String)>,
) -> RtResult<()> {
    if api.inspect_volume(&name).await.is_ok() {
        return Err(Error::Conflict(format!("volume {name} already exists")));
    }
    let request = VolumeCreateRequest {
        name: Some(name),
        driver: Some("local".into()),
        labels: Some(labels.into_iter().collect()),
        ..Default::default()
    };
    api.create_volume(request).await.map_err(engine)?;
    Ok(())
}

/// Remove a volume.
pub async fn volume_remove(api: &Docker, name: &str) -> RtResult<()> {
    api.remove_volume(name, Some(RemoveVolumeOptions { force: false }))
        .await
        .map_err(engine)
}

/// The volumes whose label `key` is `value`.
pub async fn volume_list(api: &Docker, key: &str, value: &str) -> RtResult<Vec<VolumeInfo>> {
    let options = ListVolumesOptions {
        filters: Some(label_filter(key, value)),
    };
    let listed = api.list_volumes(Some(options)).await.map_err(engine)?;
    Ok(listed
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| VolumeInfo {
            name: v.name,
            labels: sorted(Some(v.labels)),
        })
        .collect())
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
