//! The last lines the server logged, kept in memory for the diagnosis
//! report (`GET system/report`): a bounded ring that the log writes into
//! beside stderr, so a report carries recent history without a log file.

use std::collections::VecDeque;
use std::io;

use parking_lot::Mutex;

/// Lines kept.
pub const LINES: usize = 1000;
/// Longest line kept, in bytes (longer ones are cut).
pub const LINE_BYTES: usize = 2000;

static TAIL: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// Keep `text` (one or more lines), the oldest lines dropped past [`LINES`].
pub fn push(text: &str) {
    let mut tail = TAIL.lock();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let line = strip_ansi(line);
        let mut cut = line.len().min(LINE_BYTES);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        if tail.len() == LINES {
            tail.pop_front();
        }
        tail.push_back(line[..cut].to_string());
    }
}

/// The kept lines, oldest first.
pub fn lines() -> Vec<String> {
    TAIL.lock().iter().cloned().collect()
}

/// `line` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A log writer that keeps what it is given in the ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct TailWriter;

impl io::Write for TailWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        push(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TailWriter {
    type Writer = TailWriter;
    fn make_writer(&'a self) -> TailWriter {
        TailWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_without_colours() {
        push("\u{1b}[2mfirst\u{1b}[0m line\nsecond\n");
        let kept = lines();
        let at = kept.iter().position(|l| l == "first line").unwrap();
        assert_eq!(kept[at + 1], "second");
        for i in 0..LINES + 5 {
            push(&format!("n{i}"));
        }
        let kept = lines();
        assert_eq!(kept.len(), LINES);
        assert_eq!(kept.last().unwrap(), &format!("n{}", LINES + 4));
        push(&"é".repeat(LINE_BYTES));
        assert!(lines().last().unwrap().len() <= LINE_BYTES);
    }
}
