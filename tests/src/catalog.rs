//! Template repositories for tests that change them: a copy of the
//! fixture catalog, images pushed to the test registry, and edits of the
//! `notes` template (its version in `list.json`, a service's image).

use std::path::Path;

use serde_json::Value;

use crate::{copy_dir, docker, env, workspace_root};

/// A fresh copy of `tests/fixtures/catalog`, removed when dropped.
pub fn fixture_copy() -> tempfile::TempDir {
    let catalog = tempfile::tempdir().unwrap();
    copy_dir(
        &workspace_root().join("tests/fixtures/catalog"),
        catalog.path(),
    );
    catalog
}

/// Push busybox as `<registry>/stevedore/<repo>:<tag>` and drop the local tag,
/// so that installing or upgrading really pulls it.
pub fn push_busybox(repo: &str, tag: &str) -> String {
    let reference = format!("{}/stevedore/{repo}:{tag}", env("STEVEDORE_TEST_REGISTRY"));
    docker(&["pull", "busybox:latest"]);
    docker(&["tag", "busybox:latest", &reference]);
    docker(&["push", &reference]);
    docker(&["rmi", &reference]);
    reference
}

/// Give the `web` service of template `notes` the image `web_image`, at
/// version `version`.
pub fn set_notes(catalog: &Path, version: &str, web_image: &str) {
    set_image(catalog, version, "web", web_image)
}

/// Give `service` of template `notes` the image `image`, at version `version`.
pub fn set_image(catalog: &Path, version: &str, service: &str, image: &str) {
    let compose = catalog.join("template/notes/docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    let mut out = String::new();
    let mut in_service = false;
    for line in text.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            in_service = line.trim() == format!("{service}:");
        }
        if in_service && line.trim_start().starts_with("image:") {
            out.push_str(&format!("    image: {image}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(&compose, out).unwrap();
    let list = catalog.join("list.json");
    let text = std::fs::read_to_string(&list).unwrap();
    let mut entries: Value = serde_json::from_str(&text).unwrap();
    for e in entries.as_array_mut().unwrap() {
        if e["name"] == "notes" {
            e["version"] = version.into();
        }
    }
    std::fs::write(&list, entries.to_string()).unwrap();
}
