//! Plugin host figures (issue: foundation):
//! - instantiate + `validate` of a real plugin (`image_remove`), target median ≤ 50 µs;
//! - start-up with every built plugin loaded on a warm compile cache, target ≤ 500 ms;
//! - the same start-up on a cold cache, for comparison (what the cache saves).
//!
//! Run with `cargo xtask bench` (or `cargo bench -p stevedore --bench plugins`
//! after `cargo xtask build-plugins`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::runtime::simulated::Simulator;

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
        cache_dir: dir.join("cache"),
        cpu_budget: Duration::from_secs(5),
        memory_limit: 256 << 20,
        grants: Default::default(),
    }
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
    let params = r#"[{"type":"docker","image":"busybox","tag":"latest"},{"type":"docker","id":"sha256:0123"}]"#;

    c.bench_function("instantiate+validate image_remove", |b| {
        b.iter(|| {
            rt.block_on(host.call_validate("image_remove", params))
                .unwrap()
        })
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

criterion_group!(benches, bench);
criterion_main!(benches);
