//! The sandbox instance pool shared fairly (issue 26, item 8), against real
//! components (`cargo xtask build-plugins`): one user's runs that wait on a
//! host call hold instances, more of them than the pool has; another user's
//! call still gets an instance at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{Executor, LogLevel, Outcome, Reporter, ResultCode, TaskContext};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

fn component(name: &str) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let path = target.join("test-plugins").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins`",
        path.display()
    );
    path
}

async fn host(names: &[&str]) -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in names {
        std::fs::copy(component(name), plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let config = PluginConfig {
        dir: plugins,
        cache_dir: dir.path().join("cache"),
        cpu_budget: Duration::from_secs(2),
        memory_limit: 64 << 20,
        grants: Default::default(),
    };
    let host = PluginHost::load(&config, Arc::new(Simulator::default()))
        .await
        .unwrap();
    (dir, host)
}

/// Whether the run reported anything (sleepy reports before each wait).
#[derive(Default)]
struct Started(Mutex<bool>);

impl Reporter for Started {
    fn progress(&self, _percent: i32, _detail: &str) {
        *self.0.lock() = true;
    }
    fn log(&self, _level: LogLevel, _message: &str) {}
}

fn task(
    id: i64,
    user: &str,
    category: &str,
    params: &str,
    cancel: &CancellationToken,
) -> (TaskContext, Arc<Started>) {
    let started = Arc::new(Started::default());
    let ctx = TaskContext {
        id,
        category: category.to_string(),
        user: user.to_string(),
        params: params.to_string(),
        cancel: cancel.clone(),
        durable: stevedore::queue::store::Durable::ready(),
        reporter: started.clone(),
    };
    (ctx, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_take_every_instance() {
    // More runs than the pool has instances.
    const HOG: usize = 300;
    let (_d, host) = host(&["sleepy", "noop"]).await;
    let host = Arc::new(host);
    let stop = CancellationToken::new();
    let mut runs = Vec::new();
    let mut started = Vec::new();
    for i in 0..HOG {
        let (ctx, s) = task(i as i64, "hog", "sleepy", r#"{"seconds": 600}"#, &stop);
        started.push(s);
        let host = host.clone();
        runs.push(tokio::spawn(async move { host.run(ctx).await }));
    }
    // Every one of the hog's runs holds an instance, waits for one, or has
    // ended (when the pool refused it one).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (holding, waiting, ended) = loop {
        let holding = started.iter().filter(|s| *s.0.lock()).count();
        let ended = runs.iter().filter(|r| r.is_finished()).count();
        let waiting = host.pool_usage().waiting;
        if holding + waiting + ended >= HOG {
            break (holding, waiting, ended);
        }
        assert!(
            Instant::now() < deadline,
            "the hog's runs never settled: {holding} holding, {waiting} waiting, {ended} ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Another user's call gets an instance, promptly.
    let asked = Instant::now();
    let (ctx, _) = task(10_000, "other", "noop", "{}", &CancellationToken::new());
    let outcome = tokio::time::timeout(Duration::from_secs(10), host.run(ctx))
        .await
        .expect("the other user's run ends in time");
    let took = asked.elapsed();
    let validated = tokio::time::timeout(
        Duration::from_secs(10),
        host.validate_for("other", "noop", "{}"),
    )
    .await
    .expect("the other user's validate ends in time");

    stop.cancel();
    let mut cancelled = 0;
    for r in runs {
        if let Outcome::Failed {
            code: ResultCode::Cancelled,
            ..
        } = r.await.unwrap()
        {
            cancelled += 1;
        }
    }
    assert_eq!(outcome, Outcome::Completed(None), "the other user's run");
    assert!(
        validated.is_ok(),
        "the other user's validate: {validated:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(ended, 0, "none of the hog's runs was refused an instance");
    assert_eq!(cancelled, HOG, "every hog run ended cancelled");
    assert!(
        holding <= stevedore::plugins::fair::USER_SHARE,
        "the hog held {holding}"
    );
    stevedore_e2e::report!(
        "attacks_secrets: instance pool: one user's {HOG} waiting runs held {holding} instances \
         ({waiting} queued); another user's run got one in {took:?}"
    );
}
