//! Pieces for benchmarks and tests of the queue and of what is built on it
//! (e.g. an HTTP-level benchmark): a no-op [`Executor`] and latency statistics.
//! Nothing here is used by the server itself.

use std::time::Duration;

use async_trait::async_trait;

use super::executor::{CategoryInfo, Executor, Outcome, TaskContext, ValidationError};

/// The category a [`NoopExecutor`] serves.
pub const NOOP_CATEGORY: &str = "noop";

/// An executor with one category, [`NOOP_CATEGORY`], whose tasks complete at
/// once. `validate` accepts any params. Running deletable; `token` is a secret field.
#[derive(Debug, Clone, Default)]
pub struct NoopExecutor;

impl NoopExecutor {
    fn info() -> CategoryInfo {
        CategoryInfo {
            name: NOOP_CATEGORY.into(),
            deletable: true,
            secret_fields: vec!["token".into()],
        }
    }
}

#[async_trait]
impl Executor for NoopExecutor {
    fn categories(&self) -> Vec<CategoryInfo> {
        vec![Self::info()]
    }
    fn category(&self, name: &str) -> Option<CategoryInfo> {
        (name == NOOP_CATEGORY).then(Self::info)
    }
    async fn validate(&self, _category: &str, _params: &str) -> Result<(), ValidationError> {
        Ok(())
    }
    /// Its runs change nothing outside: they may start before the claim is durable.
    fn holds_effects_until_durable(&self) -> bool {
        true
    }
    async fn run(&self, ctx: TaskContext) -> Outcome {
        ctx.reporter.progress(100, "done");
        Outcome::Completed(None)
    }
}

/// Latency summary of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// The `p`-th percentile (0..=100, nearest rank) of `samples`; zero when empty.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// p50, p99 and max of `samples`.
pub fn latency(samples: &[Duration]) -> Latency {
    Latency {
        samples: samples.len(),
        p50: percentile(samples, 50.0),
        p99: percentile(samples, 99.0),
        max: samples.iter().copied().max().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&s, 100.0), Duration::from_millis(100));
        assert_eq!(latency(&s).max, Duration::from_millis(100));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
