//! LXC `container_export` against GNU tar on the same container folder, in
//! the same run (issue 8's benchmark). Run with `cargo xtask bench` (it
//! starts the test services, the LXC image catalog among them), or with the
//! services up: `cargo bench -p stevedore-e2e --bench lxc_vs_cli`.
//!
//! A container is made from the test catalog's busybox image and its rootfs
//! grown to 1 GiB (512 MiB random, 512 MiB text; 16 MiB in a smoke run); it
//! is stopped, so neither
//! side pays for a freeze. Prints, as medians of `ROUNDS` alternating runs
//! (`STEVEDORE_BENCH_ROUNDS`, default 5; each round alternates
//! which side goes first):
//! - `container_export` vs `tar --numeric-owner -cf` (target ≤ 1.00);
//! - compressed vs `tar --numeric-owner -c | pigz` (Debian's `pigz`, every
//!   core, as ours compresses on every core; target ≤ 1.00);
//! - the server's peak RSS during the exports (target ≤ 64 MiB).

use std::time::Duration;

use stevedore_e2e::bench::{median, sh, status_kib, timed};
use stevedore_e2e::{Client, Options, Server};

/// A task's wall time, submit to `completed`.
async fn task(c: &Client, category: &str, body: &str) -> Duration {
    stevedore_e2e::bench::task(c, category, body, Duration::from_secs(900)).await
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("lxc_vs_cli: bench");
        return;
    }
    let catalog = std::env::var("STEVEDORE_TEST_CATALOG").expect("run with `cargo xtask bench`");
    assert!(
        stevedore_e2e::bench::have("pigz"),
        "pigz is not installed: `apt-get install pigz` (cargo xtask bench installs it)"
    );
    let rounds = stevedore_e2e::bench::rounds();
    let half = stevedore_e2e::bench::sized(512, 8) << 20;
    let lxc = tempfile::Builder::new()
        .prefix("stevedore-lxc-bench-")
        .tempdir()
        .unwrap();
    let server = Server::start(
        Options::with_plugins(&["create", "container_export"])
            .env("STEVEDORE_CATALOG", &catalog)
            .env("STEVEDORE_LXC_PATH", &lxc.path().display().to_string()),
    )
    .await;
    stevedore_e2e::bench::check_data_fs("lxc_vs_cli", &server.data_dir());
    let c = server.admin().await;
    task(
        &c,
        "create",
        r#"{"type":"lxc","repository":"qnap","name":"bench","image":"ubuntu-trusty"}"#,
    )
    .await;
    let dir = lxc.path().join("bench");
    let p = lxc.path().display().to_string();
    sh(&format!("lxc-stop -P {p} -n bench -k"));
    // The fixed cost of a task (HTTP, queue, sandbox, `lxc-info`, the
    // rename), from exports of the bare busybox container.
    let small = server.data_dir().join("share/small");
    std::fs::create_dir_all(&small).unwrap();
    let (mut fixed, mut fixed_tar) = (vec![], vec![]);
    for round in 0..stevedore_e2e::bench::sized(5, 1) {
        let tar = || {
            timed(&format!(
                "tar --numeric-owner -cf {}/cli-{round}.tar -C {} config rootfs",
                small.display(),
                dir.display()
            ))
        };
        let body = format!(r#"{{"type":"lxc","name":"bench","path":"small/ours-{round}.tar"}}"#);
        if round % 2 == 0 {
            fixed_tar.push(tar());
            fixed.push(task(&c, "container_export", &body).await);
        } else {
            fixed.push(task(&c, "container_export", &body).await);
            fixed_tar.push(tar());
        }
    }
    let fill = dir.join("rootfs/bench");
    std::fs::create_dir_all(&fill).unwrap();
    sh(&format!(
        "head -c {half} /dev/urandom > {}/random.bin",
        fill.display()
    ));
    sh(&format!(
        "yes 'stevedore moves containers around, line after line of text' | head -c {half} > {}/text.txt",
        fill.display()
    ));
    let out = server.data_dir().join("share/bench");
    std::fs::create_dir_all(&out).unwrap();
    let (d, o) = (dir.display(), out.display());

    let pid = server.pid().unwrap();
    let idle = status_kib(pid, "VmRSS:");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(status_kib(pid, "VmRSS:"));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    let (mut ours, mut theirs, mut ours_gz, mut theirs_gz) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // Alternate who goes first, so that neither side always inherits the
        // other's writeback or freed blocks.
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                theirs.push(timed(&format!(
                    "tar --numeric-owner -cf {o}/cli-{round}.tar -C {d} config rootfs"
                )));
                theirs_gz.push(timed(&format!(
                    "tar --numeric-owner -cf - -C {d} config rootfs | pigz > {o}/cli-{round}.tgz"
                )));
            } else {
                ours.push(
                    task(
                        &c,
                        "container_export",
                        &format!(
                            r#"{{"type":"lxc","name":"bench","path":"bench/ours-{round}.tar"}}"#
                        ),
                    )
                    .await,
                );
                ours_gz.push(
                    task(
                        &c,
                        "container_export",
                        &format!(
                            r#"{{"type":"lxc","name":"bench","path":"bench/ours-{round}.tgz","compress":true}}"#
                        ),
                    )
                    .await,
                );
            }
            sh(&format!("rm -f {o}/*"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    sh(&format!("lxc-destroy -P {p} -n bench"));

    let ratio = |a: &[Duration], b: &[Duration]| {
        median(a.to_vec()).as_secs_f64() / median(b.to_vec()).as_secs_f64()
    };
    let mib = 2 * (half >> 20);
    println!(
        "container_export {mib} MiB:       stevedore {:>7.2?}  tar -cf        {:>7.2?}  ratio {:.3} (target <= 1.00)",
        median(ours.clone()),
        median(theirs.clone()),
        ratio(&ours, &theirs)
    );
    println!(
        "container_export {mib} MiB, gzip: stevedore {:>7.2?}  tar -c | pigz  {:>7.2?}  ratio {:.3} (target <= 1.00)",
        median(ours_gz.clone()),
        median(theirs_gz.clone()),
        ratio(&ours_gz, &theirs_gz)
    );
    let spread = |v: &[Duration]| {
        let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
        let lo = secs.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = secs.iter().cloned().fold(0.0, f64::max);
        format!("{lo:.2}-{hi:.2} s")
    };
    println!(
        "spread over {rounds} rounds: stevedore {} / tar {}; gzip: stevedore {} / tar|pigz {}",
        spread(&ours),
        spread(&theirs),
        spread(&ours_gz),
        spread(&theirs_gz)
    );
    println!(
        "bare busybox container (fixed cost): stevedore {:.1?}  tar -cf {:.1?}",
        median(fixed),
        median(fixed_tar)
    );
    println!(
        "server RSS: {:.1} MiB idle, peak {:.1} MiB during the exports (target <= 64 MiB)",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
