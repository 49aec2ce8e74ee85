//! The LXC image store: one folder per image under `<data>/lxc/images/`,
//! holding the rootfs tarball as downloaded (or imported) and
//! `image.json` ([`ImageRecord`]). Images are named `name:tag` as the
//! catalog and the API name them; their id is the sha256 of the tarball.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::conf::Record;
use super::{io_err, unix_now, LxcRuntime};
use crate::runtime::archives::{self, Compression};
use crate::runtime::catalog::{Catalog, CatalogError, Entry};
use crate::runtime::{
    CallContext, Error, ImageInfo, ImageRef, Images, PullRequest, RemoveImage, RtResult,
    RuntimeKind, Source,
};

/// What the store records about an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// `name:tag`.
    pub reference: String,
    /// `sha256:<hex>` of the tarball.
    pub id: String,
    /// Tarball size in bytes.
    pub size: u64,
    /// When it was stored, epoch seconds.
    pub created: i64,
    /// The tarball's file name in the image's folder.
    pub file: String,
    /// Where it was downloaded from (catalog images), to tell an unchanged image.
    #[serde(default)]
    pub location: Option<String>,
    /// The catalog entry's version.
    #[serde(default)]
    pub version: Option<String>,
}

impl ImageRecord {
    /// As the `images` interface answers.
    pub fn info(&self) -> ImageInfo {
        ImageInfo {
            id: self.id.clone(),
            tags: vec![self.reference.clone()],
            size: self.size,
            created: self.created,
        }
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    max_expanded: u64,
}

/// `name:tag` with `latest` when no tag is given.
pub fn reference(name: &str, tag: &str) -> String {
    let tag = if tag.is_empty() { "latest" } else { tag };
    format!("{name}:{tag}")
}

/// A folder name for a reference: safe characters kept, others `%XX`.
fn key(reference: &str) -> String {
    let mut out = String::new();
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file being written; removed when dropped before [`Partial::keep`].
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Partial {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Store {
    /// The store at `root` (created if missing); partial downloads of an
    /// interrupted server are removed.
    pub fn new(root: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(root)?;
        for dir in std::fs::read_dir(root)?.flatten() {
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if file.file_name().to_string_lossy().starts_with(".partial-") {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
            max_expanded: archives::DEFAULT_MAX_EXPANDED_BYTES,
        })
    }

    /// The same store with another cap on an archive's expanded size.
    pub fn with_max_expanded(mut self, bytes: u64) -> Store {
        self.max_expanded = bytes;
        self
    }

    /// The cap on an archive's expanded size, in bytes.
    pub fn max_expanded(&self) -> u64 {
        self.max_expanded
    }

    fn dir(&self, reference: &str) -> PathBuf {
        self.root.join(key(reference))
    }

    /// Every image.
    pub fn list(&self) -> Vec<ImageRecord> {
        let mut out: Vec<ImageRecord> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|d| {
                let text = std::fs::read(d.path().join("image.json")).ok()?;
                serde_json::from_slice(&text).ok()
            })
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        out
    }

    /// The image named by `name:tag` (`name` alone: `:latest`) or by id (`sha256:...`, or a 12+ hex prefix).
    pub fn find(&self, name_or_id: &str) -> Option<ImageRecord> {
        let hex = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        let by_id = hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        let reference = if name_or_id.contains(':') {
            name_or_id.to_string()
        } else {
            reference(name_or_id, "latest")
        };
        self.list().into_iter().find(|r| {
            r.reference == reference
                || (by_id && r.id.trim_start_matches("sha256:").starts_with(hex))
        })
    }

    /// The tarball of an image.
    pub fn file(&self, record: &ImageRecord) -> PathBuf {
        self.dir(&record.reference).join(&record.file)
    }

    /// Remove an image; returns what was removed (its reference and id).
    pub fn remove(&self, record: &ImageRecord) -> Result<Vec<String>, Error> {
        let dir = self.dir(&record.reference);
        std::fs::remove_dir_all(&dir).map_err(|e| io_err("removing", &dir, e))?;
        Ok(vec![record.reference.clone(), record.id.clone()])
    }

    fn commit(
        &self,
        reference: &str,
        partial: Partial,
        compression: Compression,
        (digest, size): (String, u64),
        (location, version): (Option<String>, Option<String>),
    ) -> Result<ImageRecord, Error> {
        let dir = self.dir(reference);
        let file = format!("rootfs.{}", compression.extension());
        // Old files of the image go; the new one takes their place.
        for old in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if name.starts_with("rootfs.") && name != file {
                let _ = std::fs::remove_file(old.path());
            }
        }
        std::fs::rename(&partial.path, dir.join(&file))
            .map_err(|e| io_err("storing", &dir.join(&file), e))?;
        partial.keep();
        let record = ImageRecord {
            reference: reference.to_string(),
            id: format!("sha256:{digest}"),
            size,
            created: unix_now(),
            file,
            location,
            version,
        };
        let temp = dir.join(".image.json.tmp");
        std::fs::write(
            &temp,
            serde_json::to_vec_pretty(&record).unwrap_or_default(),
        )
        .and_then(|_| std::fs::rename(&temp, dir.join("image.json")))
        .map_err(|e| io_err("writing", &dir.join("image.json"), e))?;
        Ok(record)
    }

    fn partial(&self, reference: &str, task_id: i64) -> Result<Partial, Error> {
        let dir = self.dir(reference);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
        Ok(Partial {
            path: dir.join(format!(".partial-{task_id}-{}", std::process::id())),
            kept: false,
        })
    }

    /// Download the catalog entry `entry` as `reference`, unless the store
    /// already holds that very file (same location, and same sha256 when the
    /// entry gives one).
    pub async fn pull(
        &self,
        cx: &CallContext,
        catalog: &Catalog,
        entry: &Entry,
        reference: &str,
    ) -> Result<ImageRecord, Error> {
        let location = entry.location.as_ref().ok_or_else(|| {
            Error::Runtime(format!(
                "image repository entry `{}` has no location",
                entry.name
            ))
        })?;
        let shown = location.to_string();
        if let Some(have) = self.find(reference) {
            let same_file = entry
                .sha256
                .as_deref()
                .is_none_or(|want| have.id == format!("sha256:{want}"));
            if have.location.as_deref() == Some(shown.as_str())
                && same_file
                && self.file(&have).is_file()
            {
                cx.reporter
                    .progress(100, &format!("image {reference} is up to date"));
                return Ok(have);
            }
        }
        cx.reporter
            .progress(0, &format!("downloading {reference} from {shown}"));
        let download = catalog.open(location).await.map_err(catalog_error)?;
        let partial = self.partial(reference, cx.task_id)?;
        let file = std::fs::File::create(&partial.path)
            .map_err(|e| io_err("creating", &partial.path, e))?;
        // Awaited when the disk is behind: a blocking send would hold a
        // runtime thread (and everything it serves) meanwhile.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(32);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut hash = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                hash.update(&chunk);
                out.write_all(&chunk)?;
                size += chunk.len() as u64;
            }
            out.flush()?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok((hex::encode(hash.finalize()), size))
        });
        let mut stream = download.stream;
        let mut received = 0u64;
        let mut last = -1;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(catalog_error)?;
            received += chunk.len() as u64;
            if let Some(total) = download.length.filter(|t| *t > 0) {
                let percent = (received.min(total) * 100 / total) as i32;
                if percent != last {
                    last = percent;
                    cx.reporter.progress(
                        percent.min(99),
                        &format!(
                            "downloading {reference}: {} of {} MiB",
                            received >> 20,
                            total >> 20
                        ),
                    );
                }
            }
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(tx);
        let (digest, size) = writer
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(|e| io_err("writing", &partial.path, e))?;
        if let Some(total) = download.length {
            if size != total {
                return Err(Error::Runtime(format!(
                    "download of {shown} ended after {size} of {total} bytes"
                )));
            }
        }
        if let Some(want) = &entry.sha256 {
            if *want != digest {
                return Err(Error::Runtime(format!(
                    "download of {shown}: sha256 {digest} does not match the repository's {want}"
                )));
            }
        }
        cx.reporter.progress(99, &format!("checking {reference}"));
        let downloaded =
            std::fs::File::open(&partial.path).map_err(|e| io_err("reading", &partial.path, e))?;
        let compression = check_archive(downloaded, self.max_expanded)
            .await
            .map_err(|e| Error::Runtime(format!("{shown}: {e}")))?;
        let record = self.commit(
            reference,
            partial,
            compression,
            (digest, size),
            (Some(shown), entry.version.clone()),
        )?;
        cx.reporter
            .progress(100, &format!("downloaded {reference}"));
        Ok(record)
    }

    /// Store the archive `source` (a file opened under the share root, shown
    /// as `shown`) as `reference`, after reading it all through the archive rules.
    pub async fn import(
        &self,
        cx: &CallContext,
        source: std::fs::File,
        shown: &str,
        reference: &str,
    ) -> Result<ImageRecord, Error> {
        let probe = source
            .try_clone()
            .map_err(|e| io_err("reading", Path::new(shown), e))?;
        let compression = check_archive(probe, self.max_expanded)
            .await
            .map_err(|e| Error::InvalidParams(format!("path: {e}")))?;
        let partial = self.partial(reference, cx.task_id)?;
        let to = partial.path.clone();
        let (digest, size) =
            tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
                let mut input = source;
                std::io::Seek::rewind(&mut input)?;
                let mut out = std::fs::File::create(&to)?;
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut size = 0u64;
                loop {
                    let n = std::io::Read::read(&mut input, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hash.update(&buf[..n]);
                    out.write_all(&buf[..n])?;
                    size += n as u64;
                }
                out.sync_all()?;
                Ok((hex::encode(hash.finalize()), size))
            })
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(|e| io_err("importing", Path::new(shown), e))?;
        self.commit(
            reference,
            partial,
            compression,
            (digest, size),
            (None, None),
        )
    }
}

fn catalog_error(e: CatalogError) -> Error {
    match e {
        CatalogError::NotFound { .. } => Error::NotFound(e.to_string()),
        CatalogError::Unconfigured => Error::InvalidParams(format!("repository: {e}")),
        other => Error::Runtime(other.to_string()),
    }
}

/// The catalog's error as the runtime's.
pub fn from_catalog(e: CatalogError) -> Error {
    catalog_error(e)
}

/// Read the whole archive through the host's archive rules
/// ([`archives::scan`]): a truncated gzip or xz stream, a file that is no
/// tar, a hostile entry or one past the size cap is an error.
async fn check_archive(
    file: std::fs::File,
    max_expanded: u64,
) -> Result<Compression, archives::ArchiveError> {
    tokio::task::spawn_blocking(move || {
        archives::scan(file, max_expanded, archives::CONFIG_ENTRY).map(|s| s.compression)
    })
    .await
    .unwrap_or_else(|e| {
        Err(archives::ArchiveError::Read {
            source: std::io::Error::other(e.to_string()),
        })
    })
}

impl LxcRuntime {
    /// The image a reference or id names, or `no such image`.
    pub(super) fn find_image(&self, reference: &str) -> RtResult<ImageRecord> {
        self.store
            .find(reference)
            .ok_or_else(|| Error::NotFound(format!("no such image: {reference}")))
    }
}

#[async_trait]
impl Images for LxcRuntime {
    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        if !matches!(req.source, Source::Qnap) {
            return Err(Error::InvalidParams(
                "repository: LXC images come from the `qnap` repository".into(),
            ));
        }
        let catalog = self.catalog()?;
        let tag = if req.tag.is_empty() {
            "latest"
        } else {
            &req.tag
        };
        let entry = catalog
            .find("lxc", &req.image, tag)
            .await
            .map_err(from_catalog)?;
        let reference = reference(&req.image, tag);
        let record = self.store.pull(cx, &catalog, &entry, &reference).await?;
        Ok(record.info())
    }

    async fn image_inspect(&self, _cx: &CallContext, image: ImageRef) -> RtResult<ImageInfo> {
        Ok(self.find_image(&image.reference)?.info())
    }

    async fn image_list(&self, _cx: &CallContext, _kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        Ok(self.store.list().iter().map(|r| r.info()).collect())
    }

    async fn image_remove(&self, _cx: &CallContext, req: RemoveImage) -> RtResult<Vec<String>> {
        let reference = &req.image.reference;
        let record = self.find_image(reference)?;
        if !req.force {
            let users: Vec<String> = self
                .names()
                .into_iter()
                .filter(|n| {
                    Record::read(&self.path.join(n)).is_some_and(|r| r.image_id == record.id)
                })
                .collect();
            if !users.is_empty() {
                return Err(Error::Conflict(format!(
                    "image {reference} is used by container {}",
                    users.join(", ")
                )));
            }
        }
        self.store.remove(&record)
    }

    // The synchronous image routes' calls.

    /// LXC's inspect of an image: its record, in Docker's key spelling
    /// where the two agree.
    async fn image_inspect_json(&self, _cx: &CallContext, image: ImageRef) -> RtResult<String> {
        let r = self.find_image(&image.reference)?;
        let json = serde_json::json!({
            "Id": r.id,
            "RepoTags": [r.reference],
            "Size": r.size,
            "Created": r.created,
            "Os": "linux",
            "Location": r.location,
            "Version": r.version,
        });
        Ok(json.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_keys() {
        assert_eq!(reference("ubuntu-trusty", ""), "ubuntu-trusty:latest");
        assert_eq!(key("a/b:latest"), "a%2Fb%3Alatest");
    }

    #[tokio::test]
    async fn truncated_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let data = vec![7u8; 200_000];
        let mut h = tar::Header::new_gnu();
        h.set_path("big").unwrap();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        std::fs::write(dir.path().join("ok.tgz"), &gz).unwrap();
        std::fs::write(dir.path().join("cut.tgz"), &gz[..gz.len() - 20]).unwrap();
        let open = |name: &str| std::fs::File::open(dir.path().join(name)).unwrap();
        let cap = archives::DEFAULT_MAX_EXPANDED_BYTES;
        assert_eq!(
            check_archive(open("ok.tgz"), cap).await.unwrap(),
            Compression::Gzip
        );
        assert!(check_archive(open("cut.tgz"), cap).await.is_err());
    }

    struct Quiet;
    impl crate::queue::Reporter for Quiet {
        fn progress(&self, _percent: i32, _detail: &str) {}
        fn log(&self, _level: crate::queue::LogLevel, _message: &str) {}
    }

    #[tokio::test]
    async fn pulls_check_sha256_and_skip_unchanged_images() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("hello").unwrap();
        h.set_size(2);
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(repo.join("a.tgz"), &bytes).unwrap();
        let good = hex::encode(Sha256::digest(&bytes));
        let list = serde_json::json!([
            {"name": "good", "type": "lxc", "location": "a.tgz", "sha256": good},
            {"name": "bad", "type": "lxc", "location": "a.tgz", "sha256": "00"},
        ]);
        std::fs::write(repo.join("list.json"), list.to_string()).unwrap();
        let catalog = Catalog::new(&repo.display().to_string()).unwrap();
        let store = Store::new(&dir.path().join("store")).unwrap();
        let cx = CallContext {
            task_id: 3,
            user: "t".into(),
            cancel: Default::default(),
            reporter: std::sync::Arc::new(Quiet),
        };
        let bad = catalog.find("lxc", "bad", "latest").await.unwrap();
        match store.pull(&cx, &catalog, &bad, "bad:latest").await {
            Err(Error::Runtime(m)) => assert!(m.contains("does not match"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(store.find("bad:latest").is_none());
        let leftovers = std::fs::read_dir(store.dir("bad:latest")).unwrap().count();
        assert_eq!(leftovers, 0, "nothing left of a refused download");

        let entry = catalog.find("lxc", "good", "latest").await.unwrap();
        let first = store
            .pull(&cx, &catalog, &entry, "good:latest")
            .await
            .unwrap();
        assert_eq!(first.id, format!("sha256:{good}"));
        let file = store.file(&first);
        let before = std::fs::metadata(&file).unwrap().modified().unwrap();
        // The repository file goes: an unchanged entry is not fetched again.
        std::fs::remove_file(repo.join("a.tgz")).unwrap();
        let second = store
            .pull(&cx, &catalog, &entry, "good:latest")
            .await
            .unwrap();
        assert_eq!(second, first);
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(store.find(&good[..12]).unwrap().reference, "good:latest");
    }
}
