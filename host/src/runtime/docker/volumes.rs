//! The `volumes` interface on the engine: the labelled named volumes of
//! the application categories ([`super::compose`]).

use async_trait::async_trait;

use super::{compose, DockerRuntime};
use crate::runtime::{CallContext, RtResult, VolumeInfo, Volumes};

#[async_trait]
impl Volumes for DockerRuntime {
    async fn volume_create(
        &self,
        _cx: &CallContext,
        name: String,
        labels: Vec<(String, String)>,
    ) -> RtResult<()> {
        compose::volume_create(&self.api, name, labels).await
    }

    async fn volume_remove(&self, _cx: &CallContext, name: String) -> RtResult<()> {
        compose::volume_remove(&self.api, &name).await
    }

    async fn volume_list(
        &self,
        _cx: &CallContext,
        key: String,
        value: String,
    ) -> RtResult<Vec<VolumeInfo>> {
        compose::volume_list(&self.api, &key, &value).await
    }
}
