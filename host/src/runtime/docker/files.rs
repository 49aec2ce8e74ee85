//! Output files under the share root: written to a temporary name by a
//! blocking writer thread (gzip there when asked, on every core), renamed at the end. A
//! failed or cancelled write leaves nothing behind.

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::runtime::pgzip::ParGz;
use crate::runtime::storage::ShareRoot;
use crate::runtime::Error;

/// Chunks in flight between the engine stream and the writer thread.
const QUEUE: usize = 32;

/// An output being written; dropped without [`Output::commit`], it removes its temporary.
pub struct Output {
    temp: PathBuf,
    target: PathBuf,
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
        let target = share.resolve(user_path)?;
        if target.exists() && !overwrite {
            return Err(Error::Conflict(format!(
                "path `{user_path}` exists; set `force` to overwrite it"
            )));
        }
        if target.is_dir() {
            return Err(Error::Conflict(format!("path `{user_path}` is a folder")));
        }
        let temp = ShareRoot::temp_for(&target, task_id);
        Ok(Output {
            temp,
            target,
            user_path: user_path.to_string(),
            committed: false,
        })
    }

    /// Write `prefix` then every chunk of `stream`, gzip-compressed when
    /// `gzip`; returns the bytes written to disk.
    pub async fn write<S>(&self, prefix: Vec<u8>, stream: S, gzip: bool) -> Result<u64, Error>
    where
        S: Stream<Item = Result<Bytes, Error>> + Send,
    {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.temp)
            .map_err(|e| self.io_error(e))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(QUEUE);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            // Chunks arrive in large reads already: write them as they are;
            // gzip runs on every core (crate::runtime::pgzip).
            if gzip {
                let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
                let buffered = std::io::BufWriter::with_capacity(1 << 20, file);
                let mut gz = ParGz::new(buffered, flate2::Compression::default(), threads)?;
                gz.write_all(&prefix)?;
                for chunk in rx {
                    gz.write_all(&chunk)?;
                }
                gz.finish()?.flush()?;
            } else {
                let mut file = file;
                file.write_all(&prefix)?;
                for chunk in rx {
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
                    if tx.send(bytes).is_err() {
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
        let size = std::fs::metadata(&self.temp)
            .map_err(|e| self.io_error(e))?
            .len();
        Ok(size)
    }

    /// Move the finished file to its name.
    pub fn commit(mut self) -> Result<(), Error> {
        std::fs::rename(&self.temp, &self.target).map_err(|e| self.io_error(e))?;
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
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
