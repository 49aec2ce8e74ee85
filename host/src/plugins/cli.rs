//! `stevedore plugin check|test`, for plugin authors: does my component fit
//! the world, and what does it do against a simulated runtime?

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::bindings::WIT_VERSION;
use super::grants::{GrantError, Granter};
use super::host::{capability_imports, CallError, PluginHost};
use super::versions::WorldVersion;
use super::PluginConfig;
use crate::queue::{LogLevel, Reporter, TaskContext};
use crate::runtime::simulated::Simulator;
use crate::runtime::Backends;

fn config_for(file: &Path) -> PluginConfig {
    let cache_dir = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("stevedore/compiled");
    PluginConfig {
        dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        cache_dir,
        // The server's defaults, so that what passes here loads there.
        cpu_budget: Duration::from_millis(super::config::DEFAULT_CPU_BUDGET_MS),
        memory_limit: super::config::DEFAULT_MEMORY_MB << 20,
        grants: Default::default(),
    }
}

/// `stevedore plugin check FILE`.
pub async fn check(file: &Path) -> anyhow::Result<()> {
    let config = config_for(file);
    let mut host = PluginHost::empty(
        &config,
        Backends::unavailable("`plugin check` runs nothing"),
    )?;
    let plugin = host.add_file(&config, &Granter::permissive(), file).await?;
    let d = &plugin.description;
    println!(
        "{}: fits stevedore:plugin/category@{}",
        file.display(),
        plugin.version.number()
    );
    if plugin.version != WorldVersion::Current {
        println!("  (an older world: this host loads it, without a params schema; rebuild against wit/ {WIT_VERSION} to describe its params)");
    }
    println!("  category:     {}", d.name);
    println!("  summary:      {}", d.summary);
    println!("  deletable:    {}", d.deletable);
    println!("  capabilities: {} (declared)", d.capabilities.join(", "));
    println!("  imports:      {}", plugin.imports.join(", "));
    let defaults = Granter::default();
    let refused: Vec<String> = plugin
        .imports
        .iter()
        .filter_map(|i| {
            // The hint to grant it follows the list, once for every import.
            defaults
                .allows(&d.name, &d.capabilities, i)
                .err()
                .map(|e| match e {
                    GrantError::NotGranted { interface, .. } => {
                        format!("imports `{interface}`, which the defaults do not grant")
                    }
                    other => other.to_string(),
                })
        })
        .collect();
    let granted: Vec<String> = defaults.allowed(&d.name).into_iter().collect();
    if refused.is_empty() {
        println!(
            "  grants:       loads with the default grants ({})",
            granted.join(", ")
        );
    } else {
        println!(
            "  grants:       needs more than the default grants ({}):",
            granted.join(", ")
        );
        for r in refused {
            println!("                - {r}");
        }
        println!(
            "                grant it with `[plugins.grants] {} = [{}]`",
            d.name,
            quoted(&capability_imports(&plugin.imports))
        );
    }
    print_limits(&host, file, &d.name, &config).await?;
    match &d.params_schema {
        Some(schema) => println!("  params schema:\n{}", indent(&pretty(schema), 4)),
        None => println!("  params schema: none (the plugin does not describe its params)"),
    }
    Ok(())
}

/// Instances made to measure the instantiate time.
const INSTANTIATIONS: usize = 100;

/// The component's size, the budget it gets from a server with the default
/// `[plugins]` settings, and the median time to instantiate it on this host.
async fn print_limits(
    host: &PluginHost,
    file: &Path,
    category: &str,
    config: &PluginConfig,
) -> anyhow::Result<()> {
    let size = std::fs::metadata(file)?.len();
    println!(
        "  size:         {size} bytes ({:.1} MiB)",
        size as f64 / f64::from(1u32 << 20)
    );
    println!(
        "  budget:       {} MiB of memory, {} ms of CPU per call (the defaults; `[plugins] memory_mb`, `cpu_budget_ms`)",
        config.memory_limit >> 20,
        config.cpu_budget.as_millis()
    );
    // The first instance maps the pool's slot; the median is of the rest.
    host.instantiate_only(category)
        .await
        .map_err(|e| anyhow::anyhow!("instantiating: {}", describe_error(&e)))?;
    let mut times = Vec::with_capacity(INSTANTIATIONS);
    for _ in 0..INSTANTIATIONS {
        let started = std::time::Instant::now();
        host.instantiate_only(category)
            .await
            .map_err(|e| anyhow::anyhow!("instantiating: {}", describe_error(&e)))?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "  instantiate:  {:.1?} (median of {INSTANTIATIONS} on this host)",
        times[INSTANTIATIONS / 2]
    );
    Ok(())
}

/// `text` re-indented as JSON when it is JSON, else as it is.
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{:by$}{l}", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a task's progress and log lines as they come.
struct PrintReporter;

impl Reporter for PrintReporter {
    fn progress(&self, percent: i32, detail: &str) {
        println!("progress {percent:>4}%  {detail}");
    }
    fn log(&self, level: LogLevel, message: &str) {
        println!("log {level:?}  {message}");
    }
}

/// `stevedore plugin test FILE --params JSON [--script FILE]`: validate, then
/// run against the simulator, printing progress, log lines, the host calls
/// made and the result. Fails when validation or the run fails.
pub async fn test(file: &Path, params: &str, script: Option<&Path>) -> anyhow::Result<()> {
    let script = match script {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("script {}", path.display()))?
        }
        None => "{}".to_string(),
    };
    let simulator = Arc::new(Simulator::from_script(&script)?);
    let config = config_for(file);
    let runtime = Backends::all(simulator.clone());
    let mut host = PluginHost::empty(&config, runtime)?;
    let plugin = host.add_file(&config, &Granter::permissive(), file).await?;
    let category = plugin.description.name.clone();
    match host.call_validate(&category, params).await {
        Ok(()) => println!("validate: ok"),
        Err(e) => anyhow::bail!("validate: {}", describe_error(&e)),
    }
    let ctx = TaskContext {
        id: 1,
        category,
        user: "tester".into(),
        params: params.to_string(),
        cancel: CancellationToken::new(),
        durable: crate::queue::store::Durable::ready(),
        reporter: Arc::new(PrintReporter),
    };
    let result = host.call_run(ctx).await;
    for call in simulator.calls() {
        println!("call {} {}", call.call, call.args);
    }
    match result {
        Ok(detail) => {
            println!(
                "result: completed{}",
                detail.map(|d| format!(" ({d})")).unwrap_or_default()
            );
            Ok(())
        }
        Err(e) => anyhow::bail!("result: error: {}", describe_error(&e)),
    }
}

fn describe_error(e: &CallError) -> String {
    match e {
        CallError::Plugin(w) => format!("{}: {}", w.kind(), w.message()),
        other => other.to_string(),
    }
}
