//! Fair shares of the sandbox instance pool.
//!
//! The engine's pool holds [`POOL_INSTANCES`] instances; one more fails to
//! instantiate. Every `validate` (one per submit) and every `run` takes one.
//! Without a gate, one user's flood of submits, or of runs that wait on a
//! slow host call, takes them all and everyone else's calls fail. So each
//! call first takes a permit from its user's share (a quarter of the pool),
//! then one of the pool's: one user never holds more than their share, the
//! others still find instances free, and a call beyond either bound waits
//! its turn (first come, first served) instead of failing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::engine::POOL_INSTANCES;

/// The most instances one user holds at once.
pub const USER_SHARE: usize = POOL_INSTANCES as usize / 4;

/// Users whose idle shares are forgotten once this many are known.
const FORGET_IDLE_AFTER: usize = 1024;

/// Hands out instance permits: a user's share, then the pool's.
pub struct InstanceGate {
    pool: Arc<Semaphore>,
    size: usize,
    share: usize,
    users: Mutex<HashMap<String, Arc<Semaphore>>>,
    waiting: Arc<AtomicUsize>,
}

/// The right to hold one instance; given back when dropped (drop it after
/// the instance's store).
pub struct InstancePermit {
    _pool: OwnedSemaphorePermit,
    _user: OwnedSemaphorePermit,
}

/// How the pool is used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Instances held.
    pub in_use: usize,
    /// Calls waiting for a permit (their user's share or the pool).
    pub waiting: usize,
}

/// Counts a waiting call while it lives.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<AtomicUsize>) -> Waiting {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for InstanceGate {
    fn default() -> Self {
        InstanceGate::new(POOL_INSTANCES as usize, USER_SHARE)
    }
}

impl InstanceGate {
    /// A gate over `size` instances, at most `share` of them per user.
    pub fn new(size: usize, share: usize) -> InstanceGate {
        InstanceGate {
            pool: Arc::new(Semaphore::new(size)),
            size,
            share: share.clamp(1, size.max(1)),
            users: Mutex::new(HashMap::new()),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn share_of(&self, user: &str) -> Arc<Semaphore> {
        let mut users = self.users.lock();
        if users.len() >= FORGET_IDLE_AFTER && !users.contains_key(user) {
            users.retain(|_, s| s.available_permits() < self.share || Arc::strong_count(s) > 1);
        }
        users
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.share)))
            .clone()
    }

    /// Wait for a permit for one of `user`'s instances.
    pub async fn acquire(&self, user: &str) -> InstancePermit {
        let share = self.share_of(user);
        let _waiting = Waiting::new(&self.waiting);
        // Neither semaphore is ever closed.
        let user = share
            .acquire_owned()
            .await
            .expect("a user's share is never closed");
        let pool = self
            .pool
            .clone()
            .acquire_owned()
            .await
            .expect("the pool is never closed");
        InstancePermit {
            _pool: pool,
            _user: user,
        }
    }

    /// How the pool is used now.
    pub fn usage(&self) -> PoolUsage {
        PoolUsage {
            in_use: self.size - self.pool.available_permits(),
            waiting: self.waiting.load(Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spawn an acquire for `user`, and return once it waits (at most 5 s).
    async fn acquire_waiting(
        gate: &Arc<InstanceGate>,
        user: &'static str,
    ) -> tokio::task::JoinHandle<InstancePermit> {
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(user).await }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while gate.usage().waiting == 0 {
            assert!(std::time::Instant::now() < deadline, "{user} never waited");
            tokio::task::yield_now().await;
        }
        waiting
    }

    #[tokio::test]
    async fn one_user_holds_at_most_a_share_and_others_still_get_one() {
        let gate = Arc::new(InstanceGate::new(8, 2));
        let a1 = gate.acquire("a").await;
        let _a2 = gate.acquire("a").await;
        // The third of a's waits; b gets one at once.
        let third = acquire_waiting(&gate, "a").await;
        let _b = gate.acquire("b").await;
        assert_eq!(
            gate.usage(),
            PoolUsage {
                in_use: 3,
                waiting: 1
            }
        );
        drop(a1);
        let _a3 = third.await.unwrap();
        assert_eq!(
            gate.usage(),
            PoolUsage {
                in_use: 3,
                waiting: 0
            }
        );
    }

    #[tokio::test]
    async fn the_pool_bounds_everyone_together() {
        let gate = Arc::new(InstanceGate::new(2, 2));
        let a = gate.acquire("a").await;
        let _b = gate.acquire("b").await;
        let c = acquire_waiting(&gate, "c").await;
        drop(a);
        let _c = c.await.unwrap();
        assert_eq!(gate.usage().in_use, 2);
    }
}
