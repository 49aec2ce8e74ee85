//! The Python tools the end-to-end tests drive, from PyPI, in a venv under
//! `target/pytools/` that is built once and reused: Playwright (driving
//! Debian's `chromium`, never a browser of its own), schemathesis and
//! openapi-spec-validator. The list below is the venv's key: a change of it
//! rebuilds the venv.
//!
//! Beside it, `axe.min.js` from npm's `axe-core` (the accessibility checker
//! the browser test runs in the page): one file from the registry's tarball,
//! checked against its pinned SHA-256, so neither node nor npm is needed.

use crate::install;
use crate::util::{repo_root, run_ok};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// PyPI packages, pinned so that a run does not change under the tests.
pub const PACKAGES: &[&str] = &[
    "playwright==1.65.2",
    "schemathesis==4.32.5",
    "openapi-spec-validator==0.9.0",
];

/// Debian packages: the browser, `venv` for Debian's python3, and what
/// fetches and unpacks axe-core.
pub const DEBIAN: &[&str] = &["chromium", "python3-venv", "curl", "tar"];

/// npm's `axe-core` tarball, and its SHA-256.
const AXE_URL: &str = "https://registry.npmjs.org/axe-core/-/axe-core-4.14.1.tgz";
const AXE_SHA256: &str = "e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745";

/// The venv's folder.
pub fn venv() -> PathBuf {
    repo_root().join("target/pytools")
}

/// Build the venv unless it already holds exactly [`PACKAGES`].
pub fn ensure() -> Result<PathBuf> {
    install::ensure(DEBIAN)?;
    let dir = venv();
    let stamp = dir.join("stevedore-packages.txt");
    let wanted = PACKAGES.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        axe(&dir)?;
        return Ok(dir);
    }
    eprintln!("==> Python tools into {}", dir.display());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run_ok(Command::new(python()).args(["-m", "venv"]).arg(&dir))?;
    run_ok(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
    )?;
    std::fs::write(&stamp, wanted)?;
    axe(&dir)?;
    Ok(dir)
}

/// `axe.min.js` into `dir`, unless it is there: the tarball is fetched,
/// its hash checked, and the one file taken out.
fn axe(dir: &Path) -> Result<()> {
    let out = dir.join("axe.min.js");
    if out.exists() {
        return Ok(());
    }
    let tgz = dir.join("axe-core.tgz");
    run_ok(
        Command::new("curl")
            .args(["-sSfL", "--retry", "3", "-o"])
            .arg(&tgz)
            .arg(AXE_URL),
    )?;
    let sum = Command::new("sha256sum")
        .arg(&tgz)
        .output()
        .context("sha256sum")?;
    let sum = String::from_utf8_lossy(&sum.stdout);
    anyhow::ensure!(
        sum.split_whitespace().next() == Some(AXE_SHA256),
        "{AXE_URL}: SHA-256 {sum} is not the pinned {AXE_SHA256}"
    );
    let unpacked = dir.join("axe-core");
    std::fs::create_dir_all(&unpacked)?;
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&unpacked)
            .arg("package/axe.min.js"),
    )?;
    std::fs::rename(unpacked.join("package/axe.min.js"), &out)?;
    std::fs::remove_dir_all(&unpacked)?;
    std::fs::remove_file(&tgz)?;
    Ok(())
}

/// Debian's python3 (its `venv` is installed above), else the one on PATH.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}
