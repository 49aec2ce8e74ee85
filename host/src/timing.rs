//! When a schedule fires: a cron expression read in an IANA time zone
//! ([`Timing`], with `croner` and `chrono-tz`), and the [`Wake`] that makes
//! the scheduler loop ([`crate::schedule`]) look again. A leaf: the API
//! checks expressions with it, the loop computes occurrences.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use tokio::sync::Notify;

/// Longest cron expression accepted.
pub const MAX_CRON_LEN: usize = 200;

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
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

/// A `next_run` for an expression with no later time: far enough that it
/// never comes (year 9999).
pub const NEVER: i64 = 253_402_300_799;

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
