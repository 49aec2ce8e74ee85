//! The `volumes` interface on the engine: the labelled local volumes of
//! the application categories, and the engine's volumes as the API's
//! `volumes` routes show them.

use async_trait::async_trait;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};

use super::compose::{label_filter, sorted};
use super::{engine, DockerRuntime};
use crate::runtime::traits::volumes::VolumeSpec;
use crate::runtime::{
    CallContext, ContainerSummary, Error, ExportVolume, ImportVolume, Label, Labelled, RtResult,
    VolumeInfo, Volumes,
};

#[async_trait]
impl Volumes for DockerRuntime {
    /// Create a local volume with labels. The engine answers an existing
    /// name with success; that is a conflict here, so a run never adopts
    /// (and later removes) a volume it did not make.
    async fn volume_create(&self, _cx: &CallContext, req: Labelled) -> RtResult<()> {
        if self.api.inspect_volume(&req.name).await.is_ok() {
            return Err(Error::Conflict(format!(
                "volume {} already exists",
                req.name
            )));
        }
        let request = VolumeCreateRequest {
            name: Some(req.name),
            driver: Some("local".into()),
            labels: Some(req.labels.into_iter().collect()),
            ..Default::default()
        };
        self.api.create_volume(request).await.map_err(engine)?;
        Ok(())
    }

    async fn volume_remove(&self, _cx: &CallContext, name: String) -> RtResult<()> {
        let options = RemoveVolumeOptions { force: false };
        self.api
            .remove_volume(&name, Some(options))
            .await
            .map_err(engine)
    }

    async fn volume_list(&self, _cx: &CallContext, label: Label) -> RtResult<Vec<VolumeInfo>> {
        let options = ListVolumesOptions {
            filters: Some(label_filter(&label.key, &label.value)),
        };
        let listed = self.api.list_volumes(Some(options)).await.map_err(engine)?;
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

    async fn volume_export(&self, cx: &CallContext, req: ExportVolume) -> RtResult<u64> {
        self.export_volume(cx, req).await
    }

    async fn volume_import(&self, cx: &CallContext, req: ImportVolume) -> RtResult<u64> {
        self.import_volume(cx, req).await
    }

    /// A missing volume is `not-found` (the engine's filter would list none).
    async fn volume_users(
        &self,
        _cx: &CallContext,
        name: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        self.api.inspect_volume(&name).await.map_err(engine)?;
        self.users_of(&name, true).await
    }

    async fn volume_details(&self, _cx: &CallContext) -> RtResult<Vec<serde_json::Value>> {
        let listed = self
            .api
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(engine)?;
        listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(to_json)
            .collect()
    }

    async fn volume_inspect(&self, _cx: &CallContext, name: String) -> RtResult<serde_json::Value> {
        to_json(self.api.inspect_volume(&name).await.map_err(engine)?)
    }

    /// The engine answers an existing name with that volume: a conflict
    /// here, so nobody takes over a volume by creating it again.
    async fn volume_create_spec(
        &self,
        _cx: &CallContext,
        spec: VolumeSpec,
    ) -> RtResult<serde_json::Value> {
        if self.api.inspect_volume(&spec.name).await.is_ok() {
            return Err(Error::Conflict(format!(
                "volume {} already exists",
                spec.name
            )));
        }
        let request = VolumeCreateRequest {
            name: Some(spec.name),
            driver: Some(spec.driver),
            driver_opts: Some(spec.driver_opts.into_iter().collect()),
            labels: Some(spec.labels.into_iter().collect()),
            ..Default::default()
        };
        to_json(self.api.create_volume(request).await.map_err(engine)?)
    }
}

/// An engine answer as JSON (bollard's models serialize to the engine's keys).
fn to_json<T: serde::Serialize>(value: T) -> RtResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Runtime(format!("the engine's answer: {e}")))
}
