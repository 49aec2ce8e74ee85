//! Webhook delivery latency: the whole server in one process (the durable
//! SQLite store in a temporary folder, or the PostgreSQL one named by
//! `STEVEDORE_DATABASE_URL`), one webhook on `task.completed` to a
//! receiver on loopback in the same process, and no-op tasks submitted at
//! a steady `BENCH_RATE` per second for `BENCH_SECS` seconds.
//!
//! Latency of a task: from its end (the queue announces it once it is
//! stored) to the receiver having the signed delivery. Prints p50, p99 and
//! the largest, with how many tasks were measured (target: p99 ≤ 100 ms
//! at 100 tasks/s).
//!
//! Run: `cargo bench -p stevedore --bench webhooks`
//! (env: `BENCH_RATE`, default 100; `BENCH_SECS`, default 30).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::env_usize;
use parking_lot::Mutex;
use stevedore::queue::TaskState;

fn main() -> anyhow::Result<()> {
    common::block_on(run())
}

/// When each task's delivery arrived.
type Arrivals = Arc<Mutex<HashMap<i64, Instant>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["task"]["id"].as_i64());
    if let Some(id) = id {
        arrivals.lock().entry(id).or_insert(at);
    }
    StatusCode::NO_CONTENT
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn run() -> anyhow::Result<()> {
    let rate = env_usize("BENCH_RATE", 100).max(1);
    let secs = env_usize("BENCH_SECS", 30).max(1);

    // The receiver.
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir()?;
    let settings: Vec<(&str, String)> = ["STEVEDORE_DATABASE_URL", "STEVEDORE_NODE"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .collect();
    let mut prepared = common::prepare(dir.path(), 16, &settings).await?;
    prepared.config_mut().webhooks_policy.allow_hosts = vec!["127.0.0.1".into()];
    let server = prepared.serve().await?;
    let client = server.login(64).await?;
    let made = client
        .post(format!("{}/webhooks", server.api))
        .body(
            serde_json::json!({
                "url": format!("http://127.0.0.1:{port}/hook"),
                "events": ["task.completed"],
                "secret": "bench-secret",
            })
            .to_string(),
        )
        .send()
        .await?;
    anyhow::ensure!(
        made.status().as_u16() == 201,
        "creating the webhook: {}",
        made.status()
    );
    let store = if settings.is_empty() {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "webhooks: executor = {}; store = {store}; {rate} tasks/s for {secs} s; receiver on loopback",
        server.executor
    );

    // When each task ended, from the queue's announcements.
    let ends: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let mut events = server.queue.subscribe();
    let ends_in = ends.clone();
    tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            if !ev.deleted && ev.task.state == TaskState::Completed {
                ends_in.lock().insert(ev.task.id, Instant::now());
            }
        }
    });

    // A steady rate of submits.
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut submits = Vec::with_capacity(total);
    for _ in 0..total {
        tick.tick().await;
        let (client, url) = (client.clone(), format!("{}/background/noop", server.api));
        submits.push(tokio::spawn(async move {
            client.post(url).body("{}").send().await.map(|r| r.status())
        }));
    }
    let mut refused = 0;
    for s in submits {
        if !matches!(s.await, Ok(Ok(st)) if st.is_success()) {
            refused += 1;
        }
    }
    let submitted_in = started.elapsed();
    let want = total - refused;
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().len() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = arrivals.lock().clone();
    let ends = ends.lock().clone();
    let mut latencies: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(id, at)| ends.get(id).map(|end| at.saturating_duration_since(*end)))
        .collect();
    latencies.sort();
    println!(
        "webhooks: {} tasks submitted in {:.1} s ({refused} refused), {} delivered, {} measured",
        total,
        submitted_in.as_secs_f64(),
        arrivals.len(),
        latencies.len()
    );
    println!(
        "webhooks: task end -> receiver: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 <= 100 ms)",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    server.stop().await;
    Ok(())
}
