//! A plugin's WASI stdout and stderr, line by line into its task's log (or
//! into the server log, with the plugin's name, outside a task).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::queue::{LogLevel, Reporter};

/// Longest line kept before it is cut and emitted.
const MAX_LINE: usize = 16 * 1024;

/// Where one of a plugin's output streams goes.
#[derive(Clone)]
pub struct LogPipe {
    plugin: Arc<str>,
    reporter: Option<Arc<dyn Reporter>>,
    level: LogLevel,
}

impl LogPipe {
    /// Lines at `level` to `reporter` (a task's log), or to `tracing` when `None`.
    pub fn new(plugin: Arc<str>, reporter: Option<Arc<dyn Reporter>>, level: LogLevel) -> LogPipe {
        LogPipe {
            plugin,
            reporter,
            level,
        }
    }

    fn emit(&self, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes);
        let line = line.trim_end_matches(['\r', '\n']);
        match &self.reporter {
            Some(r) => r.log(self.level, line),
            None => tracing::info!(plugin = %self.plugin, "{line}"),
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            pipe: self.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    pipe: LogPipe,
    buf: Vec<u8>,
}

impl LineWriter {
    fn drain_lines(&mut self) {
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let rest = self.buf.split_off(pos + 1);
            self.pipe.emit(&self.buf);
            self.buf = rest;
        }
        if self.buf.len() >= MAX_LINE {
            self.pipe.emit(&self.buf);
            self.buf.clear();
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        self.drain_lines();
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.pipe.emit(&rest);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.pipe.emit(&self.buf);
        }
    }
}
