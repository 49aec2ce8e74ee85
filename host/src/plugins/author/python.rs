//! Build a category written in Python into a component with
//! `componentize-py`: a folder holding `plugin.toml` and the category's
//! module becomes one `.wasm` file.
//!
//! The component imports `task` plus exactly the interfaces `plugin.toml`
//! declares: the build writes a world of its own naming them beside the
//! WIT files, and a `_stevedore_capabilities` module the SDK reports in
//! `describe()`, so the declaration is made once. The SDK
//! (`plugins/sdk-python/stevedore_sdk.py`) is put beside the author's code.
//!
//! This file uses nothing of the host crate: `cargo xtask build-plugins`
//! compiles it too (with `#[path]`), so both builds are this one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// The build file of a Python category.
pub const MANIFEST: &str = "plugin.toml";

/// The componentize-py release the build is made and tested with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

use stevedore_contract::capabilities::{ALL as INTERFACES, TASK};

/// Whether `name` may name a category in a manifest, `plugin.toml` or a
/// Rust category's `Cargo.toml` (the output file is `<name>.wasm`):
/// letters, digits, `_` and `-`, at most 64. It lives here because xtask
/// compiles this file on its own.
pub fn is_category_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What `plugin.toml` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Category name: the output file is `<name>.wasm`.
    pub name: String,
    /// The Python module (file name without `.py`) holding the `Executor`.
    pub module: String,
    /// Interfaces used besides `task`.
    pub capabilities: Vec<String>,
}

impl Manifest {
    /// Read `<dir>/plugin.toml`.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Manifest::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parse the text of a `plugin.toml`.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let doc: toml::Table = toml::from_str(text)?;
        let Some(plugin) = doc.get("plugin").and_then(|p| p.as_table()) else {
            bail!("a [plugin] table is missing");
        };
        let string = |key: &str| -> anyhow::Result<String> {
            match plugin.get(key) {
                Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => bail!("plugin.{key}: must be a non-empty string"),
                None => bail!("plugin.{key}: missing"),
            }
        };
        let name = string("name")?;
        if !is_category_name(&name) {
            bail!("plugin.name: must be letters, digits, `_` and `-` (at most 64)");
        }
        let module = match plugin.get("module") {
            None => "app".to_string(),
            Some(_) => string("module")?,
        };
        if !module
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || module.starts_with(|c: char| c.is_ascii_digit())
        {
            bail!("plugin.module: must be a Python module name, as `app` for app.py");
        }
        let mut capabilities = Vec::new();
        match plugin.get("capabilities") {
            None => {}
            Some(toml::Value::Array(list)) => {
                for v in list {
                    let Some(c) = v.as_str() else {
                        bail!("plugin.capabilities: must be a list of strings");
                    };
                    if c == TASK || capabilities.iter().any(|k| k == c) {
                        continue;
                    }
                    if !INTERFACES.contains(&c) {
                        bail!(
                            "plugin.capabilities: unknown interface `{c}` (known: {})",
                            INTERFACES.join(", ")
                        );
                    }
                    capabilities.push(c.to_string());
                }
            }
            Some(_) => bail!("plugin.capabilities: must be a list of strings"),
        }
        Ok(Manifest {
            name,
            module,
            capabilities,
        })
    }

    /// The world the component targets: `task` and the declared interfaces.
    pub fn world(&self, package: &str) -> String {
        let mut wit = format!("package {package};\n\n/// The world of this plugin: exactly the interfaces it declares.\nworld built-plugin {{\n    import task;\n");
        for c in &self.capabilities {
            wit.push_str(&format!("    import {c};\n"));
        }
        wit.push_str("    export executor;\n}\n");
        wit
    }

    /// The module the SDK reads the declared interfaces from.
    pub fn capabilities_module(&self) -> String {
        let list: Vec<String> = self
            .capabilities
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect();
        format!(
            "\"\"\"Written by the build from plugin.toml.\"\"\"\nCAPABILITIES = [{}]\n",
            list.join(", ")
        )
    }
}

/// The package line (`stevedore:plugin@0.2.0`) of the WIT files.
fn package_of(wit: &[(&str, &str)]) -> anyhow::Result<String> {
    wit.iter()
        .flat_map(|(_, text)| text.lines())
        .find_map(|l| {
            l.trim()
                .strip_prefix("package ")
                .map(|p| p.trim_end_matches(';').trim().to_string())
        })
        .context("the WIT files name no package")
}

/// The inputs of one build.
pub struct Build<'a> {
    /// The author's folder (`plugin.toml` and the module).
    pub dir: &'a Path,
    /// The `componentize-py` program.
    pub tool: &'a Path,
    /// The WIT files, as (file name, text).
    pub wit: &'a [(&'a str, &'a str)],
    /// The text of `stevedore_sdk.py`.
    pub sdk: &'a str,
    /// A folder for the generated files (emptied first).
    pub work: &'a Path,
    /// Where the component goes.
    pub out: &'a Path,
}

impl Build<'_> {
    /// The `componentize-py` command, once the generated files are written.
    pub fn command(&self, manifest: &Manifest) -> anyhow::Result<Command> {
        let wit_dir = self.work.join("wit");
        let sdk_dir = self.work.join("sdk");
        if self.work.exists() {
            std::fs::remove_dir_all(self.work)
                .with_context(|| format!("emptying {}", self.work.display()))?;
        }
        std::fs::create_dir_all(&wit_dir)?;
        std::fs::create_dir_all(&sdk_dir)?;
        for (name, text) in self.wit {
            std::fs::write(wit_dir.join(name), text)?;
        }
        std::fs::write(
            wit_dir.join("zz-built-plugin.wit"),
            manifest.world(&package_of(self.wit)?),
        )?;
        std::fs::write(sdk_dir.join("stevedore_sdk.py"), self.sdk)?;
        std::fs::write(
            sdk_dir.join("_stevedore_capabilities.py"),
            manifest.capabilities_module(),
        )?;
        let mut cmd = Command::new(self.tool);
        cmd.arg("--quiet")
            .arg("-d")
            .arg(&wit_dir)
            .args(["-w", "built-plugin", "componentize", &manifest.module])
            .arg("-p")
            .arg(self.dir)
            .arg("-p")
            .arg(&sdk_dir)
            .arg("-o")
            .arg(self.tmp_out())
            // Only the two folders above go into the component, never a
            // virtualenv's packages the shell happens to point at.
            .env_remove("VIRTUAL_ENV");
        Ok(cmd)
    }

    fn tmp_out(&self) -> PathBuf {
        self.out
            .with_extension(format!("wasm.tmp{}", std::process::id()))
    }

    /// Build the component; returns its manifest.
    pub fn run(&self) -> anyhow::Result<Manifest> {
        let manifest = Manifest::read(self.dir)?;
        let module = self.dir.join(format!("{}.py", manifest.module));
        if !module.is_file() {
            bail!("{} is missing (plugin.module)", module.display());
        }
        let mut cmd = self.command(&manifest)?;
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", self.tool.display()))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(self.tmp_out());
            bail!(
                "componentize-py failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::rename(self.tmp_out(), self.out)
            .with_context(|| format!("writing {}", self.out.display()))?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_manifest() {
        let m = Manifest::parse(
            "[plugin]\nname = \"image_prune\"\ncapabilities = [\"task\", \"images\"]\n",
        )
        .unwrap();
        assert_eq!(m.name, "image_prune");
        assert_eq!(m.module, "app");
        assert_eq!(m.capabilities, ["images"]);
        assert!(m
            .world("stevedore:plugin@0.2.0")
            .contains("    import task;\n    import images;\n    export executor;"));
        assert_eq!(
            m.capabilities_module().lines().last(),
            Some("CAPABILITIES = [\"images\"]")
        );
    }

    #[test]
    fn names_the_wrong_key() {
        let err = |text: &str| format!("{:#}", Manifest::parse(text).unwrap_err());
        assert_eq!(err("name = \"x\""), "a [plugin] table is missing");
        assert_eq!(err("[plugin]\n"), "plugin.name: missing");
        assert!(err("[plugin]\nname = \"a b\"").starts_with("plugin.name:"));
        assert!(err("[plugin]\nname = \"a\"\nmodule = \"a.py\"").starts_with("plugin.module:"));
        assert_eq!(
            err("[plugin]\nname = \"a\"\ncapabilities = [\"network\"]"),
            "plugin.capabilities: unknown interface `network` (known: task, images, containers, credentials, networks, volumes, repository, app-store)"
        );
    }

    #[test]
    fn finds_the_package() {
        let wit = [("types.wit", "// x\npackage stevedore:plugin@0.2.0;\n")];
        assert_eq!(package_of(&wit).unwrap(), "stevedore:plugin@0.2.0");
    }
}
