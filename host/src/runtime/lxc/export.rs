//! Container exports: one tar (gzip when asked) holding, in order, the
//! settings entry [`CONFIG_ENTRY`] (the create-shaped settings that
//! `container_import` reads back, as the Docker export records them), the
//! container's LXC `config` and its `rootfs/`.
//!
//! The files are archived by GNU `tar --numeric-owner --xattrs --acls`,
//! streamed through the server (never buffered whole) into a temporary file
//! that is renamed at the end: owners, modes, symbolic and hard links,
//! device nodes and extended attributes are kept exactly as GNU tar keeps
//! them, at GNU tar's speed. A running container is frozen while its files
//! are read, and thawed afterwards (also when the export fails or is
//! cancelled).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::tools;
use crate::runtime::docker::archive::{tar_entry, CONFIG_ENTRY};
use crate::runtime::docker::files::Output;
use crate::runtime::{CallContext, Error};

/// Thaws a frozen container when dropped, unless disarmed.
struct Thaw {
    path: PathBuf,
    name: String,
    armed: bool,
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
fn tree_size(dir: &Path) -> u64 {
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
    let total = tokio::task::spawn_blocking(move || tree_size(&rootfs))
        .await
        .unwrap_or(0)
        .max(1);
    let mut thaw = Thaw {
        path: lxc_path.to_path_buf(),
        name: name.to_string(),
        armed: false,
    };
    if running {
        tools::lxc("freeze", lxc_path, name, &[]).await?;
        thaw.armed = true;
    }
    let mut cmd = tools::command("tar")?;
    cmd.arg("--numeric-owner")
        .arg("--xattrs")
        .arg("--xattrs-include=*")
        .arg("--acls")
        .arg("--warning=no-file-ignored")
        .arg("-C")
        .arg(&dir)
        .args(["-cf", "-", "config", "rootfs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Runtime(format!("running tar: {e}")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = (&mut stderr).take(64 << 10).read_to_string(&mut text).await;
        text
    });
    let prefix = tar_entry(
        CONFIG_ENTRY,
        &serde_json::to_vec_pretty(settings).unwrap_or_default(),
    );
    let reporter = cx.reporter.clone();
    let mut sent = 0u64;
    let mut last = -1;
    let label = name.to_string();
    let stream = tokio_util::io::ReaderStream::with_capacity(stdout, 1 << 20).map(
        move |chunk: std::io::Result<Bytes>| {
            let chunk = chunk.map_err(|e| Error::Runtime(format!("reading tar's output: {e}")))?;
            sent += chunk.len() as u64;
            let percent = (sent.min(total) * 99 / total) as i32;
            if percent != last {
                last = percent;
                reporter.progress(
                    percent,
                    &format!("exporting {label}: {} of ~{} MiB", sent >> 20, total >> 20),
                );
            }
            Ok(chunk)
        },
    );
    let written = output.write(prefix, stream, gzip).await;
    let status = child
        .wait()
        .await
        .map_err(|e| Error::Runtime(format!("tar: {e}")))?;
    let stderr = errors.await.unwrap_or_default();
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
