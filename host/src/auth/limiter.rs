//! Slows down repeated failed logins from one client address.
//!
//! Policy: the first [`FREE_FAILURES`] failures within [`WINDOW`] cost nothing;
//! each further failure locks the address out for a doubling delay (1 s, 2 s,
//! 4 s, ... up to [`MAX_LOCKOUT`]). While locked out, a login attempt is
//! refused with 429 without checking the password, so guessing is bounded to
//! a few tries per lockout. A successful login clears the record.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before lockouts start.
pub const FREE_FAILURES: u32 = 3;
/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// Records kept at most (older ones are pruned first).
const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failed-login bookkeeping per client address.
#[derive(Default)]
pub struct LoginLimiter {
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl LoginLimiter {
    /// A limiter with no records.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Err(wait)` if `ip` is locked out now.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match records.get(&ip).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Record a failed login from `ip`; returns the lockout that follows, if any.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        self.failed_at(ip, Instant::now())
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= MAX_RECORDS {
            records.retain(|_, r| now.duration_since(r.last) < WINDOW);
            if records.len() >= MAX_RECORDS {
                records.clear();
            }
        }
        let r = records.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(r.last) >= WINDOW {
            r.failures = 0;
        }
        r.failures += 1;
        r.last = now;
        if r.failures >= FREE_FAILURES {
            let exp = (r.failures - FREE_FAILURES).min(16);
            let lock = Duration::from_secs(1u64 << exp).min(MAX_LOCKOUT);
            r.locked_until = Some(now + lock);
            Some(lock)
        } else {
            None
        }
    }

    /// Forget `ip`'s failures after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_and_expires() {
        let l = LoginLimiter::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(l.failed_at(ip, t0), None);
        assert_eq!(l.failed_at(ip, t0), None);
        assert!(l.check_at(ip, t0).is_ok());
        assert_eq!(l.failed_at(ip, t0), Some(Duration::from_secs(1)));
        assert!(l.check_at(ip, t0).is_err());
        assert!(l.check_at(other, t0).is_ok());
        let t1 = t0 + Duration::from_secs(2);
        assert!(l.check_at(ip, t1).is_ok());
        assert_eq!(l.failed_at(ip, t1), Some(Duration::from_secs(2)));
        assert_eq!(l.failed_at(ip, t1), Some(Duration::from_secs(4)));
        for _ in 0..20 {
            l.failed_at(ip, t1);
        }
        assert_eq!(l.failed_at(ip, t1), Some(MAX_LOCKOUT));
        // Long after, the record is forgotten.
        let t2 = t1 + WINDOW + MAX_LOCKOUT;
        assert!(l.check_at(ip, t2).is_ok());
        assert_eq!(l.failed_at(ip, t2), None);
        l.succeeded(ip);
        assert!(l.check_at(ip, t2).is_ok());
    }
}
