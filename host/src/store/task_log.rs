//! Each task's own log lines: what its plugin logged (the SDK's logging,
//! WASI stdout and stderr) and the engine output the host relayed for it.
//!
//! A running task's lines live in memory in a [`LogBuffer`], bounded to the
//! last [`LogLimits::lines`] lines and [`LogLimits::bytes`] bytes of
//! messages, whichever is reached first. The queue writes what is new in
//! batches ([`LogBatch`]): with the periodic flush and with the end of the
//! run ([`crate::store::tasks::Finish::log`]), never a write per line. The
//! store keeps the lines in a table of their own (`task_log`), numbered
//! from 0 per task, deleted with the task (a foreign key that cascades).
//! Lines dropped by the bound are deleted by the batch that drops them, so
//! a stored log is truncated exactly when its first line is not line 0.

use std::collections::VecDeque;

/// Severity of a task log line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Fine-grained detail.
    Debug,
    /// Normal progress information.
    Info,
    /// Something unexpected that did not stop the task.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    /// The level as stored and shown: `debug`, `info`, `warn`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The level named `s` (as [`LogLevel::as_str`] writes it); anything
    /// else reads as `info`.
    pub fn parse(s: &str) -> LogLevel {
        match s {
            "debug" => LogLevel::Debug,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LogLine {
    /// When it was logged, RFC 3339 in UTC with milliseconds
    /// (`2026-12-07T17:03:52.123Z`).
    #[serde(serialize_with = "ts_text")]
    #[schema(value_type = String, example = "2026-12-07T17:03:52.123Z")]
    pub ts: i64,
    /// Its severity.
    pub level: LogLevel,
    /// The text, secrets masked.
    pub message: String,
}

fn ts_text<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_ms(*ms))
}

use crate::clock::rfc3339_ms;

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A task's log as read: its lines, oldest first, and whether older ones
/// were dropped by the bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLog {
    /// The lines kept, oldest first.
    pub lines: Vec<LogLine>,
    /// Whether older lines were dropped.
    pub truncated: bool,
}

/// How much of each task's log is kept (`[queue] task_log_lines`,
/// `task_log_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// The last this many lines; 0 keeps none (nothing is recorded).
    pub lines: usize,
    /// At most this many bytes of messages; a longer message is cut to it.
    pub bytes: usize,
}

/// 1,000 lines.
pub const DEFAULT_LOG_LINES: usize = 1000;
/// 256 KiB.
pub const DEFAULT_LOG_BYTES: usize = 256 * 1024;

impl Default for LogLimits {
    /// The last 1,000 lines or 256 KiB, whichever is reached first.
    fn default() -> Self {
        LogLimits {
            lines: DEFAULT_LOG_LINES,
            bytes: DEFAULT_LOG_BYTES,
        }
    }
}

impl LogLimits {
    /// Whether anything is recorded at all.
    pub fn keeps_any(&self) -> bool {
        self.lines > 0 && self.bytes > 0
    }
}

/// What to write of one task's log: the lines not written yet, and from
/// which line on the stored ones are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    /// The task.
    pub id: i64,
    /// New lines with their numbers (increasing).
    pub lines: Vec<(i64, LogLine)>,
    /// Stored lines numbered below this are deleted (dropped by the bound).
    pub keep_from: i64,
}

/// The bounded log of one running task, in memory.
#[derive(Debug)]
pub struct LogBuffer {
    limits: LogLimits,
    /// Kept lines with their numbers, oldest first.
    lines: VecDeque<(i64, LogLine)>,
    /// Bytes of the kept messages.
    bytes: usize,
    /// The number of the next line.
    next: i64,
    /// Lines numbered below this were handed to a batch.
    written: i64,
}

impl LogBuffer {
    /// An empty log kept within `limits`.
    pub fn new(limits: LogLimits) -> LogBuffer {
        LogBuffer {
            limits,
            lines: VecDeque::new(),
            bytes: 0,
            next: 0,
            written: 0,
        }
    }

    /// Append a line, dropping the oldest past the bound; a message longer
    /// than the byte bound is cut to it (at a character boundary).
    pub fn push(&mut self, mut line: LogLine) {
        if !self.limits.keeps_any() {
            return;
        }
        if line.message.len() > self.limits.bytes {
            let mut cut = self.limits.bytes;
            while !line.message.is_char_boundary(cut) {
                cut -= 1;
            }
            line.message.truncate(cut);
        }
        self.bytes += line.message.len();
        self.lines.push_back((self.next, line));
        self.next += 1;
        while self.lines.len() > self.limits.lines || self.bytes > self.limits.bytes {
            match self.lines.pop_front() {
                Some((_, old)) => self.bytes -= old.message.len(),
                None => break,
            }
        }
    }

    /// The number of the oldest line kept (the next one when none is).
    fn first(&self) -> i64 {
        self.lines.front().map_or(self.next, |(n, _)| *n)
    }

    /// What is not written yet, marked written; `None` when nothing changed.
    pub fn take_batch(&mut self, id: i64) -> Option<LogBatch> {
        if self.next == self.written {
            return None;
        }
        let from = self.written;
        self.written = self.next;
        Some(LogBatch {
            id,
            lines: self
                .lines
                .iter()
                .filter(|(n, _)| *n >= from)
                .cloned()
                .collect(),
            keep_from: self.first(),
        })
    }

    /// Every line kept, as a read shows them.
    pub fn snapshot(&self) -> TaskLog {
        TaskLog {
            lines: self.lines.iter().map(|(_, l)| l.clone()).collect(),
            truncated: self.first() > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> LogLine {
        LogLine {
            ts: 0,
            level: LogLevel::Info,
            message: message.into(),
        }
    }

    fn messages(log: &TaskLog) -> Vec<&str> {
        log.lines.iter().map(|l| l.message.as_str()).collect()
    }

    #[test]
    fn keeps_the_last_lines_within_both_bounds() {
        let mut b = LogBuffer::new(LogLimits { lines: 3, bytes: 8 });
        for m in ["a", "b", "c"] {
            b.push(line(m));
        }
        assert_eq!(messages(&b.snapshot()), ["a", "b", "c"]);
        assert!(!b.snapshot().truncated);
        b.push(line("d"));
        assert_eq!(messages(&b.snapshot()), ["b", "c", "d"]);
        assert!(b.snapshot().truncated);
        b.push(line("eeeeeee"));
        assert_eq!(messages(&b.snapshot()), ["d", "eeeeeee"]);
        b.push(line("0123456789"));
        assert_eq!(messages(&b.snapshot()), ["01234567"]);
    }

    #[test]
    fn batches_hold_new_lines_and_where_the_kept_ones_start() {
        let mut b = LogBuffer::new(LogLimits {
            lines: 2,
            bytes: 100,
        });
        assert_eq!(b.take_batch(1), None);
        b.push(line("a"));
        let first = b.take_batch(1).unwrap();
        assert_eq!((first.lines.len(), first.keep_from), (1, 0));
        assert_eq!(b.take_batch(1), None);
        for m in ["b", "c", "d"] {
            b.push(line(m));
        }
        let next = b.take_batch(1).unwrap();
        let numbers: Vec<i64> = next.lines.iter().map(|(n, _)| *n).collect();
        assert_eq!((numbers, next.keep_from), (vec![2, 3], 2));
    }

    #[test]
    fn no_lines_keeps_nothing() {
        let mut b = LogBuffer::new(LogLimits {
            lines: 0,
            bytes: 100,
        });
        b.push(line("a"));
        assert_eq!(b.take_batch(1), None);
        assert_eq!(b.snapshot(), TaskLog::default());
    }

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
