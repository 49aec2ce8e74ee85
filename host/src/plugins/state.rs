//! What a plugin's `Store` holds for one call: WASI context, memory cap,
//! CPU-budget accounting, and the task (if any) the call works for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::wasi_log::LogPipe;
use crate::queue::{LogLevel, TaskContext};
use crate::runtime::{Backends, ContainerRef};

/// A call stopped because the plugin used more guest CPU time than allowed.
#[derive(Debug, thiserror::Error)]
#[error("exceeded its CPU budget of {} ms", budget.as_millis())]
pub struct BudgetExceeded {
    /// The budget.
    pub budget: Duration,
}

/// A call stopped because the plugin asked for more memory than allowed.
#[derive(Debug, thiserror::Error)]
#[error("exceeded its memory limit of {} MiB (asked for {} MiB)", limit >> 20, desired.div_ceil(1 << 20))]
pub struct MemoryExceeded {
    /// The cap in bytes.
    pub limit: u64,
    /// What the plugin asked for.
    pub desired: u64,
}

/// A call stopped because its task was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct CancelledTrap;

/// Guest CPU time accounting: wall time of the call minus time spent in
/// host calls (a Docker pull is not the plugin's CPU).
#[derive(Debug)]
pub struct Budget {
    /// Allowed guest time per call.
    pub limit: Duration,
    started: Instant,
    in_host: Duration,
}

impl Budget {
    /// Start counting now.
    pub fn new(limit: Duration) -> Budget {
        Budget {
            limit,
            started: Instant::now(),
            in_host: Duration::ZERO,
        }
    }
    /// Guest time used so far.
    pub fn used(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.in_host)
    }
    /// Time spent in a host call, not charged to the guest.
    pub fn credit(&mut self, since: Instant) {
        self.in_host += since.elapsed();
    }
    /// Restart counting (the store is reused for a second call).
    pub fn reset(&mut self) {
        self.started = Instant::now();
        self.in_host = Duration::ZERO;
    }
}

/// Linear-memory and table cap for one instance.
#[derive(Debug)]
pub struct MemoryCap {
    limit: u64,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            return Err(wasmtime::Error::new(MemoryExceeded {
                limit: self.limit,
                desired: desired as u64,
            }));
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Something a task run created through a capability call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A container, with the runtime it was created in.
    Container(ContainerRef),
    /// A network, by name.
    Network(String),
    /// A named volume.
    Volume(String),
    /// An application folder, by application name.
    AppFolder(String),
}

/// The data of a plugin's `Store`.
pub struct PluginState {
    /// Plugin name (category), for messages.
    pub plugin: Arc<str>,
    /// The task this call works for; `None` in `describe` and `validate`,
    /// where capability calls are refused.
    pub task: Option<TaskContext>,
    /// The backend behind the capabilities.
    pub runtime: Backends,
    /// CPU accounting.
    pub budget: Budget,
    /// Memory cap.
    pub limits: MemoryCap,
    /// What this run created (containers, networks, volumes, application
    /// folders), newest last: undone by the host when the task is cancelled,
    /// since a cancelled guest is stopped and cannot clean up itself.
    pub created: Vec<Created>,
    /// JSON Pointers of params values `validate` marked secret.
    pub secret_marks: Vec<String>,
    /// Built on first use: most plugins never touch WASI, and building a
    /// context (with its random seed) costs more than instantiating.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
}

impl PluginState {
    /// State for one call of `plugin`.
    pub fn new(
        plugin: Arc<str>,
        task: Option<TaskContext>,
        runtime: Backends,
        cpu: Duration,
        memory: u64,
    ) -> PluginState {
        PluginState {
            plugin,
            task,
            runtime,
            budget: Budget::new(cpu),
            limits: MemoryCap { limit: memory },
            created: Vec::new(),
            secret_marks: Vec::new(),
            wasi: None,
            table: ResourceTable::new(),
        }
    }
}

/// The most values a `validate` may mark secret, and the longest pointer:
/// marks are kept per submit, so a plugin cannot make one grow without end.
const MAX_SECRET_MARKS: usize = 1024;
const MAX_POINTER_LEN: usize = 1024;

impl PluginState {
    /// Record that the params value at `pointer` is secret (in `validate`;
    /// ignored while a task runs, whose params are stored by then). A
    /// pointer that is not a JSON Pointer (`""` is the whole params, which
    /// is never masked) or beyond the bounds is ignored.
    pub fn record_secret_mark(&mut self, pointer: String) {
        if self.task.is_none()
            && pointer.starts_with('/')
            && pointer.len() <= MAX_POINTER_LEN
            && self.secret_marks.len() < MAX_SECRET_MARKS
        {
            self.secret_marks.push(pointer);
        }
    }
}

/// Deny-by-default WASI: no files, no environment, no network; stdout and
/// stderr go to the task log (or the server log outside a task).
fn wasi_ctx(plugin: &Arc<str>, task: Option<&TaskContext>) -> WasiCtx {
    let reporter = task.map(|t| t.reporter.clone());
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(LogPipe::new(
        plugin.clone(),
        reporter.clone(),
        LogLevel::Info,
    ))
    .stderr(LogPipe::new(plugin.clone(), reporter, LogLevel::Warn))
    .allow_tcp(false)
    .allow_udp(false)
    .allow_ip_name_lookup(false);
    wasi.build()
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self
            .wasi
            .get_or_insert_with(|| wasi_ctx(&self.plugin, self.task.as_ref()));
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}
