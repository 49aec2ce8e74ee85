//! What a node does when several share a PostgreSQL store: react to the
//! other nodes' notifications (claim its tasks, relay their changes to its
//! event stream, cancel its runs deleted elsewhere), heartbeat, and end the
//! runs of nodes silent past the lease (their waiting tasks say why they
//! wait, until the node returns).

use std::sync::Arc;

use tokio::sync::broadcast;

use super::engine::{now, Inner};
use super::model::{ResultCode, TaskState};
use super::store::{Interruption, Notice};
use super::{QueueError, CANCEL_GRACE};

/// The `detail_state` of a task whose node went silent while it ran.
pub const NODE_LOST_DETAIL: &str = "interrupted: its node stopped answering while the task ran";

/// Follow the store's notifications until the queue stops.
pub(super) async fn notice_loop(inner: Arc<Inner>, mut notices: broadcast::Receiver<Notice>) {
    let me = inner.store().node().unwrap_or_default().to_string();
    loop {
        let notice = tokio::select! {
            n = notices.recv() => n,
            _ = inner.stop.cancelled() => break,
        };
        match notice {
            Ok(Notice::Submitted { node, ids, origin }) => {
                if node == me {
                    inner.wake.notify_one();
                }
                if origin != me {
                    relay(&inner, &ids).await;
                }
            }
            Ok(Notice::Changed { ids, origin }) => {
                if origin != me {
                    relay(&inner, &ids).await;
                }
            }
            Ok(Notice::Cancel { node, id }) => {
                if node == me {
                    inner.cancel_local(id);
                }
            }
            Ok(Notice::Schedules { .. } | Notice::Deliveries { .. }) => {}
            Ok(Notice::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                // Some notifications may be lost: look for waiting work.
                inner.wake.notify_one();
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Most tasks whose last relayed state is remembered (to drop repeats).
const RELAYED_MEMORY: usize = 4096;

/// Announce tasks another node changed, as the store has them now. A task
/// read the same as last time is not announced again: two notices read
/// after the same change (a progress flush, then the end) show one end.
async fn relay(inner: &Inner, ids: &[i64]) {
    if inner.events.receiver_count() == 0 {
        return;
    }
    let tasks = match inner.store().get_many(ids).await {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::warn!(tasks = ids.len(), error = %format!("{e:#}"), "reading changed tasks");
            return;
        }
    };
    for task in tasks {
        {
            let mut last = inner.relayed.lock();
            if last.get(&task.id) == Some(&task) {
                continue;
            }
            if last.len() >= RELAYED_MEMORY {
                last.clear();
            }
            last.insert(task.id, task.clone());
        }
        inner.announce(task)
    }
}

/// Heartbeat every third of the lease; end the runs of silent nodes.
pub(super) async fn liveness_loop(inner: Arc<Inner>) {
    let lease = inner.config.lease;
    let mut tick = tokio::time::interval((lease / 3).max(std::time::Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.stop.cancelled() => break,
        }
        match inner.store().heartbeat().await {
            Ok(cleared) => relay(&inner, &cleared).await,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "node heartbeat failed"),
        }
        match inner
            .store()
            .reap_silent_nodes(
                lease,
                Interruption::new(ResultCode::Interrupted.code(), NODE_LOST_DETAIL, now()),
            )
            .await
        {
            Ok(ids) => {
                for id in &ids {
                    tracing::warn!(task_id = id, "{NODE_LOST_DETAIL}");
                }
                relay(&inner, &ids).await;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "checking for silent nodes failed"),
        }
        match inner.store().mark_silent_waiting(lease).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    tracing::warn!(tasks = ids.len(), "waiting tasks of a silent node");
                }
                relay(&inner, &ids).await;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "marking a silent node's waiting tasks failed")
            }
        }
    }
}

/// Ask `node` to cancel its run of `id` and wait (up to [`CANCEL_GRACE`])
/// until the store shows it ended. Returns whether it did.
pub(super) async fn cancel_remote(inner: &Inner, node: &str, id: i64) -> Result<bool, QueueError> {
    let Some(mut notices) = inner.store().notices() else {
        return Ok(false);
    };
    inner.store().request_cancel(node, id).await?;
    tracing::info!(task_id = id, node, "asked the task's node to cancel it");
    let deadline = tokio::time::Instant::now() + CANCEL_GRACE;
    loop {
        match inner.store().get(id).await? {
            Some(t) if t.state == TaskState::Running => {}
            _ => return Ok(true),
        }
        // Wait for the next change of this task (or anything, after a gap).
        let changed = async {
            loop {
                match notices.recv().await {
                    Ok(Notice::Changed { ids, .. }) if ids.contains(&id) => return true,
                    Ok(Notice::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        return true
                    }
                    Err(broadcast::error::RecvError::Closed) => return false,
                    Ok(_) => {}
                }
            }
        };
        match tokio::time::timeout_at(deadline, changed).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Ok(false),
        }
    }
}
