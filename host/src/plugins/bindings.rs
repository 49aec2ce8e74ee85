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

pub use exports::stevedore::plugin::executor::Description;
pub use stevedore::plugin::containers::{BindMount, ContainerSpec, PortBinding};
pub use stevedore::plugin::images::{ImageInfo, PullRequest, Source};
pub use stevedore::plugin::types::{Credential, Error as WitError, Level, RuntimeKind};

/// The fully qualified name of an interface of the package, as it appears
/// among a component's imports.
pub fn interface_name(short: &str) -> String {
    format!("stevedore:plugin/{short}@0.1.0")
}
