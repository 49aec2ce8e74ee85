//! Scheduled tasks: when a schedule's cron says, it submits a normal task
//! as its owner. [`run`] is the server's scheduler loop; when a schedule
//! fires is [`crate::timing`]'s.
//!
//! Rules:
//! - **firing**: a schedule submits its task as its owner under the owner's
//!   policy *at the time it fires* (the checks of a submit: the category's
//!   policy and the early container checks, then the plugin's `validate`).
//!   A refusal, or a category no longer loaded, is recorded as the
//!   schedule's `last_error`; no task is stored, the schedule stays and
//!   fires at its next occurrence.
//! - **misfires** (the server was down, or busy, past one or more
//!   occurrences): the schedule fires *once*, for its latest missed
//!   occurrence, and moves on to the first occurrence after now.
//! - **several nodes**: every node's loop races on the same rows; firing is
//!   a compare-and-set on `next_run` in the transaction that stores the
//!   task ([`crate::store::schedules`]), so exactly one node fires each
//!   occurrence and a crash neither loses nor doubles one.
//! - **daylight saving time** (croner's rule, which is Vixie cron's): a
//!   time that does not exist (spring forward) fires at the first instant
//!   after the gap for a fixed time (`30 2 * * *`), and is skipped for a
//!   wildcard or step field (`*/15 * * * *`); a time that occurs twice
//!   (fall back) fires once, at its first occurrence, for a fixed time,
//!   and at each occurrence for a wildcard or step field.
//!
//! The loop sleeps until the earliest `next_run`, and wakes early when a
//! schedule is created, resumed or deleted (on this node: [`crate::timing::Wake`]; on
//! another: [`crate::store::Notice::Schedules`]). It never polls.

use std::time::Duration;

use crate::api::AppState;
use crate::store::schedules::{Due, Fired, Firing};
use crate::store::Notice;
use crate::timing::{Timing, NEVER};

/// The longest the loop sleeps without looking again (a clock set forward
/// is noticed within it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How long the loop waits after the store failed.
const RETRY: Duration = Duration::from_secs(5);

/// The scheduler loop of the server: fire what is due, sleep until the
/// next `next_run`, until `state.shutdown` is cancelled. Returns at once
/// when the task store keeps no schedules.
pub async fn run(state: AppState) {
    if state.queue.schedules().is_none() {
        return;
    }
    let mut notices = state.queue.notices();
    let stop = state.shutdown.clone();
    loop {
        let wait = match fire_due(&state).await {
            Ok(()) => match next_wait(&state).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "reading the next schedule failed");
                    RETRY
                }
            },
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "firing schedules failed");
                RETRY
            }
        };
        let notice = async {
            match notices.as_mut() {
                Some(rx) => loop {
                    match rx.recv().await {
                        Ok(Notice::Schedules { .. } | Notice::Resync)
                        | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                },
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.schedule_wake.notified() => {}
            _ = notice => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// How long until the earliest `next_run` (at most [`MAX_SLEEP`]).
async fn next_wait(state: &AppState) -> anyhow::Result<Duration> {
    let Some(store) = state.queue.schedules() else {
        return Ok(MAX_SLEEP);
    };
    Ok(match store.next_due().await? {
        None => MAX_SLEEP,
        Some(t) => {
            let now_ms = now_millis();
            let ms = (t.saturating_mul(1000)).saturating_sub(now_ms).max(0);
            Duration::from_millis(ms as u64).min(MAX_SLEEP)
        }
    })
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Fire every schedule that is due now.
async fn fire_due(state: &AppState) -> anyhow::Result<()> {
    let Some(store) = state.queue.schedules() else {
        return Ok(());
    };
    let now = crate::store::tasks::model::now();
    let mut failed = 0;
    for due in store.due_schedules(now).await? {
        let id = due.schedule.id;
        if let Err(e) = fire_one(state, due, now).await {
            tracing::warn!(schedule_id = id, error = %format!("{e:#}"), "firing a schedule failed");
            failed += 1;
        }
    }
    // A schedule still due after a failed write would wake the loop at
    // once, again and again: the loop waits [`RETRY`] instead.
    if failed > 0 {
        anyhow::bail!("{failed} schedules could not be fired");
    }
    Ok(())
}

/// Fire one due schedule: the owner's policy and the plugin's validation
/// now, then the compare-and-set that stores the task (or the refusal).
async fn fire_one(state: &AppState, due: Due, now: i64) -> anyhow::Result<()> {
    let Some(store) = state.queue.schedules() else {
        return Ok(());
    };
    let s = &due.schedule;
    let (occurrence, next, outcome) = match Timing::parse(&s.cron, &s.timezone) {
        Ok(timing) => {
            let (occurrence, next) = timing.catch_up(s.next_run, now);
            let outcome = submit_check(state, &s.owner, &s.category, &due.full_params).await;
            (occurrence, next, outcome)
        }
        // Stored expressions were parsed at creation; one this build reads
        // otherwise is recorded as the error, and the schedule stops.
        Err(e) => (s.next_run, None, Err(e.to_string())),
    };
    if let Err(e) = &outcome {
        tracing::info!(schedule_id = s.id, user = %s.owner, error = %e, "a schedule's task was refused");
    }
    let fired = store
        .fire(Firing {
            id: s.id,
            due: s.next_run,
            occurrence,
            next: next.unwrap_or(NEVER),
            outcome,
            on_stored: Some(state.queue.on_stored()),
        })
        .await?;
    if let Fired::Won(Some(task)) = &fired {
        tracing::info!(schedule_id = s.id, task_id = task.id, "schedule fired");
        crate::metrics::task_submitted(&task.category);
        state.queue.stored(task);
    }
    Ok(())
}

/// What a submit of `full_params` to `category` by `owner` would store,
/// checked now: the owner's policy, then the plugin's validation. The
/// error is the message the submit would answer (it names the field).
async fn submit_check(
    state: &AppState,
    owner: &str,
    category: &str,
    full_params: &str,
) -> Result<crate::store::tasks::NewTask, String> {
    let params: serde_json::Value =
        serde_json::from_str(full_params).map_err(|e| format!("params: {e}"))?;
    crate::api::tasks::admit_user(state, owner, category, &params).map_err(|e| e.message)?;
    state
        .queue
        .prepare(owner, category, &params)
        .await
        .map_err(|e| match e {
            crate::queue::QueueError::Store(_) => "the task store failed".to_string(),
            e => e.to_string(),
        })
}
