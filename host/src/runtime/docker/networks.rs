//! The `networks` interface on the engine: the labelled networks of the
//! application categories ([`super::compose`]). The networks a container is
//! created on are [`super::network`]'s.

use async_trait::async_trait;

use super::{compose, DockerRuntime};
use crate::runtime::{CallContext, NetworkInfo, Networks, RtResult};

#[async_trait]
impl Networks for DockerRuntime {
    async fn network_create(
        &self,
        _cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<String> {
        compose::network_create(&self.api, name, labels).await
    }

    async fn network_remove(&self, _cx: &CallContext, name: String) -> RtResult<()> {
        compose::network_remove(&self.api, &name).await
    }

    async fn network_list(
        &self,
        _cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<NetworkInfo>> {
        compose::network_list(&self.api, &key, &value).await
    }
}
