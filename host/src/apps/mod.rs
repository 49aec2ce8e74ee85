//! The application service: what the host does with an installed
//! application (the `application` category's work), over the runtime's
//! traits ([`Backends`]). The HTTP routes (`api::apps`) and the plugin
//! host's undo go through it; the folders and templates themselves are
//! files of [`crate::runtime::apps`].
//!
//! - [`record`]: load and parse an application's record, its owner, its
//!   containers, and describe it;
//! - [`actions`]: start, stop, restart or kill it in dependency order, and
//!   remove it (containers, networks, volumes when asked, then its folder);
//! - [`virtual_paths`]: which application a request's path names (the
//!   proxy's routing, and the proxy link of the API's answers).

pub mod actions;
pub mod record;
#[cfg(test)]
mod tests;
pub mod virtual_paths;

pub use actions::{act, remove, remove_folder, Action};
pub use record::{check_name, containers_of, describe, load, owner, records, Record};

use crate::runtime::{self, RuntimeKind};

#[cfg(doc)]
use crate::runtime::Backends;

/// The runtime every application's containers live in: the Compose
/// categories install them with Docker, whose labels name the project.
pub const APP_RUNTIME: RuntimeKind = RuntimeKind::Docker;

/// Why an application call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppsError {
    /// The name is not one an application folder may have.
    #[error("name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{{1,63}}$")]
    InvalidName {
        /// The name asked for.
        name: String,
    },
    /// No application of that name is installed.
    #[error("no application `{name}`")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// The application's record is not JSON.
    #[error("application record of {name} is unreadable: {reason}")]
    Unreadable {
        /// The application.
        name: String,
        /// What the parser said.
        reason: String,
    },
    /// Not one of `start`, `stop`, `restart`, `kill`.
    #[error("unknown application action: start, stop, restart or kill")]
    UnknownAction {
        /// The action asked for.
        action: String,
    },
    /// A runtime call failed.
    #[error("{source}")]
    Runtime {
        /// The runtime's error.
        #[from]
        source: runtime::Error,
    },
}
