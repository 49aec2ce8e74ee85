//! Resource samples of running Docker containers, kept live while someone
//! lists them.
//!
//! Docker answers a stats request at its collector's next tick (once a
//! second), one-shot or not, so sampling 50 containers per listing costs
//! at least a tick per listing, and more when the requests queue. Instead,
//! the first listing that wants a container subscribes to its stats stream
//! (as `docker stats` does); every tick replaces the container's latest
//! sample, and a listing reads the latest samples without waiting. Only a
//! container's first listing waits for its first sample.
//!
//! A subscription ends when its container stops (the stream ends) or when
//! no listing has wanted it for [`IDLE`], so an idle server holds no
//! streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::StatsOptions;
use bollard::Docker;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::runtime::usage::{rates, Counters};
use crate::runtime::Usage;

/// A subscription nobody has listed for this long ends.
pub const IDLE: Duration = Duration::from_secs(60);

/// How long a listing waits for a container's first sample.
const FIRST_SAMPLE: Duration = Duration::from_secs(5);

/// The two latest samples of one container, and when it was last wanted.
struct Live {
    previous: Option<(Instant, Counters)>,
    latest: Option<(Instant, Counters)>,
    wanted: Instant,
    /// Counts samples; a listing waits on it for the first.
    samples: watch::Sender<u64>,
}

/// The live subscriptions of one engine.
#[derive(Default, Clone)]
pub struct LiveStats {
    live: Arc<Mutex<HashMap<String, Live>>>,
}

impl LiveStats {
    /// The usage of each of `ids` (running containers) from their latest
    /// samples, subscribing to the ones not yet followed. A container with
    /// no sample within [`FIRST_SAMPLE`] is left out.
    pub async fn usage(
        &self,
        api: &Docker,
        ids: Vec<String>,
        counters: fn(&bollard::models::ContainerStatsResponse) -> Counters,
    ) -> HashMap<String, Usage> {
        let now = Instant::now();
        let mut waits = Vec::new();
        {
            let mut live = self.live.lock();
            for id in &ids {
                let entry = live.entry(id.clone()).or_insert_with(|| {
                    self.follow(api.clone(), id.clone(), counters);
                    Live {
                        previous: None,
                        latest: None,
                        wanted: now,
                        samples: watch::channel(0).0,
                    }
                });
                entry.wanted = now;
                if entry.latest.is_none() {
                    waits.push(entry.samples.subscribe());
                }
            }
        }
        let first = futures::future::join_all(waits.into_iter().map(|mut rx| async move {
            let _ = rx.wait_for(|n| *n > 0).await;
        }));
        let _ = tokio::time::timeout(FIRST_SAMPLE, first).await;
        let live = self.live.lock();
        ids.iter()
            .filter_map(|id| {
                let e = live.get(id)?;
                let (at, now) = e.latest?;
                Some((id.clone(), rates(e.previous, at, now)))
            })
            .collect()
    }

    /// Subscribe to `id`'s stats stream until it ends or goes unwanted.
    fn follow(
        &self,
        api: Docker,
        id: String,
        counters: fn(&bollard::models::ContainerStatsResponse) -> Counters,
    ) {
        let live = self.live.clone();
        tokio::spawn(async move {
            let options = StatsOptions {
                stream: true,
                one_shot: false,
            };
            let mut stream = api.stats(&id, Some(options));
            loop {
                let sample = match tokio::time::timeout(IDLE, stream.next()).await {
                    Ok(Some(Ok(s))) => counters(&s),
                    _ => break,
                };
                let mut map = live.lock();
                let Some(e) = map.get_mut(&id) else { break };
                let at = Instant::now();
                if at.saturating_duration_since(e.wanted) > IDLE {
                    break;
                }
                e.previous = e.latest.replace((at, sample));
                e.samples.send_modify(|n| *n += 1);
            }
            live.lock().remove(&id);
        });
    }
}
