//! `cargo xtask build-plugins`: every crate of the `plugins/` workspace that
//! carries `[package.metadata.stevedore]` becomes a component in
//! `target/plugins/<name>.wasm` (or `target/test-plugins/` when `test-only`);
//! the Python categories of `plugins/python/` are built beside them
//! (`crate::pyplugins`).

use crate::install;
use crate::util::{check_interrupted, describe, output, repo_root, run, status_text, which};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The wasm targets a plugin may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// No WASI: `wasm32-unknown-unknown` (the default).
    Unknown,
    /// `wasm32-wasip1`, componentized with the preview1 reactor adapter.
    Wasip1,
}

impl Target {
    fn triple(self) -> &'static str {
        match self {
            Target::Unknown => "wasm32-unknown-unknown",
            Target::Wasip1 => "wasm32-wasip1",
        }
    }

    fn parse(s: Option<&str>) -> Result<Target> {
        match s {
            None | Some("unknown" | "none" | "wasm32-unknown-unknown") => Ok(Target::Unknown),
            Some("wasip1" | "wasm32-wasip1") => Ok(Target::Wasip1),
            Some(other) => bail!(
                "unsupported target {other:?} (use \"wasip1\" for WASI, or leave it out); \
                 a wasip1 build is turned into the same wasi:*@0.2 component a wasip2 build gives"
            ),
        }
    }
}

#[derive(Debug)]
struct Plugin {
    /// The `name` in `[package.metadata.stevedore]`: the output file name.
    name: String,
    /// The cargo package name.
    package: String,
    /// The crate's lib target name (the artifact is `<lib>.wasm`).
    lib: String,
    dir: PathBuf,
    test_only: bool,
    target: Target,
}

impl Plugin {
    fn describe(&self, root: &Path) -> String {
        let dir = self.dir.strip_prefix(root).unwrap_or(&self.dir);
        format!(
            "plugin `{}` (package `{}`, {})",
            self.name,
            self.package,
            dir.display()
        )
    }
}

fn plugins_manifest(root: &Path) -> PathBuf {
    root.join("plugins/Cargo.toml")
}

/// Read the plugin crates from `cargo metadata`.
fn discover(root: &Path) -> Result<Vec<Plugin>> {
    let text = output(
        Command::new("cargo")
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(plugins_manifest(root)),
    )
    .context("cannot read the plugins workspace")?;
    let meta: Value = serde_json::from_str(&text).context("cargo metadata output")?;
    let mut plugins = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let pkg_name = package["name"].as_str().unwrap_or_default().to_string();
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest.parent().unwrap_or(root).to_path_buf();
        let cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            });
        let stevedore = &package["metadata"]["stevedore"];
        if stevedore.is_null() {
            if cdylib.is_some() {
                eprintln!(
                    "note: skipping package `{pkg_name}`: a cdylib without [package.metadata.stevedore]"
                );
            }
            continue;
        }
        let ctx = || format!("[package.metadata.stevedore] of {}", manifest.display());
        let name = stevedore["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .with_context(|| format!("{}: `name` is missing", ctx()))?
            .to_string();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            bail!("{}: name {name:?} is not a plain file name", ctx());
        }
        let Some(cdylib) = cdylib else {
            bail!("{}: the crate needs crate-type = [\"cdylib\"]", ctx());
        };
        let test_only = stevedore["test-only"].as_bool().unwrap_or(false);
        let target = Target::parse(stevedore["target"].as_str()).with_context(ctx)?;
        if let Some(other) = seen.insert(name.clone(), pkg_name.clone()) {
            bail!("packages `{other}` and `{pkg_name}` both build the plugin `{name}`");
        }
        plugins.push(Plugin {
            name,
            package: pkg_name,
            lib: cdylib["name"]
                .as_str()
                .unwrap_or_default()
                .replace('-', "_"),
            dir,
            test_only,
            target,
        });
    }
    Ok(plugins)
}

/// The sysroot of the `rustc` on PATH (the rustup toolchain, normally).
fn rustup_sysroot() -> Option<PathBuf> {
    let out = output(Command::new("rustc").args(["--print", "sysroot"])).ok()?;
    Some(PathBuf::from(out.trim()))
}

fn rustup_has_target(triple: &str) -> bool {
    if which("rustup").is_none() {
        // No rustup: ask rustc whether it ships std for the target.
        return rustup_sysroot()
            .is_some_and(|s| s.join("lib/rustlib").join(triple).join("lib").is_dir());
    }
    output(Command::new("rustup").args(["target", "list", "--installed"]))
        .map(|o| o.lines().any(|l| l.trim() == triple))
        .unwrap_or(false)
}

fn host_triple() -> String {
    output(Command::new("rustc").arg("-vV"))
        .ok()
        .and_then(|o| {
            o.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".to_string())
}

/// A wasm linker for the Debian route: rustup's `rust-lld`, else Debian's
/// LLVM 22 one (installed if needed). Debian 12's own `wasm-ld` (LLVM 14) is
/// too old for rustc 1.96's objects.
fn wasm_linker() -> Result<PathBuf> {
    let candidates = |sysroot: Option<PathBuf>| {
        let mut c = Vec::new();
        if let Some(s) = sysroot {
            c.push(s.join(format!("lib/rustlib/{}/bin/rust-lld", host_triple())));
        }
        c.push(PathBuf::from("/usr/bin/rust-lld"));
        c.push(PathBuf::from("/usr/lib/llvm-22/bin/wasm-ld"));
        c.push(PathBuf::from("/usr/bin/wasm-ld-22"));
        c
    };
    // `exists` follows links, so a dangling /usr/bin/rust-lld is skipped.
    if let Some(p) = candidates(rustup_sysroot())
        .into_iter()
        .find(|p| p.exists())
    {
        return Ok(p);
    }
    install::ensure(install::LLD)?;
    candidates(None)
        .into_iter()
        .find(|p| p.exists())
        .context("no wasm linker found (looked for rust-lld and LLVM 22's wasm-ld)")
}

/// The std sources that go with Debian's rustc.
fn debian_std_src() -> Result<PathBuf> {
    let version = output(Command::new("/usr/bin/rustc").arg("-V"))?;
    let version = version
        .split_whitespace()
        .nth(1)
        .context("unexpected `/usr/bin/rustc -V` output")?;
    let src = PathBuf::from(format!("/usr/src/rustc-{version}/library"));
    if !src.join("Cargo.lock").exists() && !src.join("std").is_dir() {
        bail!("no std sources at {} (package rust-web-src)", src.display());
    }
    Ok(src)
}

/// The cargo command that builds `target` on this machine.
fn build_command(root: &Path, target: Target) -> Result<Command> {
    let triple = target.triple();
    let target_dir = root.join("target/wasm");
    let mut cmd;
    if rustup_has_target(triple) {
        eprintln!("==> {triple}: using the installed rustup target");
        cmd = Command::new("cargo");
        cmd.arg("build");
    } else {
        eprintln!("==> {triple}: no rustup target; using Debian's rustc with -Zbuild-std");
        install::ensure(install::WASM_BUILD)?;
        if target == Target::Wasip1 {
            install::ensure(install::WASI_LIBC)?;
        }
        let linker = wasm_linker()?;
        let env_triple = triple.to_uppercase().replace('-', "_");
        cmd = Command::new("/usr/bin/cargo");
        cmd.arg("build")
            .arg("-Zbuild-std=std,panic_abort")
            // Only the rustup toolchain's settings could leak in: drop them.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTDOC", "/usr/bin/rustdoc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("__CARGO_TESTS_ONLY_SRC_ROOT", debian_std_src()?)
            .env(format!("CARGO_TARGET_{env_triple}_LINKER"), &linker);
        let rustflags = match target {
            Target::Unknown => String::new(),
            // Debian's wasi-libc instead of a self-contained sysroot; a
            // library needs the reactor start file.
            Target::Wasip1 => "-C link-self-contained=no -L /usr/lib/wasm32-wasi \
                               -C link-arg=/usr/lib/wasm32-wasi/crt1-reactor.o"
                .to_string(),
        };
        cmd.env("RUSTFLAGS", rustflags);
    }
    cmd.args([
        "--release",
        "--keep-going",
        "--message-format=json-render-diagnostics",
    ])
    .args(["--target", triple])
    .arg("--target-dir")
    .arg(target_dir)
    .arg("--manifest-path")
    .arg(plugins_manifest(root));
    Ok(cmd)
}

/// Build the plugins of one target; returns the core module of each package
/// that built.
fn cargo_build(
    root: &Path,
    target: Target,
    plugins: &[&Plugin],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut cmd = build_command(root, target)?;
    for p in plugins {
        cmd.args(["-p", &p.package]);
    }
    eprintln!("+ {}", describe(&cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(&cmd)))?;
    let mut built = BTreeMap::new();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let kinds = &msg["target"]["crate_types"];
        if !kinds
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        {
            continue;
        }
        let wasm = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|f| f.ends_with(".wasm"));
        if let (Some(name), Some(wasm)) = (msg["target"]["name"].as_str(), wasm) {
            built.insert(name.replace('-', "_"), PathBuf::from(wasm));
        }
    }
    let status = child.wait()?;
    check_interrupted()?;
    if !status.success() && built.len() >= plugins.len() {
        bail!("cargo build failed ({})", status_text(status));
    }
    Ok(built)
}

/// Turn a core module into a component.
fn componentize(module: &[u8], target: Target) -> Result<Vec<u8>> {
    let mut encoder = wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true);
    if target == Target::Wasip1 {
        encoder = encoder.adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?;
    }
    encoder.encode()
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Write `out` from `module` unless it is already newer than both the module
/// and this xtask binary.
fn write_component(module: &Path, out: &Path, target: Target) -> Result<bool> {
    if let (Some(o), Some(m)) = (mtime(out), mtime(module)) {
        let exe = std::env::current_exe().ok().and_then(|e| mtime(&e));
        if o >= m && exe.is_none_or(|e| o >= e) {
            return Ok(false);
        }
    }
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let component = componentize(&bytes, target)?;
    let tmp = out.with_extension(format!("wasm.tmp{}", std::process::id()));
    std::fs::write(&tmp, component)?;
    std::fs::rename(&tmp, out)?;
    Ok(true)
}

/// `cargo xtask build-plugins`.
pub fn build() -> Result<()> {
    let started = Instant::now();
    let root = repo_root();
    let plugins = discover(&root)?;
    if plugins.is_empty() {
        eprintln!("no plugin crates (with [package.metadata.stevedore]) under plugins/");
    }
    let mut by_target: BTreeMap<Target, Vec<&Plugin>> = BTreeMap::new();
    for p in &plugins {
        by_target.entry(p.target).or_default().push(p);
    }
    let mut failed = Vec::new();
    let mut modules: Vec<(&Plugin, PathBuf)> = Vec::new();
    for (target, group) in &by_target {
        let built = cargo_build(&root, *target, group)?;
        for p in group {
            match built.get(&p.lib) {
                Some(m) => modules.push((p, m.clone())),
                None => failed.push(p.describe(&root)),
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "failed to build {} (the compiler's errors are above):\n  {}",
            if failed.len() == 1 {
                "one plugin"
            } else {
                "plugins"
            },
            failed.join("\n  ")
        );
    }

    let out_dirs = [
        root.join("target/plugins"),
        root.join("target/test-plugins"),
    ];
    for d in &out_dirs {
        std::fs::create_dir_all(d)?;
    }
    let mut written = HashSet::new();
    let mut fresh = 0;
    for (p, module) in &modules {
        let out = out_dirs[usize::from(p.test_only)].join(format!("{}.wasm", p.name));
        let changed = write_component(module, &out, p.target)
            .with_context(|| format!("cannot make a component of {}", p.describe(&root)))?;
        if changed {
            fresh += 1;
        }
        written.insert(out);
    }
    let python = crate::pyplugins::build(&out_dirs[0])?;
    // The target `stevedore plugin build` uses for a scaffolded Rust category.
    install::ensure_rust_target("wasm32-wasip2")?;
    let built = modules.len() + python.len();
    written.extend(python);
    // Outputs of plugins that no longer exist would still be loaded.
    for d in &out_dirs {
        for entry in std::fs::read_dir(d)? {
            let path = entry?.path();
            let is_wasm = path.extension().is_some_and(|e| e == "wasm");
            if is_wasm && !written.contains(&path) {
                eprintln!("removing stale {}", path.display());
                std::fs::remove_file(&path)?;
            }
        }
    }
    eprintln!(
        "==> {} plugins in target/plugins and target/test-plugins ({} componentized) in {:.1?}",
        built,
        fresh,
        started.elapsed()
    );
    Ok(())
}

/// The plugin crates' own unit tests, natively with the host toolchain.
pub fn native_tests(extra: &[String]) -> Result<bool> {
    let root = repo_root();
    let status = run(Command::new("cargo")
        .args(["test", "--workspace", "--manifest-path"])
        .arg(plugins_manifest(&root))
        .arg("--target-dir")
        .arg(root.join("target/plugins-native"))
        .args(extra))?;
    Ok(status.success())
}
