//! A Docker container's settings, read and changed (the resource routes).
//!
//! The engine changes a restart policy and limits in place (`container
//! update`). Ports, devices, host folders, and a limit dropped, it cannot
//! change: the container is recreated from its inspect with the one
//! setting changed. The new container has the same name, configuration,
//! labels, volumes (anonymous ones too, mounted again by name) and network
//! attachments; its writable layer is new. The old one is renamed aside
//! first and removed only once the new one exists (and runs, if the old
//! one ran); when the new one cannot be created or started it is removed
//! and the old one gets its name back and runs again, untouched.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, EndpointSettings,
    HostConfig, NetworkConnectRequest, NetworkingConfig, PortBinding as EnginePort, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};

use super::recovery::{self, aside_name, ASIDE};
use super::{archive, engine, DockerRuntime};
use crate::runtime::{
    BindMount, CallContext, ChangeSettings, ContainerHealth, ContainerRef, ContainerSpec,
    Containers, Error, Limits, PortBinding, Recreate, Replacement, RtResult, RuntimeKind,
    SettingsChange, STOP_TIMEOUT_SECS,
};

/// The networks a container's `NetworkMode` names without being a network
/// it joins by name.
fn mode_network(mode: &str) -> Option<&str> {
    match mode {
        "" | "default" | "bridge" => Some("bridge"),
        "host" | "none" => None,
        m if m.starts_with("container:") => None,
        m => Some(m),
    }
}

/// What a recreate keeps of an endpoint: its aliases (without the old
/// container's short id, which the engine adds itself), links and fixed
/// addresses.
fn endpoint(old: &EndpointSettings, short_id: &str) -> EndpointSettings {
    EndpointSettings {
        aliases: old
            .aliases
            .as_ref()
            .map(|a| a.iter().filter(|x| *x != short_id).cloned().collect()),
        links: old.links.clone(),
        ipam_config: old.ipam_config.clone(),
        driver_opts: old.driver_opts.clone(),
        ..Default::default()
    }
}

/// The create body of a container like the inspected one, and the
/// networks it joins after its creation (the engine's API 1.41 takes one
/// at create).
pub fn body_from_inspect(
    inspect: &ContainerInspectResponse,
) -> RtResult<(ContainerCreateBody, Vec<(String, EndpointSettings)>)> {
    let mut config = inspect.config.clone().unwrap_or_default();
    let mut host = inspect.host_config.clone().unwrap_or_default();
    // What an earlier recreate recorded is about that one only.
    if let Some(labels) = config.labels.as_mut() {
        labels.retain(|k, _| !k.starts_with(recovery::LABEL_PREFIX));
    }
    let id = inspect.id.clone().unwrap_or_default();
    let short_id: String = id.chars().take(12).collect();
    // The engine names a container's host after its id unless told otherwise.
    if config
        .hostname
        .as_deref()
        .is_some_and(|h| !h.is_empty() && id.starts_with(h))
    {
        config.hostname = None;
    }
    // Anonymous volumes are mounted again by name, so their data stays.
    let mut binds = host.binds.take().unwrap_or_default();
    let taken: Vec<String> = binds
        .iter()
        .filter_map(|b| b.split(':').nth(1).map(str::to_string))
        .chain(
            host.mounts
                .iter()
                .flatten()
                .filter_map(|m| m.target.clone()),
        )
        .collect();
    for m in inspect.mounts.iter().flatten() {
        let (Some(name), Some(dest)) = (&m.name, &m.destination) else {
            continue;
        };
        if m.typ.as_deref() == Some("volume") && !taken.contains(dest) {
            let ro = if m.rw == Some(false) { ":ro" } else { "" };
            binds.push(format!("{name}:{dest}{ro}"));
        }
    }
    host.binds = Some(binds).filter(|b| !b.is_empty());
    let mode = host.network_mode.clone().unwrap_or_default();
    let first = mode_network(&mode);
    let mut at_create = HashMap::new();
    let mut later = Vec::new();
    let networks = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    for (name, settings) in networks {
        let settings = endpoint(&settings, &short_id);
        if Some(name.as_str()) == first {
            at_create.insert(name, settings);
        } else if first.is_some() {
            later.push((name, settings));
        }
    }
    let mut value = serde_json::to_value(&config).map_err(|e| Error::Other(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| Error::Other("the container's configuration is not an object".into()))?;
    object.insert(
        "HostConfig".into(),
        serde_json::to_value(&host).map_err(|e| Error::Other(e.to_string()))?,
    );
    let mut body: ContainerCreateBody =
        serde_json::from_value(value).map_err(|e| Error::Other(e.to_string()))?;
    body.networking_config = Some(NetworkingConfig {
        endpoints_config: Some(at_create),
    })
    .filter(|n| n.endpoints_config.as_ref().is_some_and(|e| !e.is_empty()));
    Ok((body, later))
}

/// `ports` as the engine's port bindings, and the exposed ports they need.
fn port_bindings(ports: &[PortBinding]) -> HashMap<String, Option<Vec<EnginePort>>> {
    let mut out: HashMap<String, Option<Vec<EnginePort>>> = HashMap::new();
    for p in ports {
        let protocol = if p.protocol.is_empty() {
            "tcp"
        } else {
            &p.protocol
        };
        out.entry(format!("{}/{protocol}", p.container_port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(EnginePort {
                host_ip: None,
                host_port: Some(p.host_port.to_string()),
            });
    }
    out
}

/// Put `ports` in `body` in place of its published ports; the ports only
/// the old bindings exposed are exposed no more (the engine adds the
/// image's own again).
fn set_ports(body: &mut ContainerCreateBody, ports: &[PortBinding]) {
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    let old: Vec<String> = host
        .port_bindings
        .take()
        .unwrap_or_default()
        .into_keys()
        .collect();
    let new = port_bindings(ports);
    let mut exposed = body.exposed_ports.take().unwrap_or_default();
    exposed.retain(|p| !old.contains(p));
    exposed.extend(new.keys().cloned());
    exposed.sort();
    exposed.dedup();
    body.exposed_ports = Some(exposed).filter(|e| !e.is_empty());
    host.port_bindings = Some(new).filter(|p| !p.is_empty());
}

/// Put `limits` in `host`.
fn set_limits(host: &mut HostConfig, limits: &Limits) {
    host.cpu_shares = limits.cpu_shares.map(i64::from);
    host.cpu_period = limits.cpu_time_ms.map(|_| 100_000);
    host.cpu_quota = limits.cpu_time_ms.map(|ms| i64::from(ms) * 100);
    host.memory = limits.memory_bytes.map(|m| m as i64);
    // The swap limit followed the old memory limit: the engine derives it again.
    host.memory_swap = None;
}

/// Whether `limits` drops a limit `host` has (the engine's update cannot).
fn drops_a_limit(host: &HostConfig, limits: &Limits) -> bool {
    let set = |v: Option<i64>| v.is_some_and(|v| v > 0);
    (set(host.cpu_shares) && limits.cpu_shares.is_none())
        || (set(host.cpu_quota) && limits.cpu_time_ms.is_none())
        || (set(host.memory) && limits.memory_bytes.is_none())
}

impl DockerRuntime {
    /// Show the user's folders in `inspect`'s binds in place of their
    /// staging folders.
    pub(super) fn unstage_binds(&self, inspect: &mut ContainerInspectResponse) {
        let binds = inspect.host_config.as_mut().and_then(|h| h.binds.as_mut());
        for bind in binds.into_iter().flatten() {
            let (source, rest) = bind.split_once(':').unwrap_or((bind.as_str(), ""));
            if let Some(original) = self.pins.original(source) {
                *bind = format!("{}:{rest}", original.display());
            }
        }
    }

    /// The container's settings in the create body's shape.
    pub(super) async fn settings(&self, c: &ContainerRef) -> RtResult<serde_json::Value> {
        let mut inspect = self
            .api
            .inspect_container(&c.id, None)
            .await
            .map_err(engine)?;
        self.unstage_binds(&mut inspect);
        // The export's record holds the create body under `create`.
        let mut record = archive::config_from_inspect(&inspect, self.share.root());
        Ok(record["create"].take())
    }

    /// Change one setting: in place when the engine can, else by a recreate.
    pub(super) async fn change_settings(
        &self,
        cx: &CallContext,
        req: ChangeSettings,
    ) -> RtResult<()> {
        let id = &req.container.id;
        let inspect = self.api.inspect_container(id, None).await.map_err(engine)?;
        let host = inspect.host_config.clone().unwrap_or_default();
        let update = match &req.change {
            SettingsChange::Autostart(on) => ContainerUpdateBody {
                restart_policy: Some(RestartPolicy {
                    name: Some(if *on {
                        RestartPolicyNameEnum::ALWAYS
                    } else {
                        RestartPolicyNameEnum::NO
                    }),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            },
            SettingsChange::Limits(l) if !drops_a_limit(&host, l) => {
                let mut h = host.clone();
                set_limits(&mut h, l);
                ContainerUpdateBody {
                    cpu_shares: h.cpu_shares,
                    cpu_period: h.cpu_period,
                    cpu_quota: h.cpu_quota,
                    memory: h.memory,
                    // Swap unlimited beside the memory limit: the old swap
                    // limit may be below the new memory limit.
                    memory_swap: h.memory.map(|_| -1),
                    ..Default::default()
                }
            }
            _ => return self.recreate(cx, inspect, req.change).await,
        };
        self.api.update_container(id, update).await.map_err(engine)
    }

    /// Recreate the inspected container with `change` (see the module's doc).
    async fn recreate(
        &self,
        cx: &CallContext,
        inspect: ContainerInspectResponse,
        change: SettingsChange,
    ) -> RtResult<()> {
        let old_id = inspect.id.clone().unwrap_or_default();
        let name = inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let running = inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        let (mut body, later) = body_from_inspect(&inspect)?;
        // Host folders: the new ones pinned now, the old pins released once
        // the old container is gone (or the new pins, when it stays).
        let mut new_pins = Vec::new();
        let mut old_pins = Vec::new();
        let host = body.host_config.get_or_insert_with(HostConfig::default);
        match &change {
            SettingsChange::Ports(p) => set_ports(&mut body, p),
            SettingsChange::Devices(d) => {
                host.device_cgroup_rules = Some(d.clone()).filter(|d| !d.is_empty())
            }
            SettingsChange::Limits(l) => set_limits(host, l),
            SettingsChange::HostBinds(b) => {
                let spec = ContainerSpec {
                    binds: b.clone(),
                    ..ContainerSpec::new(RuntimeKind::Docker, name.clone(), String::new())
                };
                new_pins = self.pin_binds(&spec)?;
                let mut binds = host.binds.take().unwrap_or_default();
                binds.retain(|bind| {
                    let source = bind.split(':').next().unwrap_or_default();
                    let pinned = self.pins.original(source).is_some();
                    if pinned {
                        old_pins.push(source.to_string());
                    }
                    !pinned
                });
                binds.extend(staged_binds(b, &new_pins));
                host.binds = Some(binds).filter(|b| !b.is_empty());
            }
            SettingsChange::Autostart(_) => {}
        }
        let swap = Swap {
            old_id: &old_id,
            name: &name,
            was_running: running,
            start_new: running,
            keep_old: false,
            pinned: None,
        };
        let result = self.swap(cx, swap, body, later).await;
        match result {
            Ok(_) => self.pins.release(old_pins.iter().map(String::as_str)),
            Err(_) => self.pins.release(new_pins.iter().map(String::as_str)),
        }
        result.map(|_| ())
    }

    /// `containers.recreate`: the container on another image with the same
    /// settings, started; the previous one stays aside, stopped. What the
    /// previous container had from its image alone (command, entrypoint,
    /// health check, environment, labels...) is left for the new image to
    /// give.
    pub(super) async fn recreate_on(
        &self,
        cx: &CallContext,
        req: Recreate,
    ) -> RtResult<Replacement> {
        let inspect = self
            .api
            .inspect_container(&req.container.id, None)
            .await
            .map_err(engine)?;
        let old_id = inspect.id.clone().unwrap_or_default();
        let name = inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let was_running = inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        let (mut body, later) = body_from_inspect(&inspect)?;
        if let Some(old_image) = inspect.image.as_deref() {
            match self.api.inspect_image(old_image).await {
                Ok(image) => {
                    let defaults = serde_json::to_value(image.config.unwrap_or_default())
                        .map_err(|e| Error::Other(e.to_string()))?;
                    body = without_image_defaults(body, &defaults)?;
                }
                Err(e) => {
                    tracing::warn!(container = %name, "reading the previous image's defaults: {}", engine(e).message())
                }
            }
        }
        body.image = Some(req.image.clone());
        let swap = Swap {
            old_id: &old_id,
            name: &name,
            was_running,
            start_new: true,
            keep_old: true,
            pinned: req.pinned.as_deref(),
        };
        let id = self.swap(cx, swap, body, later).await?;
        Ok(Replacement {
            id,
            previous: old_id.clone(),
            aside_name: aside_name(&name, &old_id),
            was_running,
        })
    }

    /// `containers.restore`: remove the new container, give the previous
    /// one its name back and start it if it ran.
    pub(super) async fn restore(&self, replaced: &Replacement) -> RtResult<()> {
        let name = replaced
            .aside_name
            .rsplit_once(ASIDE)
            .map(|(n, _)| n.to_string())
            .ok_or_else(|| {
                Error::InvalidParams(format!(
                    "replaced.aside-name: `{}` is not a name `recreate` gives",
                    replaced.aside_name
                ))
            })?;
        let remove = RemoveContainerOptions {
            v: false,
            force: true,
            link: false,
        };
        match self.api.remove_container(&replaced.id, Some(remove)).await {
            Ok(()) => {}
            Err(e) => match engine(e) {
                Error::NotFound(_) => {}
                other => return Err(other),
            },
        }
        self.api
            .rename_container(&replaced.previous, RenameContainerOptions { name })
            .await
            .map_err(engine)?;
        if replaced.was_running {
            self.api
                .start_container(&replaced.previous, None)
                .await
                .map_err(engine)?;
        }
        Ok(())
    }

    /// `containers.health`: the container's state and health check.
    pub(super) async fn health(&self, c: &ContainerRef) -> RtResult<ContainerHealth> {
        let inspect = self
            .api
            .inspect_container(&c.id, None)
            .await
            .map_err(engine)?;
        let state = inspect.state.unwrap_or_default();
        let check = state.health.unwrap_or_default();
        let health = check
            .status
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none");
        let last_probe_output = check
            .log
            .unwrap_or_default()
            .last()
            .and_then(|r| r.output.clone())
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(ContainerHealth {
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code.unwrap_or(0),
            health,
            failing_streak: check.failing_streak.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
            last_probe_output,
        })
    }

    /// Rename the old container aside, create and (if asked) start the new
    /// one, then remove the old one unless it is kept; on a failure, undo.
    /// Returns the new container's id.
    async fn swap(
        &self,
        cx: &CallContext,
        swap: Swap<'_>,
        body: ContainerCreateBody,
        later: Vec<(String, EndpointSettings)>,
    ) -> RtResult<String> {
        let Swap {
            old_id,
            name,
            was_running: running,
            start_new,
            keep_old,
            pinned,
        } = swap;
        let mut body = body;
        recovery::label_new(&mut body, old_id, running, &self.maker, cx.task_id);
        let aside = aside_name(name, old_id);
        let rename = |to: String| RenameContainerOptions { name: to };
        self.api
            .rename_container(old_id, rename(aside))
            .await
            .map_err(engine)?;
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            platform: String::new(),
        };
        let created = match self.api.create_container(Some(options), body).await {
            Ok(c) => c.id,
            Err(e) => {
                self.roll_back(None, old_id, name, false).await;
                return Err(engine(e));
            }
        };
        let started = async {
            if let Some(pinned) = pinned {
                let made = self
                    .api
                    .inspect_container(&created, None)
                    .await
                    .map_err(engine)?;
                if made.image.as_deref() != Some(pinned) {
                    return Err(Error::Conflict(format!(
                        "the image changed after it was checked (now {}, checked {pinned})",
                        made.image.unwrap_or_default()
                    )));
                }
            }
            for (network, settings) in later {
                let request = NetworkConnectRequest {
                    container: created.clone(),
                    endpoint_config: Some(settings),
                };
                self.api
                    .connect_network(&network, request)
                    .await
                    .map_err(engine)?;
            }
            if running {
                let stop = StopContainerOptions {
                    signal: None,
                    t: Some(STOP_TIMEOUT_SECS as i32),
                };
                self.api
                    .stop_container(old_id, Some(stop))
                    .await
                    .map_err(engine)?;
            }
            if start_new {
                let new = ContainerRef::new(RuntimeKind::Docker, created.clone());
                self.container_start(cx, &new).await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = started {
            self.roll_back(Some(&created), old_id, name, running).await;
            return Err(e);
        }
        if keep_old {
            return Ok(created);
        }
        let remove = RemoveContainerOptions {
            v: false,
            force: true,
            link: false,
        };
        if let Err(e) = self.api.remove_container(old_id, Some(remove)).await {
            // The change is kept: the old one is retired, so that the
            // start-up recovery removes it rather than rolling back.
            tracing::warn!(container = %name, "removing the replaced container: {}", engine(e).message());
            let retired = rename(recovery::retired_name(name, old_id));
            if let Err(e) = self.api.rename_container(old_id, retired).await {
                tracing::warn!(container = %name, "retiring the replaced container: {}", engine(e).message());
            }
        }
        Ok(created)
    }

    /// Remove the new container (if made), give the old one its name back
    /// and start it again if it ran. Failures are logged: the caller
    /// answers the error that made the change fail.
    async fn roll_back(&self, new: Option<&str>, old_id: &str, name: &str, start: bool) {
        if let Some(new) = new {
            let remove = RemoveContainerOptions {
                v: false,
                force: true,
                link: false,
            };
            if let Err(e) = self.api.remove_container(new, Some(remove)).await {
                tracing::warn!(container = %name, "rolling back: removing the new container: {}", engine(e).message());
            }
        }
        let back = RenameContainerOptions {
            name: name.to_string(),
        };
        if let Err(e) = self.api.rename_container(old_id, back).await {
            tracing::warn!(container = %name, "rolling back: renaming the old container back: {}", engine(e).message());
        }
        if start {
            if let Err(e) = self.api.start_container(old_id, None).await {
                tracing::warn!(container = %name, "rolling back: starting the old container: {}", engine(e).message());
            }
        }
    }
}

/// What [`DockerRuntime::swap`] does with the old container and the new one.
struct Swap<'a> {
    /// The old container's id.
    old_id: &'a str,
    /// The name both carry in turn.
    name: &'a str,
    /// Whether the old one ran (it is stopped, and started again on undo).
    was_running: bool,
    /// Start the new one.
    start_new: bool,
    /// Keep the old one, stopped and aside, instead of removing it.
    keep_old: bool,
    /// The image id the new container must run, if pinned.
    pinned: Option<&'a str>,
}

/// The config keys an image gives a container as a whole value.
const IMAGE_VALUES: &[&str] = &[
    "Cmd",
    "Entrypoint",
    "Healthcheck",
    "WorkingDir",
    "User",
    "StopSignal",
    "Shell",
    "OnBuild",
];

/// The config keys an image gives a container entry by entry.
const IMAGE_ENTRIES: &[&str] = &["Env", "Labels", "ExposedPorts", "Volumes"];

/// `body` without what the container got from its image's config
/// (`image`, as JSON) alone, so that another image's defaults apply: a
/// whole value equal to the image's, or an entry the image has. Published
/// ports stay exposed.
fn without_image_defaults(
    body: ContainerCreateBody,
    image: &serde_json::Value,
) -> RtResult<ContainerCreateBody> {
    let json = |e: serde_json::Error| Error::Other(e.to_string());
    let mut value = serde_json::to_value(&body).map_err(json)?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| Error::Other("the container's configuration is not an object".into()))?;
    for key in IMAGE_VALUES {
        if image.get(*key).is_some_and(|v| object.get(*key) == Some(v)) {
            object.remove(*key);
        }
    }
    let published: Vec<String> = body
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for key in IMAGE_ENTRIES {
        let Some(from_image) = image.get(*key) else {
            continue;
        };
        match (object.get_mut(*key), from_image) {
            (Some(serde_json::Value::Array(have)), serde_json::Value::Array(theirs)) => {
                have.retain(|v| !theirs.contains(v));
            }
            (Some(serde_json::Value::Object(have)), serde_json::Value::Object(theirs)) => {
                have.retain(|k, v| {
                    (*key == "ExposedPorts" && published.contains(k)) || theirs.get(k) != Some(v)
                });
            }
            _ => {}
        }
    }
    serde_json::from_value(value).map_err(json)
}

/// `binds` given as their `staged` folders, in the engine's `Binds` form.
fn staged_binds<'a>(
    binds: &'a [BindMount],
    staged: &'a [String],
) -> impl Iterator<Item = String> + 'a {
    binds.iter().zip(staged).map(|(b, host)| {
        format!(
            "{host}:{}{}",
            b.container_path,
            if b.read_only { ":ro" } else { "" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, MountPoint, NetworkSettings};

    #[test]
    fn a_recreate_keeps_volumes_networks_and_a_given_hostname() {
        let inspect = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            name: Some("/web".into()),
            config: Some(ContainerConfig {
                hostname: Some("0123456789ab".into()),
                image: Some("busybox:latest".into()),
                labels: Some(HashMap::from([("owner".into(), "bob".into())])),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                binds: Some(vec!["/staged/1:/data".into()]),
                network_mode: Some("appnet".into()),
                ..Default::default()
            }),
            mounts: Some(vec![
                MountPoint {
                    typ: Some("volume".into()),
                    name: Some("abc".into()),
                    destination: Some("/var/lib".into()),
                    rw: Some(true),
                    ..Default::default()
                },
                MountPoint {
                    typ: Some("bind".into()),
                    source: Some("/staged/1".into()),
                    destination: Some("/data".into()),
                    ..Default::default()
                },
            ]),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "appnet".into(),
                        EndpointSettings {
                            aliases: Some(vec!["0123456789ab".into(), "web".into()]),
                            ip_address: Some("10.0.0.2".into()),
                            ..Default::default()
                        },
                    ),
                    ("other".into(), EndpointSettings::default()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (body, later) = body_from_inspect(&inspect).unwrap();
        assert_eq!(body.hostname, None, "the engine names the new one");
        assert_eq!(body.image.as_deref(), Some("busybox:latest"));
        assert_eq!(body.labels.unwrap()["owner"], "bob");
        let host = body.host_config.unwrap();
        assert_eq!(
            host.binds.unwrap(),
            ["/staged/1:/data", "abc:/var/lib"],
            "the anonymous volume is mounted again by name"
        );
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["appnet"].aliases.as_deref(),
            Some(&["web".to_string()][..])
        );
        assert_eq!(
            later.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["other"]
        );
    }

    #[test]
    fn ports_replace_the_published_ones_and_their_exposes() {
        let mut body = ContainerCreateBody {
            exposed_ports: Some(vec!["80/tcp".into(), "8080/tcp".into()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([("8080/tcp".into(), None)])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = PortBinding {
            host_port: 9000,
            container_port: 53,
            protocol: "udp".into(),
        };
        set_ports(&mut body, &[p]);
        assert_eq!(body.exposed_ports.unwrap(), ["53/udp", "80/tcp"]);
        let bound = body.host_config.unwrap().port_bindings.unwrap();
        assert_eq!(
            bound["53/udp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("9000")
        );
    }

    #[test]
    fn a_recreate_on_another_image_drops_what_the_old_image_gave() {
        let body = ContainerCreateBody {
            cmd: Some(vec!["sh".into()]),
            entrypoint: Some(vec!["/bin/run".into()]),
            env: Some(vec!["PATH=/bin".into(), "MODE=prod".into()]),
            labels: Some(HashMap::from([
                ("built".into(), "old".into()),
                ("owner".into(), "bob".into()),
            ])),
            exposed_ports: Some(vec!["80/tcp".into(), "8080/tcp".into()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([("80/tcp".into(), None)])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let image = serde_json::json!({
            "Cmd": ["sh"], "Entrypoint": ["/bin/other"], "Env": ["PATH=/bin"],
            "Labels": {"built": "old"}, "ExposedPorts": {"80/tcp": {}, "8080/tcp": {}},
        });
        let body = without_image_defaults(body, &image).unwrap();
        assert_eq!(body.cmd, None, "the image's command");
        assert_eq!(
            body.entrypoint.unwrap(),
            ["/bin/run"],
            "the container's own"
        );
        assert_eq!(body.env.unwrap(), ["MODE=prod"]);
        assert_eq!(body.labels.unwrap().keys().collect::<Vec<_>>(), ["owner"]);
        assert_eq!(body.exposed_ports.unwrap(), ["80/tcp"], "published: kept");
    }

    #[test]
    fn only_a_dropped_limit_needs_a_recreate() {
        let host = HostConfig {
            memory: Some(256 << 20),
            ..Default::default()
        };
        let keep = Limits {
            memory_bytes: Some(512 << 20),
            cpu_shares: Some(100),
            cpu_time_ms: None,
        };
        assert!(!drops_a_limit(&host, &keep));
        assert!(drops_a_limit(&host, &Limits::default()));
    }
}
