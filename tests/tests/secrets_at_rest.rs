//! Secrets at rest (issue 10): after an `image_push` with `rememberme`, the
//! registry password is nowhere in clear: not in any file of the data folder
//! (task store, its WAL, sessions, remembered credentials, share), and not in
//! the server's log, in any of the encodings it travels in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::json;
use stevedore_e2e::{docker, unique, Options, Server};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// The password as it might appear: itself, JSON-escaped, and base64 of it
/// and of `user:password` (Basic auth) in both alphabets.
fn needles(user: &str, password: &str) -> Vec<(String, Vec<u8>)> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut out = vec![
        ("clear".to_string(), password.as_bytes().to_vec()),
        (
            "JSON-escaped".to_string(),
            serde_json::to_string(password).unwrap().into_bytes(),
        ),
    ];
    for (what, plain) in [
        ("password", password.to_string()),
        ("user:password", format!("{user}:{password}")),
    ] {
        for (alphabet, engine) in [("standard", &STANDARD), ("url-safe", &URL_SAFE_NO_PAD)] {
            let encoded = engine.encode(plain.as_bytes());
            let encoded = encoded.trim_end_matches('=');
            out.push((
                format!("base64 ({alphabet}) of {what}"),
                encoded.as_bytes().to_vec(),
            ));
        }
    }
    out
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_remembered_registry_password_is_nowhere_in_clear() {
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let user = env("STEVEDORE_TEST_AUTH_USER");
    let password = env("STEVEDORE_TEST_AUTH_PASSWORD");
    let mut server = Server::start(
        Options::with_plugins(&["image_push"])
            .test_engine()
            // Every level of the server's own log, and the HTTP client's.
            .env("RUST_LOG", "trace,wasmtime=info,cranelift=info,hyper=debug")
            .config(&format!("[registries.secure]\nurl = \"{registry}\"\n")),
    )
    .await;
    docker(&["pull", "busybox:latest"]);
    let c = server.admin().await;
    let repo = format!("stevedore/{}", unique("sealed"));
    let body = json!({"image": "busybox", "tag": "latest", "newImage": repo, "newTag": "v1",
        "registry": registry, "username": user, "password": password, "rememberme": true});
    let id = c.submit_ok("image_push", &body.to_string()).await;
    let t = c
        .wait_until(id, Duration::from_secs(60), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .expect("the push ends");
    assert_eq!(t["state"], "completed", "{t}");
    // The remembered password works (so it is stored somewhere)...
    let again = json!({"image": "busybox", "tag": "latest", "newImage": repo, "newTag": "v2",
        "registry": registry});
    let id = c.submit_ok("image_push", &again.to_string()).await;
    let t = c
        .wait_until(id, Duration::from_secs(60), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .expect("the second push ends");
    assert_eq!(t["state"], "completed", "remembered: {t}");
    // ...and the files are at rest: a clean stop flushes what it flushes.
    server.stop();

    let needles = needles(&user, &password);
    let mut checked = 0;
    let mut bytes_read = 0;
    for path in files(&server.data_dir()) {
        let bytes = std::fs::read(&path).unwrap();
        bytes_read += bytes.len();
        checked += 1;
        for (what, needle) in &needles {
            assert!(
                !contains(&bytes, needle),
                "the password ({what}) is in {}",
                path.display()
            );
        }
    }
    assert!(
        files(&server.data_dir())
            .iter()
            .any(|p| p.ends_with("credentials.sealed")),
        "the credentials are kept sealed"
    );
    let log = server.logs();
    assert!(log.contains("task started"), "the log is the server's");
    for (what, needle) in &needles {
        assert!(
            !contains(log.as_bytes(), needle),
            "the password ({what}) is in the log"
        );
    }
    println!(
        "secrets at rest: {checked} files of the data folder ({bytes_read} bytes) and a {} byte \
         log searched for {} encodings of the password: none found",
        log.len(),
        needles.len()
    );
}
