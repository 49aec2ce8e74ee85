//! `GET container` with 50 running containers (issue 27: under 1 s), each
//! entry with its resource sample (one concurrent round of one-shot stats).
//! Run with `cargo xtask bench` (it starts the test engine), or with the
//! services up: `cargo bench -p stevedore-e2e --bench container_list`.
//!
//! Prints the median, minimum and maximum of `STEVEDORE_BENCH_ROUNDS`
//! (default 5) listings, after a first listing that is timed on its own
//! (it subscribes to every container's stats and waits for their first
//! samples), alternating with what a user would run instead for the same
//! figures, `docker stats --no-stream`, and with `docker ps -a` (no stats).

use std::time::{Duration, Instant};

use reqwest::Method;
use stevedore_e2e::bench::{median, rounds, timed};
use stevedore_e2e::{docker, Options, Server};

/// How many containers run: 50, or 5 in a smoke run.
fn containers() -> usize {
    stevedore_e2e::bench::sized(50, 5)
}

/// Removes the bench's containers when dropped (also on a panic).
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for chunk in self.0.chunks(25) {
            let mut args = vec!["rm", "-f"];
            args.extend(chunk.iter().map(String::as_str));
            let _ = std::process::Command::new("docker")
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn spread(v: &[Duration]) -> (Duration, Duration) {
    (
        v.iter().copied().min().unwrap_or_default(),
        v.iter().copied().max().unwrap_or_default(),
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("container_list: bench");
        return;
    }
    let rounds = rounds();
    let containers = containers();
    docker(&["pull", "-q", "busybox:latest"]);
    let names: Vec<String> = (0..containers)
        .map(|i| format!("bench-list-{}-{i:02}", std::process::id()))
        .collect();
    let _cleanup = Cleanup(names.clone());
    for name in &names {
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "busybox:latest",
            "sleep",
            "3600",
        ]);
    }
    let server = Server::start(Options::default().test_engine()).await;
    let c = server.admin().await;

    let list = || async {
        let started = Instant::now();
        let a = c.send(Method::GET, "container", None).await;
        let took = started.elapsed();
        assert_eq!(a.status, 200, "{:?}", a.body);
        let entries = a.body.as_array().expect("a list");
        let sampled = entries
            .iter()
            .filter(|e| names.iter().any(|n| e["name"] == n.as_str()))
            .filter(|e| e["cpu"].is_number() && e["memory"].as_u64().is_some_and(|m| m > 0))
            .count();
        assert_eq!(
            sampled, containers,
            "every running container has its sample"
        );
        took
    };
    let first = list().await;
    println!("GET container, {containers} running, first listing (subscribes, waits for the first samples): {first:?}");
    let mut ours = Vec::new();
    let mut stats = Vec::new();
    let mut cli = Vec::new();
    for _ in 0..rounds {
        ours.push(list().await);
        stats.push(timed("docker stats --no-stream > /dev/null"));
        cli.push(timed("docker ps -a -q > /dev/null"));
    }
    let (stats_lo, stats_hi) = spread(&stats);
    println!(
        "docker stats --no-stream (the same figures), same engine: median {:?} (min {stats_lo:?}, max {stats_hi:?})",
        median(stats)
    );
    let (lo, hi) = spread(&ours);
    let (cli_lo, cli_hi) = spread(&cli);
    println!(
        "GET container, {containers} running, with stats: median {:?} (min {lo:?}, max {hi:?}) over {rounds} runs; target < 1 s",
        median(ours.clone())
    );
    println!(
        "docker ps -a (no stats), same engine: median {:?} (min {cli_lo:?}, max {cli_hi:?})",
        median(cli)
    );
    assert!(
        median(ours) < Duration::from_secs(1),
        "GET container with {containers} running containers took 1 s or more"
    );
}
