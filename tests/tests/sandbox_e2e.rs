//! The sandbox seen from the API (foundation issue): a plugin that loops,
//! allocates without bound or traps ends as an `error` task whose detail
//! names the plugin, and the server goes on serving other tasks.

use std::time::{Duration, Instant};

use stevedore_e2e::{Options, Server};

const BUDGET_MS: u64 = 400;

async fn server() -> (Server, stevedore_e2e::Client) {
    let config = format!("[plugins]\ncpu_budget_ms = {BUDGET_MS}\nmemory_mb = 32\n");
    let server = Server::start(
        Options::with_plugins(&["noop", "spin", "memory_bomb", "trap", "wasi_print"])
            .config(&config),
    )
    .await;
    let client = server.admin().await;
    (server, client)
}

async fn finished(c: &stevedore_e2e::Client, id: i64) -> serde_json::Value {
    c.wait_until(id, Duration::from_secs(30), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not finish: {last:?}"))
}

async fn still_serving(c: &stevedore_e2e::Client) {
    let id = c.submit_ok("noop", "{}").await;
    assert_eq!(finished(c, id).await["state"], "completed");
}

#[tokio::test]
async fn a_runaway_loop_is_stopped_within_a_second_of_its_budget() {
    let (_server, c) = server().await;
    let started = Instant::now();
    let id = c.submit_ok("spin", "{}").await;
    let t = finished(&c, id).await;
    assert!(
        started.elapsed() < Duration::from_millis(BUDGET_MS + 1000),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(t["state"], "error");
    assert_eq!(t["result"], 5, "limit exceeded: {t}");
    assert_eq!(
        t["detail_state"],
        format!("plugin `spin` exceeded its CPU budget of {BUDGET_MS} ms")
    );
    still_serving(&c).await;
    // A loop in validate is refused at submit, not hung.
    let r = c.submit("spin", r#"{"in_validate": true}"#).await;
    assert!(
        r.status >= 400 && r.status < 600 && r.status != 500,
        "{r:?}"
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("plugin `spin`"),
        "{:?}",
        r.body
    );
    still_serving(&c).await;
}

#[tokio::test]
async fn a_memory_bomb_ends_at_its_cap_and_a_trap_is_an_error() {
    let (_server, c) = server().await;
    let bomb = c.submit_ok("memory_bomb", "{}").await;
    let trap = c.submit_ok("trap", "{}").await;
    let t = finished(&c, bomb).await;
    assert_eq!(t["state"], "error");
    assert!(
        t["detail_state"]
            .as_str()
            .unwrap()
            .starts_with("plugin `memory_bomb` exceeded its memory limit of 32 MiB"),
        "{t}"
    );
    let t = finished(&c, trap).await;
    assert_eq!(t["state"], "error");
    assert!(
        t["detail_state"]
            .as_str()
            .unwrap()
            .starts_with("plugin `trap` trapped: wasm trap:"),
        "{t}"
    );
    still_serving(&c).await;
}

#[tokio::test]
async fn wasi_output_lands_in_the_task_log() {
    let (server, c) = server().await;
    let id = c.submit_ok("wasi_print", "{}").await;
    let t = finished(&c, id).await;
    assert_eq!(t["state"], "completed");
    assert_eq!(
        t["detail_state"],
        "file readable: false, env vars: 0, network: false"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = server.logs();
        let line = logs.lines().find(|l| l.contains("hello from wasi stdout"));
        if let Some(line) = line {
            assert!(
                line.contains(&format!("task_id={id}"))
                    || line.contains(&format!("\"task_id\":{id}")),
                "{line}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no WASI line in the log:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_ungranted_plugin_stops_the_start_with_the_interface_named() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["noop", "ungranted"] {
        std::fs::copy(
            stevedore_e2e::plugin_file(name).unwrap(),
            plugins.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let out = std::process::Command::new(stevedore_e2e::binary())
        .arg("serve")
        .env("STEVEDORE_DATA_DIR", root.path().join("data"))
        .env("STEVEDORE_PLUGINS_DIR", &plugins)
        .env("STEVEDORE_ADMIN_PASSWORD", "x")
        .env(
            "STEVEDORE_LISTEN",
            format!("127.0.0.1:{}", stevedore_e2e::free_port()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ungranted.wasm")
            && err.contains("stevedore:plugin/containers@0.3.0")
            && err.contains("not granted")
            && err.contains(r#"[plugins.grants] ungranted = ["task", "containers"]"#),
        "{err}"
    );
}
