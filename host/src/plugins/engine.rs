//! The one wasmtime `Engine`: pooling allocator, and epoch interruption
//! driven by a ticker thread. Its compiled code is cached by [`super::cache`].

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; a runaway guest is stopped within one tick
/// of its budget.
pub const TICK: Duration = Duration::from_millis(10);

/// Instances that can be alive at once (tasks running plus validations).
const POOL_INSTANCES: u32 = 256;

/// Bytes of each pooled memory, table and stack kept resident between uses.
const KEEP_RESIDENT: usize = 64 << 10;

/// Build the engine. `memory_limit` bounds each linear memory.
pub fn new_engine(memory_limit: u64) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    // A wasip1 component holds a few core instances (adapter, shims, main).
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .total_stacks(POOL_INSTANCES)
        .max_memories_per_component(4)
        // Reset small regions with memset instead of madvise: an instance
        // is short-lived and page faults dominate its set-up otherwise.
        .linear_memory_keep_resident(KEEP_RESIDENT)
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
