//! The wasm plugin host: one wasmtime `Engine`, the loader, sandbox limits and
//! capability grants.
//!
//! [`PluginHost`] implements [`crate::queue::Executor`].

pub mod accepted;
pub mod author;
pub mod bindings;
pub mod cache;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod engine;
pub mod fair;
pub mod grants;
pub mod host;
pub mod state;
pub mod versions;
pub mod wasi_log;

pub use host::{CallError, LoadedPlugin, PluginHost};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How plugins are loaded and sandboxed.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// Folder scanned for `*.wasm` components at start-up.
    pub dir: PathBuf,
    /// Folder for compiled-code cache entries.
    pub cache_dir: PathBuf,
    /// Guest CPU time allowed per call (time spent in host calls is not counted).
    pub cpu_budget: Duration,
    /// Linear-memory cap per plugin instance, in bytes.
    pub memory_limit: u64,
    /// Interfaces granted per category (`task`, `images`, `containers`,
    /// `credentials`). Categories not listed get the built-in defaults.
    pub grants: BTreeMap<String, Vec<String>>,
}
