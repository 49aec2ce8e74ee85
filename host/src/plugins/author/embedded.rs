//! The files `stevedore plugin new|build` write out, so that an author needs
//! no checkout of this repository: the WIT contract and the Python SDK.

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
}
