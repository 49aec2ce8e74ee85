//! Slows down repeated failed logins from one client address.
//!
//! Policy: the first [`FREE_FAILURES`] failures within [`WINDOW`] cost nothing;
//! each further failure locks the address out for a doubling delay (1 s, 2 s,
//! 4 s, ... up to [`MAX_LOCKOUT`]). While locked out, a login attempt is
//! refused with 429 without checking the password, so guessing is bounded to
//! a few tries per lockout. A successful login clears the record.
//!
//! An attempt is counted as a failure when it is let through
//! ([`LoginLimiter::reserve`]), before its password is checked, and the
//! count is cleared if it succeeds: so attempts made at the same moment
//! cannot all pass the check before any of them is recorded.
//!
//! IPv6 clients are counted by their /64 (one host usually holds a whole
//! /64, so counting single addresses would give it 2^64 fresh starts). When
//! the table is full, expired records go first, then the oldest of those not
//! locked out: never all of them, so flooding it cannot wipe a lockout in force.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures allowed before lockouts start.
pub const FREE_FAILURES: u32 = 3;
/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// Records kept at most (older ones are pruned first).
const MAX_RECORDS: usize = 10_000;

/// The unit failures are counted by: an IPv4 address, or an IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

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
        let records = self.records.lock();
        match records.get(&client_key(ip)).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Let one login attempt from `ip` through, counted as a failure until
    /// [`succeeded`](Self::succeeded) clears it: `Err(wait)` if `ip` is
    /// locked out now; else the lockout that starts with this attempt, if any.
    pub fn reserve(&self, ip: IpAddr) -> Result<Option<Duration>, Duration> {
        self.reserve_at(ip, Instant::now())
    }

    fn reserve_at(&self, ip: IpAddr, now: Instant) -> Result<Option<Duration>, Duration> {
        let mut records = self.records.lock();
        match records.get(&client_key(ip)).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(record_failure(&mut records, ip, now)),
        }
    }

    #[cfg(test)]
    fn failed_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        record_failure(&mut self.records.lock(), ip, now)
    }

    /// Forget `ip`'s failures after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        self.records.lock().remove(&client_key(ip));
    }
}

/// Count a failure of `ip` in `records`; returns the lockout that follows, if any.
fn record_failure(
    records: &mut HashMap<IpAddr, Record>,
    ip: IpAddr,
    now: Instant,
) -> Option<Duration> {
    let ip = client_key(ip);
    if records.len() >= MAX_RECORDS && !records.contains_key(&ip) {
        records.retain(|_, r| {
            now.duration_since(r.last) < WINDOW || r.locked_until.is_some_and(|u| u > now)
        });
        if records.len() >= MAX_RECORDS {
            // Drop a tenth, not everything: addresses not locked out
            // first, oldest first.
            let mut by_age: Vec<(bool, Instant, IpAddr)> = records
                .iter()
                .map(|(k, r)| (r.locked_until.is_some_and(|u| u > now), r.last, *k))
                .collect();
            by_age.sort_unstable();
            for (_, _, k) in by_age.into_iter().take(MAX_RECORDS / 10) {
                records.remove(&k);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_keeps_a_lockout_in_force() {
        let l = LoginLimiter::new();
        let victim: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        // Fill the table with many addresses, then lock one out last.
        for i in 0..MAX_RECORDS as u32 {
            l.failed_at(IpAddr::V4((0x0a00_0000 + i).into()), t0);
        }
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..FREE_FAILURES {
            l.failed_at(victim, t1);
        }
        assert!(l.check_at(victim, t1).is_err());
        // An attacker's fresh addresses, all newer, evict older records but
        // not the lockout.
        let t2 = t1 + Duration::from_millis(1);
        for i in 0..3 * MAX_RECORDS as u32 {
            l.failed_at(IpAddr::V4((0x0b00_0000 + i).into()), t2);
        }
        assert!(
            l.check_at(victim, t2).is_err(),
            "the lockout survived the flood"
        );
        assert!(l.records.lock().len() <= MAX_RECORDS);
    }

    #[test]
    fn ipv6_counts_by_slash_64() {
        let l = LoginLimiter::new();
        let t0 = Instant::now();
        for i in 0..FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            l.failed_at(ip, t0);
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.check_at(same_64, t0).is_err());
        assert!(l.check_at(other_64, t0).is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

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

    #[test]
    fn reservations_count_before_the_check() {
        let l = LoginLimiter::new();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let t0 = Instant::now();
        // Attempts at the same moment: only the free ones pass.
        let passed = (0..50).filter(|_| l.reserve_at(ip, t0).is_ok()).count();
        assert_eq!(passed, FREE_FAILURES as usize);
        // A success clears what its own reservation counted.
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(l.reserve_at(other, t0), Ok(None));
        l.succeeded(other);
        assert_eq!(l.reserve_at(other, t0), Ok(None));
        assert_eq!(l.reserve_at(other, t0), Ok(None));
    }
}
