//! Stevedore against the docker CLI on the same engine, in the same run
//! (issue 4's benchmark). Run with `cargo xtask bench` (it starts the test
//! engine and registry and builds the plugins), or with the services up:
//! `cargo bench -p stevedore-e2e --bench docker_vs_cli`.
//!
//! Prints, as medians of `STEVEDORE_BENCH_ROUNDS` (default 5) runs, each
//! pair alternating which goes first:
//! - `image_export` of a 512 MiB image vs `docker save -o` (target ≤ 1.02);
//! - compressed vs `docker save | pigz` (Debian's `pigz`, every core, as
//!   ours compresses on every core; target ≤ 1.00);
//! - `image_download` from the loopback registry vs `docker pull` (target ≤ 1.10);
//! - 4 identical `image_download` tasks at once vs one, each of a fresh
//!   64 MiB image: they share one engine pull (issue 13, target about 1×);
//! - the server's peak RSS over the whole run (target ≤ 64 MiB).

use std::time::Duration;

use stevedore_e2e::bench::{median, sh, status_kib, tasks, timed};
use stevedore_e2e::{Client, Options, Server};

/// A task's wall time, submit to `completed`.
async fn task(c: &Client, category: &str, body: &str) -> Duration {
    stevedore_e2e::bench::task(c, category, body, Duration::from_secs(600)).await
}

const IMAGE: &str = "stevedore-bench:512";

/// The image's size in MiB: 512, or 16 in a smoke run (the tag stays).
fn image_mib() -> usize {
    stevedore_e2e::bench::sized(512, 16)
}

/// An image of [`image_mib`]: half random bytes and half text, as real
/// layers mix compressible and incompressible data.
fn make_image(dir: &std::path::Path) {
    let half = image_mib() * 1024 * 1024 / 2;
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    sh(&format!(
        "head -c {half} /dev/urandom > {}/random.bin",
        root.display()
    ));
    sh(&format!("yes 'stevedore moves containers around, line after line of text' | head -c {half} > {}/text.txt", root.display()));
    sh(&format!(
        "tar -C {} -c . | docker import - {IMAGE}",
        root.display()
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Samples the server's resident set every 10 ms while alive; returns the maximum seen.
fn sample_rss(
    pid: u32,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<u64>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut peak = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(status_kib(pid, "VmRSS:"));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    (stop, handle)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("docker_vs_cli: bench");
        return;
    }
    let registry = std::env::var("STEVEDORE_TEST_REGISTRY").expect("run with `cargo xtask bench`");
    assert!(
        stevedore_e2e::bench::have("pigz"),
        "pigz is not installed: `apt-get install pigz` (cargo xtask bench installs it)"
    );
    let rounds = stevedore_e2e::bench::rounds();
    let mib = image_mib();
    let work = tempfile::tempdir().unwrap();
    make_image(work.path());
    let config = format!("[registries.local]\nurl = \"http://{registry}\"\n");
    let server = Server::start(
        Options::with_plugins(&["image_export", "image_download"])
            .test_engine()
            .config(&config),
    )
    .await;
    stevedore_e2e::bench::check_data_fs("docker_vs_cli", &server.data_dir());
    let c = server.admin().await;
    let share = server.data_dir().join("share");
    std::fs::create_dir_all(share.join("bench")).unwrap();
    let out = share.join("bench");

    let pid = server.pid().unwrap();
    let idle = status_kib(pid, "VmRSS:");
    let (stop, sampler) = sample_rss(pid);
    let (mut ours, mut theirs, mut ours_gz, mut theirs_gz) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // Which goes first alternates, so a trend in the machine's load
        // falls on both alike.
        let cli = || {
            timed(&format!(
                "docker save -o {}/cli-{round}.tar {IMAGE}",
                out.display()
            ))
        };
        let plain =
            format!(r#"{{"image":"stevedore-bench","tag":"512","path":"bench/ours-{round}.tar"}}"#);
        if round % 2 == 0 {
            theirs.push(cli());
            ours.push(task(&c, "image_export", &plain).await);
        } else {
            ours.push(task(&c, "image_export", &plain).await);
            theirs.push(cli());
        }
        let cli_gz = || {
            timed(&format!(
                "docker save {IMAGE} | pigz > {}/cli-{round}.tgz",
                out.display()
            ))
        };
        let gz = format!(
            r#"{{"image":"stevedore-bench","tag":"512","path":"bench/ours-{round}.tgz","compress":true}}"#
        );
        if round % 2 == 0 {
            ours_gz.push(task(&c, "image_export", &gz).await);
            theirs_gz.push(cli_gz());
        } else {
            theirs_gz.push(cli_gz());
            ours_gz.push(task(&c, "image_export", &gz).await);
        }
        sh(&format!("rm -f {}/*", out.display()));
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let export_peak = sampler.join().unwrap();

    // Pulls start from an engine without the image's layers.
    let remote = format!("{registry}/bench/big:1");
    sh(&format!(
        "docker tag {IMAGE} {remote} && docker push {remote} && docker rmi {remote} {IMAGE}"
    ));
    let (mut pull_ours, mut pull_theirs) = (vec![], vec![]);
    for round in 0..rounds {
        let body = r#"{"type":"docker","repository":"private","registry_name":"local","image":"bench/big","tag":"1"}"#;
        if round % 2 == 0 {
            pull_theirs.push(timed(&format!("docker pull {remote}")));
            sh(&format!("docker rmi {remote}"));
            pull_ours.push(task(&c, "image_download", body).await);
        } else {
            pull_ours.push(task(&c, "image_download", body).await);
            sh(&format!("docker rmi {remote}"));
            pull_theirs.push(timed(&format!("docker pull {remote}")));
        }
        sh(&format!("docker rmi {remote}"));
    }

    // N identical pulls at once share one engine pull: they should cost
    // about one. Each measurement pulls an image the engine has never seen.
    const SHARED: usize = 4;
    let download = |repo: &str| {
        format!(
            r#"{{"type":"docker","repository":"private","registry_name":"local","image":"{repo}","tag":"1"}}"#
        )
    };
    let (mut pull_one, mut pull_n) = (vec![], vec![]);
    let noise = stevedore_e2e::bench::sized(64, 4);
    for _ in 0..rounds {
        let one = stevedore_e2e::push_noise_image("bench-pull", noise, &["1"]);
        let body = download(&one);
        pull_one.push(tasks(&c, "image_download", &[&body], Duration::from_secs(600)).await);
        let many = stevedore_e2e::push_noise_image("bench-pull", noise, &["1"]);
        let body = download(&many);
        pull_n.push(
            tasks(
                &c,
                "image_download",
                &[body.as_str(); SHARED],
                Duration::from_secs(600),
            )
            .await,
        );
        sh(&format!(
            "docker rmi {registry}/{one}:1 {registry}/{many}:1"
        ));
    }
    let lifetime_peak = status_kib(pid, "VmHWM:");

    let ratio = |a: &[Duration], b: &[Duration]| {
        median(a.to_vec()).as_secs_f64() / median(b.to_vec()).as_secs_f64()
    };
    println!("image_export {mib} MiB:        stevedore {:>7.2?}  docker save -o       {:>7.2?}  ratio {:.3} (target <= 1.02)", median(ours.clone()), median(theirs.clone()), ratio(&ours, &theirs));
    println!("image_export {mib} MiB, gzip:  stevedore {:>7.2?}  docker save | pigz   {:>7.2?}  ratio {:.3} (target <= 1.00)", median(ours_gz.clone()), median(theirs_gz.clone()), ratio(&ours_gz, &theirs_gz));
    println!("image_download {mib} MiB:      stevedore {:>7.2?}  docker pull          {:>7.2?}  ratio {:.3} (target <= 1.10)", median(pull_ours.clone()), median(pull_theirs.clone()), ratio(&pull_ours, &pull_theirs));
    println!("image_download {noise} MiB x{SHARED}:    at once {:>7.2?}  one alone            {:>7.2?}  ratio {:.3} (target about 1)", median(pull_n.clone()), median(pull_one.clone()), ratio(&pull_n, &pull_one));
    println!(
        "server RSS: {:.1} MiB idle, peak {:.1} MiB during the exports (target <= 64 MiB), {:.1} MiB peak over its life (start-up compiles plugins)",
        idle as f64 / 1024.0,
        export_peak as f64 / 1024.0,
        lifetime_peak as f64 / 1024.0
    );
}
