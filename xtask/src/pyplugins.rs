//! The categories written in Python (`plugins/python/<name>/plugin.toml`),
//! built by `cargo xtask build-plugins` into `target/plugins/` with the
//! same build `stevedore plugin build` runs (`python_build`, compiled from
//! the host's source). componentize-py comes from PyPI into a venv of its
//! own, `target/componentize-py/`, made once and reused.

use crate::install;
use crate::util::{repo_root, run_ok};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

#[path = "../../host/src/plugins/author/python.rs"]
mod python_build;

/// The venv holding componentize-py.
fn venv() -> PathBuf {
    repo_root().join("target/componentize-py")
}

/// The `componentize-py` program, installed unless the venv holds the
/// pinned release.
fn ensure_tool() -> Result<PathBuf> {
    install::ensure(&["python3-venv"])?;
    let dir = venv();
    let tool = dir.join("bin/componentize-py");
    let stamp = dir.join("stevedore-packages.txt");
    let wanted = python_build::COMPONENTIZE_PY;
    if tool.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(tool);
    }
    eprintln!("==> {wanted} into {}", dir.display());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run_ok(
        Command::new(crate::pytools::python())
            .args(["-m", "venv"])
            .arg(&dir),
    )?;
    run_ok(Command::new(dir.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        wanted,
    ]))?;
    std::fs::write(&stamp, wanted)?;
    Ok(tool)
}

/// The folders of the Python categories.
fn sources(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let base = root.join("plugins/python");
    if !base.is_dir() {
        return Ok(dirs);
    }
    for entry in std::fs::read_dir(&base)? {
        let dir = entry?.path();
        if dir.join(python_build::MANIFEST).is_file() {
            dirs.push(dir);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The newest modification time of the files below `path`.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != ".build" && e.file_name() != "__pycache__")
        .filter_map(|e| newest(&e.path()))
        .max()
}

/// Build every Python category into `out_dir`; returns the files written
/// or already up to date.
pub fn build(out_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = repo_root();
    let dirs = sources(&root)?;
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let sdk_path = root.join("plugins/sdk-python/stevedore_sdk.py");
    let sdk = std::fs::read_to_string(&sdk_path)
        .with_context(|| format!("reading {}", sdk_path.display()))?;
    let mut wit_files = Vec::new();
    for entry in std::fs::read_dir(root.join("wit"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wit") {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            wit_files.push((name, std::fs::read_to_string(&path)?));
        }
    }
    let wit: Vec<(&str, &str)> = wit_files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let inputs_changed = [
        newest(&sdk_path),
        newest(&root.join("wit")),
        std::env::current_exe().ok().and_then(|e| newest(&e)),
    ]
    .into_iter()
    .flatten()
    .max();
    let mut tool = None;
    let mut outputs = Vec::new();
    for dir in dirs {
        let manifest = python_build::Manifest::read(&dir)?;
        let out = out_dir.join(format!("{}.wasm", manifest.name));
        let changed = [newest(&dir), inputs_changed].into_iter().flatten().max();
        let fresh = newest(&out).is_some_and(|o| changed.is_none_or(|c| o >= c));
        if !fresh {
            let tool = match &tool {
                Some(t) => t,
                None => tool.insert(ensure_tool()?),
            };
            eprintln!("==> {} (Python) with componentize-py", manifest.name);
            python_build::Build {
                dir: &dir,
                tool,
                wit: &wit,
                sdk: &sdk,
                work: &root.join("target/python-build").join(&manifest.name),
                out: &out,
            }
            .run()
            .with_context(|| format!("building {}", dir.display()))?;
        }
        outputs.push(out);
    }
    Ok(outputs)
}
