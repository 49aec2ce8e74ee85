//! A plugin author's flow, from a clean folder outside the repository, with
//! nothing but the `stevedore` binary and componentize-py (the one
//! `cargo xtask build-plugins` installs into `target/componentize-py`):
//! `plugin new --lang python` → an edit → the scaffold's own test
//! (`plugin build`, `plugin check`, `plugin test` against its simulator
//! script) → the `.wasm` copied into a server's plugins folder → the
//! category is in the OpenAPI document → a task of it completes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stevedore_e2e::{binary, target_dir, Options, Server};

/// The componentize-py of `cargo xtask build-plugins`.
fn componentize_py() -> PathBuf {
    let tool = target_dir().join("componentize-py/bin/componentize-py");
    assert!(
        tool.is_file(),
        "{} is missing: run `cargo xtask build-plugins`",
        tool.display()
    );
    tool
}

/// `stevedore ARGS` in `dir`, with `PATH` holding only the system's tools,
/// the binary's folder and (when `with_tool`) componentize-py's.
fn stevedore(dir: &Path, args: &[&str], with_tool: bool) -> Output {
    let mut path = vec![binary().parent().unwrap().to_path_buf()];
    if with_tool {
        path.push(componentize_py().parent().unwrap().to_path_buf());
    }
    path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    Command::new(if args.first() == Some(&"sh") {
        "sh"
    } else {
        "stevedore"
    })
    .args(if args.first() == Some(&"sh") {
        &args[1..]
    } else {
        args
    })
    .current_dir(dir)
    .env_clear()
    .env("PATH", std::env::join_paths(path).unwrap())
    .env("HOME", dir)
    .output()
    .expect("running stevedore")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn edit(file: &Path, from: &str, to: &str) {
    let old = std::fs::read_to_string(file).unwrap();
    assert!(old.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, old.replace(from, to)).unwrap();
}

#[tokio::test]
async fn new_edit_build_test_serve() {
    let clean = tempfile::Builder::new()
        .prefix("stevedore-author-")
        .tempdir_in("/tmp")
        .unwrap();
    let home = clean.path();

    let o = stevedore(
        home,
        &["plugin", "new", "my_count", "--lang", "python"],
        false,
    );
    assert!(o.status.success(), "{}", text(&o));
    let dir = home.join("my_count");
    for f in ["plugin.toml", "app.py", "tests/script.json", "test.sh"] {
        assert!(dir.join(f).is_file(), "{f} scaffolded");
    }

    // Without componentize-py the build names the tool and its install command.
    let o = stevedore(&dir, &["plugin", "build"], false);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("pip install componentize-py==0.25.1"),
        "{}",
        text(&o)
    );

    // The author's edit: another summary and result text.
    edit(
        &dir.join("app.py"),
        "images start with",
        "images begin with",
    );
    edit(
        &dir.join("test.sh"),
        "images start with",
        "images begin with",
    );
    edit(
        &dir.join("app.py"),
        "Count the images whose name starts with a prefix\"",
        "Count my images\"",
    );

    // The scaffold's test: build, check, run against the simulator, and a bad param.
    let o = stevedore(&dir, &["sh", "test.sh"], true);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("category:     my_count"), "{out}");
    assert!(out.contains("summary:      Count my images"), "{out}");
    assert!(out.contains("stevedore:plugin/images@"), "{out}");
    assert!(
        out.contains("loads with the default grants") || out.contains("grant it with"),
        "{out}"
    );
    assert!(
        out.contains("result: completed (2 images begin with busybox)"),
        "{out}"
    );
    assert!(out.ends_with("test passed\n"), "{out}");
    let wasm = dir.join("my_count.wasm");
    assert!(wasm.is_file());

    // Into a server's plugins folder: the category is documented and runs.
    // The shared test engine (the category only lists its images), and the
    // grant `plugin check` named: a new category gets `task` alone.
    let mut server = Server::start(
        Options::with_plugins(&["noop"])
            .test_engine()
            .config("[plugins.grants]\nmy_count = [\"task\", \"images\"]\n"),
    )
    .await;
    std::fs::copy(&wasm, server.root.path().join("plugins/my_count.wasm")).unwrap();
    server.stop();
    server.restart().await;
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", server.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].to_string();
    assert!(paths.contains("my_count"), "no my_count operation");
    assert!(paths.contains("Count my images"), "no summary");
    let admin = server.admin().await;
    let a = admin.submit("my_count", r#"{"prefix": 5}"#).await;
    stevedore_e2e::assert_names(&a, "prefix");
    let id = admin
        .submit_ok("my_count", r#"{"prefix": "no-such-image"}"#)
        .await;
    let t = admin
        .wait_until(id, Duration::from_secs(60), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("task did not end: {last:?}"));
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(
        t["detail_state"], "0 images begin with no-such-image",
        "{t}"
    );
}
