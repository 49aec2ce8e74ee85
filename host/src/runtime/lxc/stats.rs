//! What `GET container` and `GET container/lxc/{id}/logs` read of an LXC
//! container: the counters `lxc-info -S -H` prints (from the container's
//! cgroup and its host-side veth), and the tail of its console log.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::runtime::log_lines::last_lines;
use crate::runtime::usage::Counters;
use crate::runtime::{Error, RtResult};

/// How many `lxc-info` run at once while sampling.
pub const CONCURRENCY: usize = 16;

/// The most of a console log one `logs` call reads (its end).
pub const MAX_LOG_BYTES: u64 = 4 << 20;

/// The counters of `lxc-info -S -H` output (`CPU use: <ns>`, `Memory use:
/// <bytes>`, and per link `TX bytes:` / `RX bytes:`, which LXC prints from
/// the container's side). Links are added up; what is missing reads 0.
pub fn parse_info(out: &str) -> Counters {
    let mut c = Counters::default();
    for line in out.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Ok(n) = value.trim().parse::<u64>() else {
            continue;
        };
        match key.trim() {
            "CPU use" => c.cpu_ns = n,
            "Memory use" => c.memory = n,
            "TX bytes" => c.tx = c.tx.saturating_add(n),
            "RX bytes" => c.rx = c.rx.saturating_add(n),
            _ => {}
        }
    }
    c
}

/// The last `tail` lines of the file at `path` (at most its last
/// [`MAX_LOG_BYTES`]); `""` when there is no such file yet (the container
/// never ran with a console log). A symbolic link is refused, not followed.
pub fn tail_file(path: &Path, tail: u32) -> RtResult<String> {
    match open_log(path)? {
        Some(file) => Ok(tail_of(&file, tail)?.0),
        None => Ok(String::new()),
    }
}

/// The console log at `path`, opened for reading; `None` when there is no
/// such file yet. A symbolic link or anything but a plain file is refused
/// (opening does not wait on a FIFO planted there).
pub fn open_log(path: &Path) -> RtResult<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(Error::Runtime("the console log is not a file".into()));
    }
    Ok(Some(file))
}

/// The last `tail` lines of `file` (read from at most its last
/// [`MAX_LOG_BYTES`]), and its length when read: where what is written
/// next starts.
pub fn tail_of(file: &std::fs::File, tail: u32) -> RtResult<(String, u64)> {
    let mut file = file;
    let len = file.metadata().map_err(read_error)?.len();
    let start = len.saturating_sub(MAX_LOG_BYTES);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.take(len - start).read_to_end(&mut bytes))
        .map_err(read_error)?;
    let end = start + bytes.len() as u64;
    Ok((last_lines(&String::from_utf8_lossy(&bytes), tail), end))
}

/// A console log read failure, by its kind only (no path in the answer).
pub fn read_error(e: std::io::Error) -> Error {
    Error::Runtime(format!("reading the console log: {}", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lxc_info_counters() {
        let out = "CPU use:        2345678901\nBlkIO use:      4096\nMemory use:     1048576\n\
                   KMem use:       0\nLink:           vethAB12\n TX bytes:      300\n RX bytes:      700\n \
                   Total bytes:    1000\n";
        assert_eq!(
            parse_info(out),
            Counters {
                cpu_ns: 2_345_678_901,
                memory: 1_048_576,
                rx: 700,
                tx: 300
            }
        );
        assert_eq!(parse_info("garbage"), Counters::default());
    }

    #[test]
    fn a_console_log_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("console.log"))
            .unwrap();
        assert!(tail_file(&dir.path().join("console.log"), 10).is_err());
        assert_eq!(tail_file(&dir.path().join("missing.log"), 10).unwrap(), "");
        std::fs::write(dir.path().join("c.log"), "1\n2\n3\n").unwrap();
        assert_eq!(tail_file(&dir.path().join("c.log"), 2).unwrap(), "2\n3\n");
    }
}
