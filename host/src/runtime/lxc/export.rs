//! Container exports: one tar (gzip when asked) holding, in order, the
//! settings entry [`CONFIG_ENTRY`] (the create-shaped settings that
//! `container_import` reads back, as the Docker export records them), the
//! container's LXC `config` and its `rootfs/`.
//!
//! The files are archived by GNU `tar --numeric-owner --xattrs --acls`
//! into a temporary file that is renamed at the end: owners, modes,
//! symbolic and hard links, device nodes and extended attributes are kept
//! exactly as GNU tar keeps them, at GNU tar's speed. Uncompressed, tar
//! writes straight into the file after the settings entry; compressed, its
//! output streams through the server's parallel gzip (never buffered whole). A running container is frozen while its files
//! are read, and thawed afterwards (also when the export fails or is
//! cancelled).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::tools;
use crate::runtime::archives::{tar_entry, CONFIG_ENTRY};
use crate::runtime::output::Output;
use crate::runtime::{CallContext, Error};

/// GNU tar's record size, in 512-byte blocks: 128 KiB. Its default (20,
/// 10 KiB records) costs a read and a write system call per 10 KiB, which
/// made a 1 GiB export measurably slower than the copy itself; the price is
/// at most 128 KiB of zeros padding the end of the archive, which every tar
/// reader skips.
pub(super) const TAR_BLOCKING_FACTOR: u32 = 256;

/// Thaws a frozen container when dropped, unless disarmed.
pub(super) struct Thaw {
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) armed: bool,
}

impl Drop for Thaw {
    fn drop(&mut self) {
        if self.armed {
            if let Some(tool) = tools::which("lxc-unfreeze") {
                let _ = std::process::Command::new(tool)
                    .arg("-P")
                    .arg(&self.path)
                    .arg("-n")
                    .arg(&self.name)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Bytes of the files under `dir` (for progress).
pub(super) fn tree_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&e.path(), total);
            } else {
                *total += meta.len() + 512;
            }
        }
    }
    let mut total = 0;
    walk(dir, &mut total);
    total
}

/// Progress by bytes archived, against the rootfs size.
pub(super) struct Progress<'a> {
    pub(super) cx: &'a CallContext,
    pub(super) label: String,
    /// The rootfs size, once the walk that runs beside tar has it (0 before).
    pub(super) total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub(super) last: i32,
}

impl Progress<'_> {
    fn update(&mut self, sent: u64) {
        let total = self.total.load(std::sync::atomic::Ordering::Relaxed);
        if total == 0 {
            return;
        }
        let percent = (sent.min(total) * 99 / total) as i32;
        if percent != self.last {
            self.last = percent;
            self.cx.reporter.progress(
                percent,
                &format!(
                    "exporting {}: {} of ~{} MiB",
                    self.label,
                    sent >> 20,
                    total >> 20
                ),
            );
        }
    }
}

/// Read up to 64 KiB of a child's stderr.
fn collect(stderr: Option<tokio::process::ChildStderr>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = (&mut stderr).take(64 << 10).read_to_string(&mut text).await;
        }
        text
    })
}

pub(super) type Archived = (std::process::ExitStatus, Result<u64, Error>, String);

/// Run tar (`cmd`, writing the archive to its stdout) into `output`, after
/// the settings entry `prefix`. Uncompressed, tar writes straight into the
/// output file and the server only watches the file grow; compressed
/// (`gzip`), tar's output streams through the server's parallel gzip.
pub(super) async fn archive(
    mut cmd: tokio::process::Command,
    prefix: Vec<u8>,
    output: &Output,
    mut progress: Progress<'_>,
    gzip: bool,
) -> Result<Archived, Error> {
    let io = |e: std::io::Error| Error::Runtime(format!("writing the export: {e}"));
    // Uncompressed: the output file, holding the prefix already, and a
    // handle on it to watch it grow.
    let (stdout, probe) = if gzip {
        (Stdio::piped(), None)
    } else {
        let mut file = output.create_temp()?;
        std::io::Write::write_all(&mut file, &prefix).map_err(io)?;
        let probe = file.try_clone().map_err(io)?;
        (Stdio::from(file), Some(probe))
    };
    let mut child = cmd
        .stdout(stdout)
        .spawn()
        .map_err(|e| Error::Runtime(format!("running tar: {e}")))?;
    let errors = collect(child.stderr.take());
    let tar_failed = |e: std::io::Error| Error::Runtime(format!("tar: {e}"));
    let (status, written) = match probe {
        Some(probe) => {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status.map_err(tar_failed)?,
                    _ = tick.tick() => {
                        if let Ok(meta) = probe.metadata() {
                            progress.update(meta.len());
                        }
                    }
                }
            };
            (status, probe.metadata().map(|m| m.len()).map_err(io))
        }
        None => {
            let stdout = child.stdout.take().expect("piped stdout");
            let mut sent = 0u64;
            let stream = tokio_util::io::ReaderStream::with_capacity(stdout, 1 << 20).map(
                move |chunk: std::io::Result<Bytes>| {
                    let chunk =
                        chunk.map_err(|e| Error::Runtime(format!("reading tar's output: {e}")))?;
                    sent += chunk.len() as u64;
                    progress.update(sent);
                    Ok(chunk)
                },
            );
            let written = output.write(prefix, stream, true).await;
            (child.wait().await.map_err(tar_failed)?, written)
        }
    };
    Ok((status, written, errors.await.unwrap_or_default()))
}

/// Export the container `name` of `lxc_path` (running: `running`) into `output`.
pub async fn export(
    cx: &CallContext,
    lxc_path: &Path,
    name: &str,
    running: bool,
    settings: &serde_json::Value,
    output: Output,
    gzip: bool,
) -> Result<u64, Error> {
    let dir = lxc_path.join(name);
    let rootfs = dir.join("rootfs");
    // The size for the progress total is taken beside tar, not before it:
    // a walk of a large rootfs would otherwise delay the export itself.
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let total = total.clone();
        tokio::task::spawn_blocking(move || {
            total.store(
                tree_size(&rootfs).max(1),
                std::sync::atomic::Ordering::Relaxed,
            )
        });
    }
    let mut thaw = Thaw {
        path: lxc_path.to_path_buf(),
        name: name.to_string(),
        armed: false,
    };
    if running {
        tools::lxc("freeze", lxc_path, name, &[]).await?;
        thaw.armed = true;
    }
    let prefix = tar_entry(
        CONFIG_ENTRY,
        &serde_json::to_vec_pretty(settings).unwrap_or_default(),
    );
    let mut cmd = tools::command("tar")?;
    cmd.arg("--numeric-owner")
        .arg("--xattrs")
        .arg("--xattrs-include=*")
        .arg("--acls")
        .arg("--warning=no-file-ignored")
        .arg(format!("--blocking-factor={TAR_BLOCKING_FACTOR}"))
        .arg("-C")
        .arg(&dir)
        .args(["-cf", "-", "config", "rootfs"])
        .stderr(Stdio::piped());
    let progress = Progress {
        cx,
        label: name.to_string(),
        total,
        last: -1,
    };
    let (status, written, errors) = archive(cmd, prefix, &output, progress, gzip).await?;
    let stderr = errors;
    if running {
        thaw.armed = false;
        tools::lxc("unfreeze", lxc_path, name, &[]).await?;
    }
    let written = written?;
    // 1: "some files changed while being read", which a frozen container does not do.
    if !matches!(status.code(), Some(0) | Some(1)) {
        return Err(Error::Runtime(format!(
            "archiving {}: tar failed ({status}): {}",
            dir.display(),
            stderr.trim()
        )));
    }
    output.commit()?;
    Ok(written)
}
