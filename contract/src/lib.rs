//! Names and formats the host and the plugins both spell, defined once: the
//! labels a container, network or volume carries, the files of an
//! application's folder, the capability interfaces a plugin may import, and
//! the body of `create` that the host writes, the guest parses and the API
//! reads.
//!
//! The host (`host/`) and the guests (`plugins/`) are separate workspaces
//! built for different targets; both depend on this crate by path, so a
//! name changed here changes on both sides of the sandbox at once.

pub mod capabilities;
pub mod create;
pub mod files;
pub mod labels;
mod object;

pub use object::Object;
