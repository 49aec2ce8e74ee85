//! What `GET container` and `GET container/lxc/{id}/logs` read of an LXC
//! container: the counters `lxc-info -S -H` prints (from the container's
//! cgroup and its host-side veth), and the tail of its console log.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

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
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => {
            return Err(Error::Runtime(format!(
                "reading the console log: {}",
                e.kind()
            )))
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::Runtime(format!("reading the console log: {}", e.kind())))?;
    if !meta.is_file() {
        return Err(Error::Runtime("the console log is not a file".into()));
    }
    let start = meta.len().saturating_sub(MAX_LOG_BYTES);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.take(MAX_LOG_BYTES).read_to_end(&mut bytes))
        .map_err(|e| Error::Runtime(format!("reading the console log: {}", e.kind())))?;
    Ok(last_lines(&String::from_utf8_lossy(&bytes), tail))
}

/// The last `n` lines of `text`, each with its line end.
pub fn last_lines(text: &str, n: u32) -> String {
    if n == 0 {
        return String::new();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let cut = body
        .rmatch_indices('\n')
        .nth(n as usize - 1)
        .map_or(0, |(i, _)| i + 1);
    text[cut..].to_string()
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
    fn keeps_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
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
