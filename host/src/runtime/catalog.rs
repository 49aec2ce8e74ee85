//! The image and application repository ("qnap"): a folder or an
//! `http(s)://` root in the layout of QNAP's `container-apps` repository,
//! named by `STEVEDORE_CATALOG` (config `[catalog] url`).
//!
//! `list.json` at the root is a JSON array of entries (`name`, `version`,
//! `type` = `lxc` | `docker` | `app`, `arch`, `location`, ...). Unknown keys
//! are ignored, entries for another CPU architecture are skipped, and a
//! relative `location` is resolved against the root. The LXC runtime takes
//! its images from the `lxc` entries; the applications feature reads `app`
//! templates from the same [`Catalog`]: always the folder `template/<name>/`
//! beside `list.json` ([`Catalog::template_folder`]), for a URL root and a
//! folder alike. An `app` entry's `location` is its web page (QNAP's point
//! at Docker Hub) and is kept as such, never read as the template.
//!
//! Over HTTP, `list.json` and the templates' files are kept for
//! [`CACHE_TTL`] ([`Catalog::read`]): every `application` submit reads its
//! template, and a flood of submits must not become a flood of fetches.
//! Concurrent reads of one file wait for one fetch; a missing file (404) is
//! remembered too; the cache is bounded in entries and bytes, and a file
//! larger than [`CACHE_FILE_MAX`] is refused. Image downloads
//! ([`Catalog::open`]) are streamed, never kept. A local folder is read
//! afresh each time (a file read costs nothing to anyone else).
//!
//! HTTP goes through `reqwest` (rustls, no system OpenSSL needed): it was
//! already the workspace's HTTP client for the end-to-end tests, it streams
//! bodies, follows redirects (GitHub's raw files redirect) and speaks TLS,
//! which bare `hyper` (used for the Docker socket) would leave to us.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

/// Why the catalog could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No `[catalog] url` / `STEVEDORE_CATALOG`.
    #[error("no image repository is configured (set STEVEDORE_CATALOG or [catalog] url)")]
    Unconfigured,
    /// The configured URL is not usable.
    #[error("catalog URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as configured or found.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An HTTP request failed.
    #[error("fetching {url}: {source}")]
    Fetch {
        /// The URL.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// An HTTP request answered with an error status.
    #[error("fetching {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A local file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file to keep is larger than [`CACHE_FILE_MAX`].
    #[error("fetching {url}: larger than {max} bytes", max = CACHE_FILE_MAX)]
    TooLarge {
        /// The URL.
        url: String,
    },
    /// `list.json` is not a JSON array of objects.
    #[error("{what}: {reason}")]
    Parse {
        /// Where the list came from.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No entry of that type, name and version.
    #[error("image repository has no {kind} image `{name}:{tag}` for {arch}")]
    NotFound {
        /// `lxc`, `docker` or `app`.
        kind: String,
        /// Entry name.
        name: String,
        /// Version asked for (`latest`: any, preferring `latest`).
        tag: String,
        /// This host's architecture.
        arch: String,
    },
}

/// One `list.json` entry (the keys we use; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `name`.
    pub name: String,
    /// `version` (a number in the file becomes its text).
    pub version: Option<String>,
    /// `type`: `lxc`, `docker` or `app`.
    pub kind: String,
    /// `arch`, when given.
    pub arch: Option<String>,
    /// `location`, resolved against the repository root: the file of an
    /// `lxc` entry; the web page of an `app` entry (its template is
    /// [`Catalog::template_folder`]).
    pub location: Option<Location>,
    /// `sha256` of the file at `location`, when the entry gives one.
    pub sha256: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// The entry as written, for callers that need more keys.
    pub raw: Value,
}

/// Where an entry's file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Fetched over HTTP(S).
    Url(reqwest::Url),
    /// A local file.
    File(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Url(u) => write!(f, "{u}"),
            Location::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A file being fetched: its length when known, and its bytes.
pub struct Download {
    /// `Content-Length` (or the file size).
    pub length: Option<u64>,
    /// The bytes.
    pub stream: BoxStream<'static, Result<Bytes, CatalogError>>,
}

#[derive(Debug, Clone)]
enum Root {
    Url(reqwest::Url),
    Folder(PathBuf),
}

/// How long a file fetched over HTTP is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// The largest file [`Catalog::read`] fetches.
pub const CACHE_FILE_MAX: usize = 4 << 20;
/// The most files kept.
const CACHE_ENTRIES: usize = 256;
/// The most bytes kept, all files together.
const CACHE_BYTES: usize = 32 << 20;

/// One file's fetch: done once, by whoever reads it first.
#[derive(Default)]
struct Slot {
    fetched: tokio::sync::OnceCell<Fetched>,
}

/// A fetched file: its bytes, or `None` when the server answered 404.
struct Fetched {
    at: Instant,
    body: Option<Bytes>,
}

impl Slot {
    /// Fetched and still fresh, or being fetched.
    fn usable(&self) -> bool {
        self.fetched
            .get()
            .is_none_or(|f| f.at.elapsed() < CACHE_TTL)
    }

    fn bytes(&self) -> usize {
        self.fetched
            .get()
            .and_then(|f| f.body.as_ref())
            .map_or(0, Bytes::len)
    }
}

/// Files fetched over HTTP, by URL.
#[derive(Default)]
struct Cache {
    slots: parking_lot::Mutex<HashMap<String, Arc<Slot>>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl Cache {
    /// The slot of `url`: the fresh one, or a new one (dropping stale ones
    /// first, and everything when the cache is over its bounds).
    fn slot(&self, url: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(url).filter(|s| s.usable()) {
            return slot.clone();
        }
        let total: usize = slots.values().map(|s| s.bytes()).sum();
        if slots.len() >= CACHE_ENTRIES || total >= CACHE_BYTES {
            slots.retain(|_, s| s.usable());
            let total: usize = slots.values().map(|s| s.bytes()).sum();
            if slots.len() >= CACHE_ENTRIES || total >= CACHE_BYTES {
                slots.clear();
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(url.to_string(), slot.clone());
        slot
    }
}

/// A configured repository.
#[derive(Clone)]
pub struct Catalog {
    root: Root,
    client: reqwest::Client,
    cache: Arc<Cache>,
    icons: super::icons::Icons,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("root", &self.root).finish()
    }
}

/// The repository in use, replaceable while the server runs: the API's
/// `PUT preference/repo` sets it, and every later template or image lookup
/// reads the new one. Clones share the setting.
#[derive(Clone, Default)]
pub struct CatalogSwitch(Arc<parking_lot::RwLock<Option<Catalog>>>);

impl std::fmt::Debug for CatalogSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CatalogSwitch")
            .field(&*self.0.read())
            .finish()
    }
}

impl CatalogSwitch {
    /// A switch set to `catalog`.
    pub fn new(catalog: Option<Catalog>) -> CatalogSwitch {
        CatalogSwitch(Arc::new(parking_lot::RwLock::new(catalog)))
    }

    /// The repository now (a cheap clone sharing its cache).
    pub fn current(&self) -> Option<Catalog> {
        self.0.read().clone()
    }

    /// Use `catalog` from now on.
    pub fn set(&self, catalog: Option<Catalog>) {
        *self.0.write() = catalog;
    }
}

/// This host's architecture as `list.json` spells it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        other => other,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Catalog {
    /// The repository at `url`: `http://` / `https://`, or a local folder
    /// (a plain path or `file://`).
    pub fn new(url: &str) -> Result<Catalog, CatalogError> {
        let bad = |reason: &str| CatalogError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let root = if url.starts_with("http://") || url.starts_with("https://") {
            let mut parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
            if !parsed.path().ends_with('/') {
                let path = format!("{}/", parsed.path());
                parsed.set_path(&path);
            }
            Root::Url(parsed)
        } else if let Some(path) = url.strip_prefix("file://") {
            Root::Folder(PathBuf::from(path))
        } else if url.contains("://") {
            return Err(bad("only http://, https:// or a local folder"));
        } else {
            Root::Folder(PathBuf::from(url))
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("stevedore/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| CatalogError::Fetch {
                url: url.to_string(),
                source: e,
            })?;
        Ok(Catalog {
            root,
            client,
            cache: Arc::default(),
            icons: Default::default(),
        })
    }

    fn resolve(&self, location: &str) -> Result<Location, CatalogError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return reqwest::Url::parse(location)
                .map(Location::Url)
                .map_err(|e| CatalogError::BadUrl {
                    url: location.into(),
                    reason: e.to_string(),
                });
        }
        match &self.root {
            Root::Url(base) => {
                base.join(location)
                    .map(Location::Url)
                    .map_err(|e| CatalogError::BadUrl {
                        url: location.into(),
                        reason: e.to_string(),
                    })
            }
            Root::Folder(dir) => Ok(Location::File(dir.join(location))),
        }
    }

    /// Parse `list.json` text (entries of other architectures skipped).
    pub fn parse(&self, what: &str, bytes: &[u8]) -> Result<Vec<Entry>, CatalogError> {
        let parse = |reason: String| CatalogError::Parse {
            what: what.to_string(),
            reason,
        };
        let list: Value = serde_json::from_slice(bytes).map_err(|e| parse(e.to_string()))?;
        let Value::Array(items) = list else {
            return Err(parse("must be a JSON array of entries".into()));
        };
        let arch = host_arch();
        let mut out = Vec::new();
        for item in items {
            let Value::Object(map) = &item else { continue };
            let (Some(name), Some(kind)) = (text(map.get("name")), text(map.get("type"))) else {
                continue;
            };
            let entry_arch = text(map.get("arch"));
            if entry_arch.as_deref().is_some_and(|a| a != arch) {
                continue;
            }
            let location = text(map.get("location"))
                .map(|l| self.resolve(&l))
                .transpose()?;
            out.push(Entry {
                name,
                version: text(map.get("version")),
                kind,
                arch: entry_arch,
                location,
                sha256: text(map.get("sha256")).map(|s| s.to_ascii_lowercase()),
                description: text(map.get("description")),
                raw: item.clone(),
            });
        }
        Ok(out)
    }

    /// The entries of `list.json`, for this host's architecture.
    pub async fn entries(&self) -> Result<Vec<Entry>, CatalogError> {
        let location = self.resolve("list.json")?;
        let what = location.to_string();
        let bytes = self.read(&location).await?;
        self.parse(&what, &bytes)
    }

    /// The entry of type `kind` named `name` at version `tag`; `latest` (or
    /// empty) takes the entry whose version is `latest`, else the last one listed.
    pub async fn find(&self, kind: &str, name: &str, tag: &str) -> Result<Entry, CatalogError> {
        let entries = self.entries().await?;
        pick(&entries, kind, name, tag)
            .cloned()
            .ok_or_else(|| CatalogError::NotFound {
                kind: kind.into(),
                name: name.into(),
                tag: tag.into(),
                arch: host_arch().into(),
            })
    }

    async fn get(&self, url: &reqwest::Url) -> Result<reqwest::Response, CatalogError> {
        let response =
            self.client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| CatalogError::Fetch {
                    url: url.to_string(),
                    source: e,
                })?;
        if !response.status().is_success() {
            return Err(CatalogError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        Ok(response)
    }

    /// The whole file at `location`: over HTTP, a copy kept for
    /// [`CACHE_TTL`] when there is one (a 404 included), else one fetch
    /// shared by every concurrent reader; a local file is read afresh.
    pub async fn read(&self, location: &Location) -> Result<Bytes, CatalogError> {
        let url = match location {
            Location::File(path) => {
                return tokio::fs::read(path).await.map(Bytes::from).map_err(|e| {
                    CatalogError::Read {
                        path: path.clone(),
                        source: e,
                    }
                })
            }
            Location::Url(url) => url,
        };
        let slot = self.cache.slot(url.as_str());
        let fetched = slot
            .fetched
            .get_or_try_init(|| async {
                self.cache
                    .fetches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = match self.get(url).await {
                    Ok(response) => Some(self.body(url, response).await?),
                    Err(CatalogError::Status { status: 404, .. }) => None,
                    Err(e) => return Err(e),
                };
                Ok(Fetched {
                    at: Instant::now(),
                    body,
                })
            })
            .await?;
        fetched.body.clone().ok_or_else(|| CatalogError::Status {
            url: url.to_string(),
            status: 404,
        })
    }

    /// How many HTTP fetches [`Catalog::read`] made (the rest were served
    /// from its copies).
    pub fn fetches(&self) -> u64 {
        self.cache
            .fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The body of `response`, refused beyond [`CACHE_FILE_MAX`] bytes.
    async fn body(
        &self,
        url: &reqwest::Url,
        response: reqwest::Response,
    ) -> Result<Bytes, CatalogError> {
        let too_large = || CatalogError::TooLarge {
            url: url.to_string(),
        };
        if response
            .content_length()
            .is_some_and(|n| n > CACHE_FILE_MAX as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| CatalogError::Fetch {
                url: url.to_string(),
                source: e,
            })?;
            if body.len() + chunk.len() > CACHE_FILE_MAX {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    /// Start fetching the file at `location`.
    pub async fn open(&self, location: &Location) -> Result<Download, CatalogError> {
        match location {
            Location::Url(url) => {
                let response = self.get(url).await?;
                let length = response.content_length();
                let shown = url.to_string();
                let stream = response
                    .bytes_stream()
                    .map_err(move |e| CatalogError::Fetch {
                        url: shown.clone(),
                        source: e,
                    })
                    .boxed();
                Ok(Download { length, stream })
            }
            Location::File(path) => {
                let read = |e| CatalogError::Read {
                    path: path.clone(),
                    source: e,
                };
                let file = tokio::fs::File::open(path).await.map_err(read)?;
                let length = file.metadata().await.map_err(read)?.len();
                let shown = path.clone();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10)
                    .map_err(move |e| CatalogError::Read {
                        path: shown.clone(),
                        source: e,
                    })
                    .boxed();
                Ok(Download {
                    length: Some(length),
                    stream,
                })
            }
        }
    }

    /// The folder of application template `name`: `template/<name>/`
    /// beside `list.json` (a URL ending in `/` for a URL root). A name that
    /// could leave `template/` is refused.
    pub fn template_folder(&self, name: &str) -> Result<Location, CatalogError> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !plain {
            return Err(CatalogError::BadUrl {
                url: name.to_string(),
                reason: "a template name is letters, digits, `_`, `.` and `-`".into(),
            });
        }
        match &self.root {
            Root::Folder(dir) => Ok(Location::File(dir.join("template").join(name))),
            Root::Url(base) => base
                .join(&format!("template/{name}/"))
                .map(Location::Url)
                .map_err(|e| CatalogError::BadUrl {
                    url: name.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Where the icon of `entry` is: its `icon` resolved against the root
    /// (an `http(s)` URL, or a file beneath a folder root); `None` when it
    /// has none or names anything else (`data:`, `file:`, ...).
    pub fn icon_location(&self, entry: &Entry) -> Option<Location> {
        let icon = text(entry.raw.get("icon"))?;
        match self.resolve(&icon).ok()? {
            Location::Url(url) if matches!(url.scheme(), "http" | "https") => {
                Some(Location::Url(url))
            }
            Location::Url(_) => None,
            Location::File(path) => {
                let root = self.folder()?;
                // Beneath the root, spelled without `..`: read confined anyway.
                let rel = path.strip_prefix(root).ok()?;
                let plain = rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                (plain && !icon.contains("://")).then_some(Location::File(path))
            }
        }
    }

    /// The icon whose key ([`super::icons::key`]) is `key`, among the
    /// entries listed now: fetched once and kept ([`super::icons::Icons`]).
    pub async fn icon(&self, key: &str) -> Result<super::icons::Icon, IconMiss> {
        if !super::icons::valid_key(key) {
            return Err(IconMiss::Unknown);
        }
        let entries = self
            .entries()
            .await
            .map_err(|e| IconMiss::Failed(e.to_string()))?;
        let location = entries
            .iter()
            .filter_map(|e| self.icon_location(e))
            .find(|l| super::icons::key(l) == key)
            .ok_or(IconMiss::Unknown)?;
        self.icons
            .get(key, self.fetch_icon(&location))
            .await
            .map_err(IconMiss::Failed)
    }

    /// The bytes at `location`, at most [`super::icons::ICON_MAX`], within
    /// [`super::icons::FETCH_TIMEOUT`]. Logged with the host only.
    async fn fetch_icon(&self, location: &Location) -> Result<Bytes, String> {
        use super::icons::{FETCH_TIMEOUT, ICON_MAX};
        let too_large = || format!("larger than {ICON_MAX} bytes");
        match location {
            Location::Url(url) => {
                let host = url.host_str().unwrap_or_default().to_string();
                tracing::debug!(host = %host, "fetching an icon");
                let fetch = async {
                    let response = self
                        .client
                        .get(url.clone())
                        .timeout(FETCH_TIMEOUT)
                        .send()
                        .await
                        .map_err(|e| e.without_url().to_string())?;
                    if !response.status().is_success() {
                        return Err(format!("HTTP {}", response.status().as_u16()));
                    }
                    if response
                        .content_length()
                        .is_some_and(|n| n > ICON_MAX as u64)
                    {
                        return Err(too_large());
                    }
                    let mut body = Vec::new();
                    let mut stream = response.bytes_stream();
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk.map_err(|e| e.without_url().to_string())?;
                        if body.len() + chunk.len() > ICON_MAX {
                            return Err(too_large());
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(Bytes::from(body))
                };
                let fetched = tokio::time::timeout(FETCH_TIMEOUT, fetch)
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                if let Err(e) = &fetched {
                    tracing::debug!(host = %host, "icon fetch failed: {e}");
                }
                fetched
            }
            Location::File(path) => {
                let root = self.folder().ok_or("not a folder repository")?;
                let rel = path
                    .strip_prefix(root)
                    .map_err(|_| "outside the repository")?
                    .to_path_buf();
                let root = root.to_path_buf();
                tracing::debug!("reading an icon in the repository folder");
                let read = move || -> std::io::Result<Vec<u8>> {
                    use std::io::Read;
                    use std::os::fd::AsFd;
                    let dir = std::fs::File::open(&root)?;
                    let fd = super::beneath::open_no_links(
                        dir.as_fd(),
                        &rel,
                        libc::O_RDONLY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    let file = std::fs::File::from(fd);
                    let meta = file.metadata()?;
                    if !meta.is_file() || meta.len() > ICON_MAX as u64 {
                        return Err(std::io::Error::other("not a file of at most the icon size"));
                    }
                    let mut out = Vec::new();
                    file.take(ICON_MAX as u64 + 1).read_to_end(&mut out)?;
                    Ok(out)
                };
                match tokio::task::spawn_blocking(read).await {
                    Ok(Ok(bytes)) if bytes.len() <= ICON_MAX => Ok(Bytes::from(bytes)),
                    Ok(Ok(_)) => Err(too_large()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// The repository root, for messages.
    pub fn root(&self) -> String {
        match &self.root {
            Root::Url(u) => u.to_string(),
            Root::Folder(p) => p.display().to_string(),
        }
    }

    /// A local root folder, if the catalog is one (templates read files beside `list.json`).
    pub fn folder(&self) -> Option<&Path> {
        match &self.root {
            Root::Folder(p) => Some(p),
            Root::Url(_) => None,
        }
    }
}

/// Why [`Catalog::icon`] has no icon to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IconMiss {
    /// No entry listed now has an icon of that key.
    Unknown,
    /// The icon (or `list.json`) could not be fetched, or is no accepted image.
    Failed(String),
}

/// Compare two versions as people read them: dotted parts one by one, each
/// by its leading number (numerically, `4.9.10` after `4.9.8`), then the
/// rest of the part as text (`1.0-rc1` before `1.0-rc2`). A missing part
/// counts as `0` (`1.0` is `1.0.0`).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(part: &str) -> (&str, &str) {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        let (number, rest) = part.split_at(digits);
        let number = number.trim_start_matches('0');
        (number, rest)
    }
    let (mut a, mut b) = (a.trim().split('.'), b.trim().split('.'));
    loop {
        let (x, y) = match (a.next(), b.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (x, y) => (x.unwrap_or("0"), y.unwrap_or("0")),
        };
        let ((xn, xr), (yn, yr)) = (split(x), split(y));
        // Numbers without leading zeros: longer is larger, else digit by digit.
        let order = (xn.len(), xn).cmp(&(yn.len(), yn)).then_with(|| xr.cmp(yr));
        if order.is_ne() {
            return order;
        }
    }
}

/// The entry `find` picks from a list.
pub fn pick<'a>(entries: &'a [Entry], kind: &str, name: &str, tag: &str) -> Option<&'a Entry> {
    let mut named = entries.iter().filter(|e| e.kind == kind && e.name == name);
    if tag.is_empty() || tag == "latest" {
        let all: Vec<&Entry> = named.collect();
        all.iter()
            .find(|e| e.version.as_deref() == Some("latest"))
            .or(all.last())
            .copied()
    } else {
        named.find(|e| e.version.as_deref() == Some(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resolved location of `entry`, as text.
    fn location(entry: &Entry) -> String {
        entry.location.as_ref().unwrap().to_string()
    }

    const LIST: &str = r#"[
      {"name": "ubuntu-trusty", "displayName": "Ubuntu", "version": "14.04", "type": "lxc",
       "repository": "qnap", "arch": "amd64", "location": "images/trusty.tar.gz",
       "icon": "x.png", "description": "d", "inspect": {}, "kernelVersion": "3"},
      {"name": "ubuntu-trusty", "version": "14.04", "type": "lxc", "arch": "armhf",
       "location": "images/trusty-arm.tar.gz"},
      {"name": "busybox", "version": 1, "type": "lxc", "location": "http://other.example/b.tar.xz",
       "sha256": "ABC"},
      {"name": "gitlab", "type": "app", "location": "template/gitlab"},
      "junk", {"type": "lxc"}
    ]"#;

    #[test]
    fn parses_skips_other_arches_and_resolves_locations() {
        let c = Catalog::new("http://127.0.0.1:9/repo").unwrap();
        let entries = c.parse("list.json", LIST.as_bytes()).unwrap();
        if host_arch() == "amd64" {
            assert_eq!(entries.len(), 3);
            let trusty = pick(&entries, "lxc", "ubuntu-trusty", "latest").unwrap();
            assert_eq!(
                location(trusty),
                "http://127.0.0.1:9/repo/images/trusty.tar.gz"
            );
            assert_eq!(trusty.version.as_deref(), Some("14.04"));
            assert!(pick(&entries, "lxc", "ubuntu-trusty", "14.04").is_some());
            assert!(pick(&entries, "lxc", "ubuntu-trusty", "16.04").is_none());
        }
        let b = pick(&entries, "lxc", "busybox", "1").unwrap();
        assert_eq!(location(b), "http://other.example/b.tar.xz");
        assert_eq!(b.sha256.as_deref(), Some("abc"));
        assert!(pick(&entries, "lxc", "gitlab", "latest").is_none());
    }

    #[test]
    fn versions_compare_numerically_then_as_text() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("1", "1", Equal),
            ("1", "2", Less),
            ("4.9.8", "4.9.10", Less),
            ("10.0.4", "9.9", Greater),
            ("1.0", "1.0.0", Equal),
            ("1.0", "1.0.1", Less),
            ("01.2", "1.2", Equal),
            ("1.0-rc1", "1.0-rc2", Less),
            ("1.0", "1.0-rc1", Less),
            ("2.0b", "2.0a", Greater),
            ("v2", "v10", Greater),
            ("99999999999999999999999", "100000000000000000000000", Less),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn icons_resolve_against_the_root_and_stay_beneath_a_folder() {
        let entry = |icon: &str| Entry {
            name: "a".into(),
            version: None,
            kind: "app".into(),
            arch: None,
            location: None,
            sha256: None,
            description: None,
            raw: serde_json::json!({ "icon": icon }),
        };
        let web = Catalog::new("http://127.0.0.1:9/repo").unwrap();
        let shown = |c: &Catalog, icon: &str| c.icon_location(&entry(icon)).map(|l| l.to_string());
        assert_eq!(
            shown(&web, "icons/a.png").as_deref(),
            Some("http://127.0.0.1:9/repo/icons/a.png")
        );
        assert_eq!(
            shown(&web, "https://example.invalid/a.png").as_deref(),
            Some("https://example.invalid/a.png")
        );
        let folder = Catalog::new("/srv/repo").unwrap();
        assert_eq!(
            shown(&folder, "icons/a.png").as_deref(),
            Some("/srv/repo/icons/a.png")
        );
        for bad in [
            "data:image/png;base64,AAAA",
            "file:///etc/passwd",
            "javascript:x",
            "",
        ] {
            assert_eq!(shown(&web, bad), None, "{bad}");
        }
        for bad in [
            "/etc/passwd",
            "../x.png",
            "icons/../../x.png",
            "file:///etc/passwd",
        ] {
            assert_eq!(shown(&folder, bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_folder_icon_is_read_beneath_the_root_and_sniffed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("icons")).unwrap();
        std::fs::write(dir.path().join("icons/a.png"), b"\x89PNG\r\n\x1a\nrest").unwrap();
        std::fs::write(dir.path().join("icons/t.png"), b"<svg/>").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("icons/l.png")).unwrap();
        std::fs::write(
            dir.path().join("list.json"),
            br#"[{"name":"a","type":"app","icon":"icons/a.png"},
                 {"name":"t","type":"app","icon":"icons/t.png"},
                 {"name":"l","type":"app","icon":"icons/l.png"}]"#,
        )
        .unwrap();
        let c = Catalog::new(&dir.path().display().to_string()).unwrap();
        let entries = c.entries().await.unwrap();
        let key = |i: usize| super::super::icons::key(&c.icon_location(&entries[i]).unwrap());
        assert_eq!(c.icon(&key(0)).await.unwrap().content_type, "image/png");
        assert!(matches!(c.icon(&key(1)).await, Err(IconMiss::Failed(_))));
        assert!(matches!(c.icon(&key(2)).await, Err(IconMiss::Failed(_))));
        assert_eq!(c.icon("0000000000000000").await, Err(IconMiss::Unknown));
        assert_eq!(c.icon("../../etc/passwd").await, Err(IconMiss::Unknown));
    }

    #[test]
    fn templates_are_beside_list_json_whatever_the_location() {
        // QNAP's own entry: `location` is the Docker Hub page.
        let list = br#"[{"name": "gitlab", "displayName": "GitLab", "type": "app",
            "repository": "dockerhub", "arch": "amd64", "version": "11.4.0",
            "icon": "https://example.invalid/app_gitlab.png",
            "location": "https://hub.docker.com/r/sameersbn/gitlab"}]"#;
        let c = Catalog::new("http://127.0.0.1:9/repo").unwrap();
        if host_arch() == "amd64" {
            let entries = c.parse("list.json", list).unwrap();
            assert_eq!(
                location(&entries[0]),
                "https://hub.docker.com/r/sameersbn/gitlab"
            );
        }
        assert_eq!(
            c.template_folder("gitlab").unwrap().to_string(),
            "http://127.0.0.1:9/repo/template/gitlab/"
        );
        let f = Catalog::new("/srv/repo").unwrap();
        assert_eq!(
            f.template_folder("gitlab").unwrap(),
            Location::File(PathBuf::from("/srv/repo/template/gitlab"))
        );
        for bad in ["", "..", "../x", "a/b", ".hidden", "a?b"] {
            assert!(c.template_folder(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folders_resolve_to_files_and_bad_lists_are_named() {
        let c = Catalog::new("/srv/repo").unwrap();
        let entries = c
            .parse(
                "list.json",
                br#"[{"name":"a","type":"lxc","location":"a.tgz"}]"#,
            )
            .unwrap();
        assert_eq!(
            entries[0].location,
            Some(Location::File(PathBuf::from("/srv/repo/a.tgz")))
        );
        match c.parse("list.json", b"{}") {
            Err(e @ CatalogError::Parse { .. }) => {
                assert!(e.to_string().starts_with("list.json: "), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Catalog::new("ftp://x"),
            Err(CatalogError::BadUrl { .. })
        ));
    }

    #[tokio::test]
    async fn a_local_folder_is_read_and_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("list.json"),
            br#"[{"name":"a","type":"lxc","version":"latest","location":"a.tgz"}]"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("a.tgz"), b"12345").unwrap();
        let c = Catalog::new(&dir.path().display().to_string()).unwrap();
        let e = c.find("lxc", "a", "latest").await.unwrap();
        let d = c.open(e.location.as_ref().unwrap()).await.unwrap();
        assert_eq!(d.length, Some(5));
        let bytes: Vec<Bytes> = d.stream.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"12345");
        assert!(matches!(
            c.find("lxc", "b", "latest").await,
            Err(CatalogError::NotFound { .. })
        ));
    }

    /// A server answering `list.json` (and `big`, over the size bound),
    /// 404 otherwise, counting the requests.
    async fn counting_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let line = String::from_utf8_lossy(&head).to_string();
                    let (status, body) = if line.starts_with("GET /list.json ") {
                        ("200 OK", br#"[{"name":"a","type":"app"}]"#.to_vec())
                    } else if line.starts_with("GET /big ") {
                        ("200 OK", vec![b'x'; CACHE_FILE_MAX + 1])
                    } else {
                        ("404 Not Found", b"no".to_vec())
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                });
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn http_reads_are_kept_and_shared_by_concurrent_readers() {
        use std::sync::atomic::Ordering;
        let (url, requests) = counting_server().await;
        let c = Catalog::new(&url).unwrap();
        let reads = (0..50).map(|_| c.entries());
        for entries in futures::future::join_all(reads).await {
            assert_eq!(entries.unwrap().len(), 1);
        }
        let missing = c.resolve("template/a/wizard/install.json").unwrap();
        for _ in 0..5 {
            assert!(matches!(
                c.read(&missing).await,
                Err(CatalogError::Status { status: 404, .. })
            ));
        }
        assert_eq!(requests.load(Ordering::SeqCst), 2, "one fetch per file");
        assert_eq!(c.fetches(), 2);
        // A clone shares the copies.
        assert!(c.clone().entries().await.is_ok());
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_oversized_file_is_refused_and_the_cache_stays_bounded() {
        let (url, _requests) = counting_server().await;
        let c = Catalog::new(&url).unwrap();
        let big = c.resolve("big").unwrap();
        assert!(matches!(
            c.read(&big).await,
            Err(CatalogError::TooLarge { .. })
        ));
        for i in 0..(CACHE_ENTRIES + 10) {
            let _ = c.read(&c.resolve(&format!("f{i}")).unwrap()).await;
        }
        assert!(c.cache.slots.lock().len() <= CACHE_ENTRIES);
    }
}
