//! Names the host and the plugins both spell, defined once: the labels a
//! container, network or volume carries, the files of an application's
//! folder, and the capability interfaces a plugin may import.
//!
//! The host (`host/`) and the guests (`plugins/`) are separate workspaces
//! built for different targets; both depend on this crate by path, so a
//! name changed here changes on both sides of the sandbox at once.

pub mod capabilities;
pub mod files;
pub mod labels;
