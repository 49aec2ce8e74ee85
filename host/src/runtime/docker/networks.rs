//! The `networks` interface on the engine: the labelled bridge networks of
//! the application categories, and the engine's networks as the API's
//! `networks` routes show them. The networks a container is created on are
//! [`super::network`]'s.
//!
//! The engine (API 1.41) answers 403 for a network in use (active
//! endpoints) and for a container already on a network, and 500 for a
//! container that is not on the network it leaves: those are conflicts
//! here, not refusals of the caller nor failures of the engine.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::models::{
    Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};

use super::compose::{label_filter, sorted};
use super::{engine, DockerRuntime};
use crate::runtime::traits::networks::{Attach, NetworkSpec};
use crate::runtime::{CallContext, Error, Label, Labelled, NetworkInfo, Networks, RtResult};

/// The engine's 403 for a network's state (in use, already attached) as
/// the conflict it is.
fn state_conflict(e: Error) -> Error {
    match e {
        Error::Denied(m) => Error::Conflict(m),
        e => e,
    }
}

/// An engine answer as JSON (bollard's models serialize to the engine's keys).
fn to_json<T: serde::Serialize>(value: T) -> RtResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Runtime(format!("the engine's answer: {e}")))
}

#[async_trait]
impl Networks for DockerRuntime {
    /// Create a bridge network with labels; returns its id.
    async fn network_create(&self, _cx: &CallContext, req: Labelled) -> RtResult<String> {
        let request = NetworkCreateRequest {
            name: req.name,
            driver: Some("bridge".into()),
            labels: Some(req.labels.into_iter().collect()),
            ..Default::default()
        };
        Ok(self.api.create_network(request).await.map_err(engine)?.id)
    }

    async fn network_remove(&self, _cx: &CallContext, name: String) -> RtResult<()> {
        self.api
            .remove_network(&name)
            .await
            .map_err(engine)
            .map_err(state_conflict)
    }

    async fn network_list(&self, _cx: &CallContext, label: Label) -> RtResult<Vec<NetworkInfo>> {
        let options = ListNetworksOptions {
            filters: Some(label_filter(&label.key, &label.value)),
        };
        let networks = self
            .api
            .list_networks(Some(options))
            .await
            .map_err(engine)?;
        Ok(networks
            .into_iter()
            .map(|n| NetworkInfo {
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                labels: sorted(n.labels),
            })
            .collect())
    }

    async fn network_details(&self, _cx: &CallContext) -> RtResult<Vec<serde_json::Value>> {
        let networks = self
            .api
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(engine)?;
        networks.into_iter().map(to_json).collect()
    }

    async fn network_inspect(&self, _cx: &CallContext, id: String) -> RtResult<serde_json::Value> {
        let network = self
            .api
            .inspect_network(&id, None::<InspectNetworkOptions>)
            .await
            .map_err(engine)?;
        to_json(network)
    }

    /// Names are unique: the engine (API 1.41) makes a second network of
    /// a name unless asked to check, and a name naming two networks would
    /// make every later call on it ambiguous.
    async fn network_create_spec(
        &self,
        _cx: &CallContext,
        spec: NetworkSpec,
    ) -> RtResult<serde_json::Value> {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![spec.name.clone()],
            )])),
        };
        let same = self
            .api
            .list_networks(Some(options))
            .await
            .map_err(engine)?;
        if same
            .iter()
            .any(|n| n.name.as_deref() == Some(spec.name.as_str()))
        {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                spec.name
            )));
        }
        let config: Vec<IpamConfig> = spec
            .pools
            .into_iter()
            .map(|p| IpamConfig {
                subnet: p.subnet,
                gateway: p.gateway,
                ip_range: p.ip_range,
                auxiliary_addresses: None,
            })
            .collect();
        let request = NetworkCreateRequest {
            name: spec.name,
            driver: Some(spec.driver),
            internal: Some(spec.internal),
            ipam: Some(Ipam {
                driver: Some(spec.ipam_driver.unwrap_or_else(|| "default".into())),
                config: Some(config),
                options: Some(spec.ipam_options.into_iter().collect()),
            }),
            options: Some(spec.options.into_iter().collect()),
            labels: Some(spec.labels.into_iter().collect()),
            ..Default::default()
        };
        let created = self.api.create_network(request).await.map_err(engine)?;
        to_json(created)
    }

    async fn network_connect(&self, _cx: &CallContext, req: Attach) -> RtResult<()> {
        let request = NetworkConnectRequest {
            container: req.container,
            endpoint_config: None,
        };
        self.api
            .connect_network(&req.network, request)
            .await
            .map_err(engine)
            .map_err(state_conflict)
    }

    async fn network_disconnect(&self, _cx: &CallContext, req: Attach) -> RtResult<()> {
        let request = NetworkDisconnectRequest {
            container: req.container,
            force: Some(req.force),
        };
        self.api
            .disconnect_network(&req.network, request)
            .await
            .map_err(engine)
            .map_err(|e| match e {
                Error::Runtime(m) if m.contains("is not connected") => Error::Conflict(m),
                e => state_conflict(e),
            })
    }
}
