//! `stevedore plugin new NAME [--lang rust|python]`: a category in a new
//! folder, ready to build and test: its source, its build file, a simulator
//! script and a test that builds the component and runs it against the
//! script. The Rust project's files are in `rust_scaffold`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// The languages a category can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, built with cargo for `wasm32-wasip2` (the default).
    Rust,
    /// Python, built with componentize-py.
    Python,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "rust" | "rs" => Ok(Lang::Rust),
            "python" | "py" => Ok(Lang::Python),
            other => Err(format!("unknown language `{other}` (known: rust, python)")),
        }
    }
}

/// A Python category: counts the images whose tags start with a prefix.
const PY_APP: &str = r#""""`{{NAME}}`: count the images whose name starts with a prefix.

Edit `PARAMS_SCHEMA`, `validate` and `run`; `stevedore plugin build` makes
`{{NAME}}.wasm`, and `sh test.sh` runs it against `tests/script.json`.
"""

import stevedore_sdk as sdk
from wit_world.imports import images


class Category(sdk.Category):
    NAME = "{{NAME}}"
    SUMMARY = "Count the images whose name starts with a prefix"
    PARAMS_SCHEMA = {
        "type": "object",
        "properties": {
            "prefix": {
                "description": "The start of the image names to count.",
                "type": "string",
                "minLength": 1,
            },
            "type": {
                "description": "The runtime whose images are counted.",
                "enum": ["docker", "lxc"],
                "default": "docker",
            },
        },
        "required": ["prefix"],
        "additionalProperties": False,
    }

    def validate(self, params):
        # Checks beyond the schema; runs at submit time, never touches the runtime.
        if params["prefix"].startswith("/"):
            raise sdk.InvalidParams("prefix", "must not start with /")

    def run(self, params):
        kind = sdk.RuntimeKind.LXC if params["type"] == "lxc" else sdk.RuntimeKind.DOCKER
        found = [
            i for i in sdk.call(images.list, kind)
            if any(t.startswith(params["prefix"]) for t in i.tags)
        ]
        for i in found:
            sdk.info(f"{i.id}: {', '.join(i.tags)}")
        sdk.progress(100, "counted")
        return f"{len(found)} images start with {params['prefix']}"


Executor = sdk.executor(Category)
"#;

const PY_MANIFEST: &str = r#"# Built by `stevedore plugin build` with componentize-py.
[plugin]
# The category name: `POST background/{{NAME}}`, and the component's file name.
name = "{{NAME}}"
# The Python module holding the category (app.py), beside this file.
module = "app"
# Interfaces used besides `task` (images, containers, credentials, networks,
# volumes, repository, app-store): the component imports exactly these.
capabilities = ["images"]
"#;

/// What the simulated runtime answers while the test runs.
pub(super) const SCRIPT: &str = r#"{
  "images.list": {"ok": [
    {"id": "sha256:1111", "tags": ["busybox:latest"], "size": 1000, "created": 0},
    {"id": "sha256:2222", "tags": ["busybox:1.36", "mirror/busybox:1.36"], "size": 1000, "created": 0},
    {"id": "sha256:3333", "tags": ["alpine:3"], "size": 1000, "created": 0}
  ]}
}
"#;

const PY_TEST: &str = r#"#!/bin/sh
# Build the category, then run it against the simulated runtime of
# tests/script.json and check its result. Needs `stevedore` and
# componentize-py on PATH.
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
grep -q 'prefix: must be a string' err.txt && rm err.txt
echo "test passed"
"#;

const PY_GITIGNORE: &str = "/.build/\n/*.wasm\n__pycache__/\n";

const PY_README: &str = r#"# {{NAME}}

A Stevedore task category in Python.

    pip install componentize-py==0.25.1     # once
    stevedore plugin build .                # -> {{NAME}}.wasm
    stevedore plugin test {{NAME}}.wasm --params '{"prefix": "busybox"}' --script tests/script.json
    sh test.sh                              # build, check and test

Copy `{{NAME}}.wasm` into the server's plugins folder and restart it:
`POST /api/v1/background/{{NAME}}` then runs it.
"#;

/// Refuse names the host would not take as a category and file name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("NAME: must be lower-case letters, digits and `_`, starting with a letter (at most 64), e.g. `image_count`");
    }
    Ok(())
}

/// Scaffold category `name` in `<parent>/<name>`; returns the folder.
pub fn new(parent: &Path, name: &str, lang: Lang) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let files: Vec<(String, String)> = match lang {
        Lang::Rust => super::rust_scaffold::files(name)?,
        Lang::Python => [
            ("plugin.toml", PY_MANIFEST),
            ("app.py", PY_APP),
            ("tests/script.json", SCRIPT),
            ("test.sh", PY_TEST),
            (".gitignore", PY_GITIGNORE),
            ("README.md", PY_README),
        ]
        .iter()
        .map(|(p, t)| (p.to_string(), t.replace("{{NAME}}", name)))
        .collect(),
    };
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {}; build and test it with `sh {}/test.sh`",
        dir.display(),
        dir.display()
    );
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::author::python::Manifest;

    #[test]
    fn scaffolds_a_python_category() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = new(tmp.path(), "image_count", Lang::Python).unwrap();
        let m = Manifest::read(&dir).unwrap();
        assert_eq!(m.name, "image_count");
        assert_eq!(m.capabilities, ["images"]);
        assert!(std::fs::read_to_string(dir.join("app.py"))
            .unwrap()
            .contains("NAME = \"image_count\""));
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(dir.join("tests/script.json")).unwrap(),
        )
        .unwrap();
        let again = new(tmp.path(), "image_count", Lang::Python).unwrap_err();
        assert!(again.to_string().ends_with("exists already"));
    }

    #[test]
    fn scaffolds_a_rust_category() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = new(tmp.path(), "image_count", Lang::Rust).unwrap();
        let m = crate::plugins::author::rust::Manifest::read(&dir).unwrap();
        assert_eq!(m.name, "image_count");
        for f in [
            "Cargo.lock",
            "src/lib.rs",
            "tests/script.json",
            "test.sh",
            "wit/task.wit",
            "stevedore/sdk/Cargo.toml",
            "stevedore/contract/src/lib.rs",
        ] {
            assert!(dir.join(f).is_file(), "{f}");
        }
    }

    #[test]
    fn refuses_a_bad_name() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "Image", "a/b", "1x", "a-b"] {
            assert!(new(tmp.path(), bad, Lang::Python).is_err(), "{bad}");
        }
        assert_eq!(
            "go".parse::<Lang>().unwrap_err(),
            "unknown language `go` (known: rust, python)"
        );
    }
}
