//! Installing an application against Debian's `docker-compose` (1.29) on
//! the same engine, in the same run (issue 9's benchmark). Run with
//! `cargo xtask bench` (it starts the test engine and registry and builds
//! the plugins), or with the services up:
//! `cargo bench -p stevedore-e2e --bench apps_vs_compose`.
//!
//! Each round installs the 3-service template `trio` (tests/fixtures) with
//! the `application` task (submit to `completed`), and runs
//! `docker-compose up -d` of the very file Stevedore rendered, under another
//! project name; which goes first alternates round by round (a round where
//! Compose goes first runs the file of the round before), images are
//! present (no pulls), and each is torn down untimed. Prints medians of 7 rounds (1 in a smoke run) with their
//! spread and the ratio (target ≤ 1.0).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stevedore_e2e::bench::median;
use stevedore_e2e::{workspace_root, Client, Options, Server};

fn sh(script: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

fn spread(v: &[Duration]) -> String {
    let min = v.iter().min().unwrap().as_secs_f64() * 1000.0;
    let max = v.iter().max().unwrap().as_secs_f64() * 1000.0;
    format!("{min:.0}–{max:.0} ms")
}

async fn install(c: &Client, name: &str) -> Duration {
    sh("sync");
    let started = Instant::now();
    let id = c
        .submit_ok(
            "application",
            &format!(r#"{{"template": "trio", "name": "{name}"}}"#),
        )
        .await;
    let t = c
        .wait_until(id, Duration::from_secs(300), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(t["state"], "completed", "{t}");
    took
}

#[tokio::main]
async fn main() {
    if Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        eprintln!("apps_vs_compose: docker-compose is not installed (apt-get install docker-compose); skipped");
        return;
    }
    sh("docker pull busybox:latest");
    let server = Server::start(
        Options::with_plugins(&["application", "application_upgrade"])
            .test_engine()
            .env(
                "STEVEDORE_CATALOG",
                &workspace_root()
                    .join("tests/fixtures/catalog")
                    .display()
                    .to_string(),
            ),
    )
    .await;
    let c = server.admin().await;
    let dir = tempfile::tempdir().unwrap();
    let rounds = stevedore_e2e::bench::sized(7, 1);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let compose_up = |round: usize, file: &std::path::Path| {
        let project = format!("benchcompose{round}");
        let compose = format!("docker-compose -p {project} -f {}", file.display());
        sh("sync");
        let started = Instant::now();
        sh(&format!("{compose} up -d"));
        let took = started.elapsed();
        sh(&format!("{compose} down -v -t 10"));
        took
    };
    // One warm-up round each (ours first: Compose needs a rendered file), untimed.
    let mut last_file: Option<std::path::PathBuf> = None;
    for round in 0..=rounds {
        let compose_first = round % 2 == 0 && round > 0;
        let theirs_before = match (&last_file, compose_first) {
            (Some(file), true) => Some(compose_up(round, file)),
            _ => None,
        };
        let name = format!("benchapp{round}");
        let took = install(&c, &name).await;
        let rendered = server
            .data_dir()
            .join("apps")
            .join(&name)
            .join("docker-compose.yml");
        let file = dir.path().join(format!("compose{round}.yml"));
        std::fs::copy(&rendered, &file).unwrap();
        let a = c
            .send(
                reqwest::Method::DELETE,
                &format!("apps/{name}?remove_volumes=true"),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        let theirs_took = theirs_before.unwrap_or_else(|| compose_up(round, &file));
        last_file = Some(file);
        if round > 0 {
            ours.push(took);
            theirs.push(theirs_took);
        }
    }
    let (m_ours, m_theirs) = (median(ours.clone()), median(theirs.clone()));
    println!(
        "install of a 3-service app: stevedore {:.0} ms ({}), docker-compose up -d {:.0} ms ({}), ratio {:.2} (target ≤ 1.0), {rounds} rounds",
        m_ours.as_secs_f64() * 1000.0,
        spread(&ours),
        m_theirs.as_secs_f64() * 1000.0,
        spread(&theirs),
        m_ours.as_secs_f64() / m_theirs.as_secs_f64()
    );
}
