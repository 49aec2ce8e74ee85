//! Rates from counters: a runtime reads cumulative counters (CPU time,
//! bytes received and sent) once per listing, and [`Sampler`] turns two
//! successive readings of a container into the percent and per-second
//! figures `GET container` shows. One reading per listing, no waiting: the
//! first listing of a container shows 0 for the rates.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Usage;

/// Cumulative counters of one container at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// CPU time used, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use now, in bytes.
    pub memory: u64,
    /// Bytes received so far.
    pub rx: u64,
    /// Bytes sent so far.
    pub tx: u64,
}

/// A reading older than this is forgotten (its container is gone or no
/// longer listed), so the map stays as small as the set of containers.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// The previous reading of each container, to take rates against.
#[derive(Default)]
pub struct Sampler {
    last: Mutex<HashMap<String, (Instant, Counters)>>,
}

impl Sampler {
    /// The usage of container `id` whose counters read `now` at `at`, and
    /// remember this reading for the next one.
    pub fn usage(&self, id: &str, at: Instant, now: Counters) -> Usage {
        let mut last = self.last.lock();
        let previous = last.insert(id.to_string(), (at, now));
        if last.len() > 64 {
            last.retain(|_, (t, _)| at.saturating_duration_since(*t) < FORGET_AFTER);
        }
        drop(last);
        rates(previous, at, now)
    }
}

/// The usage between a previous reading (if any) and `now`. A counter that
/// went down (the container restarted) starts over: its rate is 0.
pub fn rates(previous: Option<(Instant, Counters)>, at: Instant, now: Counters) -> Usage {
    let mut usage = Usage {
        memory: now.memory,
        ..Usage::default()
    };
    let Some((then, before)) = previous else {
        return usage;
    };
    let secs = at.saturating_duration_since(then).as_secs_f64();
    if secs <= 0.0 {
        return usage;
    }
    let per_sec = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs).round() as u64;
    usage.cpu = now.cpu_ns.saturating_sub(before.cpu_ns) as f64 / (secs * 1e9) * 100.0;
    usage.rx = per_sec(before.rx, now.rx);
    usage.tx = per_sec(before.tx, now.tx);
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_two_readings() {
        let s = Sampler::default();
        let t0 = Instant::now();
        let c0 = Counters {
            cpu_ns: 1_000_000_000,
            memory: 10,
            rx: 100,
            tx: 50,
        };
        // The first reading has no rates, only memory.
        assert_eq!(
            s.usage("a", t0, c0),
            Usage {
                cpu: 0.0,
                memory: 10,
                rx: 0,
                tx: 0
            }
        );
        let c1 = Counters {
            cpu_ns: 1_500_000_000,
            memory: 20,
            rx: 2_100,
            tx: 1_050,
        };
        let u = s.usage("a", t0 + Duration::from_secs(2), c1);
        assert!((u.cpu - 25.0).abs() < 1e-9, "{u:?}");
        assert_eq!((u.memory, u.rx, u.tx), (20, 1_000, 500));
        // A restarted container's counters go down: no negative rates.
        let u = s.usage("a", t0 + Duration::from_secs(3), Counters::default());
        assert_eq!((u.cpu, u.rx, u.tx), (0.0, 0, 0));
    }
}
