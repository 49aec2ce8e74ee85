//! `cargo xtask`: the build, test and run tasks of Stevedore.
//!
//! - `build-plugins`: every plugin crate under `plugins/` into a component in
//!   `target/plugins/` (test-only ones in `target/test-plugins/`).
//! - `test`: install what is missing, build the plugins, start the test
//!   services, run every test, stop the services.
//! - `run`: install what is missing, find or start a Docker engine, build the
//!   plugins and serve.
//! - `bench`: build the plugins, start the test services, `cargo bench`;
//!   `bench --smoke` runs each bench for one short round and checks that it
//!   completes and prints sane figures (`test` runs it after the tests).
//! - `lint`: `cargo fmt --check` and `cargo clippy -D warnings` over both
//!   workspaces, and the module layers of `host/src` (see `layers.rs`); also
//!   the first step of `test`.
//! - `services start|stop|status|env`: the test services by hand.
//! - `stop-engine`: stop the engine `run` started.
//! - `pytools`: the Python tools of the browser and OpenAPI tests.

mod catalog;
mod install;
mod layers;
mod plugins;
mod postgres;
mod pyplugins;
mod pytools;
mod services;
mod util;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use util::{check_interrupted, interrupted, repo_root, run, run_ok, Endpoint};

const USAGE: &str = "usage: cargo xtask <command>

  build-plugins                  build plugins/ into target/plugins/*.wasm
  test [ARGS] [-- TEST-ARGS]     build plugins, start test services, run all tests
  run [-- SERVE-ARGS]            start an engine if needed, build plugins, serve
                                 (API on 127.0.0.1:8080, applications' proxy on 127.0.0.1:8081)
  bench [ARGS] [-- BENCH-ARGS]   build plugins, start test services, cargo bench (stevedore, stevedore-e2e)
  bench --smoke                  each bench for one short round: it completes and prints sane figures
  lint                           module layers of host/src, cargo fmt --check and
                                 cargo clippy -D warnings, both workspaces
  services start|stop|status|env the test services by hand
  pytools                        the Python test tools (Playwright, schemathesis) in target/pytools
  stop-engine                    stop the Docker engine `run` started
  install                        install every Debian package the tasks use";

fn main() {
    forget_cargo_run_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The catalog server is a daemon: SIGTERM stops it, as by default.
    if args.first().map(String::as_str) != Some("catalog-server") {
        util::install_signal_handlers();
    }
    if let Err(e) = dispatch(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(if interrupted() { 130 } else { 1 });
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("build-plugins") => plugins::build(),
        Some("test") => test(rest),
        Some("run") => serve(rest),
        Some("bench") => bench(rest),
        Some("lint") => match lint()?.as_slice() {
            [] => Ok(()),
            failed => bail!("lint failed: {}", failed.join(", ")),
        },
        Some("services") => services::command(rest),
        Some("stop-engine") => run_engine().stop(),
        Some("catalog-server") => catalog::serve(rest),
        Some("pytools") => pytools::ensure().map(|dir| println!("{}", dir.display())),
        Some("install") => {
            install::ensure(install::WASM_BUILD)?;
            install::ensure(install::WASI_LIBC)?;
            install::ensure(install::DOCKER)?;
            install::ensure(install::SERVICES)?;
            install::ensure(install::LXC)?;
            install::ensure(pytools::DEBIAN)?;
            install::ensure(install::BENCH)
        }
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// Drop the variables `cargo run` set for this program (the xtask's own
/// `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...). Build scripts such as
/// ring's rerun when those change, so passing them on to the inner `cargo
/// test` made it and the test harness's `cargo build` of the server (which
/// runs without them) rebuild ring, rustls and the server in turn, minutes
/// per run. `CARGO` and `CARGO_HOME` stay.
fn forget_cargo_run_env() {
    let set_by_cargo_run: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || k.starts_with("CARGO_BIN_")
                || k == "CARGO_CRATE_NAME"
                || k == "CARGO_PRIMARY_PACKAGE"
        })
        .collect();
    for k in set_by_cargo_run {
        std::env::remove_var(k);
    }
}

fn cargo(root: &std::path::Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root);
    cmd
}

/// Whether cargo arguments already pick packages.
fn picks_packages(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a.starts_with("--package"))
}

/// The module layers of `host/src` ([`layers::LAYERS`]), then `cargo fmt
/// --check` and `cargo clippy --all-targets -D warnings` over the root
/// workspace and the plugins workspace (lints are declared once per
/// workspace, in `[workspace.lints]`). Returns what failed.
fn lint() -> Result<Vec<&'static str>> {
    let root = repo_root();
    let mut failed = Vec::new();
    eprintln!("==> lint: module layers of host/src");
    let problems = layers::check(&root)?;
    for p in &problems {
        eprintln!("{p}");
    }
    if !problems.is_empty() {
        failed.push("module layers (xtask/src/layers.rs)");
    }
    install::ensure_rust_components(&["rustfmt", "clippy"])?;
    let plugins = root.join("plugins/Cargo.toml");
    let native = root.join("target/plugins-native");
    eprintln!("==> lint: cargo fmt --check, cargo clippy -D warnings (both workspaces)");
    if !run(cargo(&root).args(["fmt", "--all", "--check"]))?.success() {
        failed.push("cargo fmt --all --check");
    }
    if !run(cargo(&root)
        .args(["fmt", "--all", "--check", "--manifest-path"])
        .arg(&plugins))?
    .success()
    {
        failed.push("cargo fmt --all --check (plugins)");
    }
    // `--release`: the build scripts and proc macros of the release build
    // that the tests use are reused.
    if !run(cargo(&root).args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?
    .success()
    {
        failed.push("cargo clippy --release --workspace --all-targets -- -D warnings");
    }
    if !run(cargo(&root)
        .args(["clippy", "--workspace", "--all-targets", "--manifest-path"])
        .arg(&plugins)
        .arg("--target-dir")
        .arg(&native)
        .args(["--", "-D", "warnings"]))?
    .success()
    {
        failed.push("cargo clippy (plugins) -- -D warnings");
    }
    Ok(failed)
}

/// `cargo xtask test`.
fn test(extra: &[String]) -> Result<()> {
    let started = Instant::now();
    let root = repo_root();
    plugins::build()?;
    // The browser and API-fuzzing tests drive these.
    pytools::ensure()?;

    let mut failed: Vec<&str> = Vec::new();
    if !picks_packages(extra) {
        failed.extend(lint()?);
        check_interrupted()?;
    }
    eprintln!("==> plugin unit tests (native)");
    if !plugins::native_tests(&[])? {
        failed.push("plugin unit tests (cargo test --manifest-path plugins/Cargo.toml)");
    }
    check_interrupted()?;

    let workspace: &[&str] = if picks_packages(extra) {
        &[]
    } else {
        &["--workspace"]
    };
    // Compile first, so a compile error costs no service start. Cargo's
    // JSON messages name the server binary this build made (for the host's
    // integration tests); the end-to-end tests run that one, instead of each
    // test process building it again with `-p stevedore`, whose features
    // differ from this build's and would rebuild the whole crate.
    let (before, _) = split_dashdash(extra);
    let messages = root.join("target/test-artifacts/build-messages.jsonl");
    std::fs::create_dir_all(messages.parent().expect("a folder"))?;
    let compiled = run(cargo(&root)
        .args([
            "test",
            "--release",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(workspace)
        // A whole run builds the benches here too, with the tests' profile
        // and features, so that their smoke run below compiles nothing more.
        .args(if extra.is_empty() {
            &["--lib", "--bins", "--tests", "--benches"][..]
        } else {
            &[][..]
        })
        .args(before)
        .stdout(std::fs::File::create(&messages)?))?;
    let server_binary = built_binary(&messages, "stevedore");
    check_interrupted()?;
    if !compiled.success() {
        failed.push("building the tests (cargo test --release --workspace --no-run)");
    } else {
        let lease = services::Lease::acquire()?;
        eprintln!("==> tests");
        let report = root.join("target/test-artifacts/counts.txt");
        std::fs::create_dir_all(report.parent().expect("a folder"))?;
        let _ = std::fs::remove_file(&report);
        let status = run(cargo(&root)
            .args(["test", "--release"])
            .args(workspace)
            .args(extra)
            .envs(services::test_env())
            .envs(server_binary.iter().map(|b| ("STEVEDORE_BIN", b)))
            .env(REPORT_ENV, &report))?;
        drop(lease);
        print_report(&report);
        check_interrupted()?;
        if !status.success() {
            failed.push("tests (cargo test --release --workspace)");
        }
    }
    if failed.is_empty() && extra.is_empty() {
        eprintln!("==> benches, one short round each (cargo xtask bench --smoke)");
        if let Err(e) = smoke(server_binary.as_deref()) {
            eprintln!("{e:#}");
            failed.push("bench smoke runs (cargo xtask bench --smoke)");
        }
        check_interrupted()?;
    }
    if !failed.is_empty() {
        bail!(
            "failed after {:.0?}:\n  {}",
            started.elapsed(),
            failed.join("\n  ")
        );
    }
    eprintln!("==> all tests passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The executable of the binary target `name` among cargo's JSON
/// `compiler-artifact` messages in `messages`, if that build made it.
fn built_binary(messages: &Path, name: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(messages).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        // Not the binary's own unit-test harness.
        .filter(|m| m["profile"]["test"] == false)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// Where tests append the counts they report (routes checked, requests
/// fuzzed, kills survived): the e2e harness's `report` reads this variable
/// (the host crate's tests use it too).
const REPORT_ENV: &str = "STEVEDORE_TEST_REPORT";

/// Print what the tests counted: the test harness hides a passing test's
/// output, and these figures are what the hardening tests show.
fn print_report(report: &Path) {
    let Ok(text) = std::fs::read_to_string(report) else {
        return;
    };
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    eprintln!("==> what the tests counted ({}):", report.display());
    for line in lines {
        eprintln!("    {line}");
    }
}

fn split_dashdash(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i..]),
        None => (args, &[]),
    }
}

/// One short round of every bench of the workspace (`STEVEDORE_BENCH_SMOKE`),
/// run as `cargo test --release --workspace --bench '*'`: the same profile and
/// features as the tests' build, so after `test`'s build nothing compiles
/// again (criterion runs each measurement once when `--bench` is absent).
fn smoke(server_binary: Option<&Path>) -> Result<()> {
    let root = repo_root();
    install::ensure(install::BENCH)?;
    let mut command = cargo(&root);
    command
        // Only the bench targets (`--benches` takes the lib's tests too).
        .args(["test", "--release", "--workspace", "--bench", "*"])
        .envs(services::test_env())
        .envs(server_binary.iter().map(|b| ("STEVEDORE_BIN", b)))
        .env(SMOKE_ENV, "1");
    let lease = services::Lease::acquire()?;
    let started = Instant::now();
    let result = smoke_run(&mut command);
    drop(lease);
    eprintln!(
        "==> bench smoke runs took {:.0?} (build included)",
        started.elapsed()
    );
    result
}

/// `cargo xtask bench`; with `--smoke`, one short round of each bench.
fn bench(extra: &[String]) -> Result<()> {
    let root = repo_root();
    let smoke_only = extra.iter().any(|a| a == "--smoke");
    let extra: Vec<String> = extra.iter().filter(|a| *a != "--smoke").cloned().collect();
    install::ensure(install::BENCH)?;
    plugins::build()?;
    if smoke_only {
        return smoke(None);
    }
    let packages: &[&str] = if picks_packages(&extra) {
        &[]
    } else {
        // The host's benches and the end-to-end ones against Docker and LXC.
        &["-p", "stevedore", "-p", "stevedore-e2e"]
    };
    let mut command = cargo(&root);
    command
        .arg("bench")
        .args(packages)
        .args(&extra)
        .envs(services::test_env());
    let lease = services::Lease::acquire()?;
    let result = run_ok(&mut command);
    drop(lease);
    result
}

/// What the benches read to run one short round each.
const SMOKE_ENV: &str = "STEVEDORE_BENCH_SMOKE";

/// Run the benches of `command`, showing what they print, and check that
/// they completed and printed sane figures: no `NaN` or `inf` (a rate over
/// no time, a ratio against nothing), and at least one figure.
fn smoke_run(command: &mut Command) -> Result<()> {
    let printed = repo_root().join("target/test-artifacts/bench-smoke.txt");
    std::fs::create_dir_all(printed.parent().expect("a folder"))?;
    let status = run(command.stdout(std::fs::File::create(&printed)?))?;
    let text = std::fs::read_to_string(&printed)?;
    print!("{text}");
    check_interrupted()?;
    if !status.success() {
        bail!(
            "a bench failed ({status}); what they printed: {}",
            printed.display()
        );
    }
    let insane: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| matches!(w, "NaN" | "inf"))
        })
        .collect();
    if !insane.is_empty() {
        bail!(
            "benches printed figures that are not numbers:\n  {}",
            insane.join("\n  ")
        );
    }
    if !text.chars().any(|c| c.is_ascii_digit()) {
        bail!("the benches printed no figure");
    }
    Ok(())
}

/// The persistent engine of `cargo xtask run`, when the machine has none.
fn run_engine() -> services::Engine {
    // Beside the server's default data folder (`.stevedore/`), not in it.
    let state = repo_root().join(".stevedore/dockerd");
    services::Engine {
        socket: PathBuf::from("/run/stevedore/docker.sock"),
        data_root: state.join("data"),
        exec_root: PathBuf::from("/run/stevedore/exec"),
        pidfile: state.join("dockerd.pid"),
        log: state.join("dockerd.log"),
        config: state.join("daemon.json"),
        bridge: None,
        extra_args: Vec::new(),
        throwaway: false,
    }
}

/// A Docker engine that answers: `DOCKER_HOST`, the system one, or ours.
fn find_or_start_engine() -> Result<String> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        match Endpoint::from_docker_host(&host) {
            Some(e) if util::docker_answers(&e) => return Ok(host),
            _ => eprintln!("warning: no Docker engine answers at DOCKER_HOST={host}"),
        }
    }
    let system = "unix:///var/run/docker.sock";
    if util::docker_answers(&Endpoint::from_docker_host(system).expect("unix address")) {
        return Ok(system.to_string());
    }
    let engine = run_engine();
    if !engine.running() {
        if !util::is_root() {
            bail!("no Docker engine answers, and starting one needs root");
        }
        std::fs::create_dir_all(&engine.data_root)?;
        eprintln!(
            "==> starting a Docker engine (data in {}; stop it with `cargo xtask stop-engine`)",
            engine.data_root.display()
        );
        engine.start()?;
    }
    Ok(engine.docker_host())
}

/// Where `cargo xtask run` serves the applications' `virtual_path`s.
const RUN_PROXY_LISTEN: &str = "127.0.0.1:8081";

/// `cargo xtask run`.
fn serve(extra: &[String]) -> Result<()> {
    let root = repo_root();
    let docker_host = find_or_start_engine()?;
    eprintln!("==> Docker engine: {docker_host}");
    plugins::build()?;
    let args = match extra.first().map(String::as_str) {
        Some("--") => &extra[1..],
        _ => extra,
    };
    let mut cmd = cargo(&root);
    cmd.args(["run", "--release", "-p", "stevedore", "--", "serve"])
        .args(args)
        .env("DOCKER_HOST", &docker_host);
    if std::env::var_os("STEVEDORE_PLUGINS_DIR").is_none() {
        cmd.env("STEVEDORE_PLUGINS_DIR", root.join("target/plugins"));
    }
    // The applications' reverse proxy (`[proxy] listen`), off in a plain
    // `stevedore serve`, on here; STEVEDORE_PROXY_LISTEN moves it.
    if std::env::var_os("STEVEDORE_PROXY_LISTEN").is_none() {
        cmd.env("STEVEDORE_PROXY_LISTEN", RUN_PROXY_LISTEN);
    }
    let status = run(&mut cmd)?;
    if interrupted() {
        return Ok(());
    }
    if !status.success() {
        bail!("the server exited ({})", util::status_text(status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Standard base64, to check the test password's property.
    fn base64(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn auth_password_needs_url_safe_base64() {
        let pw = crate::services::AUTH_PASSWORD;
        // Whatever comes before the password, at every alignment.
        for prefix in ["", "x", "xy"] {
            for json in [
                format!(
                    r#"{prefix}{{"username":"stevedore","password":"{pw}","serveraddress":"127.0.0.1:5001"}}"#
                ),
                format!(r#"{prefix}{{"password":"{pw}"}}"#),
            ] {
                let b = base64(json.as_bytes());
                assert!(b.contains('+') && b.contains('/'), "{json} -> {b}");
            }
        }
    }

    #[test]
    fn package_selection() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(super::picks_packages(&s(&["-p", "stevedore-e2e"])));
        assert!(super::picks_packages(&s(&["--package=x"])));
        assert!(!super::picks_packages(&s(&["--", "-p"])));
        assert!(!super::picks_packages(&s(&["plugin"])));
    }
}
