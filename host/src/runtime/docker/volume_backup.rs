//! Volume backups on the engine: a named volume written to a tar under the
//! share root, and a tar restored into a volume.
//!
//! The volume is read and written through the engine's archive API on a
//! helper container that mounts it and is created, never started (the
//! engine mounts a stopped container's volumes for the archive calls).
//! Nothing runs, no image needs pulling (the helper's image is an empty
//! root file system the engine makes from an empty tar on first use), and
//! it works wherever the engine keeps its data, also where the server
//! cannot read the engine's data root (another mount namespace, a remote
//! or rootless engine). The engine's tar is written in Go at disk speed;
//! the server only moves its 256 KiB reads to the file, through the
//! parallel gzip when asked ([`crate::runtime::pgzip`]).
//!
//! Export: the containers using the volume are paused while it is read
//! (unless `live`), and unpaused afterwards, also when the export fails or
//! is cancelled. Names in the archive are relative to the volume's root
//! (`./`, `./a/b`).
//!
//! Import: the archive is read whole through the host's archive rules
//! first ([`crate::runtime::archives`], and no device nodes), then sent to
//! the engine, which unpacks it confined to the helper's root. A volume that
//! holds files is refused unless `overwrite`, which lays the archive over
//! what is there (files of the archive replace those of the same name; the
//! others stay).

use std::collections::HashMap;
use std::sync::Arc;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Method;

use super::raw::{self, query};
use super::{engine, progress, DockerRuntime};
use crate::queue::Reporter;
use crate::runtime::archives;
use crate::runtime::output::Output;
use crate::runtime::{CallContext, ContainerSummary, Error, ExportVolume, ImportVolume, RtResult};

/// The helper containers' image (an empty root file system).
const HELPER_IMAGE: &str = "stevedore/volume-helper";
/// Its tag.
const HELPER_TAG: &str = "1";
/// The label marking helper containers (left out of a volume's users).
pub const HELPER_LABEL: &str = "io.stevedore.volume-helper";
/// Where a helper mounts its volume.
const MOUNT: &str = "/volume";

/// A created (never started) container mounting one volume; removed when
/// dropped (in the background when not removed before).
struct Helper {
    api: Docker,
    id: String,
    removed: bool,
}

impl Helper {
    async fn remove(mut self) {
        self.removed = true;
        remove_helper(&self.api, &self.id).await;
    }
}

async fn remove_helper(api: &Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    if let Err(e) = api.remove_container(id, Some(options)).await {
        tracing::warn!(container = id, "removing a volume helper: {e}");
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !self.removed {
            let (api, id) = (self.api.clone(), self.id.clone());
            tokio::spawn(async move { remove_helper(&api, &id).await });
        }
    }
}

/// Containers paused for an export; unpaused by [`Paused::resume`], or in
/// the background when dropped (an error or a cancel).
struct Paused {
    api: Docker,
    ids: Vec<String>,
}

impl Paused {
    async fn resume(mut self) -> RtResult<()> {
        let ids = std::mem::take(&mut self.ids);
        let mut failed = None;
        for id in &ids {
            if let Err(e) = self.api.unpause_container(id).await {
                failed.get_or_insert(format!("unpausing {id}: {}", engine(e)));
            }
        }
        match failed {
            Some(e) => Err(Error::Runtime(e)),
            None => Ok(()),
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let (api, ids) = (self.api.clone(), std::mem::take(&mut self.ids));
        tokio::spawn(async move {
            for id in ids {
                if let Err(e) = api.unpause_container(&id).await {
                    tracing::warn!(container = id, "unpausing after a volume export: {e}");
                }
            }
        });
    }
}

/// Reports a byte count against an expected total, at most once a percent.
struct Counter {
    reporter: Arc<dyn Reporter>,
    what: String,
    total: Option<u64>,
    done: u64,
    shown: i32,
}

impl Counter {
    fn add(&mut self, n: usize) {
        self.done += n as u64;
        let mib = self.done >> 20;
        let (percent, detail) = match self.total {
            Some(t) if t > 0 => {
                let p = (self.done.saturating_mul(100) / t).min(99) as i32;
                (p, format!("{}: {mib} of {} MiB", self.what, t >> 20))
            }
            _ => (-1, format!("{}: {mib} MiB", self.what)),
        };
        // Once a percent, or once a MiB when the total is unknown.
        let step = if percent >= 0 { percent } else { mib as i32 };
        if step != self.shown {
            self.shown = step;
            self.reporter.progress(percent, &detail);
        }
    }
}

/// Bytes of the files under `dir`, no link followed, on one file system
/// (for progress; `None` when the folder cannot be read here).
fn tree_size(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir())?;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            total += 512;
            if meta.is_dir() && meta.dev() == root.dev() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len().div_ceil(512) * 512;
            }
        }
    }
    Some(total)
}

/// Whether a tar stream holds any entry beyond its root (`./`), reading at
/// most its first 64 KiB (an empty folder's tar is 1.5 KiB).
fn holds_files(head: &[u8], complete: bool) -> bool {
    let mut tar = tar::Archive::new(head);
    let Ok(entries) = tar.entries() else {
        return !complete;
    };
    for entry in entries {
        match entry {
            Ok(e) => {
                let raw = e.path_bytes();
                if !matches!(&raw[..], b"." | b"./" | b"") {
                    return true;
                }
            }
            // Cut short: more follows, so more than the root.
            Err(_) => return !complete,
        }
    }
    false
}

impl DockerRuntime {
    /// The helper image, made from an empty tar when missing.
    async fn helper_image(&self) -> RtResult<String> {
        let reference = format!("{HELPER_IMAGE}:{HELPER_TAG}");
        if self.api.inspect_image(&reference).await.is_ok() {
            return Ok(reference);
        }
        let path = format!(
            "/images/create?fromSrc=-&repo={}&tag={HELPER_TAG}",
            query(HELPER_IMAGE)
        );
        let empty_tar = Full::new(Bytes::from(vec![0u8; 1024]))
            .map_err(|never| match never {})
            .boxed();
        let response = self
            .raw
            .send(
                Method::POST,
                &path,
                &[("Content-Type", "application/x-tar")],
                empty_tar,
            )
            .await?;
        progress::follow(&reference, response, |_, _| {}).await?;
        Ok(reference)
    }

    /// A helper container mounting `volume` at [`MOUNT`].
    async fn helper(&self, volume: &str, read_only: bool) -> RtResult<Helper> {
        let image = self.helper_image().await?;
        let mount = Mount {
            target: Some(MOUNT.into()),
            source: Some(volume.into()),
            typ: Some(MountType::VOLUME),
            read_only: Some(read_only),
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(vec!["none".into()]),
            network_disabled: Some(true),
            labels: Some(HashMap::from([(
                HELPER_LABEL.to_string(),
                volume.to_string(),
            )])),
            host_config: Some(HostConfig {
                mounts: Some(vec![mount]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .api
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(engine)?;
        Ok(Helper {
            api: self.api.clone(),
            id: created.id,
            removed: false,
        })
    }

    /// The containers mounting `volume`, helpers left out.
    pub(super) async fn users_of(
        &self,
        volume: &str,
        all: bool,
    ) -> RtResult<Vec<ContainerSummary>> {
        let options = ListContainersOptions {
            all,
            filters: Some(HashMap::from([(
                "volume".to_string(),
                vec![volume.to_string()],
            )])),
            ..Default::default()
        };
        let listed = self
            .api
            .list_containers(Some(options))
            .await
            .map_err(engine)?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                if labels.contains_key(HELPER_LABEL) {
                    return None;
                }
                let mut labels: Vec<(String, String)> = labels.into_iter().collect();
                labels.sort();
                Some(ContainerSummary {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
                    labels,
                })
            })
            .collect())
    }

    /// Pause the running containers that mount `volume`.
    async fn pause_users(&self, volume: &str) -> RtResult<Paused> {
        let mut paused = Paused {
            api: self.api.clone(),
            ids: Vec::new(),
        };
        for c in self.users_of(volume, false).await? {
            if !c.running {
                continue;
            }
            self.api.pause_container(&c.id).await.map_err(engine)?;
            paused.ids.push(c.id);
        }
        Ok(paused)
    }

    /// The engine's tar of the helper's volume, from its root.
    async fn volume_tar(
        &self,
        helper: &Helper,
    ) -> RtResult<impl Stream<Item = Result<Bytes, Error>> + Send> {
        let path = format!(
            "/containers/{}/archive?path={}",
            query(&helper.id),
            query(&format!("{MOUNT}/."))
        );
        let response = self.raw.send(Method::GET, &path, &[], raw::empty()).await?;
        Ok(response.bytes())
    }

    /// `volumes.export-to-path`.
    pub(super) async fn export_volume(&self, cx: &CallContext, req: ExportVolume) -> RtResult<u64> {
        let (volume, file) = (&req.volume, &req.file);
        // The file exists: named with this category's flag.
        let output =
            Output::prepare(&self.share, &file.path, cx.task_id, file.overwrite).map_err(|e| {
                match e {
                    Error::Conflict(m) => Error::Conflict(m.replace("`force`", "`overwrite`")),
                    other => other,
                }
            })?;
        let inspected = self.api.inspect_volume(volume).await.map_err(engine)?;
        let mountpoint = std::path::PathBuf::from(inspected.mountpoint);
        let total = tokio::task::spawn_blocking(move || tree_size(&mountpoint))
            .await
            .ok()
            .flatten();
        let helper = self.helper(volume, true).await?;
        let paused = if req.live {
            None
        } else {
            Some(self.pause_users(volume).await?)
        };
        let what = format!("exporting volume {volume} to {}", file.path);
        cx.reporter.progress(0, &what);
        let mut counter = Counter {
            reporter: cx.reporter.clone(),
            what,
            total,
            done: 0,
            shown: 0,
        };
        let stream = self.volume_tar(&helper).await?.map(move |chunk| {
            if let Ok(bytes) = &chunk {
                counter.add(bytes.len());
            }
            chunk
        });
        let size = output.write(Vec::new(), stream, file.gzip).await?;
        if let Some(paused) = paused {
            paused.resume().await?;
        }
        output.commit()?;
        helper.remove().await;
        cx.reporter
            .progress(100, &format!("exported volume {volume} to {}", file.path));
        Ok(size)
    }

    /// `volumes.import-from-path`.
    pub(super) async fn import_volume(&self, cx: &CallContext, req: ImportVolume) -> RtResult<u64> {
        let ImportVolume {
            volume,
            path,
            overwrite,
            labels,
        } = req;
        // One open file for the check and the upload: what was checked is what is sent.
        let (file, _) = self.share.open_file(&path)?;
        let probe = file
            .try_clone()
            .map_err(|e| Error::Other(format!("path `{path}`: {e}")))?;
        let length = file
            .metadata()
            .map_err(|e| Error::Other(format!("path `{path}`: {e}")))?
            .len();
        let cap = self.settings.max_expanded_bytes;
        cx.reporter
            .progress(-1, &format!("checking {path} for volume {volume}"));
        tokio::task::spawn_blocking(move || archives::check_backup(probe, cap))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        let created = match self.api.inspect_volume(&volume).await {
            Ok(_) => false,
            Err(e) => match engine(e) {
                Error::NotFound(_) => {
                    let request = bollard::models::VolumeCreateRequest {
                        name: Some(volume.clone()),
                        driver: Some("local".into()),
                        labels: Some(labels.into_iter().collect()),
                        ..Default::default()
                    };
                    self.api.create_volume(request).await.map_err(engine)?;
                    true
                }
                other => return Err(other),
            },
        };
        let result = self
            .restore_volume(cx, &volume, &path, file, length, created || overwrite)
            .await;
        if result.is_err() && created {
            let _ = self
                .api
                .remove_volume(
                    &volume,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        }
        result
    }

    async fn restore_volume(
        &self,
        cx: &CallContext,
        volume: &str,
        path: &str,
        file: std::fs::File,
        length: u64,
        lay_over: bool,
    ) -> RtResult<u64> {
        let helper = self.helper(volume, false).await?;
        if !lay_over {
            let mut head = Vec::new();
            let mut complete = true;
            let stream = self.volume_tar(&helper).await?;
            futures::pin_mut!(stream);
            while let Some(chunk) = stream.next().await {
                head.extend_from_slice(&chunk?);
                if head.len() >= 64 << 10 {
                    complete = false;
                    break;
                }
            }
            if holds_files(&head, complete) {
                return Err(Error::Conflict(format!(
                    "volume {volume} holds files; set `overwrite` to lay the archive over them"
                )));
            }
        }
        let what = format!("importing {path} into volume {volume}");
        cx.reporter.progress(0, &what);
        let mut counter = Counter {
            reporter: cx.reporter.clone(),
            what,
            total: Some(length),
            done: 0,
            shown: 0,
        };
        let body = Self::file_body(file, 0, self.settings.max_expanded_bytes)?
            .map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    counter.add(data.len());
                }
                frame
            })
            .boxed();
        let target = format!(
            "/containers/{}/archive?path={}",
            query(&helper.id),
            query(MOUNT)
        );
        let response = self
            .raw
            .send(
                Method::PUT,
                &target,
                &[("Content-Type", "application/x-tar")],
                body,
            )
            .await?;
        // The engine answers once the archive is unpacked.
        let answer = response.bytes();
        futures::pin_mut!(answer);
        while let Some(chunk) = answer.next().await {
            chunk?;
        }
        helper.remove().await;
        cx.reporter
            .progress(100, &format!("imported {path} into volume {volume}"));
        Ok(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::archives::tar_entry;

    fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend([0u8; 1024]);
        out
    }

    fn dir_entry(name: &str) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn an_empty_volume_is_its_root_alone() {
        let empty = tar_of(&[dir_entry("./")]);
        assert!(!holds_files(&empty, true));
        let full = tar_of(&[dir_entry("./"), tar_entry("a", b"x")]);
        assert!(holds_files(&full, true));
        // A head cut short holds more than the root.
        assert!(holds_files(&full[..600], false));
        assert!(!holds_files(&[], true));
    }

    /// A file entry whose name is written as is (the tar crate refuses to
    /// set `..` or absolute names).
    fn raw_entry(name: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn checked(bytes: &[u8]) -> RtResult<()> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        std::fs::write(&p, bytes).unwrap();
        archives::check_backup(std::fs::File::open(&p).unwrap(), 1 << 20)
    }

    #[test]
    fn archives_are_checked_before_anything_is_written() {
        checked(&tar_of(&[dir_entry("./"), tar_entry("./a b", b"x")])).unwrap();
        let mut dev = tar::Header::new_gnu();
        dev.set_path("sda").unwrap();
        dev.set_entry_type(tar::EntryType::Block);
        dev.set_size(0);
        dev.set_cksum();
        let e = checked(&tar_of(&[dev.as_bytes().to_vec()])).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParams(m) if m.starts_with("path: ") && m.contains("device")),
            "{e:?}"
        );
        for bad in [raw_entry(b"../x"), raw_entry(b"/etc/x")] {
            let e = checked(&tar_of(&[bad])).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidParams(m) if m.starts_with("path: ")),
                "{e:?}"
            );
        }
        let big = tar_of(&[tar_entry("big", &vec![0u8; 2 << 20])]);
        let e = checked(&big).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParams(m) if m.contains("expands")),
            "{e:?}"
        );
        assert!(checked(b"not a tar at all, just text").is_err());
    }
}
