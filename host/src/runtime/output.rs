//! Output files under the share root: written to a temporary name by a
//! blocking writer thread (gzip there when asked, on every core), renamed at the end. A
//! failed or cancelled write leaves nothing behind.
//!
//! The temporary is created (`O_CREAT | O_EXCL | O_NOFOLLOW`) in the target's
//! folder through a descriptor opened beneath the share root, and renamed
//! within that same folder: a link planted while the task runs cannot send
//! the bytes elsewhere.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::runtime::beneath;
use crate::runtime::pgzip::ParGz;
use crate::runtime::storage::{ShareRoot, TEMP_MARKER};
use crate::runtime::Error;

/// Chunks in flight between the engine stream and the writer thread: the
/// engine's reads are up to 256 KiB, so at most 2 MiB wait for a slow disk
/// or the compressor (which keeps its own blocks in flight). 32 held up to
/// 8 MiB, a third of the server's resident set, for no speed.
const QUEUE: usize = 8;

/// An output being written; dropped without [`Output::commit`], it removes its temporary.
pub struct Output {
    dir: OwnedFd,
    temp: OsString,
    name: OsString,
    user_path: String,
    committed: bool,
}

impl Output {
    /// Prepare to write `user_path`: confined to the share root, refused
    /// with `conflict` when it exists and `overwrite` is false.
    pub fn prepare(
        share: &ShareRoot,
        user_path: &str,
        task_id: i64,
        overwrite: bool,
    ) -> Result<Output, Error> {
        let place = share.parent(user_path)?;
        let io = |e: std::io::Error| Error::Other(format!("path `{user_path}`: {e}"));
        match beneath::kind(place.dir.as_fd(), &place.name).map_err(io)? {
            Some(libc::S_IFDIR) => {
                return Err(Error::Conflict(format!("path `{user_path}` is a folder")));
            }
            Some(_) if !overwrite => {
                return Err(Error::Conflict(format!(
                    "path `{user_path}` exists; set `force` to overwrite it"
                )));
            }
            _ => {}
        }
        let mut temp = OsString::from(format!("{TEMP_MARKER}{task_id}-"));
        temp.push(&place.name);
        Ok(Output {
            dir: place.dir,
            temp,
            name: place.name,
            user_path: user_path.to_string(),
            committed: false,
        })
    }

    /// Create (or truncate) the temporary file, in the target's folder,
    /// without following a link.
    pub fn create_temp(&self) -> Result<std::fs::File, Error> {
        let fd = beneath::open(
            self.dir.as_fd(),
            std::path::Path::new(&self.temp),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o644,
        )
        .map_err(|e| self.io_error(e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Write `prefix` then every chunk of `stream`, gzip-compressed when
    /// `gzip`; returns the bytes written to disk.
    pub async fn write<S>(&self, prefix: Vec<u8>, stream: S, gzip: bool) -> Result<u64, Error>
    where
        S: Stream<Item = Result<Bytes, Error>> + Send,
    {
        let file = self.create_temp()?;
        let probe = file.try_clone().map_err(|e| self.io_error(e))?;
        // The task waits (`send().await`) when the writer is behind; a
        // blocking send would hold one of the runtime's threads, and with
        // it every request and task that thread serves, for as long as the
        // compressor lags.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            // Chunks arrive in large reads already: write them as they are;
            // gzip runs on every core (crate::runtime::pgzip).
            if gzip {
                // No buffer in front of the file: the compressor writes whole
                // compressed blocks (hundreds of KiB) at once.
                let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
                let mut gz = ParGz::new(file, flate2::Compression::default(), threads)?;
                gz.write_all(&prefix)?;
                while let Some(chunk) = rx.blocking_recv() {
                    gz.write_all(&chunk)?;
                }
                gz.finish()?.flush()?;
            } else {
                let mut file = file;
                file.write_all(&prefix)?;
                while let Some(chunk) = rx.blocking_recv() {
                    file.write_all(&chunk)?;
                }
                file.flush()?;
            }
            Ok(0)
        });
        futures::pin_mut!(stream);
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if tx.send(bytes).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| Error::Other(format!("writer: {e}")))?;
        if let Some(e) = failure {
            return Err(e);
        }
        written.map_err(|e| self.io_error(e))?;
        let size = probe.metadata().map_err(|e| self.io_error(e))?.len();
        Ok(size)
    }

    /// Move the finished file to its name (within its folder).
    pub fn commit(mut self) -> Result<(), Error> {
        beneath::rename(self.dir.as_fd(), &self.temp, &self.name).map_err(|e| self.io_error(e))?;
        self.committed = true;
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::Other(format!("writing `{}`: {e}", self.user_path))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed {
            let _ = beneath::unlink(self.dir.as_fd(), &self.temp);
        }
    }
}
