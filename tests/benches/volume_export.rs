//! `volume_export` against the docker CLI on the same engine, in the same
//! run (issue 31's benchmark). Run with `cargo xtask bench -- --bench
//! volume_export` (it starts the test engine and builds the plugins), or
//! with the services up: `cargo bench -p stevedore-e2e --bench volume_export`.
//!
//! Prints, as medians of `STEVEDORE_BENCH_ROUNDS` (default 5) alternating
//! runs, with their spread (min–max):
//! - `volume_export` of a volume of `STEVEDORE_BENCH_VOLUME_MIB` (default
//!   1024; 16 in a smoke run) vs `docker run --rm -v vol:/v busybox tar -c /v > file`
//!   (target ≤ 1.0);
//! - with `gzip` vs that piped to `pigz` (target ≤ 1.0).
//!
//! The volume holds half random bytes, half text, in files of 64 MiB and
//! one folder of 1,000 small files, as real volumes mix them.

use std::time::Duration;

use stevedore_e2e::bench::{median, sh, timed};
use stevedore_e2e::{unique, Client, Options, Server};

/// A task's wall time, submit to `completed`.
async fn task(c: &Client, body: &str) -> Duration {
    stevedore_e2e::bench::task(c, "volume_export", body, Duration::from_secs(1200)).await
}

/// Fill `volume` with `mib` MiB through a busybox container (the script
/// goes to the engine as one argument, no shell in between).
fn fill(volume: &str, mib: usize) {
    let files = (mib / 64).max(1);
    let each = mib.min(64);
    let script = format!(
        "set -e; cd /v; mkdir small; i=0; while [ $i -lt 1000 ]; do echo file $i > small/$i; i=$((i+1)); done; \
         n=0; while [ $n -lt {files} ]; do \
           if [ $((n % 2)) -eq 0 ]; then head -c {each}m /dev/urandom > r$n.bin; \
           else yes 'a volume of text, line after line of it' | head -c {each}m > t$n.txt; fi; \
           n=$((n+1)); done"
    );
    stevedore_e2e::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/v"),
        "busybox:latest",
        "sh",
        "-c",
        &script,
    ]);
}

fn spread(v: &[Duration]) -> String {
    let min = v.iter().min().copied().unwrap_or_default();
    let max = v.iter().max().copied().unwrap_or_default();
    format!("{min:.2?}–{max:.2?}")
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("volume_export: bench");
        return;
    }
    let rounds = stevedore_e2e::bench::rounds();
    let mib: usize = std::env::var("STEVEDORE_BENCH_VOLUME_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(stevedore_e2e::bench::sized(1024, 16));
    sh("docker pull -q busybox:latest");
    let volume = unique("bench-volume");
    sh(&format!("docker volume create {volume}"));
    fill(&volume, mib);
    let server = Server::start(Options::with_plugins(&["volume_export"]).test_engine()).await;
    let c = server.admin().await;
    let share = server.data_dir().join("share");
    let out = share.join("bench");
    std::fs::create_dir_all(&out).unwrap();

    let (mut ours, mut theirs, mut ours_gz, mut theirs_gz) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        theirs.push(timed(&format!(
            "docker run --rm -v {volume}:/v busybox:latest tar -c /v > {}/cli-{round}.tar",
            out.display()
        )));
        ours.push(
            task(
                &c,
                &format!(r#"{{"volume":"{volume}","path":"bench/ours-{round}.tar"}}"#),
            )
            .await,
        );
        theirs_gz.push(timed(&format!(
            "docker run --rm -v {volume}:/v busybox:latest tar -c /v | pigz > {}/cli-{round}.tgz",
            out.display()
        )));
        ours_gz.push(
            task(
                &c,
                &format!(r#"{{"volume":"{volume}","path":"bench/ours-{round}.tgz","gzip":true}}"#),
            )
            .await,
        );
        sh(&format!("rm -f {}/*", out.display()));
    }
    drop(server);
    sh(&format!("docker volume rm {volume}"));

    let ratio = |a: &[Duration], b: &[Duration]| {
        median(a.to_vec()).as_secs_f64() / median(b.to_vec()).as_secs_f64()
    };
    println!(
        "volume_export {mib} MiB:       stevedore {:>7.2?} ({})  docker run tar        {:>7.2?} ({})  ratio {:.3} (target <= 1.0)",
        median(ours.clone()), spread(&ours), median(theirs.clone()), spread(&theirs), ratio(&ours, &theirs)
    );
    println!(
        "volume_export {mib} MiB, gzip: stevedore {:>7.2?} ({})  docker run tar | pigz {:>7.2?} ({})  ratio {:.3} (target <= 1.0)",
        median(ours_gz.clone()), spread(&ours_gz), median(theirs_gz.clone()), spread(&theirs_gz), ratio(&ours_gz, &theirs_gz)
    );
}
