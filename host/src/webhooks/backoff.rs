//! When a delivery that failed is tried again: exponential backoff with
//! jitter, for 24 hours, or when the receiver's `Retry-After` says.
//!
//! The n-th retry waits `min(2^(n-1) × 2 s, 1 h)`, scaled by a random
//! factor in [0.5, 1.0] ("equal jitter": never sooner than half the step,
//! and receivers that failed together are not hit together again). That is
//! 1–2 s, 2–4 s, 4–8 s, ... up to 30–60 min; about 35 attempts in 24 h.

use std::time::Duration;

/// How long a delivery is retried after it was recorded.
pub const RETRY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The first step.
pub const FIRST_STEP: Duration = Duration::from_secs(2);
/// The longest step.
pub const MAX_STEP: Duration = Duration::from_secs(3600);

/// The step before retry `attempt` (1: the first retry), before jitter.
pub fn step(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    FIRST_STEP.saturating_mul(1u32 << doublings).min(MAX_STEP)
}

/// The wait before retry `attempt`, with `jitter` in [0, 1] (random).
pub fn delay(attempt: u32, jitter: f64) -> Duration {
    step(attempt).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// The wait a `Retry-After` value asks (seconds, or an HTTP date read
/// against `now`), at most [`MAX_STEP`]; `None` when it is neither.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let at = std::time::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64);
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_STEP))
}

/// The time of the next attempt (epoch ms) after attempt number `attempts`
/// failed at `now` (epoch ms), for a delivery recorded at `created`; `None`
/// when that would be past the retry window: give up.
pub fn next_attempt(
    created: i64,
    now: i64,
    attempts: u32,
    asked: Option<Duration>,
    jitter: f64,
) -> Option<i64> {
    let wait = asked.unwrap_or_else(|| delay(attempts, jitter));
    let next = now.saturating_add(wait.as_millis() as i64);
    (next <= created.saturating_add(RETRY_WINDOW.as_millis() as i64)).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_an_hour() {
        let secs: Vec<u64> = (1..=13).map(|n| step(n).as_secs()).collect();
        assert_eq!(
            secs,
            [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        assert_eq!(step(1000), MAX_STEP);
    }

    #[test]
    fn jitter_keeps_between_half_and_the_whole_step() {
        assert_eq!(delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(delay(3, 0.5), Duration::from_secs(6));
        assert_eq!(delay(3, 7.0), Duration::from_secs(8));
    }

    #[test]
    fn retries_stop_after_24_hours() {
        let day = RETRY_WINDOW.as_millis() as i64;
        assert_eq!(next_attempt(0, 1000, 1, None, 1.0), Some(3000));
        assert_eq!(next_attempt(0, day - 1000, 12, None, 0.0), None);
        // About 35 attempts fit the window at the slowest jitter.
        let (mut now, mut n) = (0i64, 0u32);
        while let Some(next) = next_attempt(0, now, n + 1, None, 1.0) {
            now = next;
            n += 1;
        }
        assert!((30..=40).contains(&n), "{n} attempts");
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("999999", now), Some(MAX_STEP));
        assert_eq!(
            retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(
            next_attempt(0, 1000, 1, Some(Duration::from_secs(7)), 0.0),
            Some(8000)
        );
    }
}
