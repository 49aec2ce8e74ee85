//! `stevedore plugin check` and `stevedore plugin test`, as a plugin author runs them.

use std::path::PathBuf;
use std::process::Command;

fn component(dir: &str, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins`",
        path.display()
    );
    path
}

fn stevedore(args: &[&str]) -> (bool, String, String) {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_category_deletable_flag_and_imports() {
    let file = component("plugins", "image_remove");
    let (ok, out, err) = stevedore(&["plugin", "check", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("fits stevedore:plugin/category@0.3.0"),
        "{out}"
    );
    assert!(out.contains("category:     image_remove"), "{out}");
    assert!(out.contains("deletable:    false"), "{out}");
    assert!(out.contains("stevedore:plugin/images@0.3.0"), "{out}");
    assert!(out.contains("params schema:"), "{out}");
    assert!(
        out.contains("\"items\""),
        "image_remove takes an array: {out}"
    );
    assert!(out.contains("loads with the default grants"), "{out}");
}

#[test]
fn check_says_which_grant_is_missing() {
    let file = component("test-plugins", "ungranted");
    let (ok, out, _) = stevedore(&["plugin", "check", file.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("needs more than the default grants"), "{out}");
    assert_eq!(
        out.matches(r#"[plugins.grants] ungranted = ["task", "containers"]"#)
            .count(),
        1,
        "the config line, said once: {out}"
    );
    assert!(
        out.contains(
            "imports `stevedore:plugin/containers@0.3.0`, which the defaults do not grant"
        ),
        "{out}"
    );
}

#[test]
fn check_refuses_an_import_the_plugin_does_not_declare() {
    let file = component("test-plugins", "undeclared");
    let (ok, _, err) = stevedore(&["plugin", "check", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("imports `stevedore:plugin/images@0.3.0` but does not declare `images`"),
        "{err}"
    );
}

#[test]
fn check_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let (ok, _, err) = stevedore(&["plugin", "check", junk.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("junk.wasm") && err.contains("not a loadable component"),
        "{err}"
    );
}

#[test]
fn test_runs_validate_and_run_against_the_simulator() {
    let file = component("plugins", "image_remove");
    let (ok, out, err) = stevedore(&[
        "plugin",
        "test",
        file.to_str().unwrap(),
        "--params",
        r#"[{"type":"docker","image":"busybox"}]"#,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("validate: ok"), "{out}");
    assert!(
        out.contains(
            r#"call images.remove {"force":false,"reference":"busybox:latest","runtime":"Docker"}"#
        ),
        "{out}"
    );
    assert!(
        out.contains("result: completed (removed busybox:latest)"),
        "{out}"
    );
}

#[test]
fn test_uses_the_script_and_fails_with_the_plugin_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(&script, r#"{"images.remove": {"err": {"Runtime": "conflict: image is being used by container abc"}}}"#).unwrap();
    let file = component("plugins", "image_remove");
    let (ok, out, err) = stevedore(&[
        "plugin",
        "test",
        file.to_str().unwrap(),
        "--params",
        r#"[{"image":"busybox"}]"#,
        "--script",
        script.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(out.contains("call images.remove"), "{out}");
    assert!(
        err.contains("result: error: runtime: conflict: image is being used by container abc"),
        "{err}"
    );
}

#[test]
fn test_reports_invalid_params_naming_the_field() {
    let file = component("plugins", "image_remove");
    let (ok, out, err) = stevedore(&[
        "plugin",
        "test",
        file.to_str().unwrap(),
        "--params",
        r#"[{"type":"rkt","image":"x"}]"#,
    ]);
    assert!(!ok);
    assert!(!out.contains("call "), "run must not start: {out}");
    assert!(
        err.contains(r#"validate: invalid-params: [0].type: must be "docker" or "lxc""#),
        "{err}"
    );
}

#[test]
fn check_accepts_a_component_of_wit_0_1_0() {
    let file = component("test-plugins", "v0_1_0");
    let (ok, out, err) = stevedore(&["plugin", "check", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("fits stevedore:plugin/category@0.1.0"),
        "{out}"
    );
    assert!(out.contains("an older world"), "{out}");
    assert!(out.contains("stevedore:plugin/task@0.1.0"), "{out}");
    assert!(out.contains("params schema: none"), "{out}");
}

#[test]
fn test_runs_a_component_of_wit_0_1_0() {
    let file = component("test-plugins", "v0_1_0");
    let (ok, out, err) = stevedore(&[
        "plugin",
        "test",
        file.to_str().unwrap(),
        "--params",
        r#"{"steps": 2}"#,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("progress   50%  step 1 of 2"), "{out}");
    assert!(
        out.contains("result: completed (ran 2 steps on 0.1.0)"),
        "{out}"
    );
}
