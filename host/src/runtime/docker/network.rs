//! Containers on a network other than the engine's default bridge, or with
//! a MAC address of their own (`containers.create-on-network`, the
//! `network` settings of Container Station's create body).
//!
//! - A host interface: the container joins a macvlan network whose parent
//!   is that interface, found by its `parent` option among the engine's
//!   macvlan networks (the engine allows one per parent), else made as
//!   `stevedore-macvlan-<interface>` with [`INTERFACE_LABEL`]. The
//!   interface must exist on this host (`/sys/class/net/<name>`): the
//!   server runs beside its engine.
//! - Another container's network: `container:<name>`, once the container
//!   is found.
//! - A MAC address: the create body's `MacAddress`, which the engine (API
//!   1.41, the version this backend speaks) puts on the container's
//!   endpoint in its network. bollard's create body no longer has the
//!   field (the engine moved it to the endpoint in API 1.44), so the body
//!   is sent as JSON with it added.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{InspectContainerOptions, ListNetworksOptions};
use bollard::Docker;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Method;

use super::engine;
use super::raw::{query, RawClient};
use crate::runtime::{Error, NetworkChoice, NetworkMode, RtResult};

/// The label on the macvlan networks the host makes: their interface.
pub const INTERFACE_LABEL: &str = "stevedore.interface";

/// Where the kernel lists the host's interfaces.
const SYS_CLASS_NET: &str = "/sys/class/net";

/// Check an interface name (the plugin checked it too; this is the host's
/// own guard before the name reaches a path): 1 to 15 letters, digits,
/// `_`, `.`, `-`, not `.` or `..`.
fn check_interface(name: &str) -> RtResult<()> {
    let ok = (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParams(format!(
            "network.interface: `{name}` is not an interface name"
        )))
    }
}

/// The name of the macvlan network on host interface `interface`: the
/// engine's existing one, else a new one.
pub async fn macvlan_network(api: &Docker, interface: &str) -> RtResult<String> {
    check_interface(interface)?;
    if !Path::new(SYS_CLASS_NET).join(interface).exists() {
        return Err(Error::InvalidParams(format!(
            "network.interface: this host has no interface `{interface}`"
        )));
    }
    // Twice: another create may make the network between our look and ours.
    for _ in 0..2 {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "driver".to_string(),
                vec!["macvlan".to_string()],
            )])),
        };
        let networks = api.list_networks(Some(options)).await.map_err(engine)?;
        let found = networks.into_iter().find(|n| {
            n.options
                .as_ref()
                .and_then(|o| o.get("parent"))
                .is_some_and(|p| p == interface)
        });
        if let Some(name) = found.and_then(|n| n.name) {
            return Ok(name);
        }
        let name = format!("stevedore-macvlan-{interface}");
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("macvlan".into()),
            options: Some(HashMap::from([(
                "parent".to_string(),
                interface.to_string(),
            )])),
            labels: Some(HashMap::from([(
                INTERFACE_LABEL.to_string(),
                interface.to_string(),
            )])),
            ..Default::default()
        };
        match api.create_network(request).await.map_err(engine) {
            Ok(_) => return Ok(name),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Runtime(format!(
        "the macvlan network on {interface} was made and removed while this create looked for it"
    )))
}

/// Put the container of `body` on the network `choice` names.
pub async fn apply(
    api: &Docker,
    body: &mut ContainerCreateBody,
    choice: &NetworkChoice,
) -> RtResult<()> {
    let mode = match &choice.mode {
        NetworkMode::Nat => return Ok(()),
        NetworkMode::HostInterface(interface) => {
            let network = macvlan_network(api, interface).await?;
            body.networking_config = Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings::default(),
                )])),
            });
            network
        }
        NetworkMode::Join(other) => {
            api.inspect_container(other, None::<InspectContainerOptions>)
                .await
                .map_err(|e| match engine(e) {
                    Error::NotFound(_) => {
                        Error::InvalidParams(format!("network.join: no container `{other}`"))
                    }
                    e => e,
                })?;
            format!("container:{other}")
        }
    };
    body.host_config
        .get_or_insert_with(Default::default)
        .network_mode = Some(mode);
    Ok(())
}

/// Create container `name` from `body`, with `mac` as its `MacAddress`;
/// returns its id.
pub async fn create(
    raw: &RawClient,
    name: &str,
    body: &ContainerCreateBody,
    mac: Option<&str>,
) -> RtResult<String> {
    let mut json =
        serde_json::to_value(body).map_err(|e| Error::Other(format!("the create body: {e}")))?;
    if let (Some(mac), Some(object)) = (mac, json.as_object_mut()) {
        object.insert("MacAddress".into(), mac.into());
    }
    let bytes = Bytes::from(json.to_string());
    let request: super::raw::Body = Full::new(bytes).map_err(|never| match never {}).boxed();
    let response = raw
        .send(
            Method::POST,
            &format!("/containers/create?name={}", query(name)),
            &[("content-type", "application/json")],
            request,
        )
        .await?;
    let mut answer = Vec::new();
    let mut chunks = Box::pin(response.bytes());
    while let Some(chunk) = chunks.next().await {
        answer.extend_from_slice(&chunk?);
    }
    let created: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| Error::Runtime(format!("the engine's create answer: {e}")))?;
    created["Id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Runtime("the engine's create answer has no Id".into()))
}
