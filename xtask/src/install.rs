//! Installing the Debian packages the build and the test services need.

use crate::util::{is_root, output, run_ok, which};
use anyhow::{bail, Result};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// Packages for the Debian route of the wasm build (DESIGN.md).
pub const WASM_BUILD: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
/// Extra package for plugins that target `wasm32-wasip1` on the Debian route.
pub const WASI_LIBC: &[&str] = &["wasi-libc"];
/// A wasm linker when no rustup `rust-lld` is present.
pub const LLD: &[&str] = &["lld-22"];
/// A Docker engine (and its CLI, used to seed the registry).
pub const DOCKER: &[&str] = &["docker.io", "iproute2", "iptables"];
/// The rest of the test services, `curl` and `python3` (its `json.tool`)
/// for the seed page's commands, and `strace` (a test watches the modes the
/// CLI creates files with).
pub const SERVICES: &[&str] = &[
    "docker-registry",
    "busybox-static",
    "apache2-utils",
    "curl",
    "python3",
    "strace",
];

/// LXC and what its network needs (the LXC tests and runtime).
pub const LXC: &[&str] = &["lxc", "nftables", "dnsmasq-base", "xz-utils"];
/// What the benchmarks compare against or drive the server with: Compose
/// 1.29 (`apps_vs_compose`), wrk (`wrk_throughput`), pigz (compressed
/// exports are compared with `docker save | pigz`, `tar -c | pigz` and
/// `docker run busybox tar | pigz`).
pub const BENCH: &[&str] = &["docker-compose", "wrk", "pigz"];

static UPDATED: AtomicBool = AtomicBool::new(false);

/// Whether a Debian package is installed.
pub fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .output()
        .map(|o| o.status.success() && o.stdout.starts_with(b"ii"))
        .unwrap_or(false)
}

/// Install whichever of `packages` are missing (as root, with apt-get).
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}; install them as root: apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    if output(Command::new("apt-get").arg("--version")).is_err() {
        bail!(
            "missing packages {} and no apt-get on this machine",
            missing.join(" ")
        );
    }
    eprintln!("==> installing {}", missing.join(" "));
    if !UPDATED.swap(true, Ordering::SeqCst) {
        run_ok(
            Command::new("apt-get")
                .args(["-q", "update"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    run_ok(
        Command::new("apt-get")
            .args(["-q", "install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

/// Make sure the rustup components (`rustfmt`, `clippy`) are installed:
/// rustup's `minimal` profile leaves them out.
pub fn ensure_rust_components(components: &[&str]) -> Result<()> {
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| {
            let tool = if *c == "rustfmt" { "fmt" } else { *c };
            !Command::new("cargo")
                .args([tool, "--version"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("==> rustup component add {}", missing.join(" "));
    run_ok(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing),
    )
}

/// Make sure the rustup toolchain can build for `target` (`rustup target
/// add`): `tests/tests/plugin_author.rs` builds a scaffolded Rust category
/// for `wasm32-wasip2` with it, as an author would. Without rustup there is
/// nothing to add (that test then names the missing target).
pub fn ensure_rust_target(target: &str) -> Result<()> {
    if which("rustup").is_none() {
        return Ok(());
    }
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    eprintln!("==> rustup target add {target}");
    run_ok(Command::new("rustup").args(["target", "add", target]))
}
