//! The one place where `bindgen!` runs: host-side types and traits for the
//! `stevedore:plugin/category` world in `wit/`.
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

pub use self::exports::stevedore::plugin::executor::Description;
pub use self::stevedore::plugin::containers::{
    BindMount, ContainerExtra, ContainerSpec, ContainerSummary, Mount, MountSource,
    NetworkAttachment, PortBinding,
};
pub use self::stevedore::plugin::images::{ImageInfo, PullRequest, Source};
pub use self::stevedore::plugin::networks::NetworkInfo;
pub use self::stevedore::plugin::repository::Template;
pub use self::stevedore::plugin::types::{Credential, Error as WitError, Level, RuntimeKind};
pub use self::stevedore::plugin::volumes::VolumeInfo;

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
    format!("stevedore:plugin/{short}@0.1.0")
}
