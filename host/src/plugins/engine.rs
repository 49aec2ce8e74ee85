//! The one wasmtime `Engine`: pooling allocator, and epoch interruption
//! driven by a ticker thread. Its compiled code is cached by [`super::cache`].

use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; a runaway guest is stopped within one tick
/// of its budget.
pub const TICK: Duration = Duration::from_millis(10);

/// Instances that can be alive at once (tasks running plus validations).
pub const POOL_INSTANCES: u32 = 256;

/// Bytes of each pooled memory, table and stack kept resident between uses.
const KEEP_RESIDENT: usize = 64 << 10;

/// Bytes of a linear memory's dirty pages reset in place between uses
/// where the kernel can say which pages an instance wrote (`PAGEMAP_SCAN`).
const KEEP_RESIDENT_SCANNED: usize = 1 << 20;

/// Build the engine. `memory_limit` bounds each linear memory.
pub fn new_engine(memory_limit: u64) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    // Bounds-check memory accesses in code rather than with guard pages and
    // signals. With guard pages, a memory that grew during a call (every Rust
    // guest's allocator grows it) is shrunk back with `mprotect` when its
    // slot is reused, and each `mprotect` flushes the TLB of every core the
    // server runs on: that was a third of an instance's cost. Without them a
    // slot keeps its pages mapped and only their contents are reset. Plugins
    // do little computing of their own, so explicit checks cost them little;
    // the sandbox is the same (out-of-bounds accesses still trap).
    config.signals_based_traps(false).memory_guard_size(0);
    let mut pool = PoolingAllocationConfig::default();
    let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
    // A wasip1 component holds a few core instances (adapter, shims, main).
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .total_stacks(POOL_INSTANCES)
        .max_memories_per_component(4)
        // Reset small regions with memset instead of madvise: an instance
        // is short-lived and page faults dominate its set-up otherwise.
        // Where the kernel reports which pages an instance wrote
        // (PAGEMAP_SCAN, Linux 6.7), only those are reset, in place.
        .linear_memory_keep_resident(if pagemap {
            KEEP_RESIDENT_SCANNED
        } else {
            KEEP_RESIDENT
        })
        .pagemap_scan(Enabled::Auto)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(KEEP_RESIDENT)
        .decommit_batch_size(16)
        .max_memory_size(usize::try_from(memory_limit).unwrap_or(usize::MAX));
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(pooled) => {
            // Some hosts limit virtual memory; on-demand allocation still works there.
            tracing::warn!("pooling allocator unavailable ({pooled}); using on-demand allocation");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Ok(Engine::new(&config)?)
        }
    }
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
pub fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("stevedore-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}
