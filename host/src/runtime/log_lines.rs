//! A container's output cut into whole lines, for the followed logs: the
//! engine hands out its writes as they came (a frame may hold half a line,
//! or several), and a reader splits what it gets on `\n`, so each chunk the
//! follow answers ends at a line end.

use futures::{Stream, StreamExt};

use super::traits::containers::LogStream;
use super::RtResult;

/// The longest line kept whole: a longer one is cut there (with a line end
/// added), so output that never ends a line cannot grow the buffer
/// without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// Bytes in, whole lines out; the end of an unfinished line is kept for
/// the next bytes.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The whole lines `bytes` completes, each with its `\n`, as text
    /// (invalid UTF-8 replaced); `None` when it completes none.
    pub fn push(&mut self, bytes: &[u8]) -> Option<String> {
        self.partial.extend_from_slice(bytes);
        let mut end = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let mut cut = false;
        if self.partial.len() - end > MAX_LINE {
            // An over-long unfinished line goes out as it is.
            end = self.partial.len();
            cut = true;
        }
        if end == 0 {
            return None;
        }
        let mut text = String::from_utf8_lossy(&self.partial[..end]).into_owned();
        self.partial.drain(..end);
        if cut {
            text.push('\n');
        }
        Some(text)
    }

    /// What is left of an unfinished line, with a line end added; `None`
    /// when nothing is left.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let mut text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        text.push('\n');
        Some(text)
    }
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

/// `chunks` (a container's writes, in order) as chunks of whole lines. An
/// unfinished last line is sent with a line end when `chunks` ends; an
/// error is passed on and ends the stream.
pub fn whole_lines<S, B>(chunks: S) -> LogStream
where
    S: Stream<Item = RtResult<B>> + Send + 'static,
    B: AsRef<[u8]>,
{
    let state = (Box::pin(chunks), Lines::default(), false);
    futures::stream::unfold(state, |(mut chunks, mut lines, ended)| async move {
        if ended {
            return None;
        }
        loop {
            match chunks.next().await {
                Some(Ok(bytes)) => {
                    if let Some(text) = lines.push(bytes.as_ref()) {
                        return Some((Ok(text), (chunks, lines, false)));
                    }
                }
                Some(Err(e)) => return Some((Err(e), (chunks, lines, true))),
                None => {
                    let rest = lines.finish()?;
                    return Some((Ok(rest), (chunks, lines, true)));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Error;

    #[test]
    fn keeps_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn only_whole_lines_come_out() {
        let mut l = Lines::default();
        assert_eq!(l.push(b"a"), None);
        assert_eq!(l.push(b"b\nc"), Some("ab\n".into()));
        assert_eq!(l.push(b"\nd\ne\nf"), Some("c\nd\ne\n".into()));
        assert_eq!(l.finish(), Some("f\n".into()));
        assert_eq!(l.finish(), None);
    }

    #[test]
    fn an_endless_line_is_cut() {
        let mut l = Lines::default();
        let long = vec![b'x'; MAX_LINE + 1];
        let out = l.push(&long).unwrap();
        assert_eq!(out.len(), MAX_LINE + 2);
        assert!(out.ends_with("x\n"));
        assert!(l.partial.is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut l = Lines::default();
        assert_eq!(l.push(b"a\xff\n"), Some("a\u{fffd}\n".into()));
    }

    #[tokio::test]
    async fn a_stream_is_regrouped_and_an_error_ends_it() {
        let chunks = futures::stream::iter(vec![
            Ok(b"one\ntw".to_vec()),
            Ok(b"o".to_vec()),
            Ok(b"\nthree".to_vec()),
        ]);
        let out: Vec<_> = whole_lines(chunks).collect().await;
        let out: Vec<String> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(out, ["one\n", "two\n", "three\n"]);

        let failing = futures::stream::iter(vec![
            Ok(b"a\n".to_vec()),
            Err(Error::Runtime("gone".into())),
            Ok(b"b\n".to_vec()),
        ]);
        let out: Vec<_> = whole_lines(failing).collect().await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_deref().unwrap(), "a\n");
        assert!(out[1].is_err());
    }
}
