//! Build a category written in Rust: a cargo project whose
//! `[package.metadata.stevedore] name` names the category becomes
//! `<name>.wasm` with `cargo build --release --target wasm32-wasip2`, whose
//! linker makes the component (the SDK's bindings embed the world).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// The build file of a Rust category.
pub const MANIFEST: &str = "Cargo.toml";

/// The target the component is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The command that installs [`TARGET`].
pub const INSTALL_TARGET: &str = "rustup target add wasm32-wasip2";

/// What `Cargo.toml` says about the category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Category name (`[package.metadata.stevedore] name`): the output file
    /// is `<name>.wasm`.
    pub name: String,
    /// The cargo package, built with `-p`.
    pub package: String,
}

impl Manifest {
    /// Read `<dir>/Cargo.toml`.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Manifest::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parse the text of a `Cargo.toml`.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let doc: toml::Table = toml::from_str(text)?;
        let Some(package) = doc.get("package").and_then(|p| p.as_table()) else {
            bail!("a [package] table is missing (a Rust category is one cargo package)");
        };
        let Some(package_name) = package.get("name").and_then(|n| n.as_str()) else {
            bail!("package.name: missing");
        };
        let name = package
            .get("metadata")
            .and_then(|m| m.get("stevedore"))
            .and_then(|s| s.get("name"));
        let name = match name {
            Some(toml::Value::String(n)) if !n.is_empty() => n.clone(),
            Some(_) => bail!("package.metadata.stevedore.name: must be a non-empty string"),
            None => bail!(
                "package.metadata.stevedore.name: missing (the category name, as in \
                 `[package.metadata.stevedore]` `name = \"my_category\"`)"
            ),
        };
        if !super::python::is_category_name(&name) {
            bail!(
                "package.metadata.stevedore.name: must be letters, digits, `_` and `-` (at most 64)"
            );
        }
        Ok(Manifest {
            name,
            package: package_name.to_string(),
        })
    }
}

/// Fail, naming the install command, unless the Rust toolchain that builds
/// in `dir` has the standard library of [`TARGET`].
fn check_target(dir: &Path) -> anyhow::Result<()> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output();
    let sysroot = match sysroot {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        Ok(o) => bail!("`rustc --print sysroot` failed ({})", o.status),
        Err(_) => bail!(
            "building a Rust plugin needs cargo and rustc, which are not on PATH; install them \
             from https://rustup.rs, then `{INSTALL_TARGET}`"
        ),
    };
    if !sysroot
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
    {
        bail!(
            "the Rust toolchain at {} cannot build for {TARGET}; install the target with \
             `{INSTALL_TARGET}`",
            sysroot.display()
        );
    }
    Ok(())
}

/// Build the project in `dir` into `out`. Cargo's diagnostics go to stderr;
/// `CARGO_TARGET_DIR` is honoured.
pub fn build(dir: &Path, manifest: &Manifest, out: &Path) -> anyhow::Result<()> {
    check_target(dir)?;
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--target", TARGET])
        .args(["--message-format", "json-render-diagnostics"])
        .args(["-p", &manifest.package])
        .current_dir(dir)
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start cargo")?;
    let stdout = child.stdout.take().context("cargo's output")?;
    let mut wasm = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line?) else {
            continue;
        };
        let ours = msg["package_id"]
            .as_str()
            .is_some_and(|id| id.contains(&format!("#{}@", manifest.package)))
            || msg["target"]["name"].as_str() == Some(&manifest.package.replace('-', "_"));
        if msg["reason"] != "compiler-artifact" || !ours {
            continue;
        }
        if let Some(f) = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            wasm = Some(PathBuf::from(f));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo build failed ({status}); the compiler's errors are above");
    }
    let Some(wasm) = wasm else {
        bail!(
            "cargo built no .wasm for package `{}`: its [lib] needs crate-type = [\"cdylib\"]",
            manifest.package
        );
    };
    std::fs::copy(&wasm, out)
        .with_context(|| format!("copying {} to {}", wasm.display(), out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_category_name() {
        let m = Manifest::parse(
            "[package]\nname = \"my-count\"\n[package.metadata.stevedore]\nname = \"my_count\"\n",
        )
        .unwrap();
        assert_eq!(m.name, "my_count");
        assert_eq!(m.package, "my-count");
    }

    #[test]
    fn names_what_is_missing() {
        let err = Manifest::parse("[package]\nname = \"x\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("package.metadata.stevedore.name: missing"),
            "{err}"
        );
        let err = Manifest::parse("[workspace]\n").unwrap_err();
        assert!(err.to_string().contains("[package]"), "{err}");
        let err = Manifest::parse(
            "[package]\nname = \"x\"\n[package.metadata.stevedore]\nname = \"a/b\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("letters, digits"), "{err}");
    }
}
