//! The dashboard in a real browser: `tests/browser/dashboard.py` drives
//! Debian's chromium (headless, through Playwright for Python) against a
//! live server on the real engine, with a copy of the test repository it
//! may change. As a new user would, it logs in with the keyboard, installs
//! `notes` from the store through its wizard (a field error first), opens
//! the app's port, follows a container's logs until a line it caused
//! appears, stops and starts the app, pulls and removes an image, sees
//! "update available" after the repository's version changes and upgrades,
//! and works with tasks. Every view is checked with axe-core, light and
//! dark, and at a phone's width; any console error or request leaving
//! 127.0.0.1 fails it. It also measures the first render of the task list
//! with 1,000 tasks in the store (printed in the test report). The
//! screenshots are kept under `target/test-artifacts/`.

use std::time::Duration;

use futures::future::join_all;
use stevedore_e2e::catalog::{fixture_copy, push_busybox, set_notes};
use stevedore_e2e::{
    docker_ok, free_port, hash_password, report, run_python, target_dir, unique, workspace_root,
    Containers, Options, Server, ADMIN_PASSWORD,
};

const PLUGINS: &[&str] = &[
    "sleepy",
    "noop",
    "image_download",
    "image_remove",
    "image_export",
    "create",
    "application",
    "application_upgrade",
];

/// The user whose 1,000 tasks the first render is measured with.
const BULK: (&str, &str) = ("bulk", "bulk-pw");

#[tokio::test]
async fn dashboard_in_a_real_browser() {
    let catalog = fixture_copy();
    let repo = unique("dashnotes");
    let v1 = push_busybox(&repo, "1");
    let v2 = push_busybox(&repo, "2");
    set_notes(catalog.path(), "1", &v1);
    let pulled = push_busybox(&unique("dashpull"), "1");
    let app = unique("notes");
    let _cleanup = Containers(vec![format!("{app}_web_1"), format!("{app}_writer_1")]);

    let server = Server::start(
        Options::with_plugins(PLUGINS)
            .test_engine()
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string())
            .config(&format!(
                "[users.{}]\npassword_hash = \"{}\"\n",
                BULK.0,
                hash_password(BULK.1)
            )),
    )
    .await;
    let bulk = server.client();
    assert_eq!(bulk.login(BULK.0, BULK.1).await.status, 200);
    for _ in 0..10 {
        let submits = (0..100).map(|_| {
            let bulk = &bulk;
            async move { bulk.submit_ok("noop", "{}").await }
        });
        join_all(submits).await;
    }

    let shots = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let script = workspace_root().join("tests/browser/dashboard.py");
    let axe = target_dir().join("pytools/axe.min.js");
    assert!(
        axe.exists(),
        "{} is missing: run `cargo xtask pytools`",
        axe.display()
    );
    let port = free_port().to_string();
    let (ok, out) = run_python(
        &[script.to_str().unwrap()],
        &[
            ("STEVEDORE_URL", &server.base()),
            ("STEVEDORE_USER", "admin"),
            ("STEVEDORE_PASSWORD", ADMIN_PASSWORD),
            ("SCREENSHOT_DIR", shots.to_str().unwrap()),
            ("AXE_JS", axe.to_str().unwrap()),
            ("CATALOG_DIR", catalog.path().to_str().unwrap()),
            ("NOTES_V2_IMAGE", &v2),
            ("PULL_IMAGE", &pulled),
            ("APP_NAME", &app),
            ("APP_PORT", &port),
            ("BULK_USER", BULK.0),
            ("BULK_PASSWORD", BULK.1),
        ],
        Duration::from_secs(600),
    )
    .await;
    for line in out.lines().filter_map(|l| l.strip_prefix("report: ")) {
        report!("{line}");
    }
    // Whatever the outcome, no image of this test stays behind.
    for image in [&v1, &v2, &pulled] {
        let _ = docker_ok(&["rmi", image]);
    }
    assert!(
        ok,
        "the browser test failed:\n{out}\nserver log:\n{}",
        server.logs()
    );
    for view in [
        "store",
        "wizard",
        "apps",
        "logs",
        "images",
        "tasks",
        "phone-store",
    ] {
        let name = format!("dashboard-{view}.png");
        let png = std::fs::read(shots.join(&name)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
    }
}
