//! The files `stevedore plugin new|build` write out, so that an author needs
//! no checkout of this repository: the WIT contract, the Python SDK, and
//! the Rust SDK with the crate it depends on.

/// The WIT files of the current `stevedore:plugin` package, as (file name, text).
pub const WIT: &[(&str, &str)] = &[
    (
        "app-store.wit",
        include_str!("../../../../wit/app-store.wit"),
    ),
    (
        "containers.wit",
        include_str!("../../../../wit/containers.wit"),
    ),
    (
        "credentials.wit",
        include_str!("../../../../wit/credentials.wit"),
    ),
    ("images.wit", include_str!("../../../../wit/images.wit")),
    ("networks.wit", include_str!("../../../../wit/networks.wit")),
    (
        "repository.wit",
        include_str!("../../../../wit/repository.wit"),
    ),
    ("task.wit", include_str!("../../../../wit/task.wit")),
    ("types.wit", include_str!("../../../../wit/types.wit")),
    ("volumes.wit", include_str!("../../../../wit/volumes.wit")),
    ("world.wit", include_str!("../../../../wit/world.wit")),
];

/// The Python SDK (`plugins/sdk-python/stevedore_sdk.py`).
pub const PYTHON_SDK: &str = include_str!("../../../../plugins/sdk-python/stevedore_sdk.py");

/// The Rust SDK (`plugins/sdk`) and its path dependency (`contract`), as
/// (path in a scaffolded project, text). The SDK's bindings read the WIT
/// from `../../wit`, so a project holds them under `stevedore/` with [`WIT`]
/// in its `wit/` folder.
pub const RUST_SDK: &[(&str, &str)] = &[
    (
        "stevedore/sdk/Cargo.toml",
        include_str!("../../../../plugins/sdk/Cargo.toml"),
    ),
    (
        "stevedore/sdk/src/check.rs",
        include_str!("../../../../plugins/sdk/src/check.rs"),
    ),
    (
        "stevedore/sdk/src/health.rs",
        include_str!("../../../../plugins/sdk/src/health.rs"),
    ),
    (
        "stevedore/sdk/src/lib.rs",
        include_str!("../../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "stevedore/sdk/src/schema.rs",
        include_str!("../../../../plugins/sdk/src/schema.rs"),
    ),
    (
        "stevedore/contract/Cargo.toml",
        include_str!("../../../../contract/Cargo.toml"),
    ),
    (
        "stevedore/contract/src/capabilities.rs",
        include_str!("../../../../contract/src/capabilities.rs"),
    ),
    (
        "stevedore/contract/src/create.rs",
        include_str!("../../../../contract/src/create.rs"),
    ),
    (
        "stevedore/contract/src/files.rs",
        include_str!("../../../../contract/src/files.rs"),
    ),
    (
        "stevedore/contract/src/labels.rs",
        include_str!("../../../../contract/src/labels.rs"),
    ),
    (
        "stevedore/contract/src/lib.rs",
        include_str!("../../../../contract/src/lib.rs"),
    ),
    (
        "stevedore/contract/src/object.rs",
        include_str!("../../../../contract/src/object.rs"),
    ),
];

/// The lock file of the plugins workspace (`plugins/Cargo.lock`): a Rust
/// project's lock file is the part of it the project reaches, so authors
/// build with the versions our own plugins are built and tested with.
pub const PLUGINS_LOCK: &str = include_str!("../../../../plugins/Cargo.lock");

/// The `[workspace.dependencies]` of the plugins workspace
/// (`plugins/Cargo.toml`), whose entries a Rust project repeats for the SDK.
pub const PLUGINS_MANIFEST: &str = include_str!("../../../../plugins/Cargo.toml");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every WIT file of `wit/` is embedded, and nothing else.
    #[test]
    fn every_wit_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".wit"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = WIT.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded, "update WIT in {}", file!());
    }

    fn files_of(dir: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every source file of the Rust SDK and of the contract crate is embedded.
    #[test]
    fn every_rust_sdk_file_is_embedded() {
        for (dir, prefix) in [
            ("../plugins/sdk/src", "stevedore/sdk/src/"),
            ("../contract/src", "stevedore/contract/src/"),
        ] {
            let embedded: Vec<&str> = RUST_SDK
                .iter()
                .filter_map(|(p, _)| p.strip_prefix(prefix))
                .collect();
            assert_eq!(files_of(dir), embedded, "update RUST_SDK in {}", file!());
        }
    }
}
