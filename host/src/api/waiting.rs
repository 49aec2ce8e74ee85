//! The per-user cap of waiting tasks (policy `limits.waiting_tasks`),
//! checked at submit: a submit that would put the user over it is refused
//! with 429 (`too_many_waiting`) and nothing is stored.
//!
//! The store counts the user's waiting tasks; submits of the same user
//! still on their way to the store are counted too ([`Submitting`]), so
//! parallel submits cannot all pass the count before one of them is
//! stored. A submit is counted from before its store count until after its
//! task is stored: it may be counted twice for a moment (a refusal at the
//! very edge of the cap, never a task over it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use parking_lot::Mutex;

use super::AppError;
use crate::queue::Queue;

/// Submits under way per capped user.
#[derive(Clone, Default)]
pub struct Submitting {
    by_user: Arc<Mutex<HashMap<String, usize>>>,
}

/// One submit counted as under way; dropping it (after the task is stored,
/// or refused) stops counting it.
pub struct Admitted {
    by_user: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Submitting {
    /// Admit one more waiting task of `user` under `cap`, or refuse it.
    pub async fn admit(&self, queue: &Queue, user: &str, cap: usize) -> Result<Admitted, AppError> {
        let under_way = {
            let mut by_user = self.by_user.lock();
            let n = by_user.entry(user.to_string()).or_default();
            *n += 1;
            *n - 1
        };
        let admitted = Admitted {
            by_user: self.by_user.clone(),
            user: user.to_string(),
        };
        let waiting = queue.waiting_of(user).await?;
        if waiting + under_way >= cap {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_waiting",
                format!(
                    "user {user} has {} tasks waiting, the most allowed \
                     (limits.waiting_tasks = {cap}); submit again when some have run",
                    waiting + under_way
                ),
            ));
        }
        Ok(admitted)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut by_user = self.by_user.lock();
        if let Some(n) = by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                by_user.remove(&self.user);
            }
        }
    }
}
