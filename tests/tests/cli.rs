//! The terminal client against a real server: `stevedore task ...` with the
//! login from `STEVEDORE_URL` / `STEVEDORE_USER` / `STEVEDORE_PASSWORD`,
//! `--wait` and `watch` on real pulls from the test registry (progress
//! lines that go up, the end on stdout), a task that ends in error (exit
//! non-zero with its message), `list` and `delete`; and `stevedore user
//! add|passwd` writing a hash the server then accepts.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use stevedore_e2e::{binary, docker, Options, Server, ADMIN_PASSWORD};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// Run `stevedore ARGS` logged in as admin on `server` (through the
/// environment), with `stdin` as its input.
fn stevedore(server: &Server, args: &[&str], stdin: &str) -> (Output, String, String) {
    let mut child = Command::new(binary())
        .args(args)
        .env("STEVEDORE_URL", server.base())
        .env("STEVEDORE_USER", "admin")
        .env("STEVEDORE_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stevedore");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Percentages of the `task N running  P%` lines the client printed.
fn percents(stderr: &str) -> Vec<i64> {
    stderr
        .lines()
        .filter(|l| l.contains(" running "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_suffix('%').and_then(|p| p.parse().ok()))
        })
        .collect()
}

#[tokio::test]
async fn wait_and_watch_follow_real_pulls_to_their_end() {
    let repo = stevedore_e2e::push_noise_image("cli", 32, &["1", "2"]);
    let config = format!(
        "[registries.local]\nurl = \"http://{}\"\n",
        env("STEVEDORE_TEST_REGISTRY")
    );
    let server = Server::start(
        Options::with_plugins(&["image_download", "noop"])
            .test_engine()
            .config(&config),
    )
    .await;
    let pull = |tag: &str| {
        format!(
            r#"{{"type":"docker","repository":"private","registry_name":"local","image":"{repo}","tag":"{tag}"}}"#
        )
    };

    // --wait: progress lines going up, then the end on stdout.
    let (out, stdout, stderr) = stevedore(
        &server,
        &["task", "submit", "image_download", &pull("1"), "--wait"],
        "",
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(image_download) completed"),
        "{stdout}\n{stderr}"
    );
    let seen = percents(&stderr);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen.iter().any(|p| *p > 0 && *p < 100),
        "progress did not go up: {seen:?}\n{stderr}"
    );

    // watch: a pull submitted through the API, followed by id.
    let admin = server.admin().await;
    let id = admin.submit_ok("image_download", &pull("2")).await;
    let (out, stdout, stderr) = stevedore(&server, &["task", "watch", &id.to_string()], "");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("task {id} (image_download) completed")),
        "{stdout}\n{stderr}"
    );
    let registry = env("STEVEDORE_TEST_REGISTRY");
    for tag in ["1", "2"] {
        docker(&["rmi", &format!("{registry}/{repo}:{tag}")]);
    }

    // A task that ends in error: non-zero, with its message.
    let (out, stdout, stderr) = stevedore(
        &server,
        &["task", "submit", "noop", r#"{"fail": true}"#, "--wait"],
        "",
    );
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ended in error: failed as asked"),
        "{stderr}"
    );

    // list, filtered; delete by id and by category.
    let (out, stdout, _) = stevedore(
        &server,
        &["task", "list", "--category", "image_download"],
        "",
    );
    assert!(out.status.success());
    assert!(stdout.starts_with("   ID  STATE"), "{stdout}");
    assert_eq!(
        stdout.lines().count(),
        3,
        "a header and two pulls: {stdout}"
    );
    assert!(!stdout.contains("noop"), "{stdout}");
    let (out, stdout, _) = stevedore(&server, &["task", "delete", &id.to_string()], "");
    assert!(out.status.success());
    assert_eq!(stdout.trim(), format!("deleted {id}"));
    let (out, stdout, _) = stevedore(&server, &["task", "delete", "noop"], "");
    assert!(out.status.success());
    assert!(stdout.starts_with("deleted "), "{stdout}");

    // Bad input is refused before anything is sent; a bad password names the login.
    let (out, _, stderr) = stevedore(&server, &["task", "submit", "noop", "{nope", "--wait"], "");
    assert!(!out.status.success());
    assert!(stderr.contains("JSON: not valid JSON"), "{stderr}");
    let (out, _, stderr) = stevedore(&server, &["task", "list", "--password", "wrong"], "");
    assert!(!out.status.success());
    assert!(stderr.contains("logging in to"), "{stderr}");
}

#[tokio::test]
async fn user_add_and_passwd_write_a_hash_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stevedore.toml");
    std::fs::write(&config, "# operators' notes stay\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let user = |args: &[&str], stdin: &str| {
        let mut child = Command::new(binary())
            .arg("user")
            .args(args)
            .env("STEVEDORE_CONFIG", config_arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = user(&["add", "bob"], "first-pw\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = user(&["add", "carol", "--admin"], "carol-pw\n");
    assert!(out.status.success());
    let out = user(&["add", "bob"], "again\n");
    assert!(!out.status.success(), "bob exists");
    let out = user(&["passwd", "bob"], "second-pw\n");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("# operators' notes stay"), "{text}");
    assert!(!text.contains("second-pw"), "only the hash is stored");

    let server = Server::start(Options::default().config(&text)).await;
    let c = server.client();
    assert_eq!(c.login("bob", "first-pw").await.status, 401);
    let bob = c.login("bob", "second-pw").await;
    assert_eq!(bob.status, 200, "{:?}", bob.body);
    assert_eq!(bob.body["isAdmin"], false);
    let carol = server.client().login("carol", "carol-pw").await;
    assert_eq!(carol.status, 200, "{:?}", carol.body);
    assert_eq!(carol.body["isAdmin"], true);
}
