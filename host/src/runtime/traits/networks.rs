//! The `networks` interface: labelled networks of the application categories,
//! and the engine's networks as the API's `networks` routes show them.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Backend, Label, Labelled};
use crate::runtime::{CallContext, NetworkInfo, RtResult};

calls! { "networks": CREATE = "create", REMOVE = "remove", LIST = "list" }

// The calls of the API's `networks` routes (no WIT interface carries them).
calls! { "networks": DETAILS = "details", INSPECT = "inspect", CREATE_SPEC = "create-spec",
CONNECT = "connect", DISCONNECT = "disconnect" }

/// A network as `POST networks` asks for it, checked by the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetworkSpec {
    /// Its name (unique on the engine).
    pub name: String,
    /// Its driver, e.g. `bridge`.
    pub driver: String,
    /// No route to the outside.
    pub internal: bool,
    /// The IPAM driver; `None`: the engine's default.
    pub ipam_driver: Option<String>,
    /// Address pools; none: the engine picks one.
    pub pools: Vec<IpamPool>,
    /// IPAM driver options.
    pub ipam_options: BTreeMap<String, String>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels, as `(key, value)`.
    pub labels: Vec<(String, String)>,
}

/// One address pool of a [`NetworkSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpamPool {
    /// CIDR, e.g. `172.30.0.0/24`.
    pub subnet: Option<String>,
    /// The gateway's address, inside `subnet`.
    pub gateway: Option<String>,
    /// CIDR of the addresses handed out, inside `subnet`.
    pub ip_range: Option<String>,
}

/// A container joining or leaving a network (`POST networks/{id}/connect`,
/// `.../disconnect`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attach {
    /// The network's id, id prefix or name.
    pub network: String,
    /// The Docker container's id, id prefix or name.
    pub container: String,
    /// Disconnect even a container that is not running cleanly.
    pub force: bool,
}

/// A backend for the `networks` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Networks: Backend {
    /// Create a network; returns its id.
    async fn network_create(&self, cx: &CallContext, req: Labelled) -> RtResult<String> {
        Err(self.unsupported(CREATE))
    }
    /// Remove a network.
    async fn network_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
    /// The networks that carry `label`.
    async fn network_list(&self, cx: &CallContext, label: Label) -> RtResult<Vec<NetworkInfo>> {
        Err(self.unsupported(LIST))
    }

    // The API's `networks` routes.

    /// Every network, as the engine lists it (its JSON).
    async fn network_details(&self, cx: &CallContext) -> RtResult<Vec<serde_json::Value>> {
        Err(self.unsupported(DETAILS))
    }
    /// One network (by id, id prefix or name), as the engine inspects it,
    /// with the containers on it.
    async fn network_inspect(&self, cx: &CallContext, id: String) -> RtResult<serde_json::Value> {
        Err(self.unsupported(INSPECT))
    }
    /// Create a network; a name already taken is a conflict. Answers the
    /// engine's `{"Id", "Warning"}`.
    async fn network_create_spec(
        &self,
        cx: &CallContext,
        spec: NetworkSpec,
    ) -> RtResult<serde_json::Value> {
        Err(self.unsupported(CREATE_SPEC))
    }
    /// Connect a container to a network.
    async fn network_connect(&self, cx: &CallContext, req: Attach) -> RtResult<()> {
        Err(self.unsupported(CONNECT))
    }
    /// Disconnect a container from a network.
    async fn network_disconnect(&self, cx: &CallContext, req: Attach) -> RtResult<()> {
        Err(self.unsupported(DISCONNECT))
    }
}
