//! The WIT bindings, generated once in [`crate::wit`] (a low layer the
//! runtime can use too); re-exported here for the plugin host's modules.

pub use crate::wit::*;
