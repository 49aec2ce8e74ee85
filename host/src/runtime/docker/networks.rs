//! The `networks` interface on the engine: the labelled bridge networks of
//! the application categories. The networks a container is created on are
//! [`super::network`]'s.

use async_trait::async_trait;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::ListNetworksOptions;

use super::compose::{label_filter, sorted};
use super::{engine, DockerRuntime};
use crate::runtime::{CallContext, Label, Labelled, NetworkInfo, Networks, RtResult};

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
        self.api.remove_network(&name).await.map_err(engine)
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
}
