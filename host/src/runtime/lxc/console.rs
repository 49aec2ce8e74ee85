//! An LXC container's console log, followed: its last lines, then what is
//! appended, read from where the previous read ended. The file's size is
//! looked at every [`POLL`] (LXC appends to a plain file and tells no one);
//! a file that got shorter was truncated and is read again from its start.
//! The stream ends once the container's init process is gone (the
//! container stopped) and what it wrote before is read.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::stats::{open_log, read_error, tail_of};
use crate::runtime::log_lines::whole_lines;
use crate::runtime::{Error, LogStream, RtResult};

/// How often a followed console log's size is looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// The most read from the log at once; more waits for the next read, which
/// comes without waiting for [`POLL`].
const READ: u64 = 64 * 1024;

/// A container's init process, by pid and start time (a pid alone could be
/// another process's after the container stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    pid: u32,
    start: u64,
}

impl Init {
    /// The process `pid` as it runs now; `None` when there is none.
    pub fn of(pid: u32) -> Option<Init> {
        start_time(pid).map(|start| Init { pid, start })
    }

    /// Whether the process still runs.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// The start time of process `pid` (`/proc/<pid>/stat`'s 22nd field).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The console log at `path` followed while `init` runs (`None`: the
/// container is stopped, so the stream ends after the last `tail` lines).
pub async fn follow(path: PathBuf, tail: u32, init: Option<Init>) -> RtResult<LogStream> {
    let opened = path.clone();
    let (file, first, pos) = blocking(move || match open_log(&opened)? {
        Some(file) => {
            let (text, end) = tail_of(&file, tail)?;
            Ok((Some(Arc::new(file)), text, end))
        }
        None => Ok((None, String::new(), 0)),
    })
    .await?;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let console = Console {
        path,
        file,
        pos,
        init,
        tick,
        ended: false,
    };
    let appended = futures::stream::unfold(console, |mut c| async move {
        let next = c.next().await?;
        Some((next, c))
    });
    let first = futures::stream::iter([Ok(first.into_bytes())]);
    Ok(whole_lines(first.chain(appended)))
}

/// A followed console log: where the next read starts.
struct Console {
    path: PathBuf,
    /// `None` until the file exists.
    file: Option<Arc<std::fs::File>>,
    pos: u64,
    init: Option<Init>,
    tick: tokio::time::Interval,
    ended: bool,
}

impl Console {
    /// The next bytes appended; `None` once the container stopped and
    /// everything it wrote was read.
    async fn next(&mut self) -> Option<RtResult<Vec<u8>>> {
        if self.ended {
            return None;
        }
        loop {
            // Looked at before reading: what a stopped container wrote is
            // in the file by then, and is read before the stream ends.
            let alive = self.init.is_some_and(|i| i.alive());
            match self.read().await {
                Ok(bytes) if !bytes.is_empty() => return Some(Ok(bytes)),
                Ok(_) => {}
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
            if !alive {
                self.ended = true;
                return None;
            }
            self.tick.tick().await;
        }
    }

    /// What was appended since the last read (at most [`READ`] bytes).
    async fn read(&mut self) -> RtResult<Vec<u8>> {
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let path = self.path.clone();
                match blocking(move || open_log(&path)).await? {
                    Some(f) => {
                        let f = Arc::new(f);
                        self.file = Some(f.clone());
                        self.pos = 0;
                        f
                    }
                    None => return Ok(Vec::new()),
                }
            }
        };
        let from = self.pos;
        let (bytes, pos) = blocking(move || {
            let len = file.metadata().map_err(read_error)?.len();
            // Shorter than what was read: truncated, read again from the start.
            let from = if len < from { 0 } else { from };
            let mut bytes = vec![0; (len - from).min(READ) as usize];
            let n = file.read_at(&mut bytes, from).map_err(read_error)?;
            bytes.truncate(n);
            Ok((bytes, from + n as u64))
        })
        .await?;
        self.pos = pos;
        Ok(bytes)
    }
}

/// `f` on a thread that may block (file reads).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> RtResult<T> + Send + 'static,
) -> RtResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        let me = Init::of(std::process::id()).expect("this process");
        assert!(me.alive());
        let other = Init {
            start: me.start + 1,
            ..me
        };
        assert!(!other.alive(), "same pid, another start: another process");
    }

    async fn next_text(s: &mut LogStream) -> String {
        tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a chunk in time")
            .expect("a chunk")
            .expect("no error")
    }

    #[tokio::test]
    async fn the_tail_then_appended_lines_then_the_end_once_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        // A child process stands for the container's init.
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let init = Init::of(child.id());
        assert!(init.is_some());
        let mut s = follow(path.clone(), 2, init).await.unwrap();
        assert_eq!(next_text(&mut s).await, "two\nthree\n");
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // Half a line waits for its end.
        log.write_all(b"fo").unwrap();
        let pending = tokio::time::timeout(POLL * 3, s.next()).await;
        assert!(pending.is_err(), "half a line came out: {pending:?}");
        log.write_all(b"ur\n").unwrap();
        assert_eq!(next_text(&mut s).await, "four\n");
        // Truncated: read again from the start.
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(next_text(&mut s).await, "new\n");
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"last")
            .unwrap();
        assert_eq!(next_text(&mut s).await, "last\n");
        let end = tokio::time::timeout(Duration::from_secs(10), s.next()).await;
        assert!(end.unwrap().is_none(), "ended once the init is gone");
    }

    #[tokio::test]
    async fn a_stopped_containers_log_ends_after_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "a\nb\n").unwrap();
        let all: Vec<_> = follow(path, 1, None).await.unwrap().collect().await;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].as_deref().unwrap(), "b\n");
        let none: Vec<_> = follow(dir.path().join("missing.log"), 5, None)
            .await
            .unwrap()
            .collect()
            .await;
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s\n").unwrap();
        let link = dir.path().join("console.log");
        std::os::unix::fs::symlink(dir.path().join("secret"), &link).unwrap();
        assert!(follow(link, 10, None).await.is_err());
    }
}
