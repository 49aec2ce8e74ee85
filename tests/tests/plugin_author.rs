//! A plugin author's flow, from a clean folder outside the repository, with
//! nothing but the `stevedore` binary and the language's tools: for Python
//! componentize-py (the one `cargo xtask build-plugins` installs into
//! `target/componentize-py`), for Rust the toolchain running these tests
//! with its `wasm32-wasip2` target (which `cargo xtask build-plugins` adds).
//! `plugin new` → an edit → the scaffold's own test (`plugin build`,
//! `plugin check`, `plugin test` against its simulator script) → the
//! `.wasm` copied into a server's plugins folder → the category is in the
//! OpenAPI document and in the dashboard's task form (a real browser,
//! `tests/browser/plugin_category.py`) → a task of it completes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use stevedore_e2e::{
    binary, report, run_python, target_dir, workspace_root, Options, Server, ADMIN_PASSWORD,
};

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
    let tools = if with_tool {
        vec![componentize_py().parent().unwrap().to_path_buf()]
    } else {
        vec![]
    };
    run_in(dir, args, &tools, &[])
}

/// `stevedore ARGS` (or `sh ARGS`) in `dir`, with `PATH` holding the
/// binary's folder, `tools`, and the system's folders, and an environment
/// of `env` alone besides `PATH` and `HOME` (= `dir`).
fn run_in(dir: &Path, args: &[&str], tools: &[PathBuf], env: &[(&str, OsString)]) -> Output {
    let mut path = vec![binary().parent().unwrap().to_path_buf()];
    path.extend(tools.iter().cloned());
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
    .envs(env.iter().map(|(k, v)| (k, v)))
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

/// The two flows run one after the other: a cold Rust build beside the
/// Python component's compile at server start starved that server past its
/// start deadline on a loaded two-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn edit(file: &Path, from: &str, to: &str) {
    let old = std::fs::read_to_string(file).unwrap();
    assert!(old.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, old.replace(from, to)).unwrap();
}

#[tokio::test]
async fn new_edit_build_test_serve() {
    let _alone = ONE_AT_A_TIME.lock().await;
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

    serve(&wasm, "my_count", "Count my images").await;
}

/// `wasm` (category `name`, summary `summary`) copied into a server's
/// plugins folder: the category is documented, is in the dashboard's task
/// form (from which a task of it completes), refuses bad params naming the
/// field, and runs. It counts the images of the shared test engine whose
/// name starts with a prefix none has.
async fn serve(wasm: &Path, name: &str, summary: &str) {
    // The grant `plugin check` named: a new category gets `task` alone.
    let mut server = Server::start(Options::with_plugins(&["noop"]).test_engine().config(
        &format!("[plugins.grants]\n{name} = [\"task\", \"images\"]\n"),
    ))
    .await;
    std::fs::copy(
        wasm,
        server.root.path().join(format!("plugins/{name}.wasm")),
    )
    .unwrap();
    server.stop();
    server.restart().await;
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", server.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].to_string();
    assert!(paths.contains(name), "no {name} operation");
    assert!(paths.contains(summary), "no summary");

    let script = workspace_root().join("tests/browser/plugin_category.py");
    let (ok, out) = run_python(
        &[script.to_str().unwrap()],
        &[
            ("STEVEDORE_URL", &server.base()),
            ("STEVEDORE_USER", "admin"),
            ("STEVEDORE_PASSWORD", ADMIN_PASSWORD),
            ("CATEGORY", name),
            ("SUMMARY", summary),
            ("PREFIX", "no-such-image-from-the-form"),
        ],
        Duration::from_secs(180),
    )
    .await;
    assert!(
        ok,
        "the browser check failed:\n{out}\nserver log:\n{}",
        server.logs()
    );

    let admin = server.admin().await;
    let a = admin.submit(name, r#"{"prefix": 5}"#).await;
    stevedore_e2e::assert_names(&a, "prefix");
    let id = admin
        .submit_ok(name, r#"{"prefix": "no-such-image"}"#)
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

/// The sysroot of the Rust toolchain running these tests: its `bin/` has
/// the `cargo` and `rustc` an author would use.
fn rust_sysroot() -> PathBuf {
    let o = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc");
    assert!(o.status.success(), "{}", text(&o));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn rust_new_edit_build_test_serve() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let clean = tempfile::Builder::new()
        .prefix("stevedore-author-rs-")
        .tempdir_in("/tmp")
        .unwrap();
    let home = clean.path();

    // Rust is the default language.
    let o = run_in(home, &["plugin", "new", "my_rcount"], &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = home.join("my_rcount");
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "tests/script.json",
        "test.sh",
        "wit/world.wit",
        "stevedore/sdk/src/lib.rs",
        "stevedore/contract/src/lib.rs",
    ] {
        assert!(dir.join(f).is_file(), "{f} scaffolded");
    }
    // A standalone project: nothing in it points into this repository.
    let repo = workspace_root().display().to_string();
    for f in files_under(&dir) {
        let t = std::fs::read_to_string(&f).unwrap();
        assert!(!t.contains(&repo), "{} names {repo}", f.display());
    }

    // A toolchain without the target: the build names the install command.
    let bare = home.join("bare-toolchain");
    std::fs::create_dir_all(bare.join("bin")).unwrap();
    std::fs::write(
        bare.join("bin/rustc"),
        format!("#!/bin/sh\necho {}\n", bare.display()),
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x"])
        .arg(bare.join("bin/rustc"))
        .status()
        .unwrap();
    let o = run_in(&dir, &["plugin", "build"], &[bare.join("bin")], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`rustup target add wasm32-wasip2`"),
        "{}",
        text(&o)
    );

    // The author's edit: another summary and result text.
    let lib = dir.join("src/lib.rs");
    edit(&lib, "images start with", "images begin with");
    edit(
        &dir.join("test.sh"),
        "images start with",
        "images begin with",
    );
    edit(
        &lib,
        "Count the images whose name starts with a prefix\"",
        "Count my images in Rust\"",
    );

    // The scaffold's test with the toolchain running this one. The crates
    // come from (and stay in) its CARGO_HOME; the build goes to a target
    // folder of ours, so a second run is warm.
    let sysroot = rust_sysroot();
    let cargo_home = std::env::var_os("CARGO_HOME").unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").unwrap())
            .join(".cargo")
            .into()
    });
    let built = target_dir().join("plugin-author-rust");
    let cold = !built.join("wasm32-wasip2/release/my_rcount.wasm").exists();
    let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
    let started = Instant::now();
    let o = run_in(
        &dir,
        &["sh", "test.sh"],
        &[sysroot.join("bin")],
        &[
            ("CARGO_HOME", cargo_home),
            ("CARGO_TARGET_DIR", built.into()),
        ],
    );
    let took = started.elapsed();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    report!(
        "plugin_author: the Rust scaffold's test.sh (build, check, test) took {took:.1?} \
         ({} target folder)",
        if cold { "cold" } else { "warm" }
    );
    assert!(out.contains("category:     my_rcount"), "{out}");
    assert!(
        out.contains("summary:      Count my images in Rust"),
        "{out}"
    );
    assert!(out.contains("stevedore:plugin/images@"), "{out}");
    assert!(
        out.contains("result: completed (2 images begin with busybox)"),
        "{out}"
    );
    // Cargo's progress goes to stderr; the script's last word to stdout.
    assert!(
        String::from_utf8_lossy(&o.stdout).ends_with("test passed\n"),
        "{out}"
    );
    // The versions are pinned: the build changed nothing in the lock file.
    assert_eq!(
        std::fs::read_to_string(dir.join("Cargo.lock")).unwrap(),
        lock,
        "the build rewrote Cargo.lock"
    );
    let wasm = dir.join("my_rcount.wasm");
    assert!(wasm.is_file());

    serve(&wasm, "my_rcount", "Count my images in Rust").await;
}
