//! The one wasmtime `Engine`: pooling allocator, epoch interruption driven
//! by a ticker thread, and a cache of compiled components on disk.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
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

/// Compile `bytes`, or load the compiled code cached under `cache_dir` by a
/// key of the component's hash and the engine's compatibility hash.
pub fn load_component(
    engine: &Engine,
    cache_dir: &Path,
    bytes: &[u8],
) -> anyhow::Result<Component> {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let key = format!(
        "{}-{:016x}",
        hex::encode(Sha256::digest(bytes)),
        compat.finish()
    );
    let path = cache_dir.join(format!("{key}.cwasm"));
    if path.exists() {
        // SAFETY: the cache folder is ours (created 0700 by us) and entries
        // are named by the hash of their source and of the engine's settings.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!("discarding cache entry {}: {e}", path.display()),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store_cache_entry(cache_dir, &path, &component) {
        tracing::warn!(
            "could not cache compiled plugin at {}: {e:#}",
            path.display()
        );
    }
    Ok(component)
}

fn store_cache_entry(cache_dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("create {}", cache_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(cache_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
