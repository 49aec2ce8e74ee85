//! The Python tools the end-to-end tests drive, from PyPI, in a venv under
//! `target/pytools/` that is built once and reused: Playwright (driving
//! Debian's `chromium`, never a browser of its own), schemathesis and
//! openapi-spec-validator. The list below is the venv's key: a change of it
//! rebuilds the venv.

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

/// Debian packages: the browser, and `venv` for Debian's python3.
pub const DEBIAN: &[&str] = &["chromium", "python3-venv"];

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
    Ok(dir)
}

/// Debian's python3 (its `venv` is installed above), else the one on PATH.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}
