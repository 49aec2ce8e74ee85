//! The files of `stevedore plugin new NAME --lang rust`: a standalone cargo
//! project (no path into this repository) holding the category, the SDK and
//! its contract crate as local crates under `stevedore/`, the WIT under
//! `wit/`, a `Cargo.lock` pinned to the plugins workspace's versions, a
//! simulator script and a test.

use super::{embedded, rust_lock, scaffold::SCRIPT};

/// A Rust category: counts the images whose tags start with a prefix.
const APP: &str = r#"//! `{{NAME}}`: count the images whose name starts with a prefix.
//!
//! Edit `Params`, `validate` and `run`; `stevedore plugin build` makes
//! `{{NAME}}.wasm`, and `sh test.sh` runs it against `tests/script.json`.

use serde::Deserialize;
use stevedore_sdk::{images, task, Category, Error, RuntimeKind};

/// The task's params. Their JSON Schema, with these comments as
/// descriptions, is what the server's OpenAPI document and dashboard show.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The start of the image names to count.
    pub prefix: String,
    /// The runtime whose images are counted: `docker` (default) or `lxc`.
    #[serde(rename = "type", default = "docker")]
    pub kind: String,
}

fn docker() -> String {
    "docker".into()
}

/// The category.
pub struct Count;

impl Category for Count {
    const NAME: &'static str = "{{NAME}}";
    const SUMMARY: &'static str = "Count the images whose name starts with a prefix";
    /// Interfaces used besides `task`: the component may call only these.
    const CAPABILITIES: &'static [&'static str] = &["images"];
    type Params = Params;

    /// Checks beyond the types; runs at submit time, never touches the runtime.
    fn validate(p: &Params) -> Result<(), Error> {
        if p.prefix.is_empty() {
            return Err(Error::invalid("prefix", "must not be empty"));
        }
        if p.prefix.starts_with('/') {
            return Err(Error::invalid("prefix", "must not start with /"));
        }
        runtime(&p.kind).map(drop)
    }

    fn run(p: Params) -> Result<Option<String>, Error> {
        let found: Vec<images::ImageInfo> = images::list(runtime(&p.kind)?)?
            .into_iter()
            .filter(|i| i.tags.iter().any(|t| t.starts_with(&p.prefix)))
            .collect();
        for i in &found {
            task::info(&format!("{}: {}", i.id, i.tags.join(", ")));
        }
        task::progress(100, "counted");
        Ok(Some(format!(
            "{} images start with {}",
            found.len(),
            p.prefix
        )))
    }
}

fn runtime(kind: &str) -> Result<RuntimeKind, Error> {
    match kind {
        "docker" => Ok(RuntimeKind::Docker),
        "lxc" => Ok(RuntimeKind::Lxc),
        _ => Err(Error::invalid("type", "must be \"docker\" or \"lxc\"")),
    }
}

stevedore_sdk::category!(Count);
"#;

/// The project's build file; `[workspace.dependencies]` after the marker
/// line repeats the plugins workspace's entries the SDK inherits.
const MANIFEST: &str = r#"# Built by `stevedore plugin build` (cargo build --release --target wasm32-wasip2).
[package]
name = "{{NAME}}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

# The category name: `POST background/{{NAME}}`, and the component's file name.
[package.metadata.stevedore]
name = "{{NAME}}"

[dependencies]
stevedore-sdk.workspace = true
serde.workspace = true
schemars.workspace = true

# The SDK and the crate it depends on, as written by `stevedore plugin new`.
[workspace]
members = [".", "stevedore/sdk", "stevedore/contract"]

[workspace.dependencies]
stevedore-sdk = { path = "stevedore/sdk" }
stevedore-contract = { path = "stevedore/contract" }
{{DEPENDENCIES}}
[workspace.lints.rust]
unsafe_op_in_unsafe_fn = "deny"
unused_must_use = "deny"

[workspace.lints.clippy]
dbg_macro = "deny"
todo = "deny"

# Small components: the host loads every plugin at start.
[profile.release]
opt-level = "s"
lto = true
panic = "abort"
codegen-units = 1
strip = true
debug = false
"#;

/// The crates.io dependencies the SDK and its contract crate inherit.
const SDK_DEPENDENCIES: &[&str] = &[
    "wit-bindgen",
    "serde",
    "serde_json",
    "schemars",
    "serde_path_to_error",
];

/// The project's own dependencies (its lock file's root entry).
const OWN_DEPENDENCIES: &[&str] = &["schemars", "serde", "stevedore-sdk"];

const TEST: &str = r#"#!/bin/sh
# Build the category, then run it against the simulated runtime of
# tests/script.json and check its result. Needs `stevedore`, cargo and the
# wasm32-wasip2 target (`rustup target add wasm32-wasip2`).
set -eu
cd "$(dirname "$0")"
stevedore plugin build .
stevedore plugin check {{NAME}}.wasm
out=$(stevedore plugin test {{NAME}}.wasm --params '{"prefix": "busybox"}' --script tests/script.json)
echo "$out"
echo "$out" | grep -qx 'result: completed (2 images start with busybox)'
# Bad params are refused, naming the field.
if stevedore plugin test {{NAME}}.wasm --params '{"prefix": 1}' 2>err.txt; then
    echo "a bad prefix was accepted" >&2; exit 1
fi
grep -q 'prefix: invalid type: integer' err.txt && rm err.txt
echo "test passed"
"#;

const GITIGNORE: &str = "/target/\n/*.wasm\n";

const README: &str = r#"# {{NAME}}

A Stevedore task category in Rust: `src/lib.rs`, with the SDK in
`stevedore/sdk` (its documentation: `cargo doc -p stevedore-sdk --open`) and
the plugin interface in `wit/`.

    rustup target add wasm32-wasip2         # once
    stevedore plugin build .                # -> {{NAME}}.wasm
    stevedore plugin test {{NAME}}.wasm --params '{"prefix": "busybox"}' --script tests/script.json
    sh test.sh                              # build, check and test

`Cargo.lock` pins the versions Stevedore's own plugins are built with.
Copy `{{NAME}}.wasm` into the server's plugins folder and restart it:
`POST /api/v1/background/{{NAME}}` then runs it.
"#;

/// The `[workspace.dependencies]` lines of the plugins workspace for `names`.
fn dependency_lines(names: &[&str]) -> anyhow::Result<String> {
    let doc: toml::Table = toml::from_str(embedded::PLUGINS_MANIFEST)?;
    let deps = doc
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.as_table())
        .ok_or_else(|| anyhow::anyhow!("plugins/Cargo.toml has no [workspace.dependencies]"))?;
    let mut lines = String::new();
    for name in names {
        let value = deps
            .get(*name)
            .ok_or_else(|| anyhow::anyhow!("plugins/Cargo.toml does not name `{name}`"))?;
        lines.push_str(&format!("{name} = {value}\n"));
    }
    Ok(lines)
}

/// The files of a Rust category `name`, as (path, text).
pub fn files(name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let named = |t: &str| t.replace("{{NAME}}", name);
    let mut files = vec![
        (
            "Cargo.toml".to_string(),
            named(MANIFEST).replace("{{DEPENDENCIES}}", &dependency_lines(SDK_DEPENDENCIES)?),
        ),
        (
            "Cargo.lock".to_string(),
            rust_lock::project_lock(embedded::PLUGINS_LOCK, name, OWN_DEPENDENCIES)?,
        ),
        ("src/lib.rs".to_string(), named(APP)),
        ("tests/script.json".to_string(), SCRIPT.to_string()),
        ("test.sh".to_string(), named(TEST)),
        (".gitignore".to_string(), GITIGNORE.to_string()),
        ("README.md".to_string(), named(README)),
    ];
    for (file, text) in embedded::WIT {
        files.push((format!("wit/{file}"), text.to_string()));
    }
    for (path, text) in embedded::RUST_SDK {
        files.push((path.to_string(), text.to_string()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::author::rust::Manifest;

    #[test]
    fn the_project_names_the_category_and_pins_the_sdk_dependencies() {
        let files = files("image_count").unwrap();
        let get = |p: &str| &files.iter().find(|(f, _)| f == p).unwrap().1;
        let m = Manifest::parse(get("Cargo.toml")).unwrap();
        assert_eq!(m.name, "image_count");
        assert_eq!(m.package, "image_count");
        let doc: toml::Table = toml::from_str(get("Cargo.toml")).unwrap();
        assert_eq!(
            doc["workspace"]["dependencies"]["wit-bindgen"]["version"].as_str(),
            Some("=0.46.0")
        );
        assert!(get("src/lib.rs").contains("NAME: &'static str = \"image_count\""));
        assert!(get("Cargo.lock").contains("name = \"image_count\""));
        assert!(get("wit/world.wit").contains("world category"));
        assert!(get("stevedore/sdk/src/lib.rs").contains("path: \"../../wit\""));
    }
}
