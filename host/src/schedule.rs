//! Scheduled tasks: when a schedule's cron says, it submits a normal task
//! as its owner. [`Timing`] reads a cron expression in an IANA time zone
//! (`croner`, `chrono-tz`); [`run`] is the server's scheduler loop.
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
//! schedule is created, resumed or deleted (on this node: [`Wake`]; on
//! another: [`crate::store::Notice::Schedules`]). It never polls.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use tokio::sync::Notify;

use crate::api::AppState;
use crate::store::schedules::{Due, Fired, Firing};
use crate::store::Notice;

/// Longest cron expression accepted.
pub const MAX_CRON_LEN: usize = 200;
/// The longest the loop sleeps without looking again (a clock set forward
/// is noticed within it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How long the loop waits after the store failed.
const RETRY: Duration = Duration::from_secs(5);

/// A cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    zone: chrono_tz::Tz,
}

/// Why a cron expression or a time zone was refused: the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// The cron expression.
    #[error("cron: {0}")]
    Cron(String),
    /// The time zone.
    #[error("timezone: {0}")]
    Timezone(String),
}

impl Timing {
    /// `cron` (5 fields, or 6 with seconds first; `@daily` and the like)
    /// in IANA zone `timezone` (e.g. `Europe/Paris`, `UTC`).
    pub fn parse(cron: &str, timezone: &str) -> Result<Timing, TimingError> {
        if cron.len() > MAX_CRON_LEN {
            return Err(TimingError::Cron(format!(
                "longer than {MAX_CRON_LEN} characters"
            )));
        }
        let fields = cron.split_whitespace().count();
        if !cron.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(TimingError::Cron(format!(
                "expected 5 fields (minute hour day month weekday) or 6 (seconds first), found {fields}"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| TimingError::Cron(e.to_string()))?;
        let zone = chrono_tz::Tz::from_str(timezone).map_err(|_| {
            TimingError::Timezone(format!(
                "`{}` is not an IANA time zone (e.g. `Europe/Paris`, `UTC`)",
                timezone.chars().take(64).collect::<String>()
            ))
        })?;
        Ok(Timing { cron, zone })
    }

    fn at(&self, epoch: i64) -> Option<DateTime<chrono_tz::Tz>> {
        Some(
            self.zone
                .from_utc_datetime(&DateTime::<Utc>::from_timestamp(epoch, 0)?.naive_utc()),
        )
    }

    /// The first occurrence strictly after `epoch` (seconds), if any.
    pub fn next_after(&self, epoch: i64) -> Option<i64> {
        let t = self
            .cron
            .find_next_occurrence(&self.at(epoch)?, false)
            .ok()?;
        Some(t.timestamp())
    }

    /// The latest occurrence at or before `epoch`, if any.
    fn latest_at(&self, epoch: i64) -> Option<i64> {
        let t = self
            .cron
            .find_previous_occurrence(&self.at(epoch)?, true)
            .ok()?;
        Some(t.timestamp())
    }

    /// The misfire rule: a schedule due at `due` and looked at `now`
    /// (`due <= now`) fires once, for the latest occurrence at or before
    /// now, then waits for the first one after now. Returns (occurrence,
    /// next); `next` is `None` when the expression has no later time.
    pub fn catch_up(&self, due: i64, now: i64) -> (i64, Option<i64>) {
        let occurrence = self.latest_at(now).map_or(due, |t| t.max(due));
        (occurrence, self.next_after(now.max(occurrence)))
    }
}

/// Wakes the local scheduler loop (a schedule was created, resumed or deleted).
#[derive(Debug, Default, Clone)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Make the loop read its next wake-up again.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`Wake::wake`] (or at once for one made since
    /// the last wait).
    async fn notified(&self) {
        self.0.notified().await;
    }
}

/// A `next_run` for an expression with no later time: far enough that it
/// never comes (year 9999).
pub const NEVER: i64 = 253_402_300_799;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn the_next_occurrence_is_read_in_the_zone() {
        let t = Timing::parse("0 3 * * *", "Europe/Paris").unwrap();
        // 03:00 in Paris in winter is 02:00 UTC.
        assert_eq!(
            t.next_after(epoch("2026-01-10T12:00:00Z")),
            Some(epoch("2026-01-11T02:00:00Z"))
        );
        // In summer, 01:00 UTC.
        assert_eq!(
            t.next_after(epoch("2026-07-10T12:00:00Z")),
            Some(epoch("2026-07-11T01:00:00Z"))
        );
        let utc = Timing::parse("0 3 * * *", "UTC").unwrap();
        assert_eq!(
            utc.next_after(epoch("2026-01-10T12:00:00Z")),
            Some(epoch("2026-01-11T03:00:00Z"))
        );
    }

    #[test]
    fn seconds_are_a_sixth_field_first() {
        let t = Timing::parse("*/5 * * * * *", "UTC").unwrap();
        assert_eq!(
            t.next_after(epoch("2026-01-10T12:00:01Z")),
            Some(epoch("2026-01-10T12:00:05Z"))
        );
        // Strictly after.
        assert_eq!(
            t.next_after(epoch("2026-01-10T12:00:05Z")),
            Some(epoch("2026-01-10T12:00:10Z"))
        );
    }

    #[test]
    fn dst_gap_and_overlap_follow_the_documented_rule() {
        // 2026-03-29: Paris jumps from 02:00 to 03:00; 02:30 does not exist
        // and fires right after the gap (03:00 local, 01:00 UTC).
        let t = Timing::parse("30 2 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            t.next_after(epoch("2026-03-28T12:00:00Z")),
            Some(epoch("2026-03-29T01:00:00Z"))
        );
        // 2026-10-25: 02:30 occurs twice; it fires once, the first time
        // (00:30 UTC), then the next day.
        let first = t.next_after(epoch("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, epoch("2026-10-25T00:30:00Z"));
        assert_eq!(t.next_after(first), Some(epoch("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "banana"] {
            match Timing::parse(bad, "UTC") {
                Err(TimingError::Cron(_)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(
            Timing::parse("* * * * *", "Mars/Olympus"),
            Err(TimingError::Timezone(_))
        ));
        assert!(Timing::parse("@daily", "Asia/Tokyo").is_ok());
    }

    #[test]
    fn a_misfire_runs_once_for_the_latest_missed_occurrence() {
        let t = Timing::parse("0 * * * *", "UTC").unwrap();
        let due = epoch("2026-01-10T10:00:00Z");
        // Down from 09:59 to 13:20: 10:00, 11:00, 12:00 and 13:00 were missed.
        let (occurrence, next) = t.catch_up(due, epoch("2026-01-10T13:20:00Z"));
        assert_eq!(occurrence, epoch("2026-01-10T13:00:00Z"));
        assert_eq!(next, Some(epoch("2026-01-10T14:00:00Z")));
        // On time: the occurrence is the one due.
        let (occurrence, next) = t.catch_up(due, due);
        assert_eq!(occurrence, due);
        assert_eq!(next, Some(epoch("2026-01-10T11:00:00Z")));
    }
}
