//! Plugin host figures (issue: foundation):
//! - instantiate + `validate` of a real plugin (`image_remove`), target median ≤ 50 µs;
//! - the same of the `noop` test plugin (close to a pooled instance's cost), and a whole
//!   no-op task's plugin work (`validate` + `run`), issue 13's ≤ 5 µs and ≤ 20 µs;
//! - instantiate (and + `validate`) of `image_prune`, the category written in
//!   Python, against the `noop` figures of the same run;
//! - start-up with every built plugin loaded on a warm compile cache, target ≤ 500 ms;
//! - the same start-up on a cold cache, for comparison (what the cache saves);
//! - baselines for the pooled instance, in the same run: the `noop` component
//!   instantiated by bare wasmtime on the same engine (no host state, no
//!   capabilities, its imports trapping), and one core module with the same
//!   memory and table (the shape wasmtime's own "about 4 µs" is measured on).
//!
//! - issue 33's ratios, interleaved rather than one after the other: a
//!   pooled `noop` instance against bare wasmtime's instance of the same
//!   component on the same engine (target ≤ 1.1×), and a whole no-op task's
//!   plugin work with fresh params against one bare instance (≤ 2.5×);
//!   printed before criterion's rows as medians of the per-round figures
//!   with their spread.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p stevedore --bench plugins`
//! after `cargo xtask build-plugins`).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::executor::{LogLevel, Reporter, TaskContext};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// A folder with every shippable plugin plus the well-behaved test plugins.
fn plugins_folder(dir: &std::path::Path) -> PluginConfig {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (sub, keep) in [
        ("plugins", None),
        (
            "test-plugins",
            Some(["noop", "sleepy", "sleepy_locked", "wasi_print"]),
        ),
    ] {
        for entry in
            std::fs::read_dir(target().join(sub)).expect("run `cargo xtask build-plugins` first")
        {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if keep.is_none_or(|k| k.contains(&stem.as_str())) {
                std::fs::copy(&path, plugins.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    PluginConfig {
        dir: plugins,
        // `PLUGINS_BENCH_CACHE=<dir>` keeps compiled plugins between runs
        // (to profile the calls under valgrind without compiling there).
        cache_dir: std::env::var_os("PLUGINS_BENCH_CACHE")
            .map_or_else(|| dir.join("cache"), PathBuf::from),
        cpu_budget: Duration::from_secs(5),
        memory_limit: 256 << 20,
        grants: Default::default(),
    }
}

/// A reporter that drops what it is told.
struct Silent;

impl Reporter for Silent {
    fn progress(&self, _percent: i32, _detail: &str) {}
    fn log(&self, _level: LogLevel, _message: &str) {}
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = plugins_folder(dir.path());
    let count = std::fs::read_dir(&config.dir).unwrap().count();
    let host = rt
        .block_on(PluginHost::load(&config, Arc::new(Simulator::default())))
        .unwrap();
    // Each iteration validates params never seen before: remembered
    // acceptances skip the sandbox (measured apart, last).
    let mut n = 0u64;
    let mut fresh = move || {
        n += 1;
        n
    };

    interleaved(&rt, &host);

    c.bench_function("instantiate+validate image_remove", |b| {
        b.iter(|| {
            let params = format!(
                r#"[{{"type":"docker","image":"busybox","tag":"t{}"}},{{"type":"docker","id":"sha256:0123"}}]"#,
                fresh()
            );
            rt.block_on(host.call_validate("image_remove", &params))
                .unwrap()
        })
    });

    // A pooled instance of the smallest plugin, created and dropped with no
    // call (issue 13: <= 5 us).
    c.bench_function("instantiate noop", |b| {
        b.iter(|| rt.block_on(host.instantiate_only("noop")).unwrap())
    });

    // The category written in Python (componentize-py: a CPython whose
    // start-up was snapshotted at build time) in the same run.
    c.bench_function("instantiate image_prune (Python)", |b| {
        b.iter(|| rt.block_on(host.instantiate_only("image_prune")).unwrap())
    });
    c.bench_function("instantiate+validate image_prune (Python)", |b| {
        b.iter(|| {
            rt.block_on(host.call_validate("image_prune", r#"{"dry_run":true}"#))
                .unwrap()
        })
    });

    baselines(c, &rt);

    // Its `validate` does next to nothing, so this is close to the cost of
    // a pooled instance and one call.
    c.bench_function("instantiate+validate noop", |b| {
        b.iter(|| {
            let params = format!(r#"{{"count":{}}}"#, fresh() % 4_000_000_000);
            rt.block_on(host.call_validate("noop", &params)).unwrap()
        })
    });

    // A whole no-op task's plugin work: `validate` at submit, then `run` in
    // a fresh instance (issue 13: <= 20 us).
    let reporter: Arc<dyn Reporter> = Arc::new(Silent);
    c.bench_function("noop task: validate + run", |b| {
        b.iter(|| {
            let params = format!(r#"{{"count":{}}}"#, fresh() % 4_000_000_000);
            rt.block_on(noop_task(&host, params, &reporter))
        })
    });

    // The same task when its params were accepted before (a script that
    // submits one body over and over): `validate` is remembered.
    rt.block_on(host.call_validate("noop", "{}")).unwrap();
    c.bench_function("noop task: remembered validate + run", |b| {
        b.iter(|| rt.block_on(noop_task(&host, "{}".into(), &reporter)))
    });

    let mut group = c.benchmark_group("start-up");
    group.sample_size(20);
    group.bench_function(format!("load {count} plugins, warm cache"), |b| {
        b.iter(|| {
            rt.block_on(PluginHost::load(&config, Arc::new(Simulator::default())))
                .unwrap()
        })
    });
    group.sample_size(10);
    group.bench_function(format!("load {count} plugins, cold cache"), |b| {
        b.iter(|| {
            std::fs::remove_dir_all(&config.cache_dir).ok();
            rt.block_on(PluginHost::load(&config, Arc::new(Simulator::default())))
                .unwrap()
        })
    });
    group.finish();
}

/// What wasmtime itself needs for the pooled instance above, on an engine
/// configured as the host's: the floor under "instantiate noop".
fn baselines(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use wasmtime::{component, Linker, Module};

    let engine = stevedore::plugins::engine::new_engine(256 << 20).unwrap();
    let noop = component::Component::from_file(&engine, target().join("test-plugins/noop.wasm"))
        .expect("run `cargo xtask build-plugins` first");
    let mut linker = component::Linker::<()>::new(&engine);
    linker.define_unknown_imports_as_traps(&noop).unwrap();
    let pre = linker.instantiate_pre(&noop).unwrap();
    bare(c, rt, &engine, "instantiate noop", async |store| {
        pre.instantiate_async(store).await.unwrap();
    });

    // A component of a plugin that passes strings holds three core modules
    // (its code, and wit-component's shim and fix-up for the imports that
    // need its memory); this is one of them alone.
    let module = Module::new(&engine, core_module()).unwrap();
    let mut linker = Linker::<()>::new(&engine);
    linker.define_unknown_imports_as_traps(&module).unwrap();
    let pre = linker.instantiate_pre(&module).unwrap();
    bare(c, rt, &engine, "one core module", async |store| {
        pre.instantiate_async(store).await.unwrap();
    });
}

/// A no-op task's plugin work: `validate(params)` at submit, then `run` in
/// a fresh instance.
async fn noop_task(host: &PluginHost, params: String, reporter: &Arc<dyn Reporter>) {
    host.call_validate("noop", &params).await.unwrap();
    host.call_run(TaskContext {
        id: 1,
        category: "noop".into(),
        user: "admin".into(),
        params,
        cancel: CancellationToken::new(),
        durable: stevedore::store::durable::Durable::ready(),
        reporter: reporter.clone(),
    })
    .await
    .unwrap();
}

/// Ours against bare wasmtime, interleaved: each round times a batch of
/// pooled `noop` instances, a batch of bare instances of the same component
/// on an engine configured as the host's, and a batch of whole no-op tasks'
/// plugin work (fresh params), in an order that rotates from round to round.
/// Prints the medians of the per-operation times and of the per-round
/// ratios, with their spread (`BENCH_ROUNDS`, default 11; `BENCH_BATCH`,
/// default 2,000).
fn interleaved(rt: &tokio::runtime::Runtime, host: &PluginHost) {
    use std::time::Instant;
    use wasmtime::component;

    let smoke = common::smoke();
    let rounds = common::env_usize("BENCH_ROUNDS", if smoke { 5 } else { 11 }).max(5);
    let batch = common::env_usize("BENCH_BATCH", if smoke { 20 } else { 2_000 }).max(1);
    let engine = stevedore::plugins::engine::new_engine(256 << 20).unwrap();
    let noop = component::Component::from_file(&engine, target().join("test-plugins/noop.wasm"))
        .expect("run `cargo xtask build-plugins` first");
    let mut linker = component::Linker::<()>::new(&engine);
    linker.define_unknown_imports_as_traps(&noop).unwrap();
    let pre = linker.instantiate_pre(&noop).unwrap();
    let reporter: Arc<dyn Reporter> = Arc::new(Silent);
    let mut n = 1u64 << 32;

    // Per round: nanoseconds per operation of ours, bare, and the task.
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    let mut task = Vec::new();
    for round in 0..rounds {
        for which in (0..3).map(|k| (k + round) % 3) {
            let started = Instant::now();
            rt.block_on(async {
                for _ in 0..batch {
                    match which {
                        0 => host.instantiate_only("noop").await.unwrap(),
                        1 => {
                            let mut store = wasmtime::Store::new(&engine, ());
                            store.set_epoch_deadline(1);
                            pre.instantiate_async(&mut store).await.unwrap();
                        }
                        _ => {
                            n += 1;
                            let params = format!(r#"{{"count":{}}}"#, n % 4_000_000_000);
                            noop_task(host, params, &reporter).await;
                        }
                    }
                }
            });
            let per_op = started.elapsed().as_nanos() as f64 / batch as f64;
            [&mut ours, &mut bare, &mut task][which].push(per_op);
        }
    }
    let ratio =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a / b).collect() };
    let summary = |mut v: Vec<f64>| -> (f64, f64, f64) {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!("plugins, interleaved: {rounds} rounds of {batch} each (median [min–max])");
    for (what, v) in [
        ("pooled noop instance (ours)", &ours),
        ("bare wasmtime instance, same component", &bare),
        ("no-op task: validate + run, fresh params", &task),
    ] {
        let (m, lo, hi) = summary(v.clone());
        println!(
            "  {what:<44} {:>8.2} µs [{:.2}–{:.2}]",
            m / 1e3,
            lo / 1e3,
            hi / 1e3
        );
    }
    for (what, v, target) in [
        ("ours / bare", ratio(&ours, &bare), 1.1),
        ("task / bare instance", ratio(&task, &bare), 2.5),
    ] {
        let (m, lo, hi) = summary(v);
        let met = if m <= target { "met" } else { "NOT met" };
        println!("  {what:<44} {m:>8.2}× [{lo:.2}–{hi:.2}]  (target ≤ {target}×: {met})");
    }
}

/// Time `instantiate` in a fresh store with no host state, dropped after.
fn bare(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    engine: &wasmtime::Engine,
    name: &str,
    instantiate: impl AsyncFn(&mut wasmtime::Store<()>),
) {
    c.bench_function(&format!("baseline: bare wasmtime, {name}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut store = wasmtime::Store::new(engine, ());
                store.set_epoch_deadline(1);
                instantiate(&mut store).await;
            })
        })
    });
}

/// A core module shaped as the `noop` plugin's code: 17 pages of memory
/// with a data segment, a 77-entry function table, one exported function.
fn core_module() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ConstExpr, DataSection, ElementSection, Elements, ExportKind, ExportSection,
        Function, FunctionSection, Instruction, MemorySection, MemoryType, Module, RefType,
        TableSection, TableType, TypeSection, ValType,
    };

    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: 77,
        maximum: Some(77),
        shared: false,
    });
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 17,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, 0);
    exports.export("memory", ExportKind::Memory, 0);
    let mut elements = ElementSection::new();
    elements.active(
        Some(0),
        &ConstExpr::i32_const(1),
        Elements::Functions([0].as_slice().into()),
    );
    let mut body = Function::new([]);
    body.instruction(&Instruction::LocalGet(0));
    body.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&body);
    let mut data = DataSection::new();
    data.active(
        0,
        &ConstExpr::i32_const(1 << 20),
        *b"static data of the plugin",
    );

    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&tables)
        .section(&memories)
        .section(&exports)
        .section(&elements)
        .section(&code)
        .section(&data);
    module.finish()
}

criterion_group!(benches, bench);
criterion_main!(benches);
