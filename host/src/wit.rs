//! The one place where `bindgen!` runs: host-side types and traits for the
//! `stevedore:plugin/category` world in `wit/` (the current version), and
//! the exports of its released versions 0.1.0 and 0.2.0 (`wit/v0.1.0/`,
//! `wit/v0.2.0/`), which the host still loads (see `plugins::versions`).
//!
//! Every import is `async` (a Docker call must block no thread) and
//! `trappable` (a host call can end the guest, e.g. when its task is
//! cancelled). Generated types derive serde so the simulated runtime can
//! read canned answers from a JSON script and record calls as JSON.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "category",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

/// The `category` world at 0.1.0: only its export is bound here. Its imports
/// are the current interfaces (`with`), which a 0.1.0 component reaches
/// once `plugins::versions` has renamed its imports.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        world: "category",
        path: "../wit/v0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "stevedore:plugin/types@0.1.0": super::stevedore::plugin::types,
            "stevedore:plugin/task@0.1.0": super::stevedore::plugin::task,
            "stevedore:plugin/images@0.1.0": super::stevedore::plugin::images,
            "stevedore:plugin/containers@0.1.0": super::stevedore::plugin::containers,
            "stevedore:plugin/credentials@0.1.0": super::stevedore::plugin::credentials,
            "stevedore:plugin/networks@0.1.0": super::stevedore::plugin::networks,
            "stevedore:plugin/volumes@0.1.0": super::stevedore::plugin::volumes,
            "stevedore:plugin/repository@0.1.0": super::stevedore::plugin::repository,
            "stevedore:plugin/app-store@0.1.0": super::stevedore::plugin::app_store,
        },
    });

    pub use self::exports::stevedore::plugin::executor::Description;
}

/// The `category` world at 0.2.0: only its export is bound here. Its imports
/// are the current interfaces (`with`), which a 0.2.0 component reaches
/// once `plugins::versions` has renamed its imports.
pub mod v0_2_0 {
    wasmtime::component::bindgen!({
        world: "category",
        path: "../wit/v0.2.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "stevedore:plugin/types@0.2.0": super::stevedore::plugin::types,
            "stevedore:plugin/task@0.2.0": super::stevedore::plugin::task,
            "stevedore:plugin/images@0.2.0": super::stevedore::plugin::images,
            "stevedore:plugin/containers@0.2.0": super::stevedore::plugin::containers,
            "stevedore:plugin/credentials@0.2.0": super::stevedore::plugin::credentials,
            "stevedore:plugin/networks@0.2.0": super::stevedore::plugin::networks,
            "stevedore:plugin/volumes@0.2.0": super::stevedore::plugin::volumes,
            "stevedore:plugin/repository@0.2.0": super::stevedore::plugin::repository,
            "stevedore:plugin/app-store@0.2.0": super::stevedore::plugin::app_store,
        },
    });

    pub use self::exports::stevedore::plugin::executor::Description;
}

/// The version of the WIT package this host is built against.
pub const WIT_VERSION: &str = "0.3.0";

pub use self::exports::stevedore::plugin::executor::Description;
pub use self::stevedore::plugin::containers::{
    BindMount, ContainerExtra, ContainerHealth, ContainerSpec, ContainerSummary, Mount,
    MountSource, NetworkAttachment, NetworkChoice, NetworkMode, PortBinding, Replacement,
};
pub use self::stevedore::plugin::images::{ImageInfo, PullRequest, Source};
pub use self::stevedore::plugin::networks::NetworkInfo;
pub use self::stevedore::plugin::repository::Template;
pub use self::stevedore::plugin::types::{Credential, Error as WitError, Level, RuntimeKind};
pub use self::stevedore::plugin::volumes::VolumeInfo;

impl ContainerSpec {
    /// A container `name` of `image` in `runtime`, every optional setting
    /// left to the image and the engine: no ports, mounts, limits, labels
    /// or overrides, not privileged, not started at boot.
    pub fn new(runtime: RuntimeKind, name: impl Into<String>, image: impl Into<String>) -> Self {
        ContainerSpec {
            runtime,
            name: name.into(),
            image: image.into(),
            privileged: false,
            entrypoint: None,
            command: None,
            user: None,
            working_dir: None,
            environment: vec![],
            links: vec![],
            dns: vec![],
            expose_ports: vec![],
            hostname: None,
            ports: vec![],
            cpu_shares: None,
            cpu_time_ms: None,
            memory_bytes: None,
            device_rules: vec![],
            binds: vec![],
            volumes_from: vec![],
            new_volumes: vec![],
            autostart: false,
            labels: vec![],
        }
    }
}

impl WitError {
    /// The error for a user: the message alone where it says everything
    /// (`invalid-params`, `runtime`, `other`), else prefixed with its kind.
    pub fn message(&self) -> String {
        match self {
            WitError::InvalidParams(m) | WitError::Runtime(m) | WitError::Other(m) => m.clone(),
            WitError::NotFound(m) => format!("not found: {m}"),
            WitError::Conflict(m) => format!("conflict: {m}"),
            WitError::Denied(m) => format!("denied: {m}"),
            WitError::Cancelled => "cancelled".to_string(),
        }
    }

    /// The WIT case name, e.g. `not-found`.
    pub fn kind(&self) -> &'static str {
        match self {
            WitError::InvalidParams(_) => "invalid-params",
            WitError::NotFound(_) => "not-found",
            WitError::Conflict(_) => "conflict",
            WitError::Denied(_) => "denied",
            WitError::Runtime(_) => "runtime",
            WitError::Cancelled => "cancelled",
            WitError::Other(_) => "other",
        }
    }
}

/// The fully qualified name of an interface of the package, as it appears
/// among a component's imports.
pub fn interface_name(short: &str) -> String {
    format!("stevedore:plugin/{short}@{WIT_VERSION}")
}
