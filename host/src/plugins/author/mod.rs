//! `stevedore plugin new|build`, for plugin authors without a checkout of
//! this repository: scaffold a category in a new folder, and build it into
//! a component with the WIT files and SDK this binary carries.

pub mod embedded;
pub mod python;
pub mod rust;
mod rust_lock;
mod rust_scaffold;
pub mod scaffold;

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The environment variable naming the `componentize-py` program.
pub const COMPONENTIZE_PY_VAR: &str = "STEVEDORE_COMPONENTIZE_PY";

/// The `componentize-py` to build with: [`COMPONENTIZE_PY_VAR`], else the
/// one on `PATH`; when there is none, the error names the install command.
pub fn componentize_py() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(COMPONENTIZE_PY_VAR).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("componentize-py"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Ok(p),
        None => bail!(
            "building a Python plugin needs componentize-py, which is not on PATH; install it with \
             `pip install {}` (or name the program with {COMPONENTIZE_PY_VAR})",
            python::COMPONENTIZE_PY
        ),
    }
}

/// `stevedore plugin build [DIR]`: build the category in `dir` (a cargo
/// project, or a Python folder with `plugin.toml`) into `dir/<name>.wasm`
/// and print where it is.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join(rust::MANIFEST).is_file() {
        let manifest = rust::Manifest::read(dir)?;
        let out = dir.join(format!("{}.wasm", manifest.name));
        rust::build(dir, &manifest, &out)?;
        println!("built {}", out.display());
        return Ok(out);
    }
    if dir.join(python::MANIFEST).is_file() {
        let tool = componentize_py()?;
        let manifest = python::Manifest::read(dir)?;
        let out = dir.join(format!("{}.wasm", manifest.name));
        let work = dir.join(".build");
        python::Build {
            dir,
            tool: &tool,
            wit: embedded::WIT,
            sdk: embedded::PYTHON_SDK,
            work: &work,
            out: &out,
        }
        .run()?;
        println!("built {}", out.display());
        return Ok(out);
    }
    bail!(
        "{} holds no {} (a Rust category) and no {} (a Python one); make one with \
         `stevedore plugin new NAME [--lang rust|python]`",
        dir.display(),
        rust::MANIFEST,
        python::MANIFEST
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_a_build_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("holds no Cargo.toml (a Rust category) and no plugin.toml"),
            "{err}"
        );
    }
}
