//! The seed page's curl commands, run verbatim with the `curl` binary against
//! the real server: login with `-c cookies.txt`, then `-b cookies.txt -d '...'`.
//!
//! The commands are taken at run time from `tests/seed/background-tasks.rst`,
//! a byte-for-byte copy of Container Station's page (checked against
//! `../shared/seed/` when that folder is beside the repository). Every
//! `$ curl ...` of a `sourcecode:: bash` block runs through `bash -c` with
//! `QIP`, `QPORT` and `QPASSWORD` set, as the page's own `exec` block does.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use stevedore_e2e::{real_plugins, workspace_root, Client, Options, Server, ADMIN_PASSWORD};

const SEED: &str = include_str!("../seed/background-tasks.rst");

/// The login command of the page's `exec` block.
fn login_command() -> String {
    let start = SEED
        .find("curl -sq -XPOST -c cookies.txt")
        .expect("login command in the seed");
    let rest = &SEED[start..];
    rest[..rest.find('\'').expect("end of the login command")].to_string()
}

/// Every `$ curl ...` command of the `sourcecode:: bash` blocks, in page order,
/// with shell continuation (backslash-newline, multi-line quotes) followed.
fn seed_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_bash = false;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with(".. ") {
            in_bash = t == ".. sourcecode:: bash";
            continue;
        }
        if !in_bash {
            continue;
        }
        let Some(cmd) = t.strip_prefix("$ ") else {
            continue;
        };
        let mut text = cmd.to_string();
        let (mut single, mut double) = (false, false);
        let scan = |s: &str, single: &mut bool, double: &mut bool| {
            for c in s.chars() {
                match c {
                    '\'' if !*double => *single = !*single,
                    '"' if !*single => *double = !*double,
                    _ => {}
                }
            }
        };
        scan(cmd, &mut single, &mut double);
        while single || double || text.ends_with('\\') {
            let Some(next) = lines.next() else { break };
            text.push('\n');
            text.push_str(next);
            scan(next, &mut single, &mut double);
        }
        out.push(text);
    }
    out
}

/// The command sequences of the page's `runcode` blocks, in page order: the
/// commands Container Station's documentation build ran against a real
/// server. Lines are joined with spaces, as a `runcode` block runs them
/// (its `-d` and the body that follows are on separate lines).
fn runcode_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.trim() != ".. runcode:: json" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = Vec::new();
        while i < lines.len() {
            let l = lines[i];
            let blank = l.trim().is_empty();
            if !blank && l.len() - l.trim_start().len() <= indent {
                break;
            }
            if !blank {
                block.push(l.trim());
            }
            i += 1;
        }
        out.push(block.join(" "));
    }
    out
}

/// `PATH` with a folder holding `python` (→ `python3`) when the machine
/// has no `python`: the page pipes answers through `python -m json.tool`.
/// Worked out once per test process.
fn python_path(dir: &Path) -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| python_path_in(dir)).clone()
}

fn python_path_in(dir: &Path) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let has_python = Command::new("python")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_python {
        return path;
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let python3 = Command::new("bash")
        .args(["-c", "command -v python3"])
        .output()
        .expect("bash");
    let python3 = String::from_utf8_lossy(&python3.stdout).trim().to_string();
    assert!(
        !python3.is_empty(),
        "python3 is needed: apt-get install python3"
    );
    let _ = std::fs::remove_file(bin.join("python"));
    std::os::unix::fs::symlink(python3, bin.join("python")).unwrap();
    format!("{}:{path}", bin.display())
}

fn run_curl(dir: &Path, server: &Server, cmd: &str) -> Value {
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("QIP", "127.0.0.1")
        .env("QPORT", server.addr.port().to_string())
        .env("QPASSWORD", ADMIN_PASSWORD)
        .env("PATH", python_path(dir))
        .output()
        .expect("running bash (and curl: apt-get install curl)");
    assert!(
        out.status.success(),
        "`{cmd}` exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{:>6.0} ms  {}",
        started.elapsed().as_secs_f64() * 1e3,
        cmd.lines().last().unwrap_or("").trim()
    );
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("`{cmd}` did not answer JSON ({e}): {body}"))
}

#[test]
fn the_seed_copy_is_verbatim() {
    let original = workspace_root().join("../shared/seed/background-tasks.rst");
    match std::fs::read_to_string(&original) {
        Ok(text) => assert_eq!(
            text,
            SEED,
            "tests/seed/background-tasks.rst differs from {}",
            original.display()
        ),
        Err(_) => eprintln!(
            "{} not found; using the copy in tests/seed",
            original.display()
        ),
    }
    let cmds = seed_commands(SEED);
    assert_eq!(cmds.len(), 12, "{cmds:#?}");
    assert!(cmds.iter().all(|c| c.starts_with("curl -sq ")));
    let blocks = runcode_blocks(SEED);
    assert_eq!(blocks.len(), 7, "{blocks:#?}");
    assert!(blocks[1].starts_with("id=`curl -sq -XGET"), "{}", blocks[1]);
    assert!(
        blocks[1].contains("-d '{ \"type\": \"docker\""),
        "{}",
        blocks[1]
    );
}

/// The Docker id of `dtest`, through the route the page's cleanup uses.
async fn dtest_id(admin: &Client) -> Option<String> {
    let r = admin
        .send(reqwest::Method::GET, "container/docker/getid/dtest", None)
        .await;
    if r.status == 200 {
        assert!(r.content_type.starts_with("text/plain"), "{r:?}");
        Some(r.body.as_str().expect("a bare id").to_string())
    } else {
        r.assert_error(404, Some("unknown_container"));
        None
    }
}

/// The page's `runcode` blocks (issue 7): cleanup, then create, for LXC and
/// Docker, then download, remove, list and delete; verbatim with curl,
/// twice in a row. Every block answers JSON that is not an error object,
/// and each run's cleanup removes the `dtest` the run before created.
/// (Called after the `sourcecode` commands, which create a `dtest` too:
/// the two share the engine's container names, so they run in sequence.)
async fn seed_runcode_blocks_run_twice(server: &Server, admin: &Client, dir: &Path, lxc: bool) {
    let engine = std::env::var_os("DOCKER_HOST").is_some();
    let mut ctest_created = Vec::new();

    let mut dtest_ids = Vec::new();
    for round in 1..=2 {
        for block in runcode_blocks(SEED) {
            let answer = run_curl(dir, server, &block);
            let is_error = answer.as_object().is_some_and(|o| o.contains_key("error"));
            assert!(!is_error, "round {round}: `{block}` answered {answer}");
            if !block.contains("/background/create") {
                continue;
            }
            let id = answer["id"].as_i64().unwrap_or_else(|| panic!("{answer}"));
            let t = admin
                .wait_until(id, std::time::Duration::from_secs(120), |t| {
                    t["state"] == "completed" || t["state"] == "error"
                })
                .await
                .unwrap_or_else(|last| panic!("create task {id} did not finish: {last:?}"));
            eprintln!(
                "round {round}: create {}: {} ({})",
                t["name"], t["state"], t["detail_state"]
            );
            if answer["params"]["type"] == "lxc" && lxc {
                assert_eq!(t["name"], "ctest", "{t}");
                assert_eq!(t["state"], "completed", "{t}\n{}", server.logs());
                let e = admin
                    .send(reqwest::Method::GET, "container/lxc/ctest", None)
                    .await;
                assert_eq!(e.body["state"], "running", "{:?}", e.body);
                ctest_created.push(round);
            }
            if answer["params"]["type"] == "docker" && engine {
                assert_eq!(t["name"], "dtest", "{t}");
                assert_eq!(t["state"], "completed", "{t}");
                dtest_ids.push(dtest_id(admin).await.expect("dtest exists after create"));
            }
        }
    }
    if lxc {
        // The second round's cleanup stopped and deleted the first ctest,
        // or its create would have found the name taken.
        assert_eq!(ctest_created, [1, 2]);
    }
    if engine {
        assert_eq!(dtest_ids.len(), 2);
        assert_ne!(dtest_ids[0], dtest_ids[1], "the second run recreated dtest");
        admin
            .send(
                reqwest::Method::GET,
                &format!("container/docker/{}", dtest_ids[0]),
                None,
            )
            .await
            .assert_error(404, Some("unknown_container"));
        // Leave the shared engine as we found it.
        let r = admin
            .send(
                reqwest::Method::DELETE,
                &format!("container/docker/{}", dtest_ids[1]),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

#[tokio::test]
async fn seed_curl_commands_run_verbatim() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "the `curl` binary is needed: apt-get install curl"
    );
    // Every real category that is built, plus `noop`.
    let mut plugins = real_plugins();
    plugins.push("noop".into());
    // The engine and registries of `cargo xtask test`: the Docker examples
    // really run (issue 4), and those that need the internet fail clearly.
    // With the test image repository and LXC (`cargo xtask test`), the
    // page's LXC examples really run too, in an LXC path of this test's own.
    let lxc_path = tempfile::Builder::new()
        .prefix("stevedore-seed-lxc-")
        .tempdir()
        .unwrap();
    let mut options = Options {
        plugins: plugins.clone(),
        ..Options::default()
    }
    .test_engine();
    let lxc = std::env::var("STEVEDORE_TEST_CATALOG").is_ok();
    if lxc {
        for (var, from) in [
            ("STEVEDORE_CATALOG", "STEVEDORE_TEST_CATALOG"),
            ("STEVEDORE_LXC_BRIDGE", "STEVEDORE_TEST_LXC_BRIDGE"),
            ("STEVEDORE_LXC_SUBNET", "STEVEDORE_TEST_LXC_SUBNET"),
        ] {
            options = options.env(var, &std::env::var(from).unwrap_or_default());
        }
        options = options.env("STEVEDORE_LXC_PATH", &lxc_path.path().display().to_string());
    }
    let server = Server::start(options).await;
    let admin = server.admin().await;
    let mut tasks: Vec<(i64, String)> = Vec::new();
    let dir = tempfile::tempdir().unwrap();

    let login = run_curl(dir.path(), &server, &login_command());
    assert!(login.get("error").is_none(), "{login}");
    assert_eq!(login["username"], "admin");
    assert!(dir.path().join("cookies.txt").is_file());

    let mut submitted = 0;
    let mut deleted_all = false;
    for cmd in seed_commands(SEED) {
        let answer = run_curl(dir.path(), &server, &cmd);
        let url = cmd
            .split_whitespace()
            .last()
            .unwrap()
            .trim_matches('"')
            .to_string();
        if let Some(category) = url
            .split("/background/")
            .nth(1)
            .filter(|c| !c.is_empty() && !c.starts_with('?'))
        {
            assert!(cmd.contains("-XPOST -b cookies.txt"), "{cmd}");
            if plugins.iter().any(|p| p == category) {
                // A loaded category: the new task, or a 400 naming a field the plugin refused.
                if answer.get("error").is_none() {
                    assert_eq!(answer["category"], category, "{answer}");
                    assert_eq!(answer["state"], "waiting", "{answer}");
                    assert_eq!(answer["user"], "admin");
                    // The posted JSON itself, as the real server answered.
                    let params = &answer["params"];
                    assert!(params.is_object() || params.is_array(), "{answer}");
                    assert!(answer["name"].is_string(), "{answer}");
                    assert!(answer.get("result").is_none(), "{answer}");
                    if let Some(pw) = params.get("password") {
                        assert_eq!(pw, "******", "{answer}");
                    }
                    tasks.push((answer["id"].as_i64().unwrap(), category.to_string()));
                    submitted += 1;
                } else {
                    assert_eq!(answer["error"]["code"], 400, "`{cmd}`: {answer}");
                }
            } else {
                assert_eq!(answer["error"]["code"], 404, "`{cmd}`: {answer}");
                assert_eq!(answer["error"]["reason"], "unknown_category", "{answer}");
            }
        } else if cmd.contains("-XGET") && url.contains("?category=image_remove") {
            let list = answer.as_array().unwrap_or_else(|| panic!("{answer}"));
            assert!(
                list.iter().all(|t| t["category"] == "image_remove"),
                "{answer}"
            );
            if plugins.iter().any(|p| p == "image_remove") {
                assert!(
                    !list.is_empty(),
                    "the image_remove task is listed: {answer}"
                );
            }
        } else if cmd.contains("-XGET") {
            let list = answer.as_array().unwrap_or_else(|| panic!("{answer}"));
            assert_eq!(list.len(), submitted, "{answer}");
        } else if cmd.contains("-XDELETE") {
            assert!(answer.is_array(), "{answer}");
            deleted_all = true;
        } else {
            panic!("unexpected seed command: {cmd}");
        }
        // Before the page deletes finished tasks, let every task finish and
        // check how: `completed`, or `error` with a reason a user can act on.
        if cmd.contains("-XGET") && !url.contains("?category=") {
            for (id, category) in &tasks {
                let t = admin
                    .wait_until(*id, std::time::Duration::from_secs(120), |t| {
                        t["state"] == "completed" || t["state"] == "error"
                    })
                    .await
                    .unwrap_or_else(|last| panic!("{category} task {id} did not finish: {last:?}"));
                let detail = t["detail_state"].as_str().unwrap_or_default();
                eprintln!("seed {category}: {} ({detail})", t["state"]);
                if t["state"] == "error" {
                    assert!(
                        detail.len() > 10,
                        "{category}: an error needs a reason: {t}"
                    );
                    assert!(!detail.contains("qcspassword"), "{t}");
                }
                if category == "image_download" && std::env::var_os("DOCKER_HOST").is_some() {
                    // busybox comes through the engine's registry mirror.
                    assert_eq!(t["state"], "completed", "{t}");
                }
            }
        }
    }
    assert!(deleted_all);
    assert!(
        plugins.iter().all(|p| p == "noop") || submitted > 0,
        "at least one seed category ran: {plugins:?}"
    );
    if plugins.iter().any(|p| p == "create") {
        seed_runcode_blocks_run_twice(&server, &admin, dir.path(), lxc).await;
    }
    if lxc {
        // The LXC container the page created, through the container routes.
        let e = admin
            .send(reqwest::Method::GET, "container/lxc/ctest", None)
            .await;
        assert_eq!(e.status, 200, "{:?}", e.body);
        assert_eq!(e.body["type"], "lxc");
        let r = admin
            .send(reqwest::Method::DELETE, "container/lxc/ctest", None)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(!lxc_path.path().join("ctest").exists(), "ctest destroyed");
    }
}
