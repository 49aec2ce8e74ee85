//! The dashboard in a real browser: `tests/browser/dashboard.py` drives
//! Debian's chromium (headless, through Playwright for Python) against a
//! live server: it logs in through the form with the keyboard, sees a
//! field error where the server names it, submits a task, watches its
//! progress bar move and the task complete without a reload, filters,
//! cancels and deletes, sees a task deleted by another client leave the
//! list, checks the page on a phone's width, and fails on
//! any console error. The screenshots are kept under
//! `target/test-artifacts/`.

use std::time::Duration;

use stevedore_e2e::{run_python, target_dir, workspace_root, Options, Server, ADMIN_PASSWORD};

#[tokio::test]
async fn dashboard_in_a_real_browser() {
    let server = Server::start(Options::with_plugins(&[
        "sleepy",
        "noop",
        "image_download",
        "create",
    ]))
    .await;
    let shots = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let script = workspace_root().join("tests/browser/dashboard.py");
    let (ok, out) = run_python(
        &[script.to_str().unwrap()],
        &[
            ("STEVEDORE_URL", &server.base()),
            ("STEVEDORE_USER", "admin"),
            ("STEVEDORE_PASSWORD", ADMIN_PASSWORD),
            ("SCREENSHOT_DIR", shots.to_str().unwrap()),
        ],
        Duration::from_secs(180),
    )
    .await;
    assert!(
        ok,
        "the browser test failed:\n{out}\nserver log:\n{}",
        server.logs()
    );
    for name in ["dashboard.png", "dashboard-phone.png"] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
    }
}
